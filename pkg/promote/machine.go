package promote

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/store"
)

// retryDelay is the pause before a step that failed for a reason worth
// retrying (API or registry unreachable) is tried again.
const retryDelay = 2 * time.Second

// errStop ends driving a promotion for now (it waits, or is finished).
var errStop = errors.New("nothing to do now")

// errBusy: another promotion of the app rolls the environment now.
var errBusy = errors.New("environment busy")

// drive advances a promotion step by step, recording each, until it waits
// for approval, finishes, or ctx ends.
func (p *Promoter) drive(ctx context.Context, id string) {
	for ctx.Err() == nil {
		pr, err := p.cfg.Store.GetPromotion(ctx, id)
		if err != nil {
			p.log.WarnContext(ctx, "cannot read promotion; retrying later", "promotion", id, "error", err)
			return
		}
		if p.report(ctx, pr) {
			continue // recorded a deployment: read the promotion again
		}
		next, err := p.advance(ctx, pr)
		switch {
		case errors.Is(err, errStop):
			return
		case errors.Is(err, errBusy):
			if !sleep(ctx, p.cfg.Poll) {
				return
			}
			continue
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			p.log.WarnContext(ctx, "promotion step failed; retrying", "promotion", id, "error", err)
			if !sleep(ctx, retryDelay) {
				return
			}
			continue
		}
		next.UpdatedAt = p.cfg.Now().UTC()
		if _, err := p.cfg.Store.PutPromotion(ctx, next); err != nil {
			// A conflict means someone else changed it (an approval, a
			// rejection): read it again and decide anew.
			if !errors.Is(err, store.ErrConflict) {
				p.log.WarnContext(ctx, "cannot record promotion step; retrying", "promotion", id, "error", err)
				if !sleep(ctx, retryDelay) {
					return
				}
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// advance takes the next step of pr and returns the record to store. An
// error means nothing is to be recorded: errStop when there is nothing to
// do, anything else when the step should be retried.
func (p *Promoter) advance(ctx context.Context, pr store.Promotion) (store.Promotion, error) {
	if i, env, ok := p.verifyJobDue(pr); ok {
		return p.deleteVerifyJob(ctx, pr, i, env)
	}
	if pr.Finished() || pr.State == store.PromotionWaiting {
		return pr, errStop
	}
	app, ok := p.apps[pr.App]
	if !ok {
		return p.fail(pr, "", "app %s is no longer configured", pr.App), nil
	}
	ctx = traceContext(ctx, pr.TraceParent)
	if pr.Target == "" {
		return p.copyStep(ctx, app, pr)
	}
	for i := range pr.Environments {
		e := &pr.Environments[i]
		if e.Phase == store.EnvSucceeded {
			continue
		}
		env, ok := envOf(app, e.Name)
		if !ok {
			return p.fail(pr, e.Name, "environment %s is no longer configured for app %s", e.Name, app.Name), nil
		}
		return p.envStep(ctx, pr, i, env)
	}
	now := p.cfg.Now().UTC()
	pr.State, pr.FinishedAt = store.PromotionSucceeded, now
	audit(&pr, now, "ferry", "succeeded", "", pr.Target)
	p.log.InfoContext(ctx, "promotion succeeded", "promotion", pr.ID, "app", pr.App, "image", pr.Target)
	p.count(ctx, "promotion", "succeeded")
	return pr, nil
}

func (p *Promoter) copyStep(ctx context.Context, app config.PromotionApp, pr store.Promotion) (_ store.Promotion, err error) {
	ctx, span := p.tracer.Start(ctx, "promote.copy", trace.WithAttributes(
		attribute.String("promotion", pr.ID), attribute.String("app", pr.App), attribute.String("digest", pr.SourceDigest)))
	defer func() { endSpan(span, err) }()
	src, err := name.NewRepository(app.Source)
	if err != nil {
		return p.fail(pr, "", "app %s source: %v", app.Name, err), nil
	}
	dst, err := name.NewRepository(app.Target)
	if err != nil {
		return p.fail(pr, "", "app %s target: %v", app.Name, err), nil
	}
	start := time.Now()
	target, err := p.cfg.Registry.Copy(ctx, src.Digest(pr.SourceDigest), dst, pr.Tags)
	if err != nil {
		p.count(ctx, "copy", "error")
		if permanent(err) {
			return p.fail(pr, "", "copy to %s: %v", app.Target, err), nil
		}
		return pr, err
	}
	now := p.cfg.Now().UTC()
	pr.Target = target.String()
	audit(&pr, now, "ferry", "copied", "", fmt.Sprintf("%s to %s tagged %s", pr.SourceDigest, pr.Target, strings.Join(pr.Tags, ",")))
	p.log.InfoContext(ctx, "image copied by digest", "promotion", pr.ID, "target", pr.Target, "tags", pr.Tags, "took", time.Since(start).Round(time.Millisecond))
	p.count(ctx, "copy", "ok")
	return pr, nil
}

// lockEnv makes sure one promotion at a time rolls an app's environment.
func (p *Promoter) lockEnv(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.envs[key] {
		return false
	}
	p.envs[key] = true
	return true
}

func (p *Promoter) unlockEnv(key string) {
	p.mu.Lock()
	delete(p.envs, key)
	p.mu.Unlock()
}

func (p *Promoter) envStep(ctx context.Context, pr store.Promotion, i int, env config.PromotionEnvironment) (_ store.Promotion, err error) {
	e := &pr.Environments[i]
	now := p.cfg.Now().UTC()
	if e.Phase == store.EnvPending && e.NeedsApproval {
		e.Phase = store.EnvAwaitingApprove
		pr.State = store.PromotionWaiting
		audit(&pr, now, "ferry", "awaiting approval", e.Name, pr.Target)
		p.log.InfoContext(ctx, "promotion waits for approval", "promotion", pr.ID, "environment", e.Name)
		return pr, nil
	}
	if e.Phase == store.EnvAwaitingApprove {
		return pr, errStop
	}
	key := pr.App + "/" + e.Name
	if !p.lockEnv(key) {
		return pr, errBusy
	}
	defer p.unlockEnv(key)
	kube, err := p.cfg.Kube(env.Context)
	if err != nil {
		return p.fail(pr, e.Name, "kubernetes client for context %q: %v", env.Context, err), nil
	}
	ctx, span := p.tracer.Start(ctx, "promote."+e.Phase, trace.WithAttributes(
		attribute.String("promotion", pr.ID), attribute.String("app", pr.App),
		attribute.String("environment", e.Name), attribute.String("image", pr.Target)))
	defer func() { endSpan(span, err) }()
	tgt, err := p.target(ctx, kube, env)
	if err != nil {
		return p.fail(pr, e.Name, "%v", err), nil
	}
	want := func() []store.DeploymentImage {
		out := make([]store.DeploymentImage, len(e.Previous))
		for j, d := range e.Previous {
			d.Image, d.Revision = pr.Target, ""
			out[j] = d
		}
		return out
	}

	switch e.Phase {
	case store.EnvPending, store.EnvApproved:
		if canaryOn(pr, env) {
			if other, err := p.rollingIn(ctx, pr, e.Name); err != nil || other != "" {
				return pr, errors.Join(err, fmt.Errorf("%w: promotion %s goes through %s's canary steps", errBusy, other, e.Name))
			}
		}
		// Record what runs now before changing anything: it is what a
		// failure rolls back to.
		prev, err := tgt.current(ctx)
		if err != nil {
			if errors.Is(err, errRollout) {
				return p.fail(pr, e.Name, "%v", err), nil
			}
			return pr, err
		}
		e.Previous, e.StartedAt, e.Phase = prev, now, store.EnvRolling
		if canaryOn(pr, env) && !runsAlready(prev, pr.Target) {
			e.Phase, e.CanaryStep, e.StepSince = store.EnvCanary, 0, now
		}
		pr.State = store.PromotionRunning
		audit(&pr, now, "ferry", "rollout started", e.Name, describe(prev)+" -> "+pr.Target)
		return pr, nil

	case store.EnvCanary:
		return p.canaryStep(ctx, tgt, pr, i, env, want())

	case store.EnvRolling:
		if err := tgt.set(ctx, want()); err != nil {
			if errors.Is(err, errRollout) {
				return p.rollbackOrFail(pr, i, err), nil
			}
			return pr, err
		}
		if err := tgt.wait(ctx, want(), env.RolloutTimeout.Duration); err != nil {
			if errors.Is(err, errRollout) {
				p.count(ctx, "rollout", "failed")
				return p.rollbackOrFail(pr, i, err), nil
			}
			return pr, err
		}
		p.count(ctx, "rollout", "ok")
		detail := pr.Target
		if env.HasCanary() || e.CanaryStep > 0 {
			// The stable runs the digest now: the canary has done its part.
			deleted, err := tgt.removeCanary(ctx, want())
			if err != nil {
				return pr, err
			}
			if len(deleted) > 0 {
				detail += "; canary deleted: " + strings.Join(deleted, ", ")
			}
		}
		e.Phase, e.VerifyingSince = store.EnvVerifying, now
		audit(&pr, now, "ferry", "rolled out", e.Name, detail)
		return pr, nil

	case store.EnvVerifying:
		if err := p.verify(ctx, kube, tgt, pr, e, env, want()); err != nil {
			if errors.Is(err, errVerify) || errors.Is(err, errRollout) {
				p.count(ctx, "verify", "failed")
				return p.rollbackOrFail(pr, i, err), nil
			}
			return pr, err
		}
		p.count(ctx, "verify", "ok")
		now = p.cfg.Now().UTC()
		e.Phase, e.FinishedAt = store.EnvSucceeded, now
		audit(&pr, now, "ferry", "verified", e.Name, pr.Target)
		p.log.InfoContext(ctx, "environment promoted", "promotion", pr.ID, "environment", e.Name, "image", pr.Target)
		return pr, nil

	case store.EnvRollingBack:
		var problems, deleted []string
		if env.HasCanary() || e.CanaryStep > 0 {
			var err error
			if deleted, err = tgt.removeCanary(ctx, e.Previous); err != nil {
				if !apierrors.IsForbidden(err) {
					return pr, err
				}
				problems = append(problems, err.Error())
			}
		}
		for _, d := range e.Previous {
			if err := tgt.set(ctx, []store.DeploymentImage{d}); err != nil {
				if !errors.Is(err, errRollout) {
					return pr, err
				}
				problems = append(problems, err.Error())
			}
		}
		if len(problems) == 0 {
			if err := tgt.wait(ctx, e.Previous, env.RolloutTimeout.Duration); err != nil {
				if !errors.Is(err, errRollout) {
					return pr, err
				}
				problems = append(problems, err.Error())
			}
		}
		now = p.cfg.Now().UTC()
		e.Phase, e.FinishedAt = store.EnvRolledBack, now
		pr.State, pr.FinishedAt = store.PromotionFailed, now
		detail := "to " + describe(e.Previous)
		if len(deleted) > 0 {
			detail += "; canary deleted: " + strings.Join(deleted, ", ")
		}
		if len(problems) > 0 {
			detail += "; the rollback itself did not finish: " + strings.Join(problems, "; ")
			pr.Reason += "; rollback incomplete: " + strings.Join(problems, "; ")
		}
		audit(&pr, now, "ferry", "rolled back", e.Name, detail)
		p.log.WarnContext(ctx, "environment rolled back", "promotion", pr.ID, "environment", e.Name, "reason", pr.Reason)
		p.count(ctx, "rollback", "done")
		return pr, nil
	}
	return p.fail(pr, e.Name, "environment %s is in unknown phase %q", e.Name, e.Phase), nil
}

func (p *Promoter) verify(ctx context.Context, kube kubernetes.Interface, tgt target, pr store.Promotion, e *store.PromotionEnv, env config.PromotionEnvironment, images []store.DeploymentImage) error {
	v := env.Verify
	if v.HTTP.URL != "" {
		if err := httpCheck(ctx, p.cfg.HTTPClient, v.HTTP); err != nil {
			return err
		}
	}
	if v.Job.Template != nil {
		jobName := verifyJobName(pr.ID, e.Name)
		if err := jobCheck(ctx, kube, env.Namespace, jobName, v.Job, podEnv(pr, e.Name), p.cfg.Poll); err != nil {
			return err
		}
	}
	if v.Soak.Duration > 0 {
		// The soak runs from when verification began (by the promoter's
		// clock, which recorded it), so a restart does not start it over.
		if wait := e.VerifyingSince.Add(v.Soak.Duration).Sub(p.cfg.Now()); wait > 0 && !sleep(ctx, wait) {
			return ctx.Err()
		}
	}
	return tgt.healthy(ctx, images)
}

// Audit actions that record a verification Job's clean-up; either one
// ends it.
const (
	auditJobDeleted = "verification job deleted"
	auditJobKept    = "verification job kept"
)

// verifyJobDue finds an environment whose verification Job is to be
// deleted: the Job may exist (the environment was rolled out), its result
// is recorded (the environment is past verifying, or the promotion is
// over), and no clean-up is recorded yet. The Job is deleted only after
// the result is stored, so a restart before that finds the same Job and
// reads its result again.
func (p *Promoter) verifyJobDue(pr store.Promotion) (int, config.PromotionEnvironment, bool) {
	app, ok := p.apps[pr.App]
	if !ok {
		return -1, config.PromotionEnvironment{}, false
	}
	for i, e := range pr.Environments {
		if e.Phase == store.EnvVerifying && !pr.Finished() {
			continue
		}
		env, ok := envOf(app, e.Name)
		if !ok || env.Verify.Job.Template == nil {
			continue
		}
		if countAudit(pr, "rolled out", e.Name) == 0 ||
			countAudit(pr, auditJobDeleted, e.Name)+countAudit(pr, auditJobKept, e.Name) > 0 {
			continue
		}
		return i, env, true
	}
	return -1, config.PromotionEnvironment{}, false
}

// deleteVerifyJob deletes the verification Job of environment i and
// records that it did; repeated after a restart, it finds the Job gone.
func (p *Promoter) deleteVerifyJob(ctx context.Context, pr store.Promotion, i int, env config.PromotionEnvironment) (store.Promotion, error) {
	e := pr.Environments[i]
	name := verifyJobName(pr.ID, e.Name)
	ref := env.Namespace + "/" + name
	kube, err := p.cfg.Kube(env.Context)
	if err != nil {
		return pr, fmt.Errorf("kubernetes client for context %q: %w", env.Context, err)
	}
	gone, err := deleteJob(ctx, kube, env.Namespace, name)
	now := p.cfg.Now().UTC()
	switch {
	case err != nil && (apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err)):
		// Retrying cannot help: record it so the Job is left for an
		// operator instead of being asked for on every resync.
		p.log.WarnContext(ctx, "cannot delete verification job; leaving it", "promotion", pr.ID, "environment", e.Name, "job", ref, "error", err)
		audit(&pr, now, "ferry", auditJobKept, e.Name, fmt.Sprintf("%s: %v", ref, err))
		return pr, nil
	case err != nil:
		return pr, err
	case gone:
		audit(&pr, now, "ferry", auditJobDeleted, e.Name, ref+" (already gone)")
	default:
		audit(&pr, now, "ferry", auditJobDeleted, e.Name, ref)
	}
	p.log.InfoContext(ctx, "verification job deleted", "promotion", pr.ID, "environment", e.Name, "job", ref)
	return pr, nil
}

func countAudit(pr store.Promotion, action, env string) int {
	n := 0
	for _, a := range pr.Audit {
		if a.Action == action && a.Environment == env {
			n++
		}
	}
	return n
}

// rollbackOrFail moves an environment whose rollout or verification failed
// to rolling back (a rollback request is not reverted: it just fails).
func (p *Promoter) rollbackOrFail(pr store.Promotion, i int, cause error) store.Promotion {
	e := &pr.Environments[i]
	now := p.cfg.Now().UTC()
	msg := strings.TrimPrefix(strings.TrimPrefix(cause.Error(), errRollout.Error()+": "), errVerify.Error()+": ")
	pr.Reason = fmt.Sprintf("%s: %s", e.Name, msg)
	e.Reason = msg
	if pr.Kind == store.KindRollback || len(e.Previous) == 0 {
		return p.fail(pr, e.Name, "%s", msg)
	}
	e.Phase = store.EnvRollingBack
	audit(&pr, now, "ferry", "failed", e.Name, msg)
	return pr
}

func (p *Promoter) fail(pr store.Promotion, env, format string, args ...any) store.Promotion {
	now := p.cfg.Now().UTC()
	msg := fmt.Sprintf(format, args...)
	pr.State, pr.FinishedAt = store.PromotionFailed, now
	if env != "" {
		pr.Reason = env + ": " + msg
		for i := range pr.Environments {
			if pr.Environments[i].Name == env {
				pr.Environments[i].Reason = msg
			}
		}
	} else {
		pr.Reason = msg
	}
	audit(&pr, now, "ferry", "failed", env, msg)
	p.log.Warn("promotion failed", "promotion", pr.ID, "environment", env, "reason", msg)
	return pr
}

func describe(images []store.DeploymentImage) string {
	parts := make([]string, len(images))
	for i, d := range images {
		parts[i] = fmt.Sprintf("%s/%s[%s]=%s", d.Namespace, d.Deployment, d.Container, d.Image)
	}
	return strings.Join(parts, ", ")
}

// verifyJobName is unique per promotion and environment and a valid name.
// A name too long for Kubernetes (a long environment name) is cut and ends
// in a hash of the whole, so the promotion id still tells Jobs apart.
func verifyJobName(id, env string) string {
	n := strings.ToLower("ferry-verify-" + env + "-" + id)
	if len(n) <= 63 {
		return n
	}
	sum := sha256.Sum256([]byte(n))
	return strings.TrimRight(n[:63-13], "-") + "-" + hex.EncodeToString(sum[:6])
}
