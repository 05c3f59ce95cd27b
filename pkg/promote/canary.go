package promote

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/store"
)

// Canary steps of an environment (config.Canary). The environment is in
// phase EnvCanary with PromotionEnv.CanaryStep the next step; each step is
// one move, decided by NextCanaryMove, and where it leads by
// AfterCanaryMove — both pure, with table tests. Every move can be taken
// again after a restart with the same result (the canary is made to match,
// a pause counts from StepSince), and the record advances one step at a
// time, so a restarted promoter neither skips nor repeats a step; only an
// analysis interrupted by a restart starts its rounds over.
//
// For Deployments the share is made by replicas: <name>-canary runs the
// new digest beside the stable Deployment <name>, with the stable's pod
// template plus the label ferry.dev/track=canary (added to the canary's
// selector, so neither Deployment's ReplicaSets take the other's pods).
// A Service selecting the stable's labels sends each canary pod its share
// of connections: weight w gives ceil(stable·w/(100−w)) canary pods beside
// the stable's, which is kept at full size. That is a share of pods, not
// of requests: it is as precise as the replica counts allow (10% of 2
// pods is 1 in 3), and clients holding connections, or a mesh or ingress
// balancing by its own weights, see another split. At setWeight 100, or
// after the last step, the stable Deployment gets the new digest as
// without a canary and the canary is deleted once it rolled out. A failed
// step deletes the canary; the stable was not changed.

// CanaryMove is what a canary step does.
type CanaryMove string

// The moves.
const (
	// MoveScale runs the canary at a weight.
	MoveScale CanaryMove = "scale"
	// MovePause waits.
	MovePause CanaryMove = "pause"
	// MoveAnalyze judges the canary by its analysis.
	MoveAnalyze CanaryMove = "analyze"
	// MovePromote ends the steps: the environment itself is rolled.
	MovePromote CanaryMove = "promote"
)

// CanaryPlan is the move of one step with what it needs.
type CanaryPlan struct {
	Move     CanaryMove
	Weight   int
	Pause    time.Duration
	Analysis *config.CanaryAnalysis
}

// NextCanaryMove is the move of step index of steps: past the last step,
// or at setWeight 100, the environment is promoted.
func NextCanaryMove(steps []config.CanaryStep, index int) CanaryPlan {
	if index < 0 || index >= len(steps) {
		return CanaryPlan{Move: MovePromote, Weight: 100}
	}
	s := steps[index]
	switch {
	case s.SetWeight >= 100:
		return CanaryPlan{Move: MovePromote, Weight: 100}
	case s.SetWeight > 0:
		return CanaryPlan{Move: MoveScale, Weight: s.SetWeight}
	case s.Analysis != nil:
		return CanaryPlan{Move: MoveAnalyze, Analysis: s.Analysis}
	default:
		return CanaryPlan{Move: MovePause, Pause: s.Pause.Duration}
	}
}

// CanaryResult is how a move ended.
type CanaryResult string

// The results.
const (
	StepDone   CanaryResult = "done"
	StepFailed CanaryResult = "failed"
)

// AfterCanaryMove is the environment's phase and next step index after a
// move of step index ended with result.
func AfterCanaryMove(move CanaryMove, result CanaryResult, index int) (string, int) {
	switch {
	case result == StepFailed:
		return store.EnvRollingBack, index
	case move == MovePromote:
		return store.EnvRolling, index
	}
	return store.EnvCanary, index + 1
}

// CanaryReplicas is the canary's replica count for weight beside a stable
// Deployment of stable replicas: at least one, and the nearest count at or
// above the weight's share of all pods.
func CanaryReplicas(stable int32, weight int) int32 {
	if weight >= 100 || stable <= 0 {
		return max(stable, 1)
	}
	w := int64(max(weight, 1))
	n := (int64(stable)*w + (100 - w) - 1) / (100 - w)
	if n > math.MaxInt32 {
		return math.MaxInt32
	}
	return int32(max(n, 1)) //nolint:gosec // bounded above

}

// canaryLabel marks a canary's pods and selector; canaryPromotion
// annotates the canary with the promotion that made it.
const (
	canaryLabel     = "ferry.dev/track"
	canaryPromotion = "ferry.dev/promotion"
	canaryOf        = "ferry.dev/canary-of"
)

func canaryName(deployment string) string { return deployment + "-canary" }

// canaryImages are the canaries of the stable Deployments in want.
func canaryImages(want []store.DeploymentImage) []store.DeploymentImage {
	out := make([]store.DeploymentImage, len(want))
	for i, d := range want {
		d.Deployment = canaryName(d.Deployment)
		out[i] = d
	}
	return out
}

