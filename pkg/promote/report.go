package promote

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/event"
	"github.com/ferryci/ferry/pkg/scm"
	"github.com/ferryci/ferry/pkg/store"
)

// Reporting each environment as a deployment on the Git host.
//
// An environment's deployment is created when it first has something to
// show (waiting for approval: pending; rolling: in_progress) and then
// follows its phase: success when verified (with the environment's URL),
// failure with the reason when its rollout or verification failed (also
// while and after it is rolled back), error when ferry could not go on, and
// inactive when the approval was refused. On GitLab, whose API cannot
// create a deployment that has not started, the deployment is created when
// the rollout starts, so a refused approval leaves none there. The deployment id and the last
// state reported are kept in the promotion record, so a restarted promoter
// or a new leader neither creates a second deployment nor repeats a status.
//
// Reporting never holds a promotion back and never fails it: a failed call
// is logged and tried again later (backing off, longer for a permanent
// refusal), also after the promotion finished. A finished promotion only
// updates deployments that exist; none is created for it. A crash between
// creating a deployment and recording its id leaves one orphan deployment
// that is never updated.

const (
	// reportBackoffMax caps the wait after a retryable reporting failure.
	reportBackoffMax = 5 * time.Minute
	// reportPermanentHold is the wait after a permanent refusal (a wrong
	// repository, a token without the right): long, as retrying rarely
	// helps before someone fixes it; a restart retries at once.
	reportPermanentHold = 30 * time.Minute
)

// reportHold keeps an environment's reporting from being retried too soon.
type reportHold struct {
	until time.Time
	delay time.Duration
}

// reports reports whether app's deployments of pr are reported.
func (p *Promoter) reports(app config.PromotionApp, pr store.Promotion) bool {
	return p.cfg.Deployer != nil && app.Reports() && pr.Commit != ""
}

// wantedDeployment is the deployment status environment e of pr should
// show; ok is false when it should show none.
func wantedDeployment(app config.PromotionApp, pr store.Promotion, e store.PromotionEnv) (st scm.DeploymentStatus, ok bool) {
	failed := pr.State == store.PromotionFailed
	reason := e.Reason
	if reason == "" {
		reason = pr.Reason
	}
	switch e.Phase {
	case store.EnvAwaitingApprove:
		return scm.DeploymentStatus{State: scm.DeploymentPending, Description: "waiting for approval"}, true
	case store.EnvApproved:
		if failed {
			return scm.DeploymentStatus{State: scm.DeploymentError, Description: reason}, true
		}
		return scm.DeploymentStatus{State: scm.DeploymentPending, Description: "approved by " + e.Approver}, true
	case store.EnvCanary, store.EnvRolling, store.EnvVerifying:
		if failed {
			return scm.DeploymentStatus{State: scm.DeploymentFailure, Description: reason}, true
		}
		what := "rolling out"
		switch e.Phase {
		case store.EnvVerifying:
			what = "verifying"
		case store.EnvCanary:
			what = fmt.Sprintf("canary step %d of", e.CanaryStep+1)
		}
		return scm.DeploymentStatus{State: scm.DeploymentInProgress, Description: what + " " + shortImage(pr.Target)}, true
	case store.EnvRollingBack, store.EnvRolledBack:
		return scm.DeploymentStatus{State: scm.DeploymentFailure, Description: reason + "; rolled back"}, true
	case store.EnvSucceeded:
		st := scm.DeploymentStatus{State: scm.DeploymentSuccess, Description: "verified " + shortImage(pr.Target)}
		if env, ok := envOf(app, e.Name); ok {
			st.EnvironmentURL = env.URL
		}
		return st, true
	case store.EnvRejected:
		d := "rejected by " + e.Approver
		if e.Reason != "" {
			d += ": " + e.Reason
		}
		return scm.DeploymentStatus{State: scm.DeploymentInactive, Description: d}, true
	}
	return scm.DeploymentStatus{}, false
}

// shortImage is the digest part of repo@sha256:… shortened for a
// one-line description.
func shortImage(image string) string {
	if _, d, ok := strings.Cut(image, "@sha256:"); ok && len(d) > 12 {
		return "sha256:" + d[:12]
	}
	return image
}

