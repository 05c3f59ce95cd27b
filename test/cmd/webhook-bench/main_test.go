package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ferryci/ferry/test/redisserver"
)

// TestRun runs the whole command for a moment and checks that both
// targets accepted deliveries and that Redis holds every event ferry
// accepted. It asserts what happened, never how fast.
func TestRun(t *testing.T) {
	if _, err := redisserver.LookPath(""); err != nil {
		if testing.Short() {
			t.Skipf("skipping: redis-server is not installed (apt-get install redis-server): %v", err)
		}
		t.Fatalf("redis server for test: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	args := []string{"-json", "-d", "300ms", "-c", "2", "-rounds", "1", "-rate", "20", "-warmup", "0", "-redis-dir", t.TempDir()}
	if err := run(ctx, args, &stdout, &stderr); err != nil {
		t.Fatalf("run %v: %v\nstderr:\n%s", args, err, stderr.String())
	}
	var rep Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("decode the JSON report: %v\n%s", err, stdout.String())
	}

	var ferryAccepted int64
	for _, target := range []string{targetBare, targetFerry} {
		for _, phase := range []string{phaseClosed, phaseOpen} {
			r, ok := rep.summary(target, phase)
			if !ok {
				t.Errorf("no %s %s result in the report", target, phase)
				continue
			}
			if r.Accepted == 0 || r.AcceptedPerSec <= 0 {
				t.Errorf("%s %s: accepted %d (%.1f/s), want > 0", target, phase, r.Accepted, r.AcceptedPerSec)
			}
			if r.Errors != 0 {
				t.Errorf("%s %s: %d errors %v (last %q), want none", target, phase, r.Errors, r.ErrorsByCode, r.LastError)
			}
			if r.P50Ms <= 0 || r.P99Ms < r.P50Ms || r.MaxMs < r.P99Ms {
				t.Errorf("%s %s: latencies p50 %v p99 %v max %v are not ordered", target, phase, r.P50Ms, r.P99Ms, r.MaxMs)
			}
			if target == targetFerry {
				ferryAccepted += r.Accepted
			}
		}
	}
	d := rep.Durability
	if !d.OK || d.StreamLen != ferryAccepted || d.Accepted != ferryAccepted {
		t.Errorf("durability = %+v, want OK with stream length = ferry's accepted = %d", d, ferryAccepted)
	}
	if d.Key != "ferry:events" {
		t.Errorf("durability checked key %q, want ferry:events", d.Key)
	}
	if rep.Machine.RedisAppendOnly != "yes" || rep.Machine.RedisAppendFsync != "always" {
		t.Errorf("redis ran with appendonly %q appendfsync %q, want yes and always", rep.Machine.RedisAppendOnly, rep.Machine.RedisAppendFsync)
	}
	if rep.Payload.Bytes < 6000 || rep.Payload.Bytes > 8192 {
		t.Errorf("payload is %d bytes, want the ~7 KB compacted push", rep.Payload.Bytes)
	}
	if !strings.Contains(rep.Command, "-rate 20") {
		t.Errorf("command %q does not show the arguments", rep.Command)
	}

	var table bytes.Buffer
	rep.WriteTable(&table)
	for _, want := range []string{"accepted/s", "ferry ≥ 50% of bare:", "ferry p99 at 1000 rps < 10 ms:", "durability: ok", "GOMAXPROCS="} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	tests := [][]string{
		{"-c", "0"},
		{"-d", "0s"},
		{"-rounds", "100"},
		{"-rate", "-1"},
		{"-appendfsync", "sometimes"},
		{"-nosuchflag"},
		{"extra"},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			if err := run(context.Background(), args, &out, &errOut); err == nil {
				t.Errorf("run %v succeeded, want an error", args)
			}
			if out.Len() != 0 {
				t.Errorf("run %v printed a report:\n%s", args, out.String())
			}
		})
	}
}

