package promote_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/promote"
)

func TestMetricJudge(t *testing.T) {
	rate := promote.Metric{Name: "success", Min: ptr(0.99)}
	latency := promote.Metric{Name: "p99", Max: ptr(0.5)}
	band := promote.Metric{Name: "band", Min: ptr(1.0), Max: ptr(2.0)}
	tests := []struct {
		m    promote.Metric
		v    float64
		err  error
		want promote.Outcome
	}{
		{rate, 0.995, nil, promote.Pass},
		{rate, 0.99, nil, promote.Pass},
		{rate, 0.9, nil, promote.Fail},
		{latency, 0.2, nil, promote.Pass},
		{latency, 0.7, nil, promote.Fail},
		{band, 1.5, nil, promote.Pass},
		{band, 0.5, nil, promote.Fail},
		{band, 2.5, nil, promote.Fail},
		{rate, math.NaN(), nil, promote.Inconclusive},
		{rate, 0, errors.New("no sample"), promote.Inconclusive},
		{promote.Metric{Name: "unbounded"}, -1e9, nil, promote.Pass},
	}
	for _, tt := range tests {
		if got := tt.m.Judge(tt.v, tt.err); got != tt.want {
			t.Errorf("%s.Judge(%g, %v) = %s, want %s", tt.m.Name, tt.v, tt.err, got, tt.want)
		}
	}
}

// Rounds are judged as a whole and counted consecutively.
func TestAnalysisNext(t *testing.T) {
	P, F, I := promote.Pass, promote.Fail, promote.Inconclusive
	a := promote.Analysis{Passes: 3, FailureLimit: 2, InconclusiveLimit: 3}
	tests := []struct {
		name   string
		rounds []promote.Outcome
		want   promote.Verdict
		at     int // round of the verdict
	}{
		{"three passes in a row pass", []promote.Outcome{P, P, P}, promote.Passed, 3},
		{"a failure resets the passes", []promote.Outcome{P, P, F, P, P, P}, promote.Passed, 6},
		{"two failures in a row fail", []promote.Outcome{P, F, F}, promote.Failed, 3},
		{"failures apart do not", []promote.Outcome{F, P, F, P, P, P}, promote.Passed, 6},
		{"inconclusive rounds fail at their limit", []promote.Outcome{I, I, I}, promote.Failed, 3},
		{"an inconclusive round resets the passes", []promote.Outcome{P, P, I, P, P, P}, promote.Passed, 6},
		{"still undecided", []promote.Outcome{P, P}, promote.Continue, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tally promote.Tally
			v := promote.Continue
			at := 0
			for i, r := range tt.rounds {
				tally, v = a.Next(tally, r)
				at = i + 1
				if v != promote.Continue {
					break
				}
			}
			if v != tt.want || at != tt.at {
				t.Errorf("verdict %s at round %d, want %s at %d", v, at, tt.want, tt.at)
			}
		})
	}
	if got := promote.Round([]promote.Outcome{P, I, P}); got != I {
		t.Errorf("round of pass, inconclusive = %s", got)
	}
	if got := promote.Round([]promote.Outcome{I, F}); got != F {
		t.Errorf("round with a failure = %s", got)
	}
}

// On the bed: a real Prometheus scrapes a metrics endpoint this test
// controls; the analysis of an error ratio passes while it is low and
// fails once it is high, both by real instant queries. Prometheus' query
// errors (bad PromQL, several samples) are inconclusive with a reason.
func TestAnalysisAgainstPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a prometheus binary (Debian's prometheus package, test/bed/ci-setup.sh); skipped with -short")
	}
	errorsPerMille, prom := errorRatioPrometheus(t)

	q := promote.PrometheusQuerier{URL: prom}
	ratio := `sum(web_requests{code="500"}) / sum(web_requests)`
	a := promote.Analysis{
		Metrics:  []promote.Metric{{Name: "error-ratio", Query: ratio, Max: ptr(0.05)}},
		Interval: 200 * time.Millisecond, Passes: 3, FailureLimit: 2, InconclusiveLimit: 100,
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	v, why, err := promote.RunAnalysis(ctx, a, q, time.After)
	if err != nil || v != promote.Passed {
		t.Fatalf("analysis at 1%% errors = %s (%s), %v; want passed", v, why, err)
	}
	errorsPerMille.Store(300)
	// Wait until Prometheus scraped the new value, then judge it.
	for {
		got, err := q.Query(ctx, ratio)
		if err == nil && got > 0.2 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("Prometheus never scraped the new error ratio: last %g, %v", got, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	v, why, err = promote.RunAnalysis(ctx, a, q, time.After)
	if err != nil || v != promote.Failed {
		t.Fatalf("analysis at 30%% errors = %s (%s), %v; want failed", v, why, err)
	}
	t.Logf("failed as it should: %s", why)

	for _, bad := range []struct{ query, want string }{
		{`sum(web_requests`, "bad_data"},
		{`web_requests`, "yields 2 samples"},
	} {
		_, err := q.Query(ctx, bad.query)
		if err == nil || !contains(err.Error(), bad.want) {
			t.Errorf("query %q: err = %v, want one saying %q", bad.query, err, bad.want)
		}
	}
	if v, err := q.Query(ctx, `scalar(sum(web_requests))`); err != nil || v != 1000 {
		t.Errorf("scalar query = %g, %v; want 1000", v, err)
	}
}

// errorRatioPrometheus starts Prometheus (skipping the test when it is
// not installed) scraping web_requests{code="200"|"500"} from an endpoint
// whose errors per mille the test sets (10 at first); it returns the
// setting and Prometheus' URL.
func errorRatioPrometheus(t *testing.T) (*atomic.Int64, string) {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus is not installed (test/bed/ci-setup.sh installs Debian's prometheus package)")
	}
	errorsPerMille := new(atomic.Int64)
	errorsPerMille.Store(10)
	metrics := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		e := errorsPerMille.Load()
		fmt.Fprintf(w, "# TYPE web_requests gauge\nweb_requests{code=\"200\"} %d\nweb_requests{code=\"500\"} %d\n", 1000-e, e)
	}))
	t.Cleanup(metrics.Close)
	return errorsPerMille, startPrometheus(t, bin, metrics.Listener.Addr().String())
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// startPrometheus runs prometheus scraping target every 100ms and returns
// its URL once it is ready; it is stopped when the test ends.
func startPrometheus(t *testing.T, bin, target string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(`global: {scrape_interval: 100ms, evaluation_interval: 1s}
scrape_configs:
  - job_name: web
    scrape_interval: 100ms
    scrape_timeout: 90ms
    static_configs: [{targets: ["`+target+`"]}]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = logf.Close()
	})
	url := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url + "/-/ready")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
		if time.Now().After(deadline) {
			raw, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
			t.Fatalf("prometheus at %s never became ready: %v\n%s", addr, err, raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
