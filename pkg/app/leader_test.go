package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/klog/v2"

	"github.com/ferryci/ferry/pkg/config"
)

// leaseClientset is a fake clientset whose Leases have the API server's
// optimistic concurrency (the fake's tracker accepts any update), so two
// electors cannot both win a race for the same Lease.
func leaseClientset() *fake.Clientset {
	cs := fake.NewClientset()
	var (
		mu sync.Mutex
		rv int
	)
	gvr := coordinationv1.SchemeGroupVersion.WithResource("leases")
	cs.PrependReactor("*", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		obj, ok := a.(interface{ GetObject() runtime.Object })
		if !ok {
			return false, nil, nil
		}
		switch a.GetVerb() {
		case "create":
			l := obj.GetObject().(*coordinationv1.Lease).DeepCopy()
			rv++
			l.ResourceVersion = strconv.Itoa(rv)
			if err := cs.Tracker().Create(gvr, l, a.GetNamespace()); err != nil {
				return true, nil, err
			}
			return true, l, nil
		case "update":
			l := obj.GetObject().(*coordinationv1.Lease).DeepCopy()
			cur, err := cs.Tracker().Get(gvr, a.GetNamespace(), l.Name)
			if err != nil {
				return true, nil, err
			}
			if cur.(*coordinationv1.Lease).ResourceVersion != l.ResourceVersion {
				return true, nil, apierrors.NewConflict(gvr.GroupResource(), l.Name, nil)
			}
			rv++
			l.ResourceVersion = strconv.Itoa(rv)
			if err := cs.Tracker().Update(gvr, l, a.GetNamespace()); err != nil {
				return true, nil, err
			}
			return true, l, nil
		}
		return false, nil, nil
	})
	return cs
}

// Two replicas stand for the same Lease: one works at a time, and when the
// leader stops, the other takes over — but only after the leader's work
// has returned, even when it takes its time to stop.
func TestLeaderRunsOneReplicaAtATime(t *testing.T) {
	kube := leaseClientset()
	le := config.LeaderElection{
		Enabled: true, LeaseName: "ferry-test",
		LeaseDuration: config.Duration{Duration: 3 * time.Second},
		RenewDeadline: config.Duration{Duration: 2 * time.Second},
		RetryPeriod:   config.Duration{Duration: 20 * time.Millisecond},
	}
	var (
		working  atomic.Int32
		overlaps atomic.Int32
	)
	started := make(chan string, 4)
	stopping := make(chan struct{}) // closed: the first leader may finish stopping
	work := func(name string) func(context.Context) error {
		return func(ctx context.Context) error {
			if working.Add(1) > 1 {
				overlaps.Add(1)
			}
			started <- name
			<-ctx.Done()
			if name == "a" {
				<-stopping // a slow stop: the Lease must stay held meanwhile
			}
			working.Add(-1)
			return nil
		}
	}
	log := slog.New(slog.DiscardHandler)
	ctxA, stopA := context.WithCancel(context.Background())
	defer stopA()
	ctxB, stopB := context.WithCancel(context.Background())
	defer stopB()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		newLeader(kube, "ferry", "a", "test", le, log).run(ctxA, work("a"))
	}()
	if got := waitFor(t, started); got != "a" {
		t.Fatalf("first leader = %s, want a", got)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		newLeader(kube, "ferry", "b", "test", le, log).run(ctxB, work("b"))
	}()

	stopA()
	// b stands many times while a is still stopping; it must not win.
	time.Sleep(20 * le.RetryPeriod.Duration)
	select {
	case name := <-started:
		t.Fatalf("%s started leading while a was still stopping", name)
	default:
	}
	close(stopping)
	if got := waitFor(t, started); got != "b" {
		t.Fatalf("second leader = %s, want b", got)
	}
	stopB()
	wg.Wait()
	if n := overlaps.Load(); n != 0 {
		t.Errorf("%d times two replicas worked at once", n)
	}
}

// Work that returns on its own ends the term: the Lease is given up and the
// replica stands again, instead of holding the Lease with nothing running.
func TestLeaderStandsAgainAfterWorkReturns(t *testing.T) {
	kube := leaseClientset()
	le := config.LeaderElection{
		Enabled: true, LeaseName: "ferry-test",
		LeaseDuration: config.Duration{Duration: 3 * time.Second},
		RenewDeadline: config.Duration{Duration: 2 * time.Second},
		RetryPeriod:   config.Duration{Duration: 20 * time.Millisecond},
	}
	started := make(chan string, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	terms := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		newLeader(kube, "ferry", "a", "test", le, slog.New(slog.DiscardHandler)).run(ctx, func(ctx context.Context) error {
			terms++
			started <- strconv.Itoa(terms)
			if terms == 1 {
				return context.DeadlineExceeded // a failed run
			}
			<-ctx.Done()
			return nil
		})
	}()
	waitFor(t, started)
	if got := waitFor(t, started); got != "2" {
		t.Fatalf("term %s, want 2", got)
	}
	cancel()
	<-done
}

func waitFor(t *testing.T, c <-chan string) string {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(30 * time.Second):
		t.Fatal("nobody started leading within 30s")
		return ""
	}
}

