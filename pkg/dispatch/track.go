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
// items after ~5 minutes; the build is then found by its parameter.
const vanishAfter = 15 * time.Minute

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

// TrackOnce checks every recorded build once, if this replica holds the
// tracker lease (taken or renewed here; it lapses after three intervals
// without renewal, and another replica takes over).
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
	for _, b := range builds {
		if ctx.Err() != nil {
			return
		}
		if err := d.trackOne(ctx, b); err != nil && ctx.Err() == nil {
			d.log.Debug("could not check build; will retry", "key", b.Key, "error", err)
		}
	}
}

func (d *Dispatcher) trackOne(ctx context.Context, b store.Build) error {
	log := d.log.With("key", b.Key, "job", b.Job, "queue_id", b.QueueID)
	if b.Number == 0 {
		started, err := d.resolveQueue(ctx, &b, log)
		if err != nil || !started {
			return err
		}
	}
	build, err := d.cfg.Jenkins.Build(ctx, b.Job, b.Number)
	if err != nil {
		return fmt.Errorf("read build %s #%d: %w", b.Job, b.Number, err)
	}
	if build.Building || build.Result == "" {
		d.report(ctx, b.Event, b.Pipeline, scm.Status{State: scm.StateRunning,
			Description: fmt.Sprintf("Build #%d running", b.Number)}, b.URL)
		return nil
	}
	st := finalStatus(build)
	if !d.report(ctx, b.Event, b.Pipeline, st, b.URL) {
		return nil // retryable status failure: keep the record, try again
	}
	d.finished.Add(ctx, 1, metric.WithAttributes(attribute.String("result", build.Result)))
	log.Info("build finished", "number", b.Number, "result", build.Result)
	return d.forget(ctx, b.Key)
}

// resolveQueue follows a record's queue item until it becomes a build. It
// reports whether the build started (b then has its number and URL).
func (d *Dispatcher) resolveQueue(ctx context.Context, b *store.Build, log *slog.Logger) (bool, error) {
	item, err := d.cfg.Jenkins.QueueItem(ctx, b.QueueID)
	switch {
	case errors.Is(err, jenkins.ErrNotFound):
		// The item left the queue long ago; find the build by its id.
		f, ferr := d.cfg.Jenkins.FindByParam(ctx, b.Job, config.ParamTriggerID, b.Key)
		if ferr != nil {
			return false, ferr
		}
		if f.BuildNumber > 0 {
			item.Executable = jenkins.Executable{Number: f.BuildNumber}
			break
		}
		if d.cfg.Now().Sub(b.TriggeredAt) > vanishAfter {
			log.Error("triggered build vanished from Jenkins")
			if d.report(ctx, b.Event, b.Pipeline, scm.Status{State: scm.StateError,
				Description: "The build vanished from Jenkins before it started"}, "") {
				return false, d.forget(ctx, b.Key)
			}
		}
		return false, nil
	case err != nil:
		return false, err
	}
	if item.Cancelled {
		log.Info("queue item was cancelled in Jenkins")
		if d.report(ctx, b.Event, b.Pipeline, scm.Status{State: scm.StateCanceled,
			Description: "The build was cancelled before it started"}, d.jobURL(b.Job)) {
			return false, d.forget(ctx, b.Key)
		}
		return false, nil
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

func finalStatus(b jenkins.Build) scm.Status {
	switch b.Result {
	case jenkins.ResultSuccess:
		return scm.Status{State: scm.StateSuccess, Description: fmt.Sprintf("Build #%d succeeded", b.Number)}
	case jenkins.ResultUnstable:
		return scm.Status{State: scm.StateFailure, Description: fmt.Sprintf("Build #%d is unstable", b.Number)}
	case jenkins.ResultFailure:
		return scm.Status{State: scm.StateFailure, Description: fmt.Sprintf("Build #%d failed", b.Number)}
	case jenkins.ResultAborted:
		return scm.Status{State: scm.StateCanceled, Description: fmt.Sprintf("Build #%d was aborted", b.Number)}
	default:
		return scm.Status{State: scm.StateError, Description: fmt.Sprintf("Build #%d ended %s", b.Number, b.Result)}
	}
}
