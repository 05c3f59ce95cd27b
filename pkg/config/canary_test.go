package config

import (
	"strings"
	"testing"
	"time"
)

func TestCanaryValidation(t *testing.T) {
	app := func(env string) string {
		return minimal + `promotion:
  enabled: true
  apiToken: t
  apps:
    - name: web
      source: r/web
      target: r/web-release
      environments:
` + env
	}
	tests := []struct {
		name, yaml string
		want       []string // every error, in order
	}{
		{"steps with analyses and pauses", app(`        - name: production
          namespace: p
          deployments: [web]
          canary:
            prometheus: http://prometheus:9090
            steps:
              - setWeight: 10
              - analysis: {metrics: [{name: errors, query: "sum(x)", max: 0.01}]}
              - setWeight: 50
              - pause: 1m
              - setWeight: 100
`), nil},
		{"knative service", app(`        - {name: production, namespace: p, knativeServices: [hello], canary: {steps: [{setWeight: 20}, {pause: 1m}]}}
`), nil},
		{"step problems", app(`        - name: production
          namespace: p
          deployments: [web]
          canary:
            steps:
              - pause: 1m
              - {setWeight: 10, pause: 1m}
              - setWeight: 120
              - setWeight: 50
              - setWeight: 40
              - analysis: {interval: -1s, passes: -1, metrics: [{name: e, query: "x"}, {name: e, min: 2, max: 1}, {query: "y", max: 1}]}
              - setWeight: 100
              - pause: 1m
`), []string{
			"environments[0].canary.steps[0]: comes before any setWeight",
			"environments[0].canary.steps[1]: must be exactly one of setWeight, pause or analysis (has 2)",
			"environments[0].canary.steps[2].setWeight: 120 must be a percentage from 1 to 100",
			"environments[0].canary.steps[4].setWeight: 40 must be more than the step before's 50",
			"environments[0].canary.steps[5].analysis.metrics[0]: needs min and/or max",
			`environments[0].canary.steps[5].analysis.metrics[1].name: "e" is used by another metric`,
			"environments[0].canary.steps[5].analysis.metrics[1].query: must be PromQL",
			"environments[0].canary.steps[5].analysis.metrics[1]: min 2 is above max 1",
			"environments[0].canary.steps[5].analysis.metrics[2].name: must name the metric",
			"environments[0].canary.steps[5].analysis.interval: must be a positive duration",
			"environments[0].canary.steps[5].analysis: passes, failureLimit and inconclusiveLimit must be at least 1",
			"environments[0].canary.steps[7]: comes after setWeight 100",
			"environments[0].canary.prometheus: analysis steps need Prometheus' base URL",
		}},
		{"deployments and services", app(`        - {name: production, namespace: p, deployments: [web], knativeServices: [Hello]}
        - {name: staging, namespace: s}
`), []string{
			"environments[0].knativeServices: set deployments or knativeServices, not both",
			"environments[0].container: must be set when several",
			`environments[0].knativeServices[0]: "Hello" is not a Knative Service name`,
			"environments[1].deployments: list at least one Deployment to roll (or knativeServices)",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml))
			if err == nil {
				err = c.Validate()
			}
			var got []string
			if err != nil {
				for _, l := range strings.Split(err.Error(), "\n") {
					if strings.Contains(l, "promotion.apps[0].") {
						got = append(got, l)
					}
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("errors:\n%s\nwant %d:\n%s", strings.Join(got, "\n"), len(tt.want), strings.Join(tt.want, "\n"))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("error %d %q\ndoes not contain %q", i, got[i], w)
				}
			}
		})
	}
}

func TestCanaryDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal + `promotion:
  apps:
    - name: web
      environments:
        - {name: test, canary: {steps: [{setWeight: 5}, {analysis: {metrics: [{name: e, query: x, max: 1}]}}]}}
`))
	if err != nil {
		t.Fatal(err)
	}
	a := c.Promotion.Apps[0].Environments[0].Canary.Steps[1].Analysis
	if a.Interval.Duration != 30*time.Second || a.Passes != 3 || a.FailureLimit != 1 || a.InconclusiveLimit != 3 {
		t.Errorf("analysis defaults = %+v, want 30s, 3 passes, failure limit 1, inconclusive limit 3", a)
	}
}
