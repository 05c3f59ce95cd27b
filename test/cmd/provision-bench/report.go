package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ferryci/ferry/pkg/provision"
)

// Goals of issue 4.
const (
	goalRatio       = 1.25
	goalCallsBuild  = 6
	goalMemBytes    = 150 << 20
	goalMemAt       = 1000
	goalOverhead    = 10 * time.Second
	goalLinearSlack = 1.5
)

// Print writes the report as aligned tables, one per size, then a summary
// of memory across sizes.
func (r *Report) Print(w io.Writer) {
	o := r.Options
	fmt.Fprintf(w, "provision-bench: %s\n", r.Command)
	fmt.Fprintf(w, "machine:  %s\n", r.Machine)
	fmt.Fprintf(w, "bed:      Kubernetes %s (kube-apiserver, controller-manager, scheduler, kwok virtual nodes) on loopback\n", r.Kubernetes)
	delay := "bed default (random 1-2 s per pod)"
	if o.StartDelay != "" {
		delay = o.StartDelay + " (pod annotation " + "testbed.ferry.dev/start-delay)"
	}
	fmt.Fprintf(w, "settings: builds last %s; Kubernetes client QPS %g burst %d for ferry and the bare loop (ferry's identity, fresh namespace each);\n", o.Build, o.QPS, o.Burst)
	fmt.Fprintf(w, "          parallelism %d (ferry's actions, the bare loop's workers); ferry: MaxAgents %s, resync %s, min interval %s (defaults);\n",
		o.Parallelism, maxAgentsText(o.MaxAgents), provision.DefaultResync, provision.DefaultMinInterval)
	fmt.Fprintf(w, "          Jenkins emulator in this process, create-node delay %s; kwok start delay %s\n", o.CreateNodeDelay, delay)
	fmt.Fprintf(w, "times are first seen / gone as the bench's own pod watch saw them; \"burst start\" is the first trigger (ferry) or first Create (bare)\n")

	for _, s := range r.Sizes {
		r.printSize(w, s)
	}
	r.printMemory(w)
	if r.Warm != nil {
		printWarm(w, o, r.Warm)
	}
}

func maxAgentsText(n int) string {
	if n <= 0 {
		return "N"
	}
	return fmt.Sprint(n)
}

type table struct {
	rows [][4]string
}

func (t *table) row(what, bare, ferry, goal string) {
	t.rows = append(t.rows, [4]string{what, bare, ferry, goal})
}

