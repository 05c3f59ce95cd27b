package dispatch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/jenkins"
	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/test/jenkinsemu"
)

// spyJenkins counts searches and triggers apart.
type spyJenkins struct {
	Jenkins
	finds, triggers atomic.Int64
}

func (s *spyJenkins) FindByParam(ctx context.Context, job, name, value string, since time.Time) (jenkins.Found, error) {
	s.finds.Add(1)
	return s.Jenkins.FindByParam(ctx, job, name, value, since)
}

func (s *spyJenkins) Trigger(ctx context.Context, job string, params map[string]string) (jenkins.TriggerResult, error) {
	s.triggers.Add(1)
	return s.Jenkins.Trigger(ctx, job, params)
}

// crash runs a dispatcher named name whose one trigger reaches Jenkins,
// then stops it before it records or acknowledges anything.
func crash(t *testing.T, b *bed, name string, ev crashEvent) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	doomed := b.dispatcher(t, name, &killingJenkins{Jenkins: b.client, kill: cancel})
	done := make(chan struct{})
	go func() { defer close(done); _ = doomed.Run(ctx) }()
	enqueue(t, b.store, pushEvent(ev.id, ev.sha))
	<-done
	if n := len(b.jenkins.QueueItems()) + len(b.jenkins.Builds("app")); n != 1 {
		t.Fatalf("after the crash Jenkins has %d items+builds, want 1", n)
	}
	if pending(t, b.store) != 1 {
		t.Fatal("the crashed dispatcher's entry must still be pending")
	}
}

type crashEvent struct{ id, sha string }

