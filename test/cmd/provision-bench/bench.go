package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/pkg/jenkins"
	"github.com/ferryci/ferry/pkg/provision"
	"github.com/ferryci/ferry/test/jenkinsemu"
	"github.com/ferryci/ferry/test/testbed"
)

const (
	benchJob      = "bench/app"
	benchLabel    = "ferry-bench"
	benchTemplate = "linux"
	// triggerWorkers queue the burst; the emulator is in this process, so
	// the burst takes a fraction of a second even at 1,000.
	triggerWorkers = 16
	poll           = 20 * time.Millisecond
)

// Report is the outcome of a benchmark run.
type Report struct {
	Command    string
	Machine    string
	Kubernetes string
	Options    Options
	Sizes      []SizeResult
	// Warm is the cold vs warm comparison, when run.
	Warm *WarmResult
}

// SizeResult holds both targets' figures for one N.
type SizeResult struct {
	N     int
	Bare  BareResult
	Ferry FerryResult
}

// BareResult is the bare client-go loop's run.
type BareResult struct {
	Done bool
	// AllExist runs from the loop's start to the last pod seen by the watch.
	AllExist time.Duration
	// P50 and P99 are of start → pod seen, per pod.
	P50, P99 time.Duration
	// AllRunning runs from the loop's start to the last pod Running;
	// RunP50 and RunP99 are of pod seen → Running (the bed's pace).
	AllRunning, RunP50, RunP99 time.Duration
	// CallP50 and CallP99 are of the Create calls themselves.
	CallP50, CallP99 time.Duration
	Errors           int
	Calls            map[string]int
	CallsTotal       int
	// AllGone runs from the first delete to the last pod gone.
	AllGone time.Duration
}

// FerryResult is the provisioner's run.
type FerryResult struct {
	Done bool
	// Queued is how long the bench took to queue the burst.
	Queued time.Duration
	// AllExist runs from the burst's first trigger to the last queue item
	// getting its first pod (as seen by the watch); AllRunning to the last
	// pod Running.
	AllExist, AllRunning time.Duration
	// P50 and P99 are of queue item queued → its first pod seen.
	P50, P99 time.Duration
	// Pods counts pods made (more than N means retries); OwnPod counts
	// queue items that got a pod of their own (see runFerry).
	Pods, OwnPod int
	// SecondBuilds counts builds that ran on an agent that had run one.
	SecondBuilds int
	PeakInFlight int
	Builds       int
	Cancelled    int
	ConnectErrs  int
	JenkinsCalls map[string]int
	JenkinsTotal int
	KubeCalls    map[string]int
	KubeTotal    int
	// MemBefore is sampled (after a GC) just before the provisioner starts;
	// MemPeak holds the peaks sampled every 50 ms while it runs.
	MemBefore, MemPeak memSample
	// Cleanup runs from the last build's end until no agent pod and no
	// Jenkins agent node is left.
	Cleanup                          time.Duration
	PodsLeft, SecretsLeft, NodesLeft int
	PodSeconds, BuildSeconds         float64
	OverP50, OverP99, OverMax        time.Duration
	OverGoal                         int
	Wall, CPU, MachineCPU            time.Duration
	FerryWarnings                    int
	// Phases break a pod's life down, p50 and p99 over the pods that ran a
	// build: pod seen → Running, Running → its build started, build ended
	// → pod deletion seen, deletion → gone.
	Phases           []Phase
	lastBuildEnd, t0 time.Time
}

// Phase is one step of an agent pod's life, over the pods that ran a
// build.
type Phase struct {
	Name     string
	P50, P99 time.Duration
}

