package dispatch

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/test/jenkinsemu"
)

// A build running when Jenkins was killed and restarted is gone with its
// queue item: once the client has seen the controller's session change,
// the tracker re-runs it at once instead of waiting vanishAfter (15
// minutes) for a queue item that cannot come back.
func TestBuildLostInAJenkinsRestartIsRerunAtOnce(t *testing.T) {
	tb := newTrackerBed(t, 0, time.Hour)
	ctx := context.Background()
	if err := tb.jenkins.UpdateJob("app", func(s *jenkinsemu.JobSpec) { s.Duration = time.Hour }); err != nil {
		t.Fatal(err)
	}
	sha := fmt.Sprintf("%040x", 1)
	ev := pushEvent("gh-restart", sha)
	key := config.TriggerID(ev.ID, "app")
	res, err := tb.client.Trigger(ctx, "app", map[string]string{config.ParamTriggerID: key})
	if err != nil {
		t.Fatal(err)
	}
	now := tb.clock.Now()
	if err := tb.store.PutBuild(ctx, store.Build{Key: key, Event: ev, Pipeline: "app", Job: "app",
		QueueID: res.QueueID, Attempted: now, TriggeredAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the build to start", func() bool {
		bs := tb.jenkins.Builds("app")
		return len(bs) == 1 && bs[0].Building
	})
	if err := tb.jenkins.Restart(0); err != nil {
		t.Fatal(err)
	}
	// The first answer of the restarted controller shows its new session;
	// the queue item is gone and no build has the trigger id.
	tb.d.TrackOnce(ctx)
	tb.clock.Advance(trackInterval)
	tb.d.TrackOnce(ctx)
	if _, err := tb.store.GetBuild(ctx, key+"#2"); err != nil {
		t.Fatalf("no re-run requested for the build the restart lost: %v", err)
	}
	if _, err := tb.store.GetBuild(ctx, key); err == nil {
		t.Error("the lost build's record is kept, want it superseded by its re-run")
	}
}
