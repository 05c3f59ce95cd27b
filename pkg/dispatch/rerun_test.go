package dispatch

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/event"
	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/test/jenkinsemu"
	"github.com/ferryci/ferry/test/scmfake"
)

func TestRerunDecision(t *testing.T) {
	for _, tc := range []struct {
		name     string
		attempt  int
		limit    int
		canQueue bool
		next     int
		verdict  string
	}{
		{"first build lost, limit 1: attempt 2", 0, 1, true, 2, rerunRequested},
		{"first build (attempt 1) lost: attempt 2", 1, 1, true, 2, rerunRequested},
		{"the re-run lost too, limit 1: no more", 2, 1, true, 0, rerunLimit},
		{"the re-run lost too, limit 2: attempt 3", 2, 2, true, 3, rerunRequested},
		{"re-runs off for the pipeline", 0, 0, true, 0, rerunOff},
		{"a store that cannot queue: off", 0, 1, false, 0, rerunOff},
	} {
		next, v := rerunDecision(store.Build{Attempt: tc.attempt}, tc.limit, tc.canQueue)
		if next != tc.next || v != tc.verdict {
			t.Errorf("%s: got %d %s, want %d %s", tc.name, next, v, tc.next, tc.verdict)
		}
	}
}

// crashOnEnqueue fails the first re-run Enqueue: a crash after the
// durable request record, before its queue entry.
type crashOnEnqueue struct {
	store.Store
	failed atomic.Bool
}

func (c *crashOnEnqueue) Enqueue(ctx context.Context, key string, ev event.Event) (bool, error) {
	if strings.HasPrefix(key, "rerun:") && c.failed.CompareAndSwap(false, true) {
		return false, errors.New("connection reset")
	}
	return c.Store.Enqueue(ctx, key, ev)
}

func TestBuildLostToInfrastructureIsRerunExactlyOnce(t *testing.T) {
	stores(t, func(t *testing.T, st store.Store) {
		flaky := &crashOnEnqueue{Store: st}
		b := newBedWith(t, flaky, "app", "ci/lint")
		d := b.dispatcher(t, "d1", nil)
		run(t, d)
		sha := strings.Repeat("c", 40)
		enqueue(t, b.store, pushEvent("gh-rr", sha))
		eventually(t, "the first build", func() bool { return len(buildsFor(b.jenkins, "app", "gh-rr/app")) == 1 })
		var first store.Build
		eventually(t, "the first build's record started", func() bool {
			rec, err := b.store.GetBuild(context.Background(), "gh-rr/app")
			first = rec
			return err == nil && rec.Number > 0
		})
		req := RerunRequest{QueueID: first.QueueID, Reason: "spot_reclaimed", Cause: "spot instance reclaimed"}
		// The first ask crashes between the durable record and the queue
		// entry: the provisioner asks again (next cycle, or a restarted
		// or new leader seeing the same dead agent), several at once.
		if err := d.RequestRerun(context.Background(), req); err == nil {
			t.Fatal("a request that could not be queued must fail, to be asked again")
		}
		var wg sync.WaitGroup
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := d.RequestRerun(context.Background(), req); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		eventually(t, "the re-run", func() bool { return len(buildsFor(b.jenkins, "app", "gh-rr/app#2")) == 1 })
		eventually(t, "the re-run's entry acknowledged", func() bool { return pending(t, b.store) == 0 })
		// Asked once more after it ran (a late duplicate): nothing.
		if err := d.RequestRerun(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		rerun := buildsFor(b.jenkins, "app", "gh-rr/app#2")[0]
		if rerun.Params[config.ParamSHA] != sha {
			t.Errorf("re-run params = %v, want the same commit", rerun.Params)
		}
		// The lost build ends aborted (its node was deleted): not
		// reported as a failure.
		if err := b.jenkins.FinishBuild("app", 1, jenkinsemu.Aborted); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the re-run's record started", func() bool {
			rec, err := b.store.GetBuild(context.Background(), "gh-rr/app#2")
			return err == nil && rec.Number > 0
		})
		if err := b.jenkins.FinishBuild("app", rerun.Number, jenkinsemu.Success); err != nil {
			t.Fatal(err)
		}
		b.github.WaitFor(t, scmfake.HasStates(sha, "ferry/app", "pending", "pending", "success"), 15*time.Second)
		var descs []string
		for _, s := range b.github.Statuses() {
			if s.Context != "ferry/app" {
				continue
			}
			descs = append(descs, s.State+": "+s.Description)
			if s.State == "error" || s.State == "failure" || s.State == "canceled" {
				t.Errorf("status %s %q: the lost build must not be reported as failed", s.State, s.Description)
			}
		}
		joined := strings.Join(descs, "\n")
		if !strings.Contains(joined, "pending: re-running: spot instance reclaimed") ||
			!strings.Contains(joined, "success: re-run after spot instance reclaimed: Build #") {
			t.Errorf("statuses:\n%s\nwant re-running, then the re-run's success", joined)
		}
		for _, s := range b.github.Statuses() {
			if s.Context == "ferry/app" && s.State == "success" && !strings.HasSuffix(strings.TrimSuffix(s.TargetURL, "/"), "/job/app/"+strconv.Itoa(rerun.Number)) {
				t.Errorf("success links %q, want the re-run build", s.TargetURL)
			}
		}
		if n := len(buildsFor(b.jenkins, "app", "gh-rr/app#2")); n != 1 {
			t.Fatalf("%d re-runs, want exactly 1", n)
		}
		if n := len(b.jenkins.Builds("ci/lint")); n != 1 {
			t.Errorf("lint has %d builds, want 1: only the lost pipeline is re-run", n)
		}
	})
}

func TestRerunLimitReportsTheLoss(t *testing.T) {
	b := newBed(t, "app", "ci/lint")
	d := b.dispatcher(t, "d1", nil)
	run(t, d)
	sha := strings.Repeat("d", 40)
	ev := pushEvent("gh-lim", sha)
	ev.Rerun = &event.Rerun{Pipeline: "app", Attempt: 2, Reason: "spot_reclaimed", Cause: "spot instance reclaimed"}
	enqueue(t, b.store, ev)
	var rec store.Build
	eventually(t, "the re-run's record started", func() bool {
		r, err := b.store.GetBuild(context.Background(), "gh-lim/app#2")
		rec = r
		return err == nil && r.Number > 0
	})
	if n := len(b.jenkins.Builds("ci/lint")); n != 0 {
		t.Errorf("a re-run event built lint %d times, want only app", n)
	}
	if err := d.RequestRerun(context.Background(), RerunRequest{QueueID: rec.QueueID, Reason: "evicted", Cause: "agent pod evicted"}); err != nil {
		t.Fatal(err)
	}
	b.github.WaitFor(t, scmfake.HasStates(sha, "ferry/app", "error"), 15*time.Second)
	if _, err := b.store.GetBuild(context.Background(), "gh-lim/app#3"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("attempt 3 requested past the limit of 1: %v", err)
	}
}