// A leader whose renewals stop getting through (a frozen process, a
// partition: client-go's renew call hangs, so it cannot end the term) is
// fenced by its own clock: fence fails once its last renewal is older
// than the renew deadline, while its work has not been told to stop, and
// before any other replica could take the Lease (a lease duration after
// that renewal). Before that, fence lets it act.
func TestFenceStopsAFrozenLeader(t *testing.T) {
	kube := leaseClientset()
	var frozen atomic.Bool
	thaw := make(chan struct{})
	kube.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if frozen.Load() {
			<-thaw
		}
		return false, nil, nil
	})
	le := config.LeaderElection{
		Enabled: true, LeaseName: "ferry-test",
		LeaseDuration: config.Duration{Duration: 2 * time.Second},
		RenewDeadline: config.Duration{Duration: 1500 * time.Millisecond},
		RetryPeriod:   config.Duration{Duration: 100 * time.Millisecond},
	}
	l := newLeader(kube, "ferry", "a", "test", le, slog.New(slog.DiscardHandler))
	if err := l.fence(); err == nil {
		t.Fatal("fence allowed acting before the Lease was ever held")
	}
	type result struct {
		err        error
		after      time.Duration
		workEnded  bool
		okBeforeIt bool
	}
	res := make(chan result, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.run(ctx, func(ctx context.Context) error {
			ok := l.fence() == nil
			// Let one renewal through, then freeze them.
			time.Sleep(le.RetryPeriod.Duration * 3)
			frozen.Store(true)
			since := time.Now()
			for {
				if err := l.fence(); err != nil {
					res <- result{err: err, after: time.Since(since), workEnded: ctx.Err() != nil, okBeforeIt: ok}
					<-ctx.Done()
					return nil
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}()
	var r result
	select {
	case r = <-res:
	case <-time.After(30 * time.Second):
		t.Fatal("fence never failed for a leader whose renewals hang")
	}
	if !r.okBeforeIt {
		t.Error("fence refused the leader while its Lease was fresh")
	}
	if !errors.Is(r.err, errNotLeading) {
		t.Errorf("fence error %v, want errNotLeading", r.err)
	}
	if r.workEnded {
		t.Error("the work had already been stopped: the test did not freeze the renewals")
	}
	// The last renewal was at most a retry period before the freeze; another
	// replica may take over a lease duration after it.
	if r.after >= le.LeaseDuration.Duration {
		t.Errorf("fence failed %s after the renewals froze, not before the lease (%s) could pass to another replica", r.after, le.LeaseDuration.Duration)
	}
	close(thaw)
	cancel()
	<-done
	if err := l.fence(); err == nil {
		t.Error("fence allows acting after the term ended")
	}
}

// A renewal sent just before a freeze and answered after it (the answer
// waited in the socket while the process was stopped) leaves client-go
// believing it renewed just now. Another replica may hold the Lease by
// then, so fence must go by when that renewal was sent: it refuses until a
// renewal sent after the thaw succeeds, and then lets the leader act again.
func TestFenceIgnoresARenewalAnsweredAfterAFreeze(t *testing.T) {
	kube := leaseClientset()
	var slow atomic.Bool
	answered := make(chan struct{}, 1)
	le := config.LeaderElection{
		Enabled: true, LeaseName: "ferry-test",
		LeaseDuration: config.Duration{Duration: 2 * time.Second},
		RenewDeadline: config.Duration{Duration: 1500 * time.Millisecond},
		RetryPeriod:   config.Duration{Duration: 500 * time.Millisecond},
	}
	kube.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if slow.CompareAndSwap(true, false) {
			// Sent, then the process froze for longer than the renew
			// deadline; the update itself went through.
			time.Sleep(le.RenewDeadline.Duration + 500*time.Millisecond)
			defer func() { answered <- struct{}{} }()
		}
		return false, nil, nil
	})
	l := newLeader(kube, "ferry", "a", "test", le, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	leading := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.run(ctx, func(ctx context.Context) error {
			close(leading)
			<-ctx.Done()
			return nil
		})
	}()
	select {
	case <-leading:
	case <-time.After(30 * time.Second):
		t.Fatal("never led")
	}
	if err := l.fence(); err != nil {
		t.Fatalf("fence refused a fresh leader: %v", err)
	}
	slow.Store(true)
	select {
	case <-answered:
	case <-time.After(30 * time.Second):
		t.Fatal("the slow renewal was never sent")
	}
	// Until the next renewal is sent (a retry period later), the only
	// renewal on record was sent before the freeze.
	sawLeader := false
	for end := time.Now().Add(le.RetryPeriod.Duration / 2); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if el := l.elector.Load(); el != nil && el.IsLeader() {
			sawLeader = true
		}
		if err := l.fence(); err == nil {
			t.Fatal("fence let the leader act on a renewal sent before the freeze and answered after it")
		}
	}
	if !sawLeader {
		t.Fatal("client-go had already ended the term: the test did not make a late answer")
	}
	deadline := time.Now().Add(10 * time.Second)
	for l.fence() != nil {
		if time.Now().After(deadline) {
			t.Fatal("fence never let the leader act again after a renewal sent after the thaw")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
}

// client-go's logs go to the newest runtime's logger, and routing them
// again while client-go logs from other goroutines is not a race (-race
// catches it when klog's global is set twice).
func TestKubeLogsFollowTheNewestRuntime(t *testing.T) {
	var first, second strings.Builder
	routeKubeLogs(slog.New(slog.NewTextHandler(&lockedWriter{w: &first}, nil)))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				klog.Background().WithValues("k", "v").Info("from client-go")
			}
		}
	}()
	routeKubeLogs(slog.New(slog.NewTextHandler(&lockedWriter{w: &second}, nil)))
	close(stop)
	<-done
	klog.Background().WithValues("k", "v").Info("after the switch")
	if !strings.Contains(second.String(), "after the switch") || !strings.Contains(second.String(), "component=kube") ||
		!strings.Contains(second.String(), "k=v") {
		t.Fatalf("the newest logger got %q", second.String())
	}
	if strings.Contains(first.String(), "after the switch") {
		t.Fatal("the first runtime's logger still gets client-go's logs")
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