// Bench runs every size: the bare loop, then ferry. It returns what it
// measured so far along with an error.
func Bench(ctx context.Context, o Options) (*Report, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Parallelism <= 0 {
		o.Parallelism = provision.DefaultParallelism
	}
	b, err := openBed(ctx, o.EnvFile)
	if err != nil {
		return nil, err
	}
	t := eci.Template{Name: benchTemplate, Labels: []string{benchLabel}}
	t.ECI.Specs = []string{"2-4Gi", "ecs.c6.large"}
	t.ECI.SpotStrategy = eci.SpotAsPriceGo
	if o.StartDelay != "" {
		if _, err := time.ParseDuration(o.StartDelay); err != nil {
			return nil, fmt.Errorf("-start-delay: %w", err)
		}
		t.PodAnnotations = map[string]string{testbed.StartDelayAnnotation: o.StartDelay}
	}
	tmpl, err := eci.Resolve([]eci.Template{t})
	if err != nil {
		return nil, fmt.Errorf("resolve the bench's template: %w", err)
	}
	// One logger for ferry and client-go (klog), set before any client
	// starts: klog's logger must not change while it is used.
	level := slog.LevelWarn
	if o.Verbose {
		level = slog.LevelDebug
	}
	lg := &ferryLog{}
	lg.Logger = slog.New(countingHandler{slog.NewTextHandler(o.Log, &slog.HandlerOptions{Level: level}), &lg.warnings})
	klog.SetSlogLogger(lg.With("component", "kube"))
	rep := &Report{Machine: machineFacts(), Kubernetes: b.version, Options: o}
	for _, n := range o.Sizes {
		sctx, cancel := context.WithTimeout(ctx, o.Timeout)
		r := SizeResult{N: n}
		fmt.Fprintf(o.Log, "N=%d: bare client-go loop\n", n)
		r.Bare, err = runBare(sctx, b, o, n, tmpl[benchTemplate])
		if err == nil {
			debug.FreeOSMemory()
			fmt.Fprintf(o.Log, "N=%d: ferry\n", n)
			r.Ferry, err = runFerry(sctx, b, o, n, tmpl, lg)
		}
		cancel()
		rep.Sizes = append(rep.Sizes, r)
		if err != nil {
			return rep, fmt.Errorf("size %d: %w", n, err)
		}
	}
	if o.WarmBuilds > 0 {
		wctx, cancel := context.WithTimeout(ctx, o.Timeout)
		defer cancel()
		w, err := runWarmCompare(wctx, b, o, tmpl[benchTemplate], lg)
		if err != nil {
			return rep, err
		}
		rep.Warm = &w
	}
	return rep, nil
}

// waitUntil polls cond until it holds or ctx ends.
func waitUntil(ctx context.Context, what string, cond func() bool) error {
	for !cond() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(poll):
		}
	}
	return nil
}