// busy starts n builds of other events on job app, so the crashed
// trigger's build is far from the newest.
func busy(t *testing.T, b *bed, n int) {
	t.Helper()
	if err := b.jenkins.UpdateJob("app", func(s *jenkinsemu.JobSpec) { s.Duration = 0 }); err != nil {
		t.Fatal(err)
	}
	before := len(b.jenkins.Builds("app"))
	for i := range n {
		params := map[string]string{config.ParamTriggerID: fmt.Sprintf("other-%d/app", i)}
		if _, err := b.client.Trigger(context.Background(), "app", params); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the other builds to start", func() bool { return len(b.jenkins.Builds("app")) >= before+n })
}

// A replica crashed after Jenkins queued its trigger; by the time another
// replica takes the event over, 250 builds of other events have started.
// The search goes back to the recorded attempt, not through a fixed count
// of recent builds, so the event is still built once.
func TestCrashThenBusyJobBuildsOnce(t *testing.T) {
	stores(t, func(t *testing.T, st store.Store) {
		b := newBedWith(t, st, "app", "ci/lint")
		b.matcher.Pipelines = b.matcher.Pipelines[:1]
		crash(t, b, "doomed", crashEvent{"gh-busy", "d" + strings.Repeat("0", 39)})
		rec, err := b.store.GetBuild(context.Background(), "gh-busy/app")
		if err != nil || !rec.Pending() || rec.Attempted.IsZero() {
			t.Fatalf("record after the crash = %+v, %v; want a pending attempt with its time", rec, err)
		}
		busy(t, b, 250)
		run(t, b.dispatcher(t, "survivor", nil))
		eventually(t, "the survivor to take over and ack", func() bool { return pending(t, b.store) == 0 })
		if n := len(buildsFor(b.jenkins, "app", "gh-busy/app")); n != 1 {
			t.Fatalf("%d builds for the event, want exactly 1", n)
		}
		rec, err = b.store.GetBuild(context.Background(), "gh-busy/app")
		if err != nil || rec.Pending() {
			t.Fatalf("record = %+v, %v; want the found queue item recorded", rec, err)
		}
	})
}

// A replica restarted under its own name resumes the entry it held at
// once, without waiting for reclaimAfter (an hour here), and builds it
// once; a replica under another name leaves it to reclaiming.
func TestRestartUnderSameNameResumesAtOnce(t *testing.T) {
	stores(t, func(t *testing.T, st store.Store) {
		b := newBedWith(t, st, "app", "ci/lint")
		b.matcher.Pipelines = b.matcher.Pipelines[:1]
		crash(t, b, "ferry-0", crashEvent{"gh-resume", "e" + strings.Repeat("0", 39)})
		busy(t, b, 120)

		other := b.dispatcher(t, "ferry-1", nil)
		other.cfg.ReclaimAfter = time.Hour
		stopOther := run(t, other)
		time.Sleep(300 * time.Millisecond)
		stopOther()
		if pending(t, b.store) != 1 {
			t.Fatal("a replica under another name took the entry before reclaimAfter")
		}

		spy := &spyJenkins{Jenkins: b.client}
		same := b.dispatcher(t, "ferry-0", spy)
		same.cfg.ReclaimAfter = time.Hour
		run(t, same)
		eventually(t, "the restarted replica to resume and ack", func() bool { return pending(t, b.store) == 0 })
		if n := len(buildsFor(b.jenkins, "app", "gh-resume/app")); n != 1 {
			t.Fatalf("%d builds for the event, want exactly 1", n)
		}
		if spy.finds.Load() != 1 || spy.triggers.Load() != 0 {
			t.Errorf("searches %d, triggers %d; want one search that finds the build and no trigger", spy.finds.Load(), spy.triggers.Load())
		}
	})
}

// What the store says decides whether Jenkins is searched first: a recorded
// queue item ends the work without calling Jenkins; no record means no
// attempt reached Jenkins, so no search; a pending attempt means search.
func TestStoreRecordDecidesTheSearch(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name            string
		record          *store.Build
		finds, triggers int64
		builds          int
	}{
		{"already recorded", &store.Build{QueueID: 4242, TriggeredAt: time.Now()}, 0, 0, 0},
		{"no record", nil, 0, 1, 1},
		{"pending attempt", &store.Build{Attempted: time.Now().Add(-time.Minute)}, 1, 1, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := newBed(t, "app", "ci/lint")
			b.matcher.Pipelines = b.matcher.Pipelines[:1]
			ev := pushEvent("gh-rec", "a"+strings.Repeat("1", 39))
			if tc.record != nil {
				rec := *tc.record
				rec.Key, rec.Event, rec.Pipeline, rec.Job, rec.UpdatedAt = "gh-rec/app", ev, "app", "app", time.Now()
				if err := b.store.PutBuild(ctx, rec); err != nil {
					t.Fatal(err)
				}
			}
			enqueue(t, b.store, ev)
			entries, err := b.store.Claim(ctx, "d1", 1, 0, time.Second)
			if err != nil || len(entries) != 1 {
				t.Fatalf("Claim = %v, %v", entries, err)
			}
			spy := &spyJenkins{Jenkins: b.client}
			b.dispatcher(t, "d1", spy).handle(ctx, entries[0])
			if n := pending(t, b.store); n != 0 {
				t.Errorf("%d entries pending after handle, want the entry acknowledged", n)
			}
			if spy.finds.Load() != tc.finds || spy.triggers.Load() != tc.triggers {
				t.Errorf("searches %d, triggers %d; want %d and %d", spy.finds.Load(), spy.triggers.Load(), tc.finds, tc.triggers)
			}
			if n := len(buildsFor(b.jenkins, "app", "gh-rec/app")); n != tc.builds {
				t.Errorf("%d builds, want %d", n, tc.builds)
			}
		})
	}
}

// flakyPuts fails PutBuild while down is set.
type flakyPuts struct {
	store.Store
	down  atomic.Bool
	fails atomic.Int64
}

func (f *flakyPuts) PutBuild(ctx context.Context, b store.Build) error {
	if f.down.Load() {
		f.fails.Add(1)
		return fmt.Errorf("put build: %w", store.ErrUnavailable)
	}
	return f.Store.PutBuild(ctx, b)
}

