package deliveries

import (
	"fmt"
	"time"

	"github.com/ferryci/ferry/pkg/dispatch"
	"github.com/ferryci/ferry/pkg/scm"
	"github.com/ferryci/ferry/pkg/store"
)

// Steps of a build trail, in the order a build passes them.
const (
	StepAttempted = "attempted" // ferry is about to call Jenkins
	StepQueued    = "queued"    // Jenkins returned a queue item; commit status pending
	StepStarted   = "started"   // the queue item became a build
	StepRunning   = "running"   // commit status "running" sent
	StepEnded     = "ended"     // Jenkins told the build's result
	StepClosed    = "closed"    // the record was removed: final status sent, given up, or the trigger refused
)

// Steps says what going from prev (nil: no record before) to next adds to
// a build's trail. now stands in for times the record does not carry.
func Steps(prev *store.Build, next store.Build, now time.Time) []store.BuildStep {
	var p store.Build
	if prev != nil {
		p = *prev
	}
	var out []store.BuildStep
	add := func(step string, at time.Time, detail string) {
		if at.IsZero() {
			at = now
		}
		out = append(out, store.BuildStep{Step: step, At: at.UTC(), Detail: detail})
	}
	if prev == nil && !next.Attempted.IsZero() {
		add(StepAttempted, next.Attempted, "triggering Jenkins job "+next.Job)
	}
	if p.QueueID == 0 && next.QueueID != 0 {
		add(StepQueued, next.TriggeredAt, fmt.Sprintf("Jenkins queue item %d; commit status pending", next.QueueID))
	}
	if p.Number == 0 && next.Number != 0 {
		add(StepStarted, next.UpdatedAt, fmt.Sprintf("build #%d %s", next.Number, next.URL))
	}
	if p.Reported != string(scm.StateRunning) && next.Reported == string(scm.StateRunning) {
		add(StepRunning, now, "commit status running")
	}
	if p.Result == "" && next.Result != "" {
		add(StepEnded, next.UpdatedAt, "result "+next.Result)
	}
	return out
}

// Closed is the step of a record removed at now.
func Closed(last store.Build, now time.Time) store.BuildStep {
	detail := "the trigger attempt was dropped: Jenkins refused the build or no worker finished it"
	if last.Result != "" {
		st := dispatch.EndStatus(last)
		detail = fmt.Sprintf("final commit status %s (%s) reported, or given up after dispatch.statusGiveUpAfter", st.State, st.Description)
	} else if last.QueueID != 0 {
		detail = "the record was removed before the build ended"
	}
	return store.BuildStep{Step: StepClosed, At: now.UTC(), Detail: detail}
}
