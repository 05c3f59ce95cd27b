package app

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/promote"
	"github.com/ferryci/ferry/pkg/promote/api"
	"github.com/ferryci/ferry/pkg/scm"
	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/pkg/telemetry"
)

// promoter is the promotion API and runner with what it needs: a
// Kubernetes client per kubeconfig context and, when enabled, the Lease
// that makes one replica run promotions (every replica serves the API).
type promoter struct {
	cfg      config.Promotion
	promoter *promote.Promoter
	api      *api.Server
	identity string
	log      *slog.Logger
	// lead is the Lease's election, nil without leader election; its
	// window fences every write the runner sends (fence.go).
	lead *leader

	mu       sync.Mutex
	clients  map[string]kubernetes.Interface
	dynamics map[string]dynamic.Interface
	// fenced and fencedDynamics are the runner's clients, whose writes
	// are fenced.
	fenced         map[string]kubernetes.Interface
	fencedDynamics map[string]dynamic.Interface
}

func newPromoter(cfg config.Config, st store.Store, tel *telemetry.Telemetry, identity string) (*promoter, error) {
	pc := cfg.Promotion
	routeKubeLogs(tel.Logger)
	pr := &promoter{cfg: pc, identity: identity, log: tel.Logger.With("component", "app"),
		clients: map[string]kubernetes.Interface{}, dynamics: map[string]dynamic.Interface{},
		fenced: map[string]kubernetes.Interface{}, fencedDynamics: map[string]dynamic.Interface{}}
	// Deployments are reported with the commit-status tokens; a provider
	// without one is refused by the configuration's validation.
	deployer, err := scm.New(scm.Config{
		GitHub:         scm.GitHubConfig{Token: cfg.GitHub.Token, BaseURL: cfg.GitHub.APIURL},
		GitLab:         scm.GitLabConfig{Token: cfg.GitLab.Token, BaseURL: cfg.GitLab.BaseURL},
		Logger:         tel.Logger,
		TracerProvider: tel.TracerProvider,
	})
	if err != nil {
		return nil, fmt.Errorf("deployment reporter: %w", err)
	}
	rc := promote.RegistryConfig{Keychain: promote.DockerConfigKeychain{Path: pc.DockerConfig}}
	var rep scm.Deployer = deployer
	kube, dyn := pr.kube, pr.dynamic
	if pc.LeaderElection.Enabled {
		// Only the leader runs promotions, and it writes to the clusters,
		// the registry and the Git host only inside its Lease's window.
		// The API (every replica) reads through the same promoter.
		leaseKube, err := pr.kube("")
		if err != nil {
			return nil, err
		}
		pr.lead = newLeader(leaseKube, pc.LeaseNamespace, identity, "promoter", pc.LeaderElection, pr.log)
		rc.Transport = newFencedTransport(remote.DefaultTransport, pr.lead.window)
		rep = fencedDeployer{next: deployer, window: pr.lead.window}
		kube, dyn = pr.fencedKube, pr.fencedDynamic
	}
	p, err := promote.New(promote.Config{
		Deployer: rep,
		Store:    st, Apps: pc.Apps,
		Registry: promote.NewRegistry(rc),
		Kube:     kube, Resync: pc.Resync.Duration, IdempotencyTTL: pc.IdempotencyTTL.Duration,
		Dynamic: dyn,
		Logger:  tel.Logger, TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider,
	})
	if err != nil {
		return nil, err
	}
	pr.promoter = p
	ac := api.AuthConfig{PipelineToken: pc.APIToken, Auth: pc.Auth}
	if pc.Auth.Kubernetes.Enabled {
		// TokenReviews and SubjectAccessReviews go to ferry's own cluster
		// (the default context), whatever cluster an environment is in.
		if ac.Kube, err = pr.kube(""); err != nil {
			return nil, fmt.Errorf("promotion.auth.kubernetes: %w", err)
		}
	}
	auth, err := api.NewAuth(ac)
	if err != nil {
		return nil, err
	}
	pr.api = api.New(api.Config{Promoter: p, Auth: auth, Logger: tel.Logger})
	return pr, nil
}

// kube returns (and keeps) the client of a kubeconfig context.
func (p *promoter) kube(kubeContext string) (kubernetes.Interface, error) {
	return keep(&p.mu, p.clients, kubeContext, func() (kubernetes.Interface, error) { return newKube(p.source(kubeContext)) })
}

// dynamic returns (and keeps) the dynamic client of a kubeconfig context
// (Knative Services).
func (p *promoter) dynamic(kubeContext string) (dynamic.Interface, error) {
	return keep(&p.mu, p.dynamics, kubeContext, func() (dynamic.Interface, error) { return newDynamic(p.source(kubeContext)) })
}

func (p *promoter) source(kubeContext string) kubeSource {
	return kubeSource{Kubeconfig: p.cfg.Kubeconfig, Context: kubeContext, Setting: "promotion.kubeconfig", UserAgent: "ferry-promoter"}
}

// keep returns m[key], made by build the first time.
func keep[T any](mu *sync.Mutex, m map[string]T, key string, build func() (T, error)) (T, error) {
	mu.Lock()
	defer mu.Unlock()
	if c, ok := m[key]; ok {
		return c, nil
	}
	c, err := build()
	if err != nil {
		return c, err
	}
	m[key] = c
	return c, nil
}

// fencedKube returns (and keeps) the runner's client of a kubeconfig
// context: its writes are sent only inside the Lease's window.
func (p *promoter) fencedKube(kubeContext string) (kubernetes.Interface, error) {
	return keep(&p.mu, p.fenced, kubeContext, func() (kubernetes.Interface, error) { return newKube(p.fencedSource(kubeContext)) })
}

// fencedDynamic is fencedKube's dynamic client (Knative Services).
func (p *promoter) fencedDynamic(kubeContext string) (dynamic.Interface, error) {
	return keep(&p.mu, p.fencedDynamics, kubeContext, func() (dynamic.Interface, error) { return newDynamic(p.fencedSource(kubeContext)) })
}

func (p *promoter) fencedSource(kubeContext string) kubeSource {
	s := p.source(kubeContext)
	s.Window = p.lead.window
	return s
}

// run runs promotions until ctx ends: directly, or whenever this replica
// holds the Lease.
func (p *promoter) run(ctx context.Context) error {
	if p.lead == nil {
		return p.promoter.Run(ctx)
	}
	p.lead.run(ctx, p.promoter.Run)
	return nil
}
