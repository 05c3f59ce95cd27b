package promote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Canary analysis: Prometheus queries judged against thresholds, round
// after round, until enough consecutive rounds passed or too many failed.
// The decisions are pure (Metric.Judge, Analysis.Next); RunAnalysis runs
// the rounds against a Querier, PrometheusQuerier is the real one. The
// analysis steps of an environment's canary (canary.go) run it.

// Metric is one query and the range its value must be in.
type Metric struct {
	Name string
	// Query is PromQL that yields a scalar or a one-sample vector, e.g. a
	// success rate or sum(rate(...)) / sum(rate(...)).
	Query string
	// Min and Max bound the value (nil: unbounded on that side).
	Min, Max *float64
}

// Outcome is one measurement's result.
type Outcome int

const (
	// Inconclusive: no value (query failed, no sample, several samples,
	// NaN) — counted apart from failures, as Argo Rollouts does.
	Inconclusive Outcome = iota
	Pass
	Fail
)

func (o Outcome) String() string {
	return [...]string{"inconclusive", "pass", "fail"}[o]
}

// Judge is the outcome of value v (err: no value was had).
func (m Metric) Judge(v float64, err error) Outcome {
	switch {
	case err != nil || math.IsNaN(v):
		return Inconclusive
	case m.Min != nil && v < *m.Min, m.Max != nil && v > *m.Max:
		return Fail
	}
	return Pass
}

// Analysis is what a canary step must pass.
type Analysis struct {
	Metrics []Metric
	// Interval between rounds.
	Interval time.Duration
	// Passes is the number of consecutive passing rounds that pass it.
	Passes int
	// FailureLimit consecutive failing rounds fail it (a round fails when
	// any metric fails); InconclusiveLimit consecutive inconclusive rounds
	// fail it too (Prometheus down, no traffic).
	FailureLimit, InconclusiveLimit int
}

// Tally counts consecutive round outcomes.
type Tally struct {
	Passes, Failures, Inconclusives int
	Rounds                          int
}

// Verdict is an analysis' state after a round.
type Verdict int

const (
	Continue Verdict = iota
	Passed
	Failed
)

func (v Verdict) String() string { return [...]string{"continue", "passed", "failed"}[v] }

// Round is a round's outcome: Fail if any metric failed, else
// Inconclusive if any was, else Pass.
func Round(outcomes []Outcome) Outcome {
	r := Pass
	for _, o := range outcomes {
		switch o {
		case Fail:
			return Fail
		case Inconclusive:
			r = Inconclusive
		}
	}
	return r
}

// Next counts a round's outcome and decides.
func (a Analysis) Next(t Tally, round Outcome) (Tally, Verdict) {
	t.Rounds++
	switch round {
	case Pass:
		t.Passes, t.Failures, t.Inconclusives = t.Passes+1, 0, 0
		if t.Passes >= max(a.Passes, 1) {
			return t, Passed
		}
	case Fail:
		t.Passes, t.Failures, t.Inconclusives = 0, t.Failures+1, 0
		if t.Failures >= max(a.FailureLimit, 1) {
			return t, Failed
		}
	default:
		t.Passes, t.Inconclusives = 0, t.Inconclusives+1
		if t.Inconclusives >= max(a.InconclusiveLimit, 1) {
			return t, Failed
		}
	}
	return t, Continue
}

// Querier evaluates an instant PromQL query to one number.
type Querier interface {
	Query(ctx context.Context, promql string) (float64, error)
}

// RunAnalysis runs rounds every a.Interval until the analysis passes or
// fails, or ctx ends; it returns the verdict and, when failed, why.
// after is the clock (time.After in production).
func RunAnalysis(ctx context.Context, a Analysis, q Querier, after func(time.Duration) <-chan time.Time) (Verdict, string, error) {
	var t Tally
	for {
		outcomes := make([]Outcome, len(a.Metrics))
		var notes []string
		for i, m := range a.Metrics {
			v, err := q.Query(ctx, m.Query)
			if ctx.Err() != nil {
				return Continue, "", ctx.Err()
			}
			outcomes[i] = m.Judge(v, err)
			switch {
			case err != nil:
				notes = append(notes, fmt.Sprintf("%s: %v", m.Name, err))
			default:
				notes = append(notes, fmt.Sprintf("%s=%g (%s)", m.Name, v, outcomes[i]))
			}
		}
		var verdict Verdict
		t, verdict = a.Next(t, Round(outcomes))
		if verdict != Continue {
			return verdict, fmt.Sprintf("after %d rounds: %s", t.Rounds, strings.Join(notes, ", ")), nil
		}
		select {
		case <-ctx.Done():
			return Continue, "", ctx.Err()
		case <-after(a.Interval):
		}
	}
}

// PrometheusQuerier asks Prometheus' instant query API
// (GET /api/v1/query).
type PrometheusQuerier struct {
	// URL is Prometheus' base URL, e.g. http://prometheus.monitoring:9090.
	URL  string
	HTTP *http.Client
}

// Query implements Querier: the result must be a scalar or a vector of
// exactly one sample.
func (p PrometheusQuerier) Query(ctx context.Context, promql string) (float64, error) {
	u := strings.TrimRight(p.URL, "/") + "/api/v1/query?" + url.Values{"query": {promql}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, fmt.Errorf("prometheus query: %w", err)
	}
	hc := p.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("prometheus query: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, fmt.Errorf("prometheus query: read answer: %w", err)
	}
	var body struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		return 0, fmt.Errorf("prometheus query: answer %d is not the query API's JSON: %w", resp.StatusCode, err)
	}
	if body.Status != "success" {
		return 0, fmt.Errorf("prometheus query %q: %d %s: %s", promql, resp.StatusCode, body.ErrorType, body.Error)
	}
	var sample []any
	switch body.Data.ResultType {
	case "scalar":
		if err := json.Unmarshal(body.Data.Result, &sample); err != nil {
			return 0, fmt.Errorf("prometheus query %q: scalar: %w", promql, err)
		}
	case "vector":
		var vec []struct {
			Value []any `json:"value"`
		}
		if err := json.Unmarshal(body.Data.Result, &vec); err != nil {
			return 0, fmt.Errorf("prometheus query %q: vector: %w", promql, err)
		}
		if len(vec) != 1 {
			return 0, fmt.Errorf("prometheus query %q yields %d samples; it must yield one (aggregate it, e.g. sum(...))", promql, len(vec))
		}
		sample = vec[0].Value
	default:
		return 0, fmt.Errorf("prometheus query %q yields a %s; it must yield a scalar or one sample", promql, body.Data.ResultType)
	}
	if len(sample) != 2 {
		return 0, errors.New("prometheus query: malformed sample")
	}
	s, _ := sample[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("prometheus query %q: value %q: %w", promql, s, err)
	}
	return v, nil
}
