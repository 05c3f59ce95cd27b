package dispatch

import (
	"context"
	"strings"

	"github.com/ferryci/ferry/pkg/scm"
	"github.com/ferryci/ferry/pkg/store"
)

// AgentFailure is the provisioner's news that a build ferry may have
// triggered got no agent, or lost it.
type AgentFailure struct {
	// TriggerID is the item's FERRY_TRIGGER_ID, when it carries one.
	TriggerID string
	// QueueID is the Jenkins queue item.
	QueueID int64
	// RunURL is the build's URL for a Pipeline's node block, whose queue
	// item carries no parameters.
	RunURL string
	// Message says what went wrong, for the commit status.
	Message string
	// Cancelled is true when the queue item was cancelled: the build will
	// never run, and the record is finished.
	Cancelled bool
	// Imminent is true when the agent is about to go (a spot instance being
	// reclaimed) while the build still runs.
	Imminent bool
}

// ReportAgentFailure puts an agent failure on the commit of the build it
// belongs to, if ferry triggered that build; other builds are ignored.
func (d *Dispatcher) ReportAgentFailure(ctx context.Context, f AgentFailure) {
	b, ok := d.findRecord(ctx, f)
	if !ok {
		return
	}
	var desc string
	state := scm.StateError
	switch {
	case f.Cancelled:
		desc = "No build agent: " + f.Message
	case f.Imminent:
		// The build still runs, and may finish; if it is lost, it is
		// re-run (see RequestRerun): not a failure yet.
		state, desc = scm.StateRunning, "The build's agent is being reclaimed: "+f.Message
	default:
		desc = "The build lost its agent: " + f.Message
	}
	d.log.Warn("agent failure reported on the commit", "key", b.Key, "queue_id", f.QueueID, "reason", f.Message)
	err := d.reportRetry(d.report(ctx, b.Event, b.Pipeline, scm.Status{State: state, Description: desc}, b.URL))
	if err == nil && f.Cancelled && !b.Pending() {
		if err := d.forget(ctx, b.Key); err != nil {
			d.log.Warn("could not forget a failed build record", "key", b.Key, "error", err)
		}
	}
}

func (d *Dispatcher) findRecord(ctx context.Context, f AgentFailure) (store.Build, bool) {
	if f.TriggerID != "" {
		if b, err := d.cfg.Store.GetBuild(ctx, f.TriggerID); err == nil {
			return b, true
		}
	}
	all, err := d.cfg.Store.ListBuilds(ctx)
	if err != nil {
		return store.Build{}, false
	}
	for _, b := range all {
		if (f.QueueID != 0 && b.QueueID == f.QueueID) ||
			(f.RunURL != "" && b.URL != "" && strings.TrimSuffix(b.URL, "/") == strings.TrimSuffix(f.RunURL, "/")) {
			return b, true
		}
	}
	return store.Build{}, false
}
