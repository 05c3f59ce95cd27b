package dispatch

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/event"
	"github.com/ferryci/ferry/pkg/scm"
	"github.com/ferryci/ferry/pkg/store"
)

// RerunRequest is the news that a build ferry may have triggered was lost
// to infrastructure, not to its steps (see the package comment).
type RerunRequest struct {
	// TriggerID, QueueID and RunURL find the build's record, as in
	// AgentFailure.
	TriggerID string
	QueueID   int64
	RunURL    string
	// Reason is stable (a metric attribute): spot_reclaimed, pod_deleted,
	// evicted, node_lost, eci_system_failure, jenkins_restart. Cause says
	// it in words for the commit: "spot instance reclaimed".
	Reason, Cause string
}

// rerunJenkinsRestart is the cause of a build that vanished from Jenkins.
var rerunJenkinsRestart = RerunRequest{Reason: "jenkins_restart", Cause: "build lost by a Jenkins restart"}

// rerunQueue is what re-runs need of the store beyond Store: queueing the
// event again, deduplicated. store.Store has it.
type rerunQueue interface {
	Enqueue(ctx context.Context, dedupKey string, ev event.Event) (bool, error)
}

// Rerun verdicts (the outcome attribute of ferry_dispatch_reruns).
const (
	rerunRequested = "requested"
	rerunLimit     = "limit"
	rerunOff       = "off"
)

// rerunDecision decides, purely, whether a build record lost to
// infrastructure is re-run: its next attempt, and the verdict.
func rerunDecision(b store.Build, limit int, canQueue bool) (next int, verdict string) {
	switch {
	case !canQueue || limit <= 0:
		return 0, rerunOff
	}
	next = max(b.Attempt, 1) + 1
	if next-1 > limit {
		return 0, rerunLimit
	}
	return next, rerunRequested
}

// RequestRerun re-runs the build the request names, if ferry triggered it
// and its pipeline allows another attempt; otherwise the loss is reported
// on the commit as a plain agent failure. It returns an error only when
// the request could not be made durable: the caller must ask again (and
// not yet delete what shows the loss).
func (d *Dispatcher) RequestRerun(ctx context.Context, r RerunRequest) error {
	b, ok := d.findRecord(ctx, AgentFailure{TriggerID: r.TriggerID, QueueID: r.QueueID, RunURL: r.RunURL})
	if !ok {
		return nil // not a build ferry triggered, or already forgotten
	}
	done, err := d.rerunLost(ctx, b, r)
	if err != nil || done {
		return err
	}
	d.ReportAgentFailure(ctx, AgentFailure{TriggerID: b.Key, QueueID: r.QueueID, RunURL: r.RunURL, Message: r.Cause})
	return nil
}

