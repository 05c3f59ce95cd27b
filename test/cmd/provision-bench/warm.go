package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/pkg/jenkins"
	"github.com/ferryci/ferry/pkg/provision"
	"github.com/ferryci/ferry/test/jenkinsemu"
)

// Cold against warm: the same builds, arriving one every -warm-gap, once
// on a template without a warm pool and once on the same template with a
// pool of -warm-size, each in a fresh namespace with its own emulator and
// provisioner. Measured: queued (the trigger) → build started (the
// emulator's start of the build), and the warm pool's idle pod-seconds per
// build it served: for each warm pod, first seen → its build's start, or
// → gone for one retired without a build. The pool still standing at the
// end is told apart: it would serve the next builds.

// WarmResult holds the two runs.
type WarmResult struct {
	Cold, Warm WarmRun
}

// WarmRun is one run of the comparison.
type WarmRun struct {
	Starts   []time.Duration
	P50, Max time.Duration
	// Hits counts builds that started on a warm agent.
	Hits int
	// IdleSeconds are the idle pod-seconds of the warm pods that served a
	// build or were retired without one; Standing those of the warm pods
	// still waiting at the end.
	IdleSeconds, Standing float64
	Pods                  int
}

func runWarmCompare(ctx context.Context, b *bed, o Options, t eci.Template, lg *ferryLog) (WarmResult, error) {
	var res WarmResult
	var err error
	fmt.Fprintf(o.Log, "cold vs warm: %d builds, one every %s; cold run\n", o.WarmBuilds, o.WarmGap)
	if res.Cold, err = runWarmOnce(ctx, b, o, t, lg); err != nil {
		return res, fmt.Errorf("cold run: %w", err)
	}
	t.WarmPool = &eci.WarmPool{Size: o.WarmSize}
	fmt.Fprintf(o.Log, "cold vs warm: warm run (pool of %d)\n", o.WarmSize)
	if res.Warm, err = runWarmOnce(ctx, b, o, t, lg); err != nil {
		return res, fmt.Errorf("warm run: %w", err)
	}
	return res, nil
}

