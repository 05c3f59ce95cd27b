package dispatch

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/event"
	"github.com/ferryci/ferry/pkg/jenkins"
	"github.com/ferryci/ferry/pkg/scm"
	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/test/jenkinsemu"
)

// statusAPI is a commit status API that is down while down is set.
type statusAPI struct {
	down       atomic.Bool
	retryAfter time.Duration
	calls      atomic.Int64
	mu         sync.Mutex
	sent       map[string]scm.State // context@sha -> last state
}

func (s *statusAPI) SetStatus(_ context.Context, ev event.Event, st scm.Status) error {
	s.calls.Add(1)
	if s.down.Load() {
		return &scm.Error{Provider: ev.Provider, Repo: ev.Repo, SHA: ev.SHA, StatusCode: 503,
			Message: "service unavailable", Retryable: true, RetryAfter: s.retryAfter}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sent == nil {
		s.sent = map[string]scm.State{}
	}
	s.sent[st.Context+"@"+ev.SHA] = st.State
	return nil
}

func (s *statusAPI) state(context, sha string) scm.State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent[context+"@"+sha]
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines(substr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range strings.Split(s.b.String(), "\n") {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

// trackerBed holds n finished builds ferry triggered, a status API and a
// dispatcher whose tracker is driven by hand on a fake clock.
type trackerBed struct {
	*bed
	api   *statusAPI
	clock *fakeClock
	logs  *syncBuffer
	d     *Dispatcher
	shas  []string
}

const trackInterval = 10 * time.Second

func newTrackerBed(t *testing.T, n int, giveUp time.Duration) *trackerBed {
	t.Helper()
	ctx := context.Background()
	b := newBed(t, "app", "ci/lint")
	if err := b.jenkins.UpdateJob("app", func(s *jenkinsemu.JobSpec) { s.Duration = 0 }); err != nil {
		t.Fatal(err)
	}
	tb := &trackerBed{bed: b, api: &statusAPI{}, clock: &fakeClock{now: time.Now()}, logs: &syncBuffer{}}
	for i := range n {
		sha := fmt.Sprintf("%040x", i+1)
		ev := pushEvent(fmt.Sprintf("gh-t%d", i), sha)
		key := config.TriggerID(ev.ID, "app")
		res, err := b.client.Trigger(ctx, "app", map[string]string{config.ParamTriggerID: key})
		if err != nil {
			t.Fatal(err)
		}
		now := tb.clock.Now()
		if err := b.store.PutBuild(ctx, store.Build{Key: key, Event: ev, Pipeline: "app", Job: "app",
			QueueID: res.QueueID, Attempted: now, TriggeredAt: now, UpdatedAt: now}); err != nil {
			t.Fatal(err)
		}
		tb.shas = append(tb.shas, sha)
	}
	eventually(t, "the builds to finish", func() bool {
		for _, bl := range b.jenkins.Builds("app") {
			if bl.Building {
				return false
			}
		}
		return len(b.jenkins.Builds("app")) == n
	})
	d, err := New(Config{
		Store: b.store, Jenkins: b.client, Matcher: b.matcher, JenkinsURL: b.jenkins.URL(),
		Reporter: tb.api, Consumer: "tracker", StatusInterval: trackInterval, StatusGiveUp: giveUp,
		Now: tb.clock.Now, Logger: slog.New(slog.NewTextHandler(tb.logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	tb.d = d
	return tb
}

func jenkinsCalls(emu *jenkinsemu.Server) int {
	n := 0
	for _, c := range emu.Calls() {
		n += c
	}
	return n
}

// While the status API is down, a build whose outcome is known is not
// asked of Jenkins again, reports back off per provider (one call per
// pause, not one per build and interval) and the failure is logged about
// once a minute; once the API is back, every outcome is reported.
func TestStatusOutageBacksOff(t *testing.T) {
	const builds = 40
	tb := newTrackerBed(t, builds, 12*time.Hour)
	tb.api.down.Store(true)
	ctx := context.Background()
	tb.jenkins.ResetCalls()

	tb.d.TrackOnce(ctx)
	firstRound := jenkinsCalls(tb.jenkins)
	if firstRound == 0 {
		t.Fatal("the first round did not ask Jenkins about the builds")
	}
	tb.jenkins.ResetCalls()
	const rounds = 60 // ten minutes of intervals
	for range rounds {
		tb.clock.Advance(trackInterval)
		tb.d.TrackOnce(ctx)
	}
	if n := jenkinsCalls(tb.jenkins); n != 0 {
		t.Errorf("Jenkins got %d calls in %d rounds after every outcome was known, want 0", n, rounds)
	}
	// Back-off 10s, 20s, … capped at 5 min over 10 min: a handful of calls
	// (one per pause); without it 40 builds × 60 rounds = 2,400.
	if n := tb.api.calls.Load(); n > 10 {
		t.Errorf("status API called %d times in %d rounds while down, want at most 10", n, rounds)
	}
	if n := tb.logs.lines("could not report commit status"); n < 1 || n > 11 {
		t.Errorf("%d log lines about the failing API in 10 minutes, want 1 to 11 (about one a minute)", n)
	}
	recs, err := tb.store.ListBuilds(ctx)
	if err != nil || len(recs) != builds {
		t.Fatalf("ListBuilds = %d records, %v; want all %d kept while reports fail", len(recs), err, builds)
	}
	for _, r := range recs {
		if r.Result != jenkins.ResultSuccess {
			t.Errorf("record %s: Result %q, want the known outcome stored", r.Key, r.Result)
		}
	}

	tb.api.down.Store(false)
	tb.clock.Advance(statusRetryMax)
	tb.d.TrackOnce(ctx)
	for _, sha := range tb.shas {
		if got := tb.api.state("ferry/app", sha); got != scm.StateSuccess {
			t.Errorf("status of %s = %q after the API came back, want success", sha, got)
		}
	}
	if recs, _ := tb.store.ListBuilds(ctx); len(recs) != 0 {
		t.Errorf("%d records left after reporting, want 0", len(recs))
	}
	if tb.logs.lines("commit status reports work again") != 1 {
		t.Error("no log line saying the reports work again")
	}
}

// A provider's Retry-After is honoured: nothing is sent before it ends.
func TestStatusOutageHonoursRetryAfter(t *testing.T) {
	tb := newTrackerBed(t, 3, 12*time.Hour)
	tb.api.down.Store(true)
	tb.api.retryAfter = 30 * time.Minute
	ctx := context.Background()
	tb.d.TrackOnce(ctx)
	if n := tb.api.calls.Load(); n != 1 {
		t.Fatalf("first round: %d calls, want 1 (the failure pauses the provider)", n)
	}
	for range 170 { // 28 minutes 20 seconds
		tb.clock.Advance(trackInterval)
		tb.d.TrackOnce(ctx)
	}
	if n := tb.api.calls.Load(); n != 1 {
		t.Errorf("%d calls before Retry-After ended, want 1", n)
	}
	tb.clock.Advance(2 * time.Minute)
	tb.d.TrackOnce(ctx)
	if n := tb.api.calls.Load(); n != 2 {
		t.Errorf("%d calls after Retry-After ended, want 2", n)
	}
}

// An outcome that cannot be reported for StatusGiveUp is dropped with one
// error line naming it.
func TestStatusGivenUpAfterBoundedTime(t *testing.T) {
	tb := newTrackerBed(t, 2, time.Hour)
	tb.api.down.Store(true)
	ctx := context.Background()
	for range 400 { // 66 minutes
		tb.clock.Advance(trackInterval)
		tb.d.TrackOnce(ctx)
	}
	if recs, _ := tb.store.ListBuilds(ctx); len(recs) != 0 {
		t.Errorf("%d records kept after an hour of failures, want 0", len(recs))
	}
	if n := tb.logs.lines("gave up reporting a build's outcome"); n != 2 {
		t.Errorf("%d give-up lines, want one per build (2)", n)
	}
}

// A build that disappeared from Jenkins (deleted, or lost in a controller
// restart) is re-run once; a re-run that vanishes too is reported as
// vanished once, not asked for forever.
func TestVanishedBuildIsRerunThenReportedOnce(t *testing.T) {
	tb := newTrackerBed(t, 1, time.Hour)
	ctx := context.Background()
	recs, _ := tb.store.ListBuilds(ctx)
	rec := recs[0]
	rec.Number = 999 // no such build
	if err := tb.store.PutBuild(ctx, rec); err != nil {
		t.Fatal(err)
	}
	tb.d.TrackOnce(ctx)
	if got := tb.api.state("ferry/app", tb.shas[0]); got != scm.StatePending {
		t.Errorf("status = %q, want pending (re-running)", got)
	}
	recs, _ = tb.store.ListBuilds(ctx)
	if len(recs) != 1 || recs[0].Key != rec.Key+"#2" || !recs[0].Pending() || recs[0].Attempt != 2 {
		t.Fatalf("records = %+v, want only the re-run's pending request", recs)
	}
	// The re-run vanishes too: the limit (1) is spent.
	rerun := recs[0]
	rerun.QueueID, rerun.Number, rerun.TriggeredAt = 77, 998, tb.clock.Now()
	if err := tb.store.PutBuild(ctx, rerun); err != nil {
		t.Fatal(err)
	}
	tb.clock.Advance(trackInterval)
	tb.d.TrackOnce(ctx)
	if got := tb.api.state("ferry/app", tb.shas[0]); got != scm.StateError {
		t.Errorf("status = %q, want error", got)
	}
	if recs, _ := tb.store.ListBuilds(ctx); len(recs) != 0 {
		t.Errorf("%d records kept, want the vanished build forgotten", len(recs))
	}
}

// A record of an attempt that never got a queue item is not polled, and
// is removed once stale.
func TestStaleAttemptRecordIsRemoved(t *testing.T) {
	tb := newTrackerBed(t, 0, time.Hour)
	ctx := context.Background()
	now := tb.clock.Now()
	if err := tb.store.PutBuild(ctx, store.Build{Key: "gh-x/app", Event: pushEvent("gh-x", strings.Repeat("a", 40)),
		Pipeline: "app", Job: "app", Attempted: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	tb.jenkins.ResetCalls()
	tb.d.TrackOnce(ctx)
	if n := jenkinsCalls(tb.jenkins); n != 0 {
		t.Errorf("Jenkins got %d calls for a pending attempt, want 0", n)
	}
	if _, err := tb.store.GetBuild(ctx, "gh-x/app"); err != nil {
		t.Fatalf("a fresh attempt record was removed: %v", err)
	}
	tb.clock.Advance(staleAttempt + time.Minute)
	tb.d.TrackOnce(ctx)
	if _, err := tb.store.GetBuild(ctx, "gh-x/app"); err == nil {
		t.Error("a stale attempt record was kept")
	}
}
