package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Deliveries configures the delivery log (every webhook delivery's answer,
// read by GET /api/v1/deliveries and `ferry why`) and the recovery of
// deliveries the Git host failed to hand over.
type Deliveries struct {
	// Retention is how long delivery records and build trails are kept.
	Retention Duration `json:"retention"`
	// MaxRecords caps the delivery records kept, oldest dropped first.
	MaxRecords int `json:"maxRecords"`
	// APIToken is the bearer token of GET /api/v1/deliveries; better given
	// through FERRY_DELIVERIES_API_TOKEN or APITokenFile. Empty: the
	// promotion API's token; with neither, the API refuses every request.
	APIToken     string `json:"apiToken"`
	APITokenFile string `json:"apiTokenFile"`
	// Recovery redelivers what the Git host could not deliver.
	Recovery Recovery `json:"recovery"`
}

// Recovery configures missed-delivery recovery: one replica lists each
// hook's recent deliveries and redelivers those that never got a 2xx.
type Recovery struct {
	Enabled bool `json:"enabled"`
	// Interval is the time between passes; one runs at start-up.
	Interval Duration `json:"interval"`
	// Lookback is how far back deliveries are considered (GitHub keeps
	// them for 3 days; the receiver's dedup window must cover it).
	Lookback Duration `json:"lookback"`
	// MaxPages bounds the list pages read per hook and pass.
	MaxPages int `json:"maxPages"`
	// MaxRedeliveries bounds the redeliveries asked for per pass.
	MaxRedeliveries int `json:"maxRedeliveries"`
	// PublicURL is the URL the Git hosts deliver to (ferry's public root,
	// e.g. https://ferry.example.com); hooks whose URL starts with it are
	// found by listing the hooks of the repositories and organizations
	// below when no hook id is given.
	PublicURL string `json:"publicURL"`
	// GitHub and GitLab name the hooks to watch.
	GitHub []GitHubHook `json:"github"`
	GitLab []GitLabHook `json:"gitlab"`
	// Kubeconfig and LeaseNamespace locate the Lease of LeaderElection;
	// empty Kubeconfig: the in-cluster service account.
	Kubeconfig     string `json:"kubeconfig"`
	LeaseNamespace string `json:"leaseNamespace"`
	// LeaderElection makes one replica at a time run recovery. Without it
	// every replica runs it; redeliveries are still asked for once, since
	// each is marked in the store first.
	LeaderElection LeaderElection `json:"leaderElection"`
}

// GitHubHook is a repository hook (Repo) or an organization hook (Org).
type GitHubHook struct {
	Repo string `json:"repo"`
	Org  string `json:"org"`
	// ID is the hook's id; 0: found by recovery.publicURL.
	ID int64 `json:"id"`
}

// GitLabHook is a project hook.
type GitLabHook struct {
	// Project is the project's path (group/name) or numeric id.
	Project string `json:"project"`
	// ID is the hook's id; 0: found by recovery.publicURL.
	ID int64 `json:"id"`
}

func defaultDeliveries() Deliveries {
	return Deliveries{
		Retention:  Duration{Duration: 7 * 24 * time.Hour},
		MaxRecords: 100000,
		Recovery: Recovery{
			Interval:        Duration{Duration: 5 * time.Minute},
			Lookback:        Duration{Duration: 72 * time.Hour},
			MaxPages:        10,
			MaxRedeliveries: 100,
			LeaseNamespace:  "ferry",
			LeaderElection: LeaderElection{
				Enabled:       true,
				LeaseName:     "ferry-recovery",
				LeaseDuration: Duration{Duration: 15 * time.Second},
				RenewDeadline: Duration{Duration: 10 * time.Second},
				RetryPeriod:   Duration{Duration: 2 * time.Second},
			},
		},
	}
}

func (d Deliveries) validate(c Config) []error {
	var errs []error
	add := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("deliveries.%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if d.Retention.Duration < time.Hour {
		add("retention", "must be at least 1h (default 168h, 7 days)")
	}
	if d.MaxRecords < 100 || d.MaxRecords > 10000000 {
		add("maxRecords", "is %d, must be between 100 and 10000000 (default 100000; a record takes about 1 KiB)", d.MaxRecords)
	}
	if d.APIToken != "" && d.APITokenFile != "" {
		add("apiToken", "set apiToken or apiTokenFile, not both")
	}
	r := d.Recovery
	if !r.Enabled {
		return errs
	}
	if r.Interval.Duration < 30*time.Second {
		add("recovery.interval", "must be at least 30s (default 5m): each pass spends API requests")
	}
	if r.Lookback.Duration <= 0 || r.Lookback.Duration > c.Store.Redis.DedupTTL.Duration {
		add("recovery.lookback", "must be positive and at most store.redis.dedupTTL (%s): an older delivery could be built twice", c.Store.Redis.DedupTTL.Duration)
	}
	if r.MaxPages < 1 || r.MaxPages > 100 {
		add("recovery.maxPages", "must be between 1 and 100")
	}
	if r.MaxRedeliveries < 1 || r.MaxRedeliveries > 1000 {
		add("recovery.maxRedeliveries", "must be between 1 and 1000")
	}
	if len(r.GitHub)+len(r.GitLab) == 0 {
		add("recovery", "names no hook: list recovery.github (repo or org, with id or found by publicURL) or recovery.gitlab")
	}
	needURL := false
	for i, h := range r.GitHub {
		f := fmt.Sprintf("recovery.github[%d]", i)
		switch {
		case (h.Repo == "") == (h.Org == ""):
			add(f, "set repo (owner/name, a repository hook) or org (an organization hook), exactly one")
		case h.Repo != "" && strings.Count(h.Repo, "/") != 1:
			add(f+".repo", "%q must be owner/name", h.Repo)
		case h.Org != "" && strings.Contains(h.Org, "/"):
			add(f+".org", "%q must be an organization's login, without /", h.Org)
		}
		if h.ID < 0 {
			add(f+".id", "must be the hook's id, or 0 to find it by recovery.publicURL")
		}
		needURL = needURL || h.ID == 0
	}
	for i, h := range r.GitLab {
		f := fmt.Sprintf("recovery.gitlab[%d]", i)
		if h.Project == "" {
			add(f+".project", "must be the project's path (group/name) or numeric id")
		}
		if h.ID < 0 {
			add(f+".id", "must be the hook's id, or 0 to find it by recovery.publicURL")
		}
		needURL = needURL || h.ID == 0
	}
	if len(r.GitHub) > 0 && c.GitHub.Token == "" && c.GitHub.TokenFile == "" {
		add("recovery.github", "needs github.token (admin:repo_hook, admin:org_hook for org hooks, or the fine-grained Webhooks permission)")
	}
	if len(r.GitLab) > 0 && c.Store.Redis.DedupTTL.Duration < 169*time.Hour {
		add("recovery.gitlab", "needs store.redis.dedupTTL of at least 169h: GitLab lists a week of hook events without their times, and a resent event older than the dedup window could be built twice")
	}
	if len(r.GitLab) > 0 && c.GitLab.Token == "" && c.GitLab.TokenFile == "" {
		add("recovery.gitlab", "needs gitlab.token (api scope, Maintainer of the project)")
	}
	if r.PublicURL != "" {
		if u, err := url.Parse(r.PublicURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			add("recovery.publicURL", "%q must be an http(s) URL, e.g. https://ferry.example.com", redactURL(r.PublicURL))
		}
	} else if needURL {
		add("recovery.publicURL", "must be set when a hook has no id: hooks are found by their URL starting with it")
	}
	if le := r.LeaderElection; le.Enabled {
		if le.LeaseName == "" || r.LeaseNamespace == "" {
			add("recovery.leaderElection", "needs leaseName and recovery.leaseNamespace")
		}
		if le.RetryPeriod.Duration <= 0 || le.RenewDeadline.Duration <= le.RetryPeriod.Duration ||
			le.LeaseDuration.Duration <= le.RenewDeadline.Duration {
			add("recovery.leaderElection", "needs leaseDuration > renewDeadline > retryPeriod > 0 (defaults 15s, 10s, 2s)")
		}
	}
	return errs
}