func runWarmOnce(ctx context.Context, b *bed, o Options, t eci.Template, lg *ferryLog) (res WarmRun, err error) {
	mode := "cold"
	if t.WarmPool != nil {
		mode = "warm"
	}
	ns, err := b.namespace(ctx, "bench-"+mode)
	if ns != "" {
		defer func() { err = errors.Join(err, b.deleteNamespace(ns)) }()
	}
	if err != nil {
		return res, err
	}
	tmpl, err := eci.Resolve([]eci.Template{t})
	if err != nil {
		return res, err
	}
	emu := jenkinsemu.New(jenkinsemu.Options{CreateNodeDelay: o.CreateNodeDelay, Logger: slog.New(slog.DiscardHandler)})
	defer emu.Close()
	if err := emu.AddJob(benchJob, jenkinsemu.JobSpec{Label: benchLabel, Duration: o.Build, Params: []jenkinsemu.Param{{Name: "N"}}}); err != nil {
		return res, err
	}
	jc, err := jenkins.New(jenkins.Config{URL: emu.URL(), User: jenkinsemu.DefaultUser.Name, APIToken: jenkinsemu.DefaultUser.Token, Timeout: 30 * time.Second})
	if err != nil {
		return res, err
	}
	obs, stopObs, err := watchPods(ctx, b.admin, ns, func(name string) { _ = emu.ConnectAgent(name, emu.AgentSecret(name)) })
	if err != nil {
		return res, err
	}
	defer stopObs()
	kube, _, err := b.ferryClient(o.QPS, o.Burst)
	if err != nil {
		return res, err
	}
	p, err := provision.New(provision.Config{Jenkins: jc, Kube: kube, Namespace: ns, Templates: tmpl,
		JenkinsURL: emu.URL() + "/", Parallelism: o.Parallelism, Logger: lg.Logger})
	if err != nil {
		return res, err
	}
	pctx, stopFerry := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- p.Run(pctx) }()
	defer func() {
		stopFerry()
		err = errors.Join(err, <-ran)
	}()

	warmReady := func() int {
		n := 0
		for _, nd := range emu.Nodes() {
			if strings.HasPrefix(nd.Name, "ferry-warm-") && nd.Connected && nd.Online && len(nd.Running) == 0 {
				n++
			}
		}
		return n
	}
	if err := waitUntil(ctx, "ferry's first cycle and its warm pool", func() bool {
		anchored := slices.ContainsFunc(emu.Nodes(), func(nd jenkinsemu.Node) bool { return strings.HasPrefix(nd.Name, "ferry-anchor-") })
		return anchored && (t.WarmPool == nil || warmReady() >= t.WarmPool.Size)
	}); err != nil {
		return res, err
	}

	queued := make([]time.Time, o.WarmBuilds)
	for i := range o.WarmBuilds {
		if i > 0 {
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(o.WarmGap):
			}
		}
		queued[i] = time.Now()
		if _, err := jc.Trigger(ctx, benchJob, map[string]string{"N": strconv.Itoa(i)}); err != nil {
			return res, err
		}
		p.Kick()
	}
	var builds []jenkinsemu.Build
	if err := waitUntil(ctx, "every build to end", func() bool {
		builds = emu.Builds(benchJob)
		ended := 0
		for _, bl := range builds {
			if !bl.Building {
				ended++
			}
		}
		return ended == o.WarmBuilds
	}); err != nil {
		return res, err
	}
	end := time.Now()
	started := map[string]time.Time{}
	for _, bl := range builds {
		i, _ := strconv.Atoi(bl.Params["N"])
		res.Starts = append(res.Starts, max(0, bl.Start.Sub(queued[i])))
		started[bl.Node] = bl.Start
		if strings.HasPrefix(bl.Node, "ferry-warm-") {
			res.Hits++
		}
	}
	slices.Sort(res.Starts)
	res.P50, res.Max = percentile(res.Starts, 0.5), res.Starts[len(res.Starts)-1]
	for name, pt := range obs.snapshot() {
		res.Pods++
		if !strings.HasPrefix(name, "ferry-warm-") {
			continue
		}
		switch s, ok := started[name]; {
		case ok:
			res.IdleSeconds += max(0, s.Sub(pt.seen).Seconds())
		case !pt.gone.IsZero():
			res.IdleSeconds += pt.gone.Sub(pt.seen).Seconds()
		case !pt.deleting.IsZero():
			res.IdleSeconds += pt.deleting.Sub(pt.seen).Seconds()
		default:
			res.Standing += end.Sub(pt.seen).Seconds()
		}
	}
	return res, nil
}

func printWarm(w io.Writer, o Options, r *WarmResult) {
	fmt.Fprintf(w, "\ncold vs warm, same run: %d builds of %s, one every %s; warm pool of %d\n", o.WarmBuilds, o.Build, o.WarmGap, o.WarmSize)
	tb := &table{}
	tb.row("", "cold", "warm", "")
	tb.row("queued → build started p50", secs(r.Cold.P50), secs(r.Warm.P50), "")
	tb.row("queued → build started max", secs(r.Cold.Max), secs(r.Warm.Max), "")
	tb.row("builds started on a warm agent", "-", fmt.Sprintf("%d of %d", r.Warm.Hits, o.WarmBuilds), "")
	tb.row("agent pods made", strconv.Itoa(r.Cold.Pods), strconv.Itoa(r.Warm.Pods), "")
	perBuild := "-"
	if r.Warm.Hits > 0 {
		perBuild = fmt.Sprintf("%.1f", r.Warm.IdleSeconds/float64(r.Warm.Hits))
	}
	tb.row("warm idle pod-seconds per build served", "-", perBuild, "")
	tb.row("warm pool still standing (pod-seconds idle)", "-", fmt.Sprintf("%.1f", r.Warm.Standing), "")
	tb.print(w)
}