// ensureCanary makes <stable>-canary run di.Image with the replicas of
// weight; it returns the canary's and the stable's replicas. A canary of
// another promotion still running is errBusy; a Deployment of that name
// ferry did not make fails the step.
func ensureCanary(ctx context.Context, kube kubernetes.Interface, di store.DeploymentImage, promotion string, weight int, running func(id string) bool) (int32, int32, error) {
	stable, err := kube.AppsV1().Deployments(di.Namespace).Get(ctx, di.Deployment, metav1.GetOptions{})
	if err != nil {
		return 0, 0, fmt.Errorf("read deployment %s/%s: %w", di.Namespace, di.Deployment, err)
	}
	stableReplicas := int32(1)
	if stable.Spec.Replicas != nil {
		stableReplicas = *stable.Spec.Replicas
	}
	n := CanaryReplicas(stableReplicas, weight)
	want := canaryFrom(stable, di, promotion, n)
	deployments := kube.AppsV1().Deployments(di.Namespace)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := deployments.Get(ctx, want.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = deployments.Create(ctx, want, metav1.CreateOptions{FieldManager: "ferry"})
			return err
		}
		if err != nil {
			return err
		}
		if cur.Annotations[canaryOf] != di.Deployment {
			return fmt.Errorf("%w: deployment %s/%s exists and is not ferry's canary of %s; rename or delete it", errRollout, di.Namespace, want.Name, di.Deployment)
		}
		if owner := cur.Annotations[canaryPromotion]; owner != promotion && running(owner) {
			return fmt.Errorf("%w: %s/%s is the canary of promotion %s", errBusy, di.Namespace, want.Name, owner)
		}
		want.ResourceVersion = cur.ResourceVersion
		_, err = deployments.Update(ctx, want, metav1.UpdateOptions{FieldManager: "ferry"})
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("make canary %s/%s: %w", di.Namespace, want.Name, err)
	}
	return n, stableReplicas, nil
}

// canaryFrom is the canary of stable: its spec, the new image, replicas,
// and the canary label on selector and pods.
func canaryFrom(stable *appsv1.Deployment, di store.DeploymentImage, promotion string, replicas int32) *appsv1.Deployment {
	spec := *stable.Spec.DeepCopy()
	spec.Replicas, spec.Paused = &replicas, false
	sel := spec.Selector
	if sel == nil {
		sel = &metav1.LabelSelector{}
	}
	sel.MatchLabels = maps.Clone(sel.MatchLabels)
	if sel.MatchLabels == nil {
		sel.MatchLabels = map[string]string{}
	}
	sel.MatchLabels[canaryLabel] = "canary"
	spec.Selector = sel
	spec.Template.Labels = maps.Clone(spec.Template.Labels)
	if spec.Template.Labels == nil {
		spec.Template.Labels = map[string]string{}
	}
	spec.Template.Labels[canaryLabel] = "canary"
	for i := range spec.Template.Spec.Containers {
		if c := &spec.Template.Spec.Containers[i]; c.Name == di.Container {
			c.Image = di.Image
		}
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{
			Name: canaryName(stable.Name), Namespace: stable.Namespace,
			Labels:      map[string]string{"app.kubernetes.io/managed-by": "ferry", canaryLabel: "canary"},
			Annotations: map[string]string{canaryOf: stable.Name, canaryPromotion: promotion},
		},
		Spec: spec,
	}
}

// deleteCanaries deletes the canaries of images (ferry's only; a gone one
// is fine) and names what it deleted.
func deleteCanaries(ctx context.Context, kube kubernetes.Interface, images []store.DeploymentImage) ([]string, error) {
	var deleted []string
	for _, di := range images {
		n := canaryName(di.Deployment)
		d, err := kube.AppsV1().Deployments(di.Namespace).Get(ctx, n, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return deleted, fmt.Errorf("read canary %s/%s: %w", di.Namespace, n, err)
		}
		if d.Annotations[canaryOf] != di.Deployment {
			continue // not ferry's: never delete it
		}
		bg := metav1.DeletePropagationBackground
		err = kube.AppsV1().Deployments(di.Namespace).Delete(ctx, n, metav1.DeleteOptions{
			PropagationPolicy: &bg, Preconditions: &metav1.Preconditions{UID: &d.UID},
		})
		if err != nil && !apierrors.IsNotFound(err) {
			return deleted, fmt.Errorf("delete canary %s/%s: %w", di.Namespace, n, err)
		}
		deleted = append(deleted, di.Namespace+"/"+n)
	}
	return deleted, nil
}

// canaryOn reports whether pr goes through env's canary steps (a
// rollback is rolled at once).
func canaryOn(pr store.Promotion, env config.PromotionEnvironment) bool {
	return env.HasCanary() && pr.Kind != store.KindRollback
}

