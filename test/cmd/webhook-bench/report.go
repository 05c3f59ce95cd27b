package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// Goals stated by the issue.
const (
	goalThroughputRatio = 0.50 // ferry's closed-loop accepted/s over bare's
	goalP99Ms           = 10.0 // ferry's open-loop p99
	goalRate            = 1000 // requests/s the p99 goal is stated at
)

// Report is everything a run found.
type Report struct {
	Command  string      `json:"command"`
	Settings []string    `json:"settings"`
	Machine  Machine     `json:"machine"`
	Payload  PayloadInfo `json:"payload"`
	// Results holds one summary per target and phase: medians over the
	// rounds for rates and latencies, sums for counts.
	Results []Result `json:"results"`
	// Rounds holds every measured run.
	Rounds     []Result   `json:"rounds"`
	Goals      Goals      `json:"goals"`
	Durability Durability `json:"durability"`
	Notes      []string   `json:"notes"`
}

// Machine describes where the run happened.
type Machine struct {
	GOMAXPROCS       int    `json:"gomaxprocs"`
	NumCPU           int    `json:"num_cpu"`
	GoVersion        string `json:"go_version"`
	GOOS             string `json:"goos"`
	GOARCH           string `json:"goarch"`
	RedisVersion     string `json:"redis_version"`
	RedisAppendOnly  string `json:"redis_appendonly"`
	RedisAppendFsync string `json:"redis_appendfsync"`
	RedisDataFS      string `json:"redis_data_fs"`
	AOFRewrites      string `json:"redis_aof_rewrites"`
}

// PayloadInfo describes the requests' body.
type PayloadInfo struct {
	File        string `json:"file"`
	Bytes       int    `json:"bytes"`
	Description string `json:"description"`
}

// Result is one run of one target, or the summary of several.
type Result struct {
	Target string `json:"target"`
	Phase  string `json:"phase"`
	// Round is 1-based; 0 in a summary.
	Round int `json:"round,omitempty"`
	// Runs is how many runs a summary covers.
	Runs        int     `json:"runs,omitempty"`
	Concurrency int     `json:"concurrency,omitempty"`
	OfferedRate float64 `json:"offered_rate,omitempty"`
	// Scheduled is how many requests the open loop was due to send.
	Scheduled int64 `json:"scheduled,omitempty"`
	Requests  int64 `json:"requests"`
	Accepted  int64 `json:"accepted"`
	// Errors counts every answer other than 202 and every request that got
	// no answer; ErrorsByCode splits them ("transport" for no answer).
	Errors         int64            `json:"errors"`
	ErrorsByCode   map[string]int64 `json:"errors_by_code,omitempty"`
	LastError      string           `json:"last_error,omitempty"`
	ElapsedSec     float64          `json:"elapsed_s"`
	AcceptedPerSec float64          `json:"accepted_per_s"`
	P50Ms          float64          `json:"p50_ms"`
	P90Ms          float64          `json:"p90_ms"`
	P99Ms          float64          `json:"p99_ms"`
	MaxMs          float64          `json:"max_ms"`
	// ProcCPUPerReqUs is this process's CPU time per request: the load
	// generator's, the target's and the idle other server's.
	ProcCPUPerReqUs float64 `json:"proc_cpu_per_req_us"`
	// RedisCPUPerReqUs is redis-server's CPU time per request.
	RedisCPUPerReqUs float64 `json:"redis_cpu_per_req_us"`
	// ProcCores and RedisCores are the CPUs this process and redis-server
	// kept busy; OtherCores is what everything else on the machine took
	// during the run.
	ProcCores  float64 `json:"proc_cores"`
	RedisCores float64 `json:"redis_cores"`
	OtherCores float64 `json:"other_cores"`
	// SendLagP99Ms is the open loop's 99th percentile of how late the
	// generator sent a request after its due time (included in latency).
	SendLagP99Ms float64 `json:"send_lag_p99_ms,omitempty"`
}

// Goals are the verdicts.
type Goals struct {
	// ThroughputRatio is ferry's closed-loop accepted/s over bare's.
	ThroughputRatio float64 `json:"throughput_ratio"`
	ThroughputMet   bool    `json:"throughput_met"`
	// CPUBoundRatio is bare's CPU time per request (this process and
	// redis-server) over ferry's: the throughput ratio to expect where the
	// CPUs are the bottleneck; steadier than ThroughputRatio on a shared
	// machine.
	CPUBoundRatio float64 `json:"cpu_bound_ratio"`
	// P99Ms is ferry's open-loop p99 at Rate requests/s.
	P99Ms float64 `json:"p99_ms"`
	Rate  float64 `json:"rate"`
	// RateHeld says ferry accepted every request the open loop was due to
	// send (late sends count as latency, not as a failure to hold).
	RateHeld  bool   `json:"rate_held"`
	P99Met    bool   `json:"p99_met"`
	P99Detail string `json:"p99_detail"`
}

// Durability is the check that ferry's 202s were written.
type Durability struct {
	Key       string `json:"key"`
	StreamLen int64  `json:"stream_len"`
	Accepted  int64  `json:"accepted"`
	OK        bool   `json:"ok"`
	Detail    string `json:"detail"`
}