// reportDue returns the environments of pr whose deployment is behind and
// may be reported now.
func (p *Promoter) reportDue(pr store.Promotion) []int {
	app, ok := p.apps[pr.App]
	if !ok || !p.reports(app, pr) {
		return nil
	}
	now := time.Now()
	var due []int
	for i, e := range pr.Environments {
		want, ok := wantedDeployment(app, pr, e)
		if !ok || (e.DeploymentID != 0 && e.DeploymentState == string(want.State)) {
			continue
		}
		if e.DeploymentID == 0 && pr.Finished() {
			continue // no new deployment for what is over
		}
		if e.DeploymentID == 0 && want.State == scm.DeploymentPending && app.Provider == string(event.GitLab) {
			// GitLab's API can only create a deployment that runs (or is
			// over): one waiting for approval is created when it rolls.
			continue
		}
		p.mu.Lock()
		h := p.holds[pr.ID+"/"+e.Name]
		p.mu.Unlock()
		if now.Before(h.until) {
			continue
		}
		due = append(due, i)
	}
	return due
}

// report brings the deployments of pr up to date and reports whether it
// recorded anything (the caller then reads the promotion again).
func (p *Promoter) report(ctx context.Context, pr store.Promotion) bool {
	due := p.reportDue(pr)
	if len(due) == 0 {
		return false
	}
	app := p.apps[pr.App]
	recorded := false
	for _, i := range due {
		e := pr.Environments[i]
		want, _ := wantedDeployment(app, pr, e)
		ref := scm.DeploymentRef{
			Provider: event.Provider(app.Provider), Repo: app.Repo, ProjectID: app.ProjectID,
			SHA: pr.Commit, Ref: app.Ref, Environment: e.Name,
			Description: fmt.Sprintf("ferry %s %s of %s", pr.Kind, pr.ID, shortImage(pr.Target)),
			Payload: map[string]any{"promotion": pr.ID, "app": pr.App, "image": pr.Target,
				"digest": pr.SourceDigest, "requested_by": pr.RequestedBy},
		}
		log := p.log.With("promotion", pr.ID, "environment", e.Name, "repo", app.Repo)
		id := e.DeploymentID
		if id == 0 {
			var err error
			if id, err = p.cfg.Deployer.CreateDeployment(ctx, ref); err != nil {
				p.holdReport(ctx, pr.ID, e.Name, err, log)
				continue
			}
			if !p.recordDeployment(ctx, pr.ID, e.Name, id, "") {
				// Not recorded: better an orphan deployment than a
				// status on one the next attempt does not know.
				continue
			}
			recorded = true
			log.InfoContext(ctx, "deployment created", "deployment", id)
		}
		if err := p.cfg.Deployer.SetDeploymentStatus(ctx, ref, id, want); err != nil {
			p.holdReport(ctx, pr.ID, e.Name, err, log)
			continue
		}
		p.mu.Lock()
		delete(p.holds, pr.ID+"/"+e.Name)
		p.mu.Unlock()
		p.count(ctx, "report", "ok")
		if p.recordDeployment(ctx, pr.ID, e.Name, id, string(want.State)) {
			recorded = true
		}
		log.InfoContext(ctx, "deployment status reported", "deployment", id, "state", want.State)
	}
	return recorded
}

// holdReport logs a reporting failure and delays the next attempt.
func (p *Promoter) holdReport(ctx context.Context, id, env string, err error, log *slog.Logger) {
	p.count(ctx, "report", "error")
	key := id + "/" + env
	p.mu.Lock()
	h := p.holds[key]
	switch {
	case !scm.IsRetryable(err):
		h.delay = reportPermanentHold
	case h.delay == 0:
		h.delay = retryDelay
	default:
		h.delay = min(2*h.delay, reportBackoffMax)
	}
	if after, ok := scm.RetryAfter(err); ok && after > h.delay {
		h.delay = after
	}
	h.until = time.Now().Add(h.delay)
	p.holds[key] = h
	p.mu.Unlock()
	log.WarnContext(ctx, "cannot report the deployment; the promotion goes on and reporting is retried",
		"error", err, "retry_in", h.delay)
}

// recordDeployment stores an environment's deployment id and reported
// state, on top of whatever else changed meanwhile.
func (p *Promoter) recordDeployment(ctx context.Context, id, env string, deployment int64, state string) bool {
	_, err := p.update(ctx, id, func(pr *store.Promotion, _ time.Time) error {
		for i := range pr.Environments {
			if e := &pr.Environments[i]; e.Name == env {
				e.DeploymentID = deployment
				if state != "" {
					e.DeploymentState = state
				}
				return nil
			}
		}
		return fmt.Errorf("%w: environment %s is gone from promotion %s", ErrState, env, id)
	})
	if err != nil {
		p.log.WarnContext(ctx, "cannot record the deployment", "promotion", id, "environment", env, "deployment", deployment, "error", err)
		return false
	}
	return true
}