// rerunLost requests the next attempt of record b, lost for r's reason,
// and reports whether it did (false: the limit is reached or re-runs are
// off, and the caller reports the loss as it would have).
func (d *Dispatcher) rerunLost(ctx context.Context, b store.Build, r RerunRequest) (bool, error) {
	q, canQueue := d.cfg.Store.(rerunQueue)
	next, verdict := rerunDecision(b, d.rerunLimitOf(b.Pipeline), canQueue)
	log := d.log.With("key", b.Key, "pipeline", b.Pipeline, "reason", r.Reason)
	if verdict != rerunRequested {
		d.reruns.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", r.Reason), attribute.String("outcome", verdict)))
		log.Info("not re-running a build lost to infrastructure", "why", verdict)
		return false, nil
	}
	key := config.RerunTriggerID(b.Event.ID, b.Pipeline, next)
	existing, err := d.cfg.Store.GetBuild(ctx, key)
	switch {
	case err == nil && !existing.Pending():
		return true, nil // triggered already
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return false, fmt.Errorf("read the re-run record %s: %w", key, err)
	case err != nil:
		// The durable request: a pending attempt record, searched for in
		// Jenkins by whoever handles the queued entry.
		now := d.cfg.Now()
		rec := store.Build{Key: key, Event: b.Event, Pipeline: b.Pipeline, Job: b.Job, Attempted: now, UpdatedAt: now,
			Attempt: next, RerunCause: r.Cause, RerunOf: b.URL}
		if err := d.cfg.Store.PutBuild(ctx, rec); err != nil {
			return false, fmt.Errorf("record the re-run request %s: %w", key, err)
		}
	}
	ev := b.Event
	ev.Rerun = &event.Rerun{Pipeline: b.Pipeline, Attempt: next, Reason: r.Reason, Cause: r.Cause, Of: b.URL}
	queued, err := q.Enqueue(ctx, "rerun:"+key, ev)
	if err != nil {
		return false, fmt.Errorf("queue the re-run %s: %w", key, err)
	}
	if queued {
		d.reruns.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", r.Reason), attribute.String("outcome", rerunRequested)))
		log.Warn("build lost to infrastructure; re-running it", "rerun_key", key, "lost_build", b.URL, "cause", r.Cause)
	}
	_ = d.report(ctx, b.Event, b.Pipeline, scm.Status{State: scm.StatePending, Description: "re-running: " + r.Cause}, b.URL)
	// The lost build is superseded: its end is never reported, so it
	// cannot overwrite its re-run's status.
	if err := d.forget(ctx, b.Key); err != nil {
		log.Warn("could not drop the lost build's record; its end is skipped while the re-run's record exists", "error", err)
	}
	return true, nil
}

// superseded reports whether a re-run of record b was requested: then its
// end is not reported, the re-run's is.
func (d *Dispatcher) superseded(ctx context.Context, b store.Build) bool {
	if b.Result == "SUCCESS" {
		return false
	}
	_, err := d.cfg.Store.GetBuild(ctx, config.RerunTriggerID(b.Event.ID, b.Pipeline, max(b.Attempt, 1)+1))
	return err == nil
}

// rerunLimitOf returns a pipeline's re-run limit; a pipeline not in
// Config.Pipelines gets the default.
func (d *Dispatcher) rerunLimitOf(pipeline string) int {
	for _, p := range d.cfg.Pipelines {
		if p.Name == pipeline {
			return p.RerunLimit()
		}
	}
	return config.DefaultReruns
}

// rerunPipes keeps, of a re-run event, only the pipeline it re-runs.
func rerunPipes(ev event.Event, pipes []config.Pipeline) []config.Pipeline {
	if ev.Rerun == nil {
		return pipes
	}
	var out []config.Pipeline
	for _, p := range pipes {
		if p.Name == ev.Rerun.Pipeline {
			out = append(out, p)
		}
	}
	return out
}

// triggerKey is the correlation id of the event's build of pipeline: its
// re-run's when the event is one.
func triggerKey(ev event.Event, pipeline string) string {
	if ev.Rerun != nil && ev.Rerun.Pipeline == pipeline {
		return config.RerunTriggerID(ev.ID, pipeline, ev.Rerun.Attempt)
	}
	return config.TriggerID(ev.ID, pipeline)
}

// triggerParams are the build's parameters, with the correlation id of
// the attempt.
func triggerParams(p config.Pipeline, ev event.Event, key, traceparent string) map[string]string {
	params := p.Params(ev, traceparent)
	params[config.ParamTriggerID] = key
	return params
}

// withRerun adds a re-run event's attempt and cause to its record.
func withRerun(b store.Build, ev event.Event) store.Build {
	if r := ev.Rerun; r != nil && r.Pipeline == b.Pipeline {
		b.Attempt, b.RerunCause, b.RerunOf = r.Attempt, r.Cause, r.Of
	}
	return b
}

// rerunPrefix begins the statuses of a re-run while it is queued or runs.
func rerunPrefix(b store.Build) string {
	if b.Attempt > 1 && b.RerunCause != "" {
		return "re-running: " + b.RerunCause + "; "
	}
	return ""
}