// runBare creates n pods rendered from t with a plain client-go loop and
// deletes them.
func runBare(ctx context.Context, b *bed, o Options, n int, t eci.Template) (res BareResult, err error) {
	ns, err := b.namespace(ctx, fmt.Sprintf("bench-bare-%d", n))
	if ns != "" {
		defer func() { err = errors.Join(err, b.deleteNamespace(ns)) }()
	}
	if err != nil {
		return res, err
	}
	obs, stopObs, err := watchPods(ctx, b.admin, ns, nil)
	if err != nil {
		return res, fmt.Errorf("watch pods: %w", err)
	}
	defer stopObs()
	kube, counter, err := b.ferryClient(o.QPS, o.Burst)
	if err != nil {
		return res, err
	}
	pods := make([]podJob, n)
	for i := range pods {
		q := int64(i + 1)
		pods[i].pod = eci.Render(t, eci.Agent{Name: eci.AgentName(q, 1), Namespace: ns, QueueID: q, Attempt: 1,
			JenkinsURL: "http://127.0.0.1:8080/", SecretName: "bare-loop"})
	}

	t0 := time.Now()
	errs := inParallel(ctx, o.Parallelism, n, func(ctx context.Context, i int) error {
		start := time.Now()
		_, err := kube.CoreV1().Pods(ns).Create(ctx, pods[i].pod, metav1.CreateOptions{})
		pods[i].call = time.Since(start)
		return err
	})
	res.Errors = errs
	if err := waitUntil(ctx, "the bare loop's pods", func() bool { q, _, _ := obs.counts(); return q >= n-errs }); err != nil {
		return res, err
	}
	seen := obs.snapshot()
	var lat, calls []time.Duration
	for _, p := range seen {
		lat = append(lat, p.seen.Sub(t0))
	}
	for _, p := range pods {
		calls = append(calls, p.call)
	}
	res.AllExist = slices.Max(lat)
	res.P50, res.P99 = percentile(lat, 50), percentile(lat, 99)
	res.CallP50, res.CallP99 = percentile(calls, 50), percentile(calls, 99)

	// The bed's own pace (scheduler, kwok) for comparison with ferry's
	// pods: wait until every pod runs.
	if err := waitUntil(ctx, "the bare loop's pods to run", func() bool {
		for _, p := range obs.snapshot() {
			if p.running.IsZero() {
				return false
			}
		}
		return true
	}); err != nil {
		return res, err
	}
	var toRun []time.Duration
	for _, p := range obs.snapshot() {
		toRun = append(toRun, p.running.Sub(p.seen))
		res.AllRunning = max(res.AllRunning, p.running.Sub(t0))
	}
	res.RunP50, res.RunP99 = percentile(toRun, 50), percentile(toRun, 99)

	t1 := time.Now()
	inParallel(ctx, o.Parallelism, n, func(ctx context.Context, i int) error {
		return kube.CoreV1().Pods(ns).Delete(ctx, pods[i].pod.Name, metav1.DeleteOptions{})
	})
	if err := waitUntil(ctx, "the bare loop's pods to go", func() bool { _, live, _ := obs.counts(); return live == 0 }); err != nil {
		return res, err
	}
	obs.mu.Lock()
	res.AllGone = obs.lastGone.Sub(t1)
	obs.mu.Unlock()
	res.Calls, res.CallsTotal = counter.snapshot()
	res.Done = true
	fmt.Fprintf(o.Log, "  all %d pods in %s; all gone %s after the deletes began\n", n, res.AllExist.Round(time.Millisecond), res.AllGone.Round(time.Millisecond))
	return res, nil
}

type podJob struct {
	pod  *corev1.Pod
	call time.Duration
}