func TestBareHandler(t *testing.T) {
	secret := []byte("s")
	body := []byte(`{"ref":"refs/heads/main"}`)
	sign := func(key, b []byte) string {
		m := hmac.New(sha256.New, key)
		m.Write(b)
		return "sha256=" + hex.EncodeToString(m.Sum(nil))
	}
	tests := []struct {
		name   string
		method string
		sig    string
		body   []byte
		want   int
	}{
		{"good signature", http.MethodPost, sign(secret, body), body, http.StatusAccepted},
		{"other secret", http.MethodPost, sign([]byte("t"), body), body, http.StatusUnauthorized},
		{"no signature", http.MethodPost, "", body, http.StatusUnauthorized},
		{"sha1 prefix", http.MethodPost, "sha1=" + sign(secret, body)[len("sha256="):], body, http.StatusUnauthorized},
		{"not hex", http.MethodPost, "sha256=zz", body, http.StatusUnauthorized},
		{"too large", http.MethodPost, sign(secret, bytes.Repeat([]byte("x"), 65)), bytes.Repeat([]byte("x"), 65), http.StatusRequestEntityTooLarge},
		{"get", http.MethodGet, sign(secret, body), body, http.StatusMethodNotAllowed},
	}
	h := bareHandler(secret, 64)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "/hooks/github", bytes.NewReader(tt.body))
			if tt.sig != "" {
				req.Header.Set("X-Hub-Signature-256", tt.sig)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tt.want {
				t.Errorf("status = %d, want %d", w.Code, tt.want)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	samples := make([]time.Duration, 100)
	for i := range samples {
		samples[i] = time.Duration(100-i) * time.Millisecond // unsorted on purpose
	}
	tests := []struct {
		p    float64
		want time.Duration
	}{
		{0.50, 50 * time.Millisecond},
		{0.90, 90 * time.Millisecond},
		{0.99, 99 * time.Millisecond},
		{1, 100 * time.Millisecond},
		{0, time.Millisecond},
	}
	for _, tt := range tests {
		if got := percentile(samples, tt.p); got != tt.want {
			t.Errorf("percentile(%v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile of nothing = %v, want 0", got)
	}
}

func TestMedianAndGoals(t *testing.T) {
	closed := func(target string, perSec, p99 float64) Result {
		return Result{Target: target, Phase: phaseClosed, AcceptedPerSec: perSec, P99Ms: p99, Accepted: 10, Requests: 10}
	}
	open := func(p99 float64, accepted, scheduled, errs int64) Result {
		return Result{Target: targetFerry, Phase: phaseOpen, OfferedRate: 1000, P99Ms: p99,
			Accepted: accepted, Scheduled: scheduled, Errors: errs, AcceptedPerSec: float64(accepted) / 10}
	}
	tests := []struct {
		name          string
		bare, ferry   []Result
		open          []Result
		rate          float64
		wantRatio     float64
		wantThroughOK bool
		wantP99OK     bool
	}{
		{
			name: "both goals met, medians of three",
			bare: []Result{closed(targetBare, 1000, 1), closed(targetBare, 900, 9), closed(targetBare, 5000, 2)},
			// median 600 of a median 1000: 60%
			ferry: []Result{closed(targetFerry, 600, 3), closed(targetFerry, 100, 1), closed(targetFerry, 700, 2)},
			open:  []Result{open(4, 10000, 10000, 0)}, rate: 1000,
			wantRatio: 0.6, wantThroughOK: true, wantP99OK: true,
		},
		{
			name:  "two rounds average, below half",
			bare:  []Result{closed(targetBare, 1000, 1), closed(targetBare, 2000, 1)},
			ferry: []Result{closed(targetFerry, 500, 1), closed(targetFerry, 700, 1)},
			open:  []Result{open(12, 10000, 10000, 0)}, rate: 1000,
			wantRatio: 0.4,
		},
		{
			name:  "fast p99 but the rate was not held",
			bare:  []Result{closed(targetBare, 1000, 1)},
			ferry: []Result{closed(targetFerry, 500, 1)},
			open:  []Result{open(2, 9000, 10000, 1000)}, rate: 1000,
			wantRatio: 0.5, wantThroughOK: true,
		},
		{
			name:  "fast p99 below the goal's rate",
			bare:  []Result{closed(targetBare, 1000, 1)},
			ferry: []Result{closed(targetFerry, 400, 1)},
			open:  []Result{open(2, 1000, 1000, 0)}, rate: 100,
			wantRatio: 0.4,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := &Report{}
			rep.Results = append(rep.Results, median(tt.bare), median(tt.ferry))
			if len(tt.open) > 0 {
				rep.Results = append(rep.Results, median(tt.open))
			}
			rep.judge(tt.rate)
			g := rep.Goals
			if diff := g.ThroughputRatio - tt.wantRatio; diff > 1e-9 || diff < -1e-9 {
				t.Errorf("ratio = %v, want %v", g.ThroughputRatio, tt.wantRatio)
			}
			if g.ThroughputMet != tt.wantThroughOK || g.P99Met != tt.wantP99OK {
				t.Errorf("throughput met %v, p99 met %v (%s); want %v, %v", g.ThroughputMet, g.P99Met, g.P99Detail, tt.wantThroughOK, tt.wantP99OK)
			}
			var table bytes.Buffer
			rep.WriteTable(&table)
			want := "ferry ≥ 50% of bare: " + yesNo(tt.wantThroughOK)
			if !strings.Contains(table.String(), want) {
				t.Errorf("table lacks %q:\n%s", want, table.String())
			}
		})
	}
}
