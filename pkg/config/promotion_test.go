package config

import (
	"strings"
	"testing"
	"time"
)

func TestPromotionValidation(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"valid", minimal + `promotion:
  enabled: true
  apiToken: t
  apps:
    - name: web
      source: 127.0.0.1:5000/ci/web
      target: registry.example.com/release/web
      environments:
        - {name: test, namespace: t, deployments: [web]}
`, nil},
		{"people only, no pipeline token", minimal + `promotion:
  enabled: true
  auth:
    kubernetes: {enabled: true}
    tokens:
      - name: alice
        sha256: 2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90
        roles: [{apps: [web], environments: [production], verbs: [approve, reject]}]
  apps:
    - name: web
      source: 127.0.0.1:5000/ci/web
      target: registry.example.com/release/web
      environments:
        - {name: test, namespace: t, deployments: [web]}
`, nil},
		{"auth problems", minimal + `promotion:
  enabled: true
  idempotencyTTL: 1s
  auth:
    kubernetes: {enabled: true, group: Ferry}
    tokens:
      - {name: alice, sha256: s3cret-token, roles: [{apps: [web], environments: ["*"], verbs: [approve, deploy]}]}
      - {name: alice, sha256: 2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90}
      - {name: "system:admin", sha256: 2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90, roles: [{apps: [web]}]}
  apps:
    - name: web
      source: 127.0.0.1:5000/ci/web
      target: registry.example.com/release/web
      environments:
        - {name: test, namespace: t, deployments: [web]}
`, []string{
			"promotion.idempotencyTTL: must be at least 1m",
			`promotion.auth.kubernetes.group: "Ferry" must be an API group name`,
			"promotion.auth.tokens[0].sha256: must be the lower-case hex SHA-256 of the token",
			`promotion.auth.tokens[0].roles[0].verbs: "deploy" is not a verb`,
			`promotion.auth.tokens[1].name: "alice" is used by another token`,
			"promotion.auth.tokens[1].roles: list at least one role",
			`promotion.auth.tokens[2].name: "system:admin" must not start with system:`,
			"promotion.auth.tokens[2].sha256: is the hash of another token too",
			"promotion.auth.tokens[2].roles[0]: needs apps, environments and verbs",
		}},
		{"disabled needs nothing", minimal + "promotion:\n  enabled: false\n", nil},
		{"no token no apps", minimal + "promotion:\n  enabled: true\n", []string{
			"promotion.apiTokenFile: must be set", "promotion.apps: at least one app",
		}},
		{"app problems", minimal + `promotion:
  enabled: true
  apiToken: t
  apiTokenFile: /x
  apps:
    - name: Web
      source: "ci/web:v1"
      target: ""
      tags: ["{{sha}}"]
      environments:
        - {name: test, namespace: "", deployments: []}
        - {name: test, namespace: p, deployments: [a, b], verify: {http: {url: "web/healthz"}}}
    - name: api
      source: r/api
      target: r/api-release
`, []string{
			"promotion.apiToken: set apiToken or apiTokenFile, not both",
			`promotion.apps[0].name: "Web" must be lower-case`,
			`promotion.apps[0].source: "ci/web:v1" must be a repository without tag or digest`,
			`promotion.apps[0].target: "" must be a repository`,
			`promotion.apps[0].tags[0]: unknown placeholder {{sha}}`,
			"promotion.apps[0].environments[0].namespace: must name the namespace",
			"promotion.apps[0].environments[0].deployments: list at least one",
			`promotion.apps[0].environments[1].name: "test" is listed twice`,
			"promotion.apps[0].environments[1].container: must be set when several Deployments",
			`promotion.apps[0].environments[1].verify.http.url: "web/healthz" must start with http`,
			"promotion.apps[1].environments: list at least one environment",
		}},
		{"deployment reporting", minimal + `github:
  token: t
promotion:
  enabled: true
  apiToken: t
  apps:
    - name: a
      source: r/a
      target: r/a-release
      provider: github
      repo: acme/a
      environments: [{name: test, namespace: t, deployments: [a], url: "https://a.example.com"}]
    - name: b
      source: r/b
      target: r/b-release
      provider: gitlab
      projectID: 12
      environments: [{name: test, namespace: t, deployments: [b]}]
    - name: c
      source: r/c
      target: r/c-release
      provider: github
      repo: "acme/c/sub"
      projectID: 3
      environments: [{name: test, namespace: t, deployments: [c], url: "c.example.com"}]
    - name: d
      source: r/d
      target: r/d-release
      repo: acme/d
      environments: [{name: test, namespace: t, deployments: [d]}]
    - name: e
      source: r/e
      target: r/e-release
      provider: bitbucket
      environments: [{name: test, namespace: t, deployments: [e]}]
    - name: f
      source: r/f
      target: r/f-release
      provider: gitlab
      repo: f
      environments: [{name: test, namespace: t, deployments: [f]}]
`, []string{
			"promotion.apps[1].provider: gitlab needs gitlab.token or gitlab.tokenFile",
			`promotion.apps[2].repo: "acme/c/sub" must be the GitHub repository as owner/name`,
			"promotion.apps[2].projectID: is GitLab's",
			`promotion.apps[2].environments[0].url: "c.example.com" must start with http`,
			"promotion.apps[3].provider: must be github or gitlab when repo or projectID is set",
			`promotion.apps[4].provider: "bitbucket" is not a provider`,
			`promotion.apps[5].repo: "f" must be the GitLab project path`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml))
			if err == nil {
				err = c.Validate()
			}
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestPromotionDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal + `promotion:
  apps:
    - name: web
      environments:
        - {name: test, verify: {http: {url: "http://x/"}}}
`))
	if err != nil {
		t.Fatal(err)
	}
	e := c.Promotion.Apps[0].Environments[0]
	if e.RolloutTimeout.Duration != 5*time.Minute {
		t.Errorf("rolloutTimeout = %s, want 5m", e.RolloutTimeout)
	}
	h := e.Verify.HTTP
	if h.Successes != 3 || h.FailureThreshold != 3 || h.Interval.Duration != 2*time.Second || h.Timeout.Duration != 2*time.Minute {
		t.Errorf("http check defaults = %+v", h)
	}
	if a := c.Promotion.Apps[0]; a.Ref != "" || a.Reports() {
		t.Errorf("app without provider: ref %q, reports %v; want no ref and no reporting", a.Ref, a.Reports())
	}
	if c.Promotion.LeaderElection.LeaseName != "ferry-promoter" || c.Promotion.Resync.Duration != 2*time.Second {
		t.Errorf("promotion defaults = %+v", c.Promotion)
	}
}

func TestPromotionTokenFromEnv(t *testing.T) {
	c, err := Load(Sources{Lookup: func(k string) (string, bool) {
		switch k {
		case "FERRY_PROMOTION_API_TOKEN":
			return "s3cret", true
		case "FERRY_JENKINS_URL":
			return "http://j/", true
		}
		return "", false
	}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Promotion.APIToken != "s3cret" {
		t.Errorf("apiToken = %q, want it from FERRY_PROMOTION_API_TOKEN", c.Promotion.APIToken)
	}
}