// median summarizes runs of one target and phase: the median of each rate
// and latency figure taken separately (with two runs, their mean), and the
// sum of the counts.
func median(runs []Result) Result {
	s := Result{Target: runs[0].Target, Phase: runs[0].Phase, Runs: len(runs),
		Concurrency: runs[0].Concurrency, OfferedRate: runs[0].OfferedRate}
	pick := func(f func(Result) float64) float64 {
		v := make([]float64, len(runs))
		for i, r := range runs {
			v[i] = f(r)
		}
		slices.Sort(v)
		if n := len(v); n%2 == 1 {
			return v[n/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	s.AcceptedPerSec = pick(func(r Result) float64 { return r.AcceptedPerSec })
	s.P50Ms = pick(func(r Result) float64 { return r.P50Ms })
	s.P90Ms = pick(func(r Result) float64 { return r.P90Ms })
	s.P99Ms = pick(func(r Result) float64 { return r.P99Ms })
	s.MaxMs = pick(func(r Result) float64 { return r.MaxMs })
	s.SendLagP99Ms = pick(func(r Result) float64 { return r.SendLagP99Ms })
	s.ProcCPUPerReqUs = pick(func(r Result) float64 { return r.ProcCPUPerReqUs })
	s.RedisCPUPerReqUs = pick(func(r Result) float64 { return r.RedisCPUPerReqUs })
	s.ProcCores = pick(func(r Result) float64 { return r.ProcCores })
	s.RedisCores = pick(func(r Result) float64 { return r.RedisCores })
	s.OtherCores = pick(func(r Result) float64 { return r.OtherCores })
	for _, r := range runs {
		s.Requests += r.Requests
		s.Scheduled += r.Scheduled
		s.Accepted += r.Accepted
		s.Errors += r.Errors
		s.ElapsedSec += r.ElapsedSec
		for k, v := range r.ErrorsByCode {
			if s.ErrorsByCode == nil {
				s.ErrorsByCode = map[string]int64{}
			}
			s.ErrorsByCode[k] += v
		}
		if r.LastError != "" {
			s.LastError = r.LastError
		}
	}
	return s
}

func (rep *Report) summary(targetName, phase string) (Result, bool) {
	for _, r := range rep.Results {
		if r.Target == targetName && r.Phase == phase {
			return r, true
		}
	}
	return Result{}, false
}

// judge sets the goals' verdicts from the summaries.
func (rep *Report) judge(rate float64) {
	g := Goals{Rate: rate}
	bare, okB := rep.summary(targetBare, phaseClosed)
	ferry, okF := rep.summary(targetFerry, phaseClosed)
	if okB && okF && bare.AcceptedPerSec > 0 {
		g.ThroughputRatio = ferry.AcceptedPerSec / bare.AcceptedPerSec
		g.ThroughputMet = g.ThroughputRatio >= goalThroughputRatio
		if f := ferry.ProcCPUPerReqUs + ferry.RedisCPUPerReqUs; f > 0 {
			g.CPUBoundRatio = (bare.ProcCPUPerReqUs + bare.RedisCPUPerReqUs) / f
		}
	}
	open, ok := rep.summary(targetFerry, phaseOpen)
	switch {
	case !ok:
		g.P99Detail = "not measured (-rate 0)"
	default:
		g.P99Ms = open.P99Ms
		g.RateHeld = open.Errors == 0 && open.Scheduled > 0 && open.Accepted == open.Scheduled
		g.P99Met = g.RateHeld && open.P99Ms < goalP99Ms && rate >= goalRate
		g.P99Detail = fmt.Sprintf("p99 %.2f ms at %.0f accepted/s of %.0f offered", open.P99Ms, open.AcceptedPerSec, rate)
		if !g.RateHeld {
			g.P99Detail += fmt.Sprintf("; the rate was not held: %d of %d due requests accepted", open.Accepted, open.Scheduled)
		}
		if rate < goalRate {
			g.P99Detail += fmt.Sprintf("; measured below the goal's %d rps", goalRate)
		}
	}
	rep.Goals = g
}

// line is a one-line summary of a run for progress output.
func (r Result) line() string {
	return fmt.Sprintf("%9.1f accepted/s  p50 %s  p99 %s  max %s  errors %d%s",
		r.AcceptedPerSec, fmtMs(r.P50Ms), fmtMs(r.P99Ms), fmtMs(r.MaxMs), r.Errors, r.errorDetail())
}

func (r Result) errorDetail() string {
	if r.Errors == 0 {
		return ""
	}
	keys := make([]string, 0, len(r.ErrorsByCode))
	for k := range r.ErrorsByCode {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s×%d", k, r.ErrorsByCode[k])
	}
	d := " (" + strings.Join(parts, ", ")
	if r.LastError != "" {
		d += "; last: " + r.LastError
	}
	return d + ")"
}

func (r Result) phaseLabel() string {
	switch r.Phase {
	case phaseClosed:
		l := fmt.Sprintf("closed c=%d", r.Concurrency)
		if r.Runs > 1 {
			l += fmt.Sprintf(" (median of %d)", r.Runs)
		} else if r.Round > 0 {
			l += fmt.Sprintf(" (round %d)", r.Round)
		}
		return l
	case phaseOpen:
		l := fmt.Sprintf("open %.0f/s", r.OfferedRate)
		if r.Runs > 1 {
			l += fmt.Sprintf(" (median of %d)", r.Runs)
		} else if r.Round > 0 {
			l += fmt.Sprintf(" (round %d)", r.Round)
		}
		return l
	}
	return r.Phase
}

func fmtMs(v float64) string { return fmt.Sprintf("%.2fms", v) }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// WriteTable prints the report for people.
func (rep *Report) WriteTable(w io.Writer) {
	m := rep.Machine
	fmt.Fprintln(w, "webhook-bench: ferry's webhook receiver (Redis store) vs a bare net/http HMAC handler, on loopback")
	fmt.Fprintf(w, "command:  %s\n", rep.Command)
	fmt.Fprintf(w, "settings: %s\n", strings.Join(rep.Settings, " "))
	fmt.Fprintf(w, "machine:  GOMAXPROCS=%d NumCPU=%d %s %s/%s\n", m.GOMAXPROCS, m.NumCPU, m.GoVersion, m.GOOS, m.GOARCH)
	fmt.Fprintf(w, "redis:    %s, appendonly %s, appendfsync %s, data on %s, AOF rewrites during the run: %s\n",
		m.RedisVersion, m.RedisAppendOnly, m.RedisAppendFsync, m.RedisDataFS, m.AOFRewrites)
	fmt.Fprintf(w, "payload:  %s (%d bytes), %s\n", rep.Payload.File, rep.Payload.Bytes, rep.Payload.Description)
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note:     %s\n", n)
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := "target\tphase\taccepted/s\tp50\tp90\tp99\tmax\terrors\tcpu/req\tredis cpu/req\tbench cores\tredis cores\tother cores\t"
	row := func(r Result) {
		fmt.Fprintf(tw, "%s\t%s\t%.1f\t%s\t%s\t%s\t%s\t%d\t%.0fµs\t%.0fµs\t%.2f\t%.2f\t%.2f\t\n", r.Target, r.phaseLabel(), r.AcceptedPerSec,
			fmtMs(r.P50Ms), fmtMs(r.P90Ms), fmtMs(r.P99Ms), fmtMs(r.MaxMs), r.Errors,
			r.ProcCPUPerReqUs, r.RedisCPUPerReqUs, r.ProcCores, r.RedisCores, r.OtherCores)
	}
	fmt.Fprintln(tw, header)
	for _, r := range rep.Results {
		row(r)
	}
	_ = tw.Flush()
	for _, r := range rep.Results {
		if r.Errors > 0 {
			fmt.Fprintf(w, "errors of %s %s:%s\n", r.Target, r.Phase, r.errorDetail())
		}
	}
	for _, r := range rep.Results {
		if r.Phase == phaseOpen {
			fmt.Fprintf(w, "open loop %s: generator send lag p99 %s (part of the latency above)\n", r.Target, fmtMs(r.SendLagP99Ms))
		}
	}

	if len(rep.Rounds) > len(rep.Results) {
		fmt.Fprintln(w, "\nevery run:")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, header)
		for _, r := range rep.Rounds {
			row(r)
		}
		_ = tw.Flush()
	}

	fmt.Fprintln(w, "cpu/req: CPU time per request of this process (load generator + target) and of redis-server;")
	fmt.Fprintln(w, "cores: CPUs kept busy during the run by this process, by redis-server and by everything else on the machine.")

	g := rep.Goals
	fmt.Fprintln(w)
	fmt.Fprintf(w, "ferry/bare closed-loop throughput: %.1f%%\n", 100*g.ThroughputRatio)
	if bare, ok := rep.summary(targetBare, phaseClosed); ok && g.CPUBoundRatio > 0 {
		ferry, _ := rep.summary(targetFerry, phaseClosed)
		fmt.Fprintf(w, "closed-loop CPU per request: bare %.0f µs, ferry %.0f µs + redis-server %.0f µs: bound by CPU alone, ferry would reach %.1f%% of bare\n",
			bare.ProcCPUPerReqUs+bare.RedisCPUPerReqUs, ferry.ProcCPUPerReqUs, ferry.RedisCPUPerReqUs, 100*g.CPUBoundRatio)
	}
	fmt.Fprintf(w, "ferry ≥ 50%% of bare: %s (%.1f%%)\n", yesNo(g.ThroughputMet), 100*g.ThroughputRatio)
	fmt.Fprintf(w, "ferry p99 at %d rps < 10 ms: %s (%s)\n", goalRate, yesNo(g.P99Met), g.P99Detail)
	d := rep.Durability
	verdict := "FAILED"
	if d.OK {
		verdict = "ok"
	}
	fmt.Fprintf(w, "durability: %s: %s\n", verdict, d.Detail)
}