// Jenkins is never called before the attempt is on record: a store that
// cannot take the record holds the trigger back.
func TestNoTriggerWithoutAttemptRecord(t *testing.T) {
	b := newBed(t, "app", "ci/lint")
	b.matcher.Pipelines = b.matcher.Pipelines[:1]
	flaky := &flakyPuts{Store: b.store}
	flaky.down.Store(true)
	b.store = flaky
	spy := &spyJenkins{Jenkins: b.client}
	run(t, b.dispatcher(t, "d1", spy))
	enqueue(t, flaky.Store, pushEvent("gh-norec", "b"+strings.Repeat("1", 39)))
	eventually(t, "several refused records", func() bool { return flaky.fails.Load() >= 3 })
	if n := spy.triggers.Load(); n != 0 {
		t.Fatalf("%d triggers while the attempt could not be recorded, want 0", n)
	}
	flaky.down.Store(false)
	eventually(t, "the entry acknowledged", func() bool { return pending(t, b.store) == 0 })
	if n := len(buildsFor(b.jenkins, "app", "gh-norec/app")); n != 1 {
		t.Fatalf("%d builds, want 1", n)
	}
}

// A refused trigger that is given up leaves no attempt record behind.
func TestGaveUpRemovesAttemptRecord(t *testing.T) {
	b := newBed(t, "ci/lint") // no "app" job
	b.matcher.Pipelines = b.matcher.Pipelines[:1]
	run(t, b.dispatcher(t, "d1", nil))
	enqueue(t, b.store, pushEvent("gh-refused", "c"+strings.Repeat("1", 39)))
	eventually(t, "the entry given up and acknowledged", func() bool { return pending(t, b.store) == 0 })
	if _, err := b.store.GetBuild(context.Background(), "gh-refused/app"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetBuild after giving up: %v, want ErrNotFound", err)
	}
}

// A job that cannot take ferry's trigger as sent — disabled, or without
// FERRY_TRIGGER_ID, which would make a crash build twice — is not
// triggered blind: the commit gets an error saying what to fix.
func TestJobThatCannotTakeTheTriggerIsRefusedWithTheReason(t *testing.T) {
	cases := []struct {
		name   string
		spec   func(*jenkinsemu.JobSpec)
		reason string
	}{
		{"disabled", func(s *jenkinsemu.JobSpec) { s.Disabled = true }, "disabled"},
		{"no FERRY_TRIGGER_ID", func(s *jenkinsemu.JobSpec) {
			var kept []jenkinsemu.Param
			for _, p := range s.Params {
				if p.Name != config.ParamTriggerID {
					kept = append(kept, p)
				}
			}
			s.Params = kept
		}, config.ParamTriggerID},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := newBed(t, "app", "ci/lint")
			b.matcher.Pipelines = b.matcher.Pipelines[:1]
			if err := b.jenkins.UpdateJob("app", tc.spec); err != nil {
				t.Fatal(err)
			}
			ev := pushEvent("gh-blocked", "d"+strings.Repeat("1", 39))
			enqueue(t, b.store, ev)
			entries, err := b.store.Claim(context.Background(), "d1", 1, 0, time.Second)
			if err != nil || len(entries) != 1 {
				t.Fatalf("Claim = %v, %v", entries, err)
			}
			spy := &spyJenkins{Jenkins: b.client}
			b.dispatcher(t, "d1", spy).handle(context.Background(), entries[0])
			if n := spy.triggers.Load(); n != 0 {
				t.Errorf("%d triggers, want none", n)
			}
			if n := len(b.jenkins.Builds("app")) + len(b.jenkins.QueueItems()); n != 0 {
				t.Errorf("Jenkins has %d builds and items, want none", n)
			}
			if pending(t, b.store) != 0 {
				t.Error("the entry was not acknowledged")
			}
			found := false
			for _, s := range b.github.Statuses() {
				found = found || (s.State == "error" && strings.Contains(s.Description, tc.reason))
			}
			if !found {
				t.Errorf("no error status naming %q: %+v", tc.reason, b.github.Statuses())
			}
		})
	}
}
