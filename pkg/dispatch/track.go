package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/jenkins"
	"github.com/ferryci/ferry/pkg/scm"
	"github.com/ferryci/ferry/pkg/store"
)

// vanishAfter is how long a record whose queue item and build cannot be
// found is kept before it is reported as lost. Jenkins forgets left queue
// items after ~5 minutes; the build is then found by its parameter. A
// record triggered before a controller restart this process saw (the
// X-Jenkins-Session changed) is lost at once: the restart took its queue
// item and build with it.
const vanishAfter = 15 * time.Minute

// restartWatcher is the part of a Jenkins client that notices the
// controller restarting (jenkins.Client has it).
type restartWatcher interface {
	RestartedSince(t time.Time) bool
}

// jenkinsRestartedSince reports whether the controller was seen to restart
// after t. A queue item that is gone and whose build cannot be found,
// triggered before a restart, was lost with the controller's memory: it is
// not waited for for vanishAfter.
func jenkinsRestartedSince(j Jenkins, t time.Time) bool {
	w, ok := j.(restartWatcher)
	return ok && w.RestartedSince(t)
}

// staleAttempt is how long a record of a trigger attempt that never got a
// queue item is kept. The worker that wrote it replaces it within seconds
// unless its event stopped matching any pipeline; a worker still retrying
// after this long searches Jenkins back to the event's arrival without it.
const staleAttempt = 24 * time.Hour

// Outcomes ferry stores in Build.Result besides Jenkins' own, so that a
// known end is reported without asking Jenkins again.
const (
	resultVanished  = "FERRY_VANISHED"
	resultCancelled = "FERRY_QUEUE_CANCELLED"
)