// rollingIn names another unfinished promotion of pr's app that is
// changing environment env (its canary steps, rollout, verification or
// rollback): a canary started beside it would record as previous what
// that promotion is about to replace.
func (p *Promoter) rollingIn(ctx context.Context, pr store.Promotion, env string) (string, error) {
	all, err := p.cfg.Store.ListPromotions(ctx)
	if err != nil {
		return "", fmt.Errorf("list promotions: %w", err)
	}
	for _, o := range all {
		if o.ID == pr.ID || o.App != pr.App || o.Finished() {
			continue
		}
		for _, e := range o.Environments {
			switch e.Phase {
			case store.EnvCanary, store.EnvRolling, store.EnvVerifying, store.EnvRollingBack:
				if e.Name == env {
					return o.ID, nil
				}
			}
		}
	}
	return "", nil
}

// runsAlready reports whether every image of prev is image: a canary of
// what already runs has nothing to compare, so the steps are skipped (the
// environment is still rolled and verified).
func runsAlready(prev []store.DeploymentImage, image string) bool {
	for _, d := range prev {
		if d.Image != image {
			return false
		}
	}
	return len(prev) > 0
}

// stepName describes step index for the timeline, e.g. "step 1/4 setWeight 10".
func stepName(steps []config.CanaryStep, index int) string {
	plan := NextCanaryMove(steps, index)
	what := ""
	switch plan.Move {
	case MoveScale:
		what = fmt.Sprintf("setWeight %d", plan.Weight)
	case MovePause:
		what = "pause " + plan.Pause.String()
	case MoveAnalyze:
		names := make([]string, len(plan.Analysis.Metrics))
		for i, m := range plan.Analysis.Metrics {
			names[i] = m.Name
		}
		what = "analysis of " + strings.Join(names, ", ")
	case MovePromote:
		if index >= len(steps) {
			return "steps done"
		}
		what = "setWeight 100"
	}
	return fmt.Sprintf("step %d/%d %s", index+1, len(steps), what)
}

// analysisOf converts the configured analysis.
func analysisOf(a *config.CanaryAnalysis) Analysis {
	out := Analysis{Interval: a.Interval.Duration, Passes: a.Passes, FailureLimit: a.FailureLimit, InconclusiveLimit: a.InconclusiveLimit}
	for _, m := range a.Metrics {
		out.Metrics = append(out.Metrics, Metric{Name: m.Name, Query: m.Query, Min: m.Min, Max: m.Max})
	}
	return out
}

// canaryStep takes environment i's next canary step.
func (p *Promoter) canaryStep(ctx context.Context, tgt target, pr store.Promotion, i int, env config.PromotionEnvironment, want []store.DeploymentImage) (store.Promotion, error) {
	e := &pr.Environments[i]
	steps := env.Canary.Steps
	plan := NextCanaryMove(steps, e.CanaryStep)
	label := stepName(steps, e.CanaryStep)
	result, detail := StepDone, ""
	switch plan.Move {
	case MoveScale:
		var err error
		detail, err = tgt.setWeight(ctx, pr.ID, want, e.Previous, plan.Weight, env.RolloutTimeout.Duration)
		if errors.Is(err, errRollout) {
			result, detail = StepFailed, err.Error()
		} else if err != nil {
			return pr, err
		}
	case MovePause:
		if wait := e.StepSince.Add(plan.Pause).Sub(p.cfg.Now()); wait > 0 && !sleep(ctx, wait) {
			return pr, ctx.Err()
		}
		detail = "paused " + plan.Pause.String()
	case MoveAnalyze:
		q := PrometheusQuerier{URL: env.Canary.Prometheus, HTTP: p.cfg.HTTPClient}
		verdict, why, err := RunAnalysis(ctx, analysisOf(plan.Analysis), q, time.After)
		if err != nil {
			return pr, err
		}
		detail = "passed " + why
		if verdict == Failed {
			result, detail = StepFailed, "failed "+why
		}
	case MovePromote:
		detail = "the stable " + describe(want)
	}
	now := p.cfg.Now().UTC()
	if result == StepFailed {
		p.count(ctx, "canary", "failed")
		return p.rollbackOrFail(pr, i, fmt.Errorf("%w: canary %s: %s", errVerify, label, detail)), nil
	}
	p.count(ctx, "canary", "ok")
	phase, next := AfterCanaryMove(plan.Move, result, e.CanaryStep)
	e.Phase, e.CanaryStep, e.StepSince = phase, next, now
	audit(&pr, now, "ferry", "canary step", e.Name, label+": "+detail)
	p.log.InfoContext(ctx, "canary step", "promotion", pr.ID, "environment", e.Name, "step", label, "detail", detail)
	return pr, nil
}

// unfinished tells whether promotion id is unfinished (a canary it made is
// still its own).
func (p *Promoter) unfinished(ctx context.Context) func(string) bool {
	return func(id string) bool {
		if id == "" {
			return false
		}
		pr, err := p.cfg.Store.GetPromotion(ctx, id)
		return err == nil && !pr.Finished()
	}
}