func (t *table) print(w io.Writer) {
	var width [3]int
	for _, r := range t.rows {
		for i := range 3 {
			width[i] = max(width[i], len([]rune(r[i])))
		}
	}
	for _, r := range t.rows {
		line := ""
		for i := range 3 {
			line += r[i] + strings.Repeat(" ", width[i]-len([]rune(r[i]))+2)
		}
		fmt.Fprintln(w, strings.TrimRight("  "+line+r[3], " "))
	}
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

func perBuild(total, n int) string { return fmt.Sprintf("%.2f", float64(total)/float64(n)) }

func (r *Report) printSize(w io.Writer, s SizeResult) {
	b, f, n := s.Bare, s.Ferry, s.N
	fmt.Fprintf(w, "\nN = %d\n", n)
	t := &table{}
	t.row("", "bare loop", "ferry", "goal")
	if !b.Done {
		t.row("(bare loop did not finish)", "", "", "")
	}
	if !f.Done {
		t.row("(ferry did not finish; figures below are partial)", "", "", "")
	}
	t.row("burst queued in (bench's triggers)", "-", secs(f.Queued), "")
	ratio := 0.0
	if b.AllExist > 0 {
		ratio = f.AllExist.Seconds() / b.AllExist.Seconds()
	}
	t.row("every pod exists after (last pod created)", secs(b.AllExist), secs(f.AllExist),
		fmt.Sprintf("≤ %.2f× bare: %s (%.2f×)", goalRatio, yesNo(ratio > 0 && ratio <= goalRatio), ratio))
	t.row("pod created after burst start/item queued, p50", secs(b.P50), secs(f.P50), "")
	t.row("pod created after burst start/item queued, p99", secs(b.P99), secs(f.P99), "")
	t.row("queue items that got a pod of their own", "-", fmt.Sprintf("%d of %d", f.OwnPod, n), "")
	t.row("every pod Running after", secs(b.AllRunning), secs(f.AllRunning), "")
	t.row("Create call latency p50 / p99", secs(b.CallP50)+" / "+secs(b.CallP99), "-", "")
	t.row("pods created (retries add to N)", fmt.Sprint(n-b.Errors), fmt.Sprint(f.Pods), "")
	kube := float64(f.KubeTotal) / float64(n)
	jen := float64(f.JenkinsTotal) / float64(n)
	t.row("Kubernetes API calls per build", perBuild(b.CallsTotal, n), perBuild(f.KubeTotal, n),
		fmt.Sprintf("≤ %d: %s", goalCallsBuild, yesNo(kube <= goalCallsBuild)))
	t.row("Jenkins API calls per build", "-", perBuild(f.JenkinsTotal, n),
		fmt.Sprintf("≤ %d: %s", goalCallsBuild, yesNo(jen <= goalCallsBuild)))
	t.row("API calls per build, both", perBuild(b.CallsTotal, n), perBuild(f.KubeTotal+f.JenkinsTotal, n),
		fmt.Sprintf("≤ %d: %s", goalCallsBuild, yesNo(kube+jen <= goalCallsBuild)))
	t.row("agents in flight, peak", "-", fmt.Sprint(f.PeakInFlight), "")
	memGoal := fmt.Sprintf("< %s: %s", mib(goalMemBytes), yesNo(f.MemPeak.RSS < goalMemBytes))
	if n != goalMemAt {
		memGoal += fmt.Sprintf(" (goal is at N=%d)", goalMemAt)
	}
	t.row("peak VmRSS, whole process", "-", mib(f.MemPeak.RSS), memGoal)
	t.row("  before ferry started", "-", mib(f.MemBefore.RSS), "")
	t.row("peak Go heap live (after GC) / objects", "-", mib(f.MemPeak.HeapLive)+" / "+mib(f.MemPeak.HeapObjects), "")
	t.row("  before ferry started (live)", "-", mib(f.MemBefore.HeapLive), "")
	t.row("heap live added per agent in flight", "-", perAgent(f), "")
	t.row("cleanup: last build end → 0 pods, 0 nodes", "-", secs(f.Cleanup), "")
	t.row("delete all → all gone", secs(b.AllGone), "-", "")
	left := f.PodsLeft + f.SecretsLeft + f.NodesLeft
	t.row("left: pods / Secrets (after ≤30 s for GC) / agent nodes", "-", fmt.Sprintf("%d / %d / %d", f.PodsLeft, f.SecretsLeft, f.NodesLeft),
		"0: "+yesNo(left == 0 && f.Done))
	t.row("builds ended / cancelled by ferry", "-", fmt.Sprintf("%d / %d", f.Builds, f.Cancelled), "")
	t.row("builds on an agent that had run one already", "-", fmt.Sprint(f.SecondBuilds), "0 (one build per agent): "+yesNo(f.SecondBuilds == 0 && f.Done))
	t.row("pod lifetime − build time p50 / p99 / max", "-", secs(f.OverP50)+" / "+secs(f.OverP99)+" / "+secs(f.OverMax),
		fmt.Sprintf("≤ %s: %s (%d over)", goalOverhead, yesNo(f.OverGoal == 0 && f.Pods > 0), f.OverGoal))
	for i, ph := range f.Phases {
		bare := "-"
		if i == 0 {
			bare = secs(b.RunP50) + " / " + secs(b.RunP99)
		}
		t.row(ph.Name+", p50 / p99", bare, secs(ph.P50)+" / "+secs(ph.P99), "")
	}
	billed := 0.0
	if f.BuildSeconds > 0 {
		billed = f.PodSeconds / f.BuildSeconds
	}
	t.row("billed pod-s / build-s", "-", fmt.Sprintf("%.0f / %.0f = %.2f", f.PodSeconds, f.BuildSeconds, billed), "")
	t.row("wall / process CPU / machine CPU (all processes)", "-",
		secs(f.Wall)+" / "+secs(f.CPU)+" / "+secs(f.MachineCPU), "")
	t.row("ferry warnings logged / agent connect errors", "-", fmt.Sprintf("%d / %d", f.FerryWarnings, f.ConnectErrs), "")
	t.print(w)
	fmt.Fprintf(w, "  Kubernetes calls, bare:  %s\n", formatCalls(b.Calls))
	fmt.Fprintf(w, "  Kubernetes calls, ferry: %s\n", formatCalls(f.KubeCalls))
	fmt.Fprintf(w, "  Jenkins calls, ferry:    %s\n", formatCalls(f.JenkinsCalls))
}

// heapAdded is the Go heap ferry's run added at its peak.
func heapAdded(f FerryResult) float64 {
	return float64(f.MemPeak.HeapLive) - float64(f.MemBefore.HeapLive)
}

func perAgent(f FerryResult) string {
	if f.PeakInFlight == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f KiB", heapAdded(f)/float64(f.PeakInFlight)/1024)
}

// printMemory compares the heap added per agent across sizes: memory is
// linear in agents in flight when the cost of an agent does not grow with
// their number.
func (r *Report) printMemory(w io.Writer) {
	var small, large *SizeResult
	for i := range r.Sizes {
		s := &r.Sizes[i]
		if !s.Ferry.Done || s.Ferry.PeakInFlight == 0 {
			continue
		}
		if small == nil || s.Ferry.PeakInFlight < small.Ferry.PeakInFlight {
			small = s
		}
		if large == nil || s.Ferry.PeakInFlight > large.Ferry.PeakInFlight {
			large = s
		}
	}
	if small == nil || small == large {
		return
	}
	ps := heapAdded(small.Ferry) / float64(small.Ferry.PeakInFlight)
	pl := heapAdded(large.Ferry) / float64(large.Ferry.PeakInFlight)
	marginal := (heapAdded(large.Ferry) - heapAdded(small.Ferry)) / float64(large.Ferry.PeakInFlight-small.Ferry.PeakInFlight)
	fmt.Fprintf(w, "\nmemory across sizes: heap live added per agent in flight %.1f KiB at %d, %.1f KiB at %d; marginal %.1f KiB per extra agent\n",
		ps/1024, small.Ferry.PeakInFlight, pl/1024, large.Ferry.PeakInFlight, marginal/1024)
	fmt.Fprintf(w, "  goal linear in agents in flight (per-agent cost at %d ≤ %.1f× that at %d): %s\n",
		large.Ferry.PeakInFlight, goalLinearSlack, small.Ferry.PeakInFlight, yesNo(pl <= goalLinearSlack*ps))
}
