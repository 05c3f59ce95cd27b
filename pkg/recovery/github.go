package recovery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-github/v60/github"
)

// GitHubConfig says how to reach GitHub and which hook to watch.
type GitHubConfig struct {
	// Token needs admin:repo_hook (repository hooks) or admin:org_hook
	// (organization hooks), or a fine-grained token's "Webhooks"
	// permission (read and write: redelivering is a write).
	Token string
	// BaseURL is GitHub Enterprise Server's API root; empty: github.com.
	BaseURL string
	// Repo ("owner/name") or Org names the hook's owner.
	Repo, Org string
	// ID is the hook's id; 0: found by HookURL.
	ID int64
	// HookURL is ferry's GitHub webhook URL (publicURL + /hooks/github); a
	// hook without ID is the one whose config.url is it.
	HookURL    string
	HTTPClient *http.Client
}

// GitHubHook is a Source over GitHub's hook deliveries API:
// GET /repos/{owner}/{repo}/hooks/{id}/deliveries (or /orgs/{org}/…),
// cursor-paginated, newest first, and
// POST …/deliveries/{delivery_id}/attempts, answered 202.
type GitHubHook struct {
	cfg    GitHubConfig
	client *github.Client
	owner  string
	repo   string
}

// NewGitHubHook returns the Source of one repository or organization hook.
func NewGitHubHook(cfg GitHubConfig) (*GitHubHook, error) {
	if cfg.Token == "" {
		return nil, errors.New("github hook recovery: no token")
	}
	if (cfg.Repo == "") == (cfg.Org == "") {
		return nil, errors.New("github hook recovery: set Repo or Org")
	}
	client := github.NewClient(cfg.HTTPClient).WithAuthToken(cfg.Token)
	client.UserAgent = "ferry"
	if cfg.BaseURL != "" {
		var err error
		if client, err = client.WithEnterpriseURLs(cfg.BaseURL, cfg.BaseURL); err != nil {
			return nil, fmt.Errorf("github hook recovery: base URL: %w", err)
		}
	}
	h := &GitHubHook{cfg: cfg, client: client}
	if cfg.Repo != "" {
		var ok bool
		if h.owner, h.repo, ok = strings.Cut(cfg.Repo, "/"); !ok {
			return nil, fmt.Errorf("github hook recovery: repo %q is not owner/name", cfg.Repo)
		}
	}
	return h, nil
}

// Key implements Source.
func (h *GitHubHook) Key() string {
	who := h.cfg.Repo
	if who == "" {
		who = "org/" + h.cfg.Org
	}
	return fmt.Sprintf("github:%s:%d", who, h.cfg.ID)
}

// resolve finds the hook's id by its URL when none was configured.
func (h *GitHubHook) resolve(ctx context.Context) error {
	if h.cfg.ID != 0 {
		return nil
	}
	opts := &github.ListOptions{PerPage: 100}
	for page := 0; page < 10; page++ {
		var hooks []*github.Hook
		var resp *github.Response
		var err error
		if h.cfg.Org != "" {
			hooks, resp, err = h.client.Organizations.ListHooks(ctx, h.cfg.Org, opts)
		} else {
			hooks, resp, err = h.client.Repositories.ListHooks(ctx, h.owner, h.repo, opts)
		}
		if err != nil {
			return fmt.Errorf("list hooks to find the one delivering to %s: %w", h.cfg.HookURL, gitHubErr(err))
		}
		for _, hk := range hooks {
			if u := hk.GetConfig().GetURL(); strings.TrimSuffix(u, "/") == strings.TrimSuffix(h.cfg.HookURL, "/") {
				h.cfg.ID = hk.GetID()
				return nil
			}
		}
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	return fmt.Errorf("no hook of %s delivers to %s: add one, or set its id in deliveries.recovery.github", h.Key(), h.cfg.HookURL)
}

// List implements Source.
func (h *GitHubHook) List(ctx context.Context, since time.Time, maxPages int) ([]Attempt, error) {
	if err := h.resolve(ctx); err != nil {
		return nil, err
	}
	var out []Attempt
	opts := &github.ListCursorOptions{PerPage: 100}
	for page := 0; page < maxPages; page++ {
		var ds []*github.HookDelivery
		var resp *github.Response
		var err error
		if h.cfg.Org != "" {
			ds, resp, err = h.client.Organizations.ListHookDeliveries(ctx, h.cfg.Org, h.cfg.ID, opts)
		} else {
			ds, resp, err = h.client.Repositories.ListHookDeliveries(ctx, h.owner, h.repo, h.cfg.ID, opts)
		}
		if err != nil {
			return out, gitHubErr(err)
		}
		older := false
		for _, d := range ds {
			a := Attempt{ID: d.GetID(), GUID: d.GetGUID(), At: d.GetDeliveredAt().Time, Code: d.GetStatusCode(), Event: d.GetEvent()}
			if a.At.Before(since) {
				older = true
			}
			out = append(out, a)
		}
		if older || resp.Cursor == "" {
			break
		}
		opts.Cursor = resp.Cursor
	}
	return out, nil
}

// Redeliver implements Source.
func (h *GitHubHook) Redeliver(ctx context.Context, a Attempt) error {
	var err error
	if h.cfg.Org != "" {
		_, _, err = h.client.Organizations.RedeliverHookDelivery(ctx, h.cfg.Org, h.cfg.ID, a.ID)
	} else {
		_, _, err = h.client.Repositories.RedeliverHookDelivery(ctx, h.owner, h.repo, h.cfg.ID, a.ID)
	}
	var accepted *github.AcceptedError
	if err == nil || errors.As(err, &accepted) {
		return nil // 202: the redelivery is scheduled
	}
	return gitHubErr(err)
}

// gitHubErr marks rate limits and says what a refused token needs.
func gitHubErr(err error) error {
	var rl *github.RateLimitError
	var abuse *github.AbuseRateLimitError
	var resp *github.ErrorResponse
	switch {
	case errors.As(err, &rl), errors.As(err, &abuse):
		return fmt.Errorf("%w: %w", ErrRateLimited, err)
	case errors.As(err, &resp) && resp.Response != nil:
		switch resp.Response.StatusCode {
		case http.StatusUnauthorized:
			return fmt.Errorf("github.token was refused (401): %w", err)
		case http.StatusNotFound, http.StatusForbidden:
			return fmt.Errorf("no such hook, or github.token lacks admin:repo_hook / admin:org_hook or the Webhooks permission (%d): %w", resp.Response.StatusCode, err)
		case http.StatusTooManyRequests:
			return fmt.Errorf("%w: %w", ErrRateLimited, err)
		}
	}
	return err
}