// track polls the builds ferry triggered and reports their progress and
// outcome on the commit until ctx ends.
func (d *Dispatcher) track(ctx context.Context) {
	t := time.NewTicker(d.cfg.StatusInterval)
	defer t.Stop()
	for {
		d.TrackOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// trackerLease names the store lease that lets one replica poll builds:
// with several replicas each would otherwise report every status change.
const trackerLease = "status-tracker"

// TrackOnce checks every recorded build that is due, if this replica holds
// the tracker lease (taken or renewed here; it lapses after three intervals
// without renewal, and another replica takes over). A record whose report
// failed waits out its back-off, and every record of a provider whose
// status API keeps failing waits out the provider's.
func (d *Dispatcher) TrackOnce(ctx context.Context) {
	held, err := d.cfg.Store.Lease(ctx, trackerLease, d.cfg.Consumer, 3*d.cfg.StatusInterval)
	if err != nil || !held {
		if err != nil && ctx.Err() == nil {
			d.log.Warn("could not take the status tracker lease", "error", err)
		}
		return
	}
	builds, err := d.cfg.Store.ListBuilds(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("could not list triggered builds", "error", err)
		}
		return
	}
	now := d.cfg.Now()
	d.status.retain(builds)
	renewed := time.Now()
	for _, b := range builds {
		if ctx.Err() != nil {
			return
		}
		// A long round renews the lease as it goes, and stops when it
		// lapsed: another replica may be tracking by now.
		if time.Since(renewed) > d.cfg.StatusInterval {
			if held, err := d.cfg.Store.Lease(ctx, trackerLease, d.cfg.Consumer, 3*d.cfg.StatusInterval); err != nil || !held {
				return
			}
			renewed = time.Now()
		}
		if b.Pending() {
			d.sweepAttempt(ctx, b, now)
			continue
		}
		if b.Result != "" && d.giveUp(ctx, b, now) {
			continue
		}
		if b.Result != "" && !d.status.due(b, now) {
			continue // Jenkins told its end already; the report waits
		}
		err := d.trackOne(ctx, b)
		var rf *reportFailed
		switch {
		case errors.As(err, &rf):
			d.status.recordFailed(b.Key, now, d.cfg.StatusInterval)
		case err != nil && ctx.Err() == nil:
			d.log.Debug("could not check build; will retry", "key", b.Key, "error", err)
		case err == nil:
			d.status.recordOK(b.Key)
		}
	}
}

// sweepAttempt removes a stale record of a trigger attempt.
func (d *Dispatcher) sweepAttempt(ctx context.Context, b store.Build, now time.Time) {
	if now.Sub(b.UpdatedAt) < staleAttempt {
		return
	}
	if err := d.cfg.Store.DeleteBuild(ctx, b.Key); err != nil {
		d.log.Warn("could not remove a stale trigger attempt record", "key", b.Key, "error", err)
		return
	}
	d.log.Info("removed a trigger attempt record no worker finished", "key", b.Key, "attempted", b.Attempted)
}

// reportFailed is a status report that failed and should be tried again.
type reportFailed struct{ err error }

func (e *reportFailed) Error() string { return "report commit status: " + e.err.Error() }
func (e *reportFailed) Unwrap() error { return e.err }

func (d *Dispatcher) trackOne(ctx context.Context, b store.Build) error {
	if b.Result != "" {
		return d.reportEnd(ctx, b)
	}
	log := d.log.With("key", b.Key, "job", b.Job, "queue_id", b.QueueID)
	if b.Number == 0 {
		started, err := d.resolveQueue(ctx, &b, log)
		if err != nil || !started {
			return err
		}
	}
	build, err := d.cfg.Jenkins.Build(ctx, b.Job, b.Number)
	switch {
	case errors.Is(err, jenkins.ErrNotFound):
		log.Error("triggered build vanished from Jenkins", "number", b.Number)
		if done, err := d.rerunLost(ctx, b, rerunJenkinsRestart); done || err != nil {
			return err
		}
		return d.ended(ctx, b, resultVanished)
	case err != nil:
		return fmt.Errorf("read build %s #%d: %w", b.Job, b.Number, err)
	}
	if build.Building || build.Result == "" {
		if b.Reported == string(scm.StateRunning) {
			return nil
		}
		err := d.reportRetry(d.report(ctx, b.Event, b.Pipeline, scm.Status{State: scm.StateRunning,
			Description: fmt.Sprintf("%sBuild #%d running", rerunPrefix(b), b.Number)}, b.URL))
		if err != nil {
			return err
		}
		b.Reported = string(scm.StateRunning)
		return d.cfg.Store.PutBuild(ctx, b)
	}
	log.Info("build finished", "number", b.Number, "result", build.Result)
	return d.ended(ctx, b, build.Result)
}

// ended stores a build's known end, so Jenkins is not asked again while
// the report is retried, and reports it.
func (d *Dispatcher) ended(ctx context.Context, b store.Build, result string) error {
	// A build ferry cancelled has its end recorded before Jenkins aborts
	// it; that end (superseded, cancelled on command) is the one to report.
	if result == jenkins.ResultAborted {
		if cur, err := d.cfg.Store.GetBuild(ctx, b.Key); err == nil && (cur.Result == resultSuperseded || cur.Result == resultCommand) {
			return d.reportEnd(ctx, cur)
		}
	}
	b.Result = result
	b.UpdatedAt = d.cfg.Now()
	if err := d.cfg.Store.PutBuild(ctx, b); err != nil {
		return fmt.Errorf("record the end of %s: %w", b.Key, err)
	}
	return d.reportEnd(ctx, b)
}

// reportEnd reports a build's stored end and forgets the record once the
// report went through, failed for good, or kept failing for StatusGiveUp.
func (d *Dispatcher) reportEnd(ctx context.Context, b store.Build) error {
	if d.superseded(ctx, b) {
		// Its re-run reports on the commit instead.
		return d.forget(ctx, b.Key)
	}
	target := b.URL
	if target == "" {
		target = d.jobURL(b.Job)
	}
	if err := d.reportRetry(d.report(ctx, b.Event, b.Pipeline, endStatus(b), target)); err != nil {
		return err
	}
	switch b.Result {
	case resultVanished, resultCancelled, resultSuperseded, resultCommand:
	default:
		d.finished.Add(ctx, 1, metric.WithAttributes(attribute.String("result", b.Result)))
	}
	return d.forget(ctx, b.Key)
}

// giveUp drops a record whose known end could not be reported for
// StatusGiveUp, and reports whether it did.
func (d *Dispatcher) giveUp(ctx context.Context, b store.Build, now time.Time) bool {
	age := now.Sub(b.UpdatedAt)
	if age <= d.cfg.StatusGiveUp {
		return false
	}
	d.gaveUp.Add(ctx, 1, metric.WithAttributes(attribute.String("provider", string(b.Event.Provider))))
	d.log.Error("gave up reporting a build's outcome: the commit status API kept failing; the commit keeps its last status",
		"key", b.Key, "provider", b.Event.Provider, "repo", b.Event.Repo, "result", b.Result, "trying_for", age.Round(time.Second))
	if err := d.forget(ctx, b.Key); err != nil {
		d.log.Warn("could not drop the record given up", "key", b.Key, "error", err)
	}
	return true
}

// reportRetry turns a report's error into a reportFailed when trying again
// may help; a report refused for good counts as done.
func (d *Dispatcher) reportRetry(err error) error {
	if err == nil || (!errors.Is(err, errProviderPaused) && !scm.IsRetryable(err)) {
		return nil
	}
	return &reportFailed{err: err}
}

// resolveQueue follows a record's queue item until it becomes a build. It
// reports whether the build started (b then has its number and URL).
func (d *Dispatcher) resolveQueue(ctx context.Context, b *store.Build, log *slog.Logger) (bool, error) {
	item, err := d.cfg.Jenkins.QueueItem(ctx, b.QueueID)
	switch {
	case errors.Is(err, jenkins.ErrNotFound):
		// The item left the queue long ago; find the build by its id.
		since := b.Attempted
		if since.IsZero() {
			since = b.TriggeredAt
		}
		f, ferr := d.cfg.Jenkins.FindByParam(ctx, b.Job, config.ParamTriggerID, b.Key, since)
		if ferr != nil {
			return false, ferr
		}
		if f.BuildNumber > 0 {
			item.Executable = jenkins.Executable{Number: f.BuildNumber}
			break
		}
		if d.cfg.Now().Sub(b.TriggeredAt) > vanishAfter || jenkinsRestartedSince(d.cfg.Jenkins, since) {
			log.Error("triggered build vanished from Jenkins before it started")
			if done, err := d.rerunLost(ctx, *b, rerunJenkinsRestart); done || err != nil {
				return false, err
			}
			return false, d.ended(ctx, *b, resultVanished)
		}
		return false, nil
	case err != nil:
		return false, err
	}
	if item.Cancelled {
		log.Info("queue item was cancelled in Jenkins")
		return false, d.ended(ctx, *b, resultCancelled)
	}
	if !item.Started() {
		return false, nil
	}
	b.Number = item.Executable.Number
	b.URL = item.Executable.URL
	if b.URL == "" {
		b.URL = fmt.Sprintf("%s%d/", d.jobURL(b.Job), b.Number)
	}
	b.UpdatedAt = d.cfg.Now()
	if err := d.cfg.Store.PutBuild(ctx, *b); err != nil {
		return false, err
	}
	return true, nil
}

func (d *Dispatcher) forget(ctx context.Context, key string) error {
	if err := d.cfg.Store.DeleteBuild(ctx, key); err != nil {
		return err
	}
	d.mu.Lock()
	delete(d.lastStatus, key)
	d.mu.Unlock()
	return nil
}

// endStatus is the commit status of a build's stored end; a re-run's
// says so.
func endStatus(b store.Build) scm.Status {
	st := plainEndStatus(b)
	if b.Attempt > 1 && b.RerunCause != "" {
		st.Description = "re-run after " + b.RerunCause + ": " + st.Description
	}
	return st
}

func plainEndStatus(b store.Build) scm.Status {
	switch b.Result {
	case jenkins.ResultSuccess:
		return scm.Status{State: scm.StateSuccess, Description: fmt.Sprintf("Build #%d succeeded", b.Number)}
	case jenkins.ResultUnstable:
		return scm.Status{State: scm.StateFailure, Description: fmt.Sprintf("Build #%d is unstable", b.Number)}
	case jenkins.ResultFailure:
		return scm.Status{State: scm.StateFailure, Description: fmt.Sprintf("Build #%d failed", b.Number)}
	case jenkins.ResultAborted:
		return scm.Status{State: scm.StateCanceled, Description: fmt.Sprintf("Build #%d was aborted", b.Number)}
	case resultCancelled:
		return scm.Status{State: scm.StateCanceled, Description: "The build was cancelled before it started"}
	case resultSuperseded:
		return scm.Status{State: scm.StateCanceled, Description: "canceled: superseded by " + b.CanceledBy}
	case resultCommand:
		return scm.Status{State: scm.StateCanceled, Description: "canceled: " + b.CanceledBy}
	case resultVanished:
		if b.Number > 0 {
			return scm.Status{State: scm.StateError, Description: fmt.Sprintf("Build #%d vanished from Jenkins", b.Number)}
		}
		return scm.Status{State: scm.StateError, Description: "The build vanished from Jenkins before it started"}
	default:
		return scm.Status{State: scm.StateError, Description: fmt.Sprintf("Build #%d ended %s", b.Number, b.Result)}
	}
}
