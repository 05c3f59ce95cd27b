package app

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/recovery"
	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/pkg/telemetry"
)

// recoverer is missed-delivery recovery with what it needs to run: when
// enabled, the Lease that makes one replica recover.
type recoverer struct {
	cfg       config.Recovery
	recoverer *recovery.Recoverer
	identity  string
	log       *slog.Logger
}

func newRecoverer(cfg config.Config, st store.Store, tel *telemetry.Telemetry, identity string) (*recoverer, error) {
	rc := cfg.Deliveries.Recovery
	base := strings.TrimSuffix(rc.PublicURL, "/")
	var sources []recovery.Source
	for _, h := range rc.GitHub {
		src, err := recovery.NewGitHubHook(recovery.GitHubConfig{
			Token: cfg.GitHub.Token, BaseURL: cfg.GitHub.APIURL, Repo: h.Repo, Org: h.Org, ID: h.ID,
			HookURL: base + "/hooks/github",
		})
		if err != nil {
			return nil, fmt.Errorf("deliveries.recovery.github: %w", err)
		}
		sources = append(sources, src)
	}
	for _, h := range rc.GitLab {
		src, err := recovery.NewGitLabHook(recovery.GitLabConfig{
			Token: cfg.GitLab.Token, BaseURL: cfg.GitLab.BaseURL, Project: h.Project, ID: h.ID,
			HookURL: base + "/hooks/gitlab",
		})
		if err != nil {
			return nil, fmt.Errorf("deliveries.recovery.gitlab: %w", err)
		}
		sources = append(sources, src)
	}
	r, err := recovery.New(recovery.Config{
		Sources: sources, Marks: st, Interval: rc.Interval.Duration, Lookback: rc.Lookback.Duration,
		MaxPages: rc.MaxPages, MaxRedeliveries: rc.MaxRedeliveries, Logger: tel.Logger,
	})
	if err != nil {
		return nil, err
	}
	return &recoverer{cfg: rc, recoverer: r, identity: identity, log: tel.Logger.With("component", "app")}, nil
}

// run runs recovery until ctx ends: directly, or whenever this replica
// holds the Lease.
func (r *recoverer) run(ctx context.Context) error {
	le := r.cfg.LeaderElection
	if !le.Enabled {
		return r.recoverer.Run(ctx)
	}
	kube, err := newKube(kubeSource{Kubeconfig: r.cfg.Kubeconfig, Setting: "deliveries.recovery.kubeconfig", UserAgent: "ferry-recovery"})
	if err != nil {
		return err
	}
	newLeader(kube, r.cfg.LeaseNamespace, r.identity, "recovery", le, r.log).run(ctx, r.recoverer.Run)
	return nil
}
