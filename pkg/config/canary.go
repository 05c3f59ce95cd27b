package config

import (
	"fmt"
	"time"
)

// Canary rolls an environment step by step: each setWeight step gives the
// new digest that share (a canary Deployment scaled beside the stable
// one, or a Knative Service's traffic split), each pause waits, each
// analysis judges the canary by Prometheus queries; a failed analysis
// rolls the environment back. After the last step (or at setWeight 100)
// the environment itself is rolled and verified as without a canary.
type Canary struct {
	// Steps in order; none means no canary.
	Steps []CanaryStep `json:"steps"`
	// Prometheus is the base URL analysis queries go to, e.g.
	// http://prometheus.monitoring:9090 (its GET /api/v1/query).
	Prometheus string `json:"prometheus"`
}

// CanaryStep is one of setWeight, pause or analysis.
type CanaryStep struct {
	// SetWeight is the new digest's share in percent, 1 to 100.
	SetWeight int `json:"setWeight"`
	// Pause waits this long before the next step.
	Pause Duration `json:"pause"`
	// Analysis must pass before the next step.
	Analysis *CanaryAnalysis `json:"analysis"`
}

// CanaryAnalysis is judged every Interval until Passes consecutive rounds
// passed, FailureLimit consecutive rounds failed (any metric out of
// range) or InconclusiveLimit consecutive rounds had no value.
type CanaryAnalysis struct {
	Metrics           []CanaryMetric `json:"metrics"`
	Interval          Duration       `json:"interval"`
	Passes            int            `json:"passes"`
	FailureLimit      int            `json:"failureLimit"`
	InconclusiveLimit int            `json:"inconclusiveLimit"`
}

// CanaryMetric is a PromQL query yielding one number, and its range.
type CanaryMetric struct {
	Name  string   `json:"name"`
	Query string   `json:"query"`
	Min   *float64 `json:"min"`
	Max   *float64 `json:"max"`
}

func (c *Canary) applyDefaults() {
	for i := range c.Steps {
		a := c.Steps[i].Analysis
		if a == nil {
			continue
		}
		if a.Interval.Duration == 0 {
			a.Interval = Duration{Duration: 30 * time.Second}
		}
		if a.Passes == 0 {
			a.Passes = 3
		}
		if a.FailureLimit == 0 {
			a.FailureLimit = 1
		}
		if a.InconclusiveLimit == 0 {
			a.InconclusiveLimit = 3
		}
	}
}

func (c Canary) validate(field string) []error {
	var errs []error
	add := func(sub, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", field, sub, fmt.Sprintf(format, args...)))
	}
	weight, analyses := 0, false
	for i, s := range c.Steps {
		f := fmt.Sprintf("canary.steps[%d]", i)
		kinds := 0
		if s.SetWeight != 0 {
			kinds++
		}
		if s.Pause.Duration != 0 {
			kinds++
		}
		if s.Analysis != nil {
			kinds++
		}
		if kinds != 1 {
			add(f, "must be exactly one of setWeight, pause or analysis (has %d), e.g. {setWeight: 10} then {analysis: {...}}", kinds)
			continue
		}
		switch {
		case s.SetWeight != 0:
			switch {
			case s.SetWeight < 1 || s.SetWeight > 100:
				add(f+".setWeight", "%d must be a percentage from 1 to 100", s.SetWeight)
				continue
			case s.SetWeight <= weight:
				add(f+".setWeight", "%d must be more than the step before's %d: weights only grow (a failed analysis rolls back)", s.SetWeight, weight)
			}
			if weight == 100 {
				add(f, "comes after setWeight 100, when the canary is already the whole environment")
			}
			weight = s.SetWeight
		case weight == 0:
			add(f, "comes before any setWeight: there is no canary yet to pause on or judge; start with e.g. {setWeight: 10}")
		case weight == 100:
			add(f, "comes after setWeight 100: the environment is verified by verify, not by canary steps")
		case s.Pause.Duration < 0:
			add(f+".pause", "must be a positive duration such as 1m")
		case s.Analysis != nil:
			analyses = true
			errs = append(errs, s.Analysis.validate(field+"."+f+".analysis")...)
		}
	}
	if analyses {
		if err := checkURL(c.Prometheus); err != nil {
			add("canary.prometheus", "analysis steps need Prometheus' base URL, e.g. http://prometheus.monitoring:9090: %v", err)
		}
	}
	return errs
}

func (a CanaryAnalysis) validate(field string) []error {
	var errs []error
	add := func(sub, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s%s: %s", field, sub, fmt.Sprintf(format, args...)))
	}
	if len(a.Metrics) == 0 {
		add(".metrics", "list at least one metric (name, query, min and/or max)")
	}
	names := map[string]bool{}
	for j, m := range a.Metrics {
		f := fmt.Sprintf(".metrics[%d]", j)
		switch {
		case m.Name == "":
			add(f+".name", "must name the metric (it is shown in the promotion's timeline)")
		case names[m.Name]:
			add(f+".name", "%q is used by another metric of this analysis", m.Name)
		}
		names[m.Name] = true
		if m.Query == "" {
			add(f+".query", "must be PromQL yielding one number, e.g. sum(rate(http_requests_total{code=~\"5..\"}[1m])) / sum(rate(http_requests_total[1m]))")
		}
		switch {
		case m.Min == nil && m.Max == nil:
			add(f, "needs min and/or max: the range the value must be in")
		case m.Min != nil && m.Max != nil && *m.Min > *m.Max:
			add(f, "min %g is above max %g", *m.Min, *m.Max)
		}
	}
	if a.Interval.Duration <= 0 {
		add(".interval", "must be a positive duration such as 30s")
	}
	if a.Passes < 1 || a.FailureLimit < 1 || a.InconclusiveLimit < 1 {
		add("", "passes, failureLimit and inconclusiveLimit must be at least 1 (defaults 3, 1, 3)")
	}
	return errs
}

// HasCanary reports whether the environment is rolled through canary steps.
func (e PromotionEnvironment) HasCanary() bool { return len(e.Canary.Steps) > 0 }