// inParallel calls fn for 0..n-1 on workers goroutines and returns how
// many calls failed.
func inParallel(ctx context.Context, workers, n int, fn func(ctx context.Context, i int) error) int {
	next := make(chan int)
	var mu sync.Mutex
	failed := 0
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for i := range next {
				if err := fn(ctx, i); err != nil {
					mu.Lock()
					failed++
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	return failed
}

// ferryLog is the logger of ferry and client-go; it counts warnings.
type ferryLog struct {
	*slog.Logger
	warnings atomic.Int64
}

// countingHandler counts warnings while passing records on.
type countingHandler struct {
	slog.Handler
	warnings *atomic.Int64
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.warnings.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

func (h countingHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return countingHandler{h.Handler.WithAttrs(a), h.warnings}
}

func (h countingHandler) WithGroup(g string) slog.Handler {
	return countingHandler{h.Handler.WithGroup(g), h.warnings}
}

// runFerry queues n builds in the emulator and lets the provisioner serve
// them, playing their agents.
func runFerry(ctx context.Context, b *bed, o Options, n int, tmpl map[string]eci.Template, lg *ferryLog) (res FerryResult, err error) {
	ns, err := b.namespace(ctx, fmt.Sprintf("bench-ferry-%d", n))
	if ns != "" {
		defer func() { err = errors.Join(err, b.deleteNamespace(ns)) }()
	}
	if err != nil {
		return res, err
	}
	emu := jenkinsemu.New(jenkinsemu.Options{CreateNodeDelay: o.CreateNodeDelay, Logger: slog.New(slog.DiscardHandler)})
	defer emu.Close()
	if err := emu.AddJob(benchJob, jenkinsemu.JobSpec{Label: benchLabel, Duration: o.Build, Params: []jenkinsemu.Param{{Name: "N"}}}); err != nil {
		return res, err
	}
	newJenkins := func() (*jenkins.Client, error) {
		return jenkins.New(jenkins.Config{URL: emu.URL(), User: jenkinsemu.DefaultUser.Name,
			APIToken: jenkinsemu.DefaultUser.Token, Timeout: 30 * time.Second})
	}
	jc, err := newJenkins()
	if err != nil {
		return res, err
	}
	trig, err := newJenkins()
	if err != nil {
		return res, err
	}

	var connMu sync.Mutex
	obs, stopObs, err := watchPods(ctx, b.admin, ns, func(name string) {
		// The agent's secret is the node's; the pod's Secret holds the
		// same value (the provisioner's integration tests check that).
		if err := emu.ConnectAgent(name, emu.AgentSecret(name)); err != nil && !errors.Is(err, jenkinsemu.ErrNoSuchNode) {
			connMu.Lock()
			res.ConnectErrs++
			connMu.Unlock()
		}
	})
	if err != nil {
		return res, fmt.Errorf("watch pods: %w", err)
	}
	defer stopObs()
	kube, counter, err := b.ferryClient(o.QPS, o.Burst)
	if err != nil {
		return res, err
	}

	maxAgents := o.MaxAgents
	if maxAgents <= 0 {
		maxAgents = n
	}

	warn0 := lg.warnings.Load()
	res.MemBefore = settledMem()
	peak := startMemPeak(50*time.Millisecond, nil)
	if o.CPUProfile != "" {
		f, perr := os.Create(fmt.Sprintf("%s.%d", o.CPUProfile, n))
		if perr != nil {
			peak.Stop()
			return res, fmt.Errorf("cpu profile: %w", perr)
		}
		if perr := pprof.StartCPUProfile(f); perr != nil {
			peak.Stop()
			_ = f.Close()
			return res, fmt.Errorf("cpu profile: %w", perr)
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}
	p, err := provision.New(provision.Config{
		Jenkins: jc, Kube: kube, Namespace: ns, Templates: tmpl, JenkinsURL: emu.URL() + "/",
		MaxAgents: maxAgents, Parallelism: o.Parallelism, Logger: lg.Logger,
	})
	if err != nil {
		peak.Stop()
		return res, err
	}
	pctx, stopFerry := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- p.Run(pctx) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		stopFerry()
		select {
		case err := <-ran:
			return err
		case <-time.After(30 * time.Second):
			return errors.New("the provisioner did not stop within 30s of its context ending")
		}
	}
	defer func() { err = errors.Join(err, stop()) }()

	// Ready: informers synced and a first cycle made the anchor node.
	if err := waitUntil(ctx, "ferry's first cycle (its anchor node)", func() bool {
		for _, nd := range emu.Nodes() {
			if strings.HasPrefix(nd.Name, "ferry-anchor-") {
				return true
			}
		}
		return false
	}); err != nil {
		peak.Stop()
		return res, err
	}
	emu.ResetCalls()
	counter.reset()
	cpu0, mcpu0 := cpuTime(), machineCPU()

	// The burst.
	res.t0 = time.Now()
	ids := make([]int64, n)
	if failed := inParallel(ctx, triggerWorkers, n, func(ctx context.Context, i int) error {
		r, err := trig.Trigger(ctx, benchJob, map[string]string{"N": strconv.Itoa(i)})
		if err != nil {
			return err
		}
		ids[i] = r.QueueID
		p.Kick() // as the dispatcher does after each trigger
		return nil
	}); failed > 0 {
		peak.Stop()
		return res, fmt.Errorf("%d of %d triggers failed", failed, n)
	}
	res.Queued = time.Since(res.t0)
	fmt.Fprintf(o.Log, "  %d builds queued in %s\n", n, res.Queued.Round(time.Millisecond))

	// Not "until every queue item has its own pod": Jenkins gives a waiting
	// item to whichever agent of the label connects first, so an item can
	// leave the queue on another item's agent before its own is made.
	{
		mine := make(map[int64]bool, len(ids))
		for _, id := range ids {
			mine[id] = true
		}
		err = waitUntil(ctx, "every build to end", func() bool {
			done := 0
			for _, bl := range emu.Builds(benchJob) {
				if !bl.Building {
					done++
				}
			}
			// One look at the emulator, not one per item: the bench
			// shares the machine with what it measures.
			cancelled := 0
			for _, id := range emu.CancelledItems() {
				if mine[id] {
					cancelled++
				}
			}
			res.Builds, res.Cancelled = done, cancelled
			return done+cancelled >= n
		})
	}
	if err == nil {
		for _, bl := range emu.Builds(benchJob) {
			if end := bl.Start.Add(bl.Duration); end.After(res.lastBuildEnd) {
				res.lastBuildEnd = end
			}
		}
		fmt.Fprintf(o.Log, "  every build ended after %s; waiting for the agents to go\n", time.Since(res.t0).Round(time.Millisecond))
		var nodesGoneAt time.Time
		err = waitUntil(ctx, "every agent pod and node to go", func() bool {
			if nodesGoneAt.IsZero() && len(agentNodes(emu)) == 0 {
				nodesGoneAt = time.Now()
			}
			_, live, _ := obs.counts()
			return live == 0 && !nodesGoneAt.IsZero()
		})
		obs.mu.Lock()
		done := obs.lastGone
		obs.mu.Unlock()
		if nodesGoneAt.After(done) {
			done = nodesGoneAt
		}
		res.Cleanup = max(0, done.Sub(res.lastBuildEnd))
	}
	if err != nil {
		diagnose(o.Log, emu, obs)
	}
	obs.mu.Lock()
	for _, p := range obs.pods {
		if !p.running.IsZero() {
			res.AllRunning = max(res.AllRunning, p.running.Sub(res.t0))
		}
	}
	obs.mu.Unlock()
	res.Wall = time.Since(res.t0)
	res.CPU, res.MachineCPU = cpuTime()-cpu0, machineCPU()-mcpu0
	res.MemPeak = peak.Stop()
	calls := emu.Calls()
	delete(calls, jenkinsemu.RouteBuildWithParameters) // the bench's triggers
	res.JenkinsCalls = calls
	for _, v := range calls {
		res.JenkinsTotal += v
	}
	res.KubeCalls, res.KubeTotal = counter.snapshot()
	if serr := stop(); serr != nil {
		err = errors.Join(err, fmt.Errorf("provisioner: %w", serr))
	}
	res.FerryWarnings = int(lg.warnings.Load() - warn0)

	// What is left once ferry stopped.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if l, lerr := b.admin.CoreV1().Pods(ns).List(lctx, metav1.ListOptions{LabelSelector: eci.ManagedSelector}); lerr == nil {
		res.PodsLeft = len(l.Items)
	}
	// Secrets go with their pods through the garbage collector of
	// kube-controller-manager, a moment after the pods.
	_ = waitUntil(lctx, "Secrets to go with their pods", func() bool {
		l, lerr := b.admin.CoreV1().Secrets(ns).List(lctx, metav1.ListOptions{LabelSelector: eci.ManagedSelector})
		if lerr == nil {
			res.SecretsLeft = len(l.Items)
		}
		return lerr == nil && len(l.Items) == 0
	})
	res.NodesLeft = len(agentNodes(emu))

	// Latencies and lifetimes.
	pods := obs.snapshot()
	res.Pods = len(pods)
	_, _, res.PeakInFlight = obs.counts()
	first := firstPodOf(pods)
	var lat []time.Duration
	for _, id := range ids {
		it, ok := emu.QueueItem(id)
		seen, ok2 := first[id]
		if ok && ok2 {
			lat = append(lat, seen.Sub(it.InQueueSince))
		}
	}
	res.OwnPod = len(lat)
	for _, pt := range pods {
		res.AllExist = max(res.AllExist, pt.seen.Sub(res.t0))
	}
	res.P50, res.P99 = percentile(lat, 50), percentile(lat, 99)
	buildOn := map[string]jenkinsemu.Build{}
	for _, bl := range emu.Builds(benchJob) {
		if bl.Node != "" {
			if prev, ok := buildOn[bl.Node]; ok {
				res.SecondBuilds++
				if prev.Start.After(bl.Start) {
					bl = prev // keep the first build of the node
				}
			}
			buildOn[bl.Node] = bl
		}
		res.BuildSeconds += bl.Duration.Seconds()
	}
	now := time.Now()
	var over []time.Duration
	for name, pt := range pods {
		end := pt.gone
		if end.IsZero() {
			end = now
		}
		life := end.Sub(pt.seen)
		res.PodSeconds += life.Seconds()
		d := life - buildOn[name].Duration
		over = append(over, d)
		if d > 10*time.Second {
			res.OverGoal++
		}
	}
	var toRun, toBuild, toDelete, toGone []time.Duration
	for name, bl := range buildOn {
		pt, ok := pods[name]
		if !ok || pt.running.IsZero() || pt.gone.IsZero() {
			continue
		}
		toRun = append(toRun, pt.running.Sub(pt.seen))
		toBuild = append(toBuild, bl.Start.Sub(pt.running))
		toDelete = append(toDelete, pt.deleting.Sub(bl.Start.Add(bl.Duration)))
		toGone = append(toGone, pt.gone.Sub(pt.deleting))
	}
	for _, ph := range []struct {
		name string
		d    []time.Duration
	}{
		{"pod seen → Running (kwok)", toRun},
		{"Running → build started (agent connects)", toBuild},
		{"build ended → pod deletion seen", toDelete},
		{"pod deletion → gone", toGone},
	} {
		res.Phases = append(res.Phases, Phase{ph.name, percentile(ph.d, 50), percentile(ph.d, 99)})
	}
	res.OverP50, res.OverP99 = percentile(over, 50), percentile(over, 99)
	if len(over) > 0 {
		res.OverMax = slices.Max(over)
	}
	res.Done = err == nil
	fmt.Fprintf(o.Log, "  done in %s\n", res.Wall.Round(time.Millisecond))
	return res, err
}

// agentNodes lists the emulator's ferry agent nodes (anchors excluded: one
// offline node per template is ferry's design, see pkg/provision).
func agentNodes(emu *jenkinsemu.Server) []string {
	var out []string
	for _, nd := range emu.Nodes() {
		if strings.HasPrefix(nd.Name, "ferry-agent-") {
			out = append(out, nd.Name)
		}
	}
	return out
}

// percentile is the nearest-rank percentile of d (0 when empty).
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// diagnose describes where a run got stuck: the queue by state and why,
// the agent nodes, the pods.
func diagnose(w io.Writer, emu *jenkinsemu.Server, obs *observer) {
	whys := map[string]int{}
	for _, it := range emu.QueueItems() {
		why := it.Why
		if len(why) > 60 {
			why = why[:60] + "…"
		}
		whys[it.State+": "+why]++
	}
	fmt.Fprintf(w, "  stuck: queue %v\n", whys)
	nodes := map[string]int{}
	for _, nd := range emu.Nodes() {
		if !strings.HasPrefix(nd.Name, "ferry-agent-") {
			continue
		}
		nodes[fmt.Sprintf("online=%v running=%d", nd.Online, len(nd.Running))]++
	}
	fmt.Fprintf(w, "  stuck: agent nodes %v\n", nodes)
	pods := map[string]int{}
	for _, p := range obs.snapshot() {
		switch {
		case !p.gone.IsZero():
			pods["gone"]++
		case !p.deleting.IsZero():
			pods["deleting"]++
		case !p.running.IsZero():
			pods["running"]++
		default:
			pods["pending"]++
		}
	}
	q, live, peak := obs.counts()
	fmt.Fprintf(w, "  stuck: pods %v; queue items with a pod %d, live %d, peak %d\n", pods, q, live, peak)
}
