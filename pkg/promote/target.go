package promote

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/store"
)

// target is what an environment rolls: its Deployments (deployments) or
// its Knative Services (knativeServices, knative.go). Every method can be
// called again after a restart with the same result.
type target interface {
	// current reads what the environment runs now: what a failure rolls
	// back to.
	current(ctx context.Context) ([]store.DeploymentImage, error)
	// set makes images the environment's whole: a rollout of the new
	// digest, or (images recorded by current) a rollback.
	set(ctx context.Context, images []store.DeploymentImage) error
	// wait waits until set's images are rolled out, up to timeout.
	wait(ctx context.Context, images []store.DeploymentImage, timeout time.Duration) error
	// healthy checks that images are still rolled out and healthy.
	healthy(ctx context.Context, images []store.DeploymentImage) error
	// setWeight gives want weight percent of the environment beside
	// previous and waits until it does; it returns what it did.
	setWeight(ctx context.Context, promotion string, want, previous []store.DeploymentImage, weight int, timeout time.Duration) (string, error)
	// removeCanary removes what setWeight made beside the environment and
	// names what it removed.
	removeCanary(ctx context.Context, images []store.DeploymentImage) ([]string, error)
}

// target returns the environment's target.
func (p *Promoter) target(ctx context.Context, kube kubernetes.Interface, env config.PromotionEnvironment) (target, error) {
	if len(env.KnativeServices) > 0 {
		if p.cfg.Dynamic == nil {
			return nil, errors.New("knativeServices need a dynamic Kubernetes client (promote.Config.Dynamic); none is configured")
		}
		dyn, err := p.cfg.Dynamic(env.Context)
		if err != nil {
			return nil, fmt.Errorf("kubernetes dynamic client for context %q: %w", env.Context, err)
		}
		return knativeServices{dyn: dyn, env: env, poll: p.cfg.Poll}, nil
	}
	return deployments{kube: kube, env: env, poll: p.cfg.Poll, unfinished: p.unfinished(ctx)}, nil
}

// deployments is an environment of Deployments.
type deployments struct {
	kube       kubernetes.Interface
	env        config.PromotionEnvironment
	poll       time.Duration
	unfinished func(id string) bool
}

func (t deployments) current(ctx context.Context) ([]store.DeploymentImage, error) {
	return currentImages(ctx, t.kube, t.env)
}

func (t deployments) set(ctx context.Context, images []store.DeploymentImage) error {
	for _, d := range images {
		if err := setImage(ctx, t.kube, d); err != nil {
			return err
		}
	}
	return nil
}

func (t deployments) wait(ctx context.Context, images []store.DeploymentImage, timeout time.Duration) error {
	return waitRollout(ctx, t.kube, images, timeout, t.poll)
}

func (t deployments) healthy(ctx context.Context, images []store.DeploymentImage) error {
	return rolledOut(ctx, t.kube, images)
}

func (t deployments) setWeight(ctx context.Context, promotion string, want, _ []store.DeploymentImage, weight int, timeout time.Duration) (string, error) {
	var parts []string
	for _, d := range want {
		n, stable, err := ensureCanary(ctx, t.kube, d, promotion, weight, t.unfinished)
		if err != nil {
			return "", err
		}
		parts = append(parts, fmt.Sprintf("%s: %d pods beside %d of %s (%d%% of pods)", canaryName(d.Deployment), n, stable, d.Deployment, 100*int(n)/int(n+stable)))
	}
	if err := waitRollout(ctx, t.kube, canaryImages(want), timeout, t.poll); err != nil {
		return "", err
	}
	return strings.Join(parts, "; "), nil
}

func (t deployments) removeCanary(ctx context.Context, images []store.DeploymentImage) ([]string, error) {
	return deleteCanaries(ctx, t.kube, images)
}
