package recovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// GitLabConfig says how to reach GitLab and which project hook to watch.
type GitLabConfig struct {
	// Token needs the api scope, of a Maintainer of the project.
	Token string
	// BaseURL is the instance, e.g. https://gitlab.example.com; empty:
	// https://gitlab.com.
	BaseURL string
	// Project is the project's path or numeric id.
	Project string
	// ID is the hook's id; 0: found by HookURL.
	ID int64
	// HookURL is ferry's GitLab webhook URL (publicURL + /hooks/gitlab).
	HookURL    string
	HTTPClient *http.Client
}

// GitLabHook is a Source over GitLab's project hook events (GitLab 17.3
// lists them, 17.4 resends them and sends Idempotency-Key):
// GET /projects/:id/hooks/:hook_id/events (the last 7 days, page/per_page)
// and POST /projects/:id/hooks/:hook_id/events/:hook_event_id/resend,
// limited to five a minute per hook and user. An event without an
// Idempotency-Key (older GitLab) is left alone: ferry could not recognise
// its resend as the same delivery.
//
// Hook events carry no time: every listed event counts as recent, which is
// why recovery of GitLab hooks needs a dedup window of at least 7 days.
type GitLabHook struct {
	cfg  GitLabConfig
	api  string
	http *http.Client
}

// NewGitLabHook returns the Source of one project hook.
func NewGitLabHook(cfg GitLabConfig) (*GitLabHook, error) {
	if cfg.Token == "" {
		return nil, errors.New("gitlab hook recovery: no token")
	}
	if cfg.Project == "" {
		return nil, errors.New("gitlab hook recovery: no project")
	}
	base := cfg.BaseURL
	if base == "" {
		base = "https://gitlab.com"
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &GitLabHook{cfg: cfg, http: hc,
		api: strings.TrimSuffix(base, "/") + "/api/v4/projects/" + url.PathEscape(cfg.Project) + "/hooks"}, nil
}

// Key implements Source.
func (h *GitLabHook) Key() string { return fmt.Sprintf("gitlab:%s:%d", h.cfg.Project, h.cfg.ID) }

func (h *GitLabHook) do(ctx context.Context, method, u string, out any) (http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("PRIVATE-TOKEN", h.cfg.Token)
	req.Header.Set("User-Agent", "ferry")
	resp, err := h.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, redactPath(u), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, redactPath(u), err)
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return nil, fmt.Errorf("%w: GitLab answered 429 (resend allows five a minute per hook), Retry-After %s", ErrRateLimited, resp.Header.Get("Retry-After"))
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, fmt.Errorf("gitlab.token was refused (401) by %s", redactPath(u))
	case resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("%s answered %d: no such project or hook, GitLab older than 17.4, or gitlab.token is not a Maintainer's with api scope", redactPath(u), resp.StatusCode)
	case resp.StatusCode/100 != 2:
		return nil, fmt.Errorf("%s %s answered %d: %s", method, redactPath(u), resp.StatusCode, strings.TrimSpace(string(body[:min(len(body), 200)])))
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return nil, fmt.Errorf("%s %s: decode answer: %w", method, redactPath(u), err)
		}
	}
	return resp.Header, nil
}

func redactPath(u string) string {
	if p, err := url.Parse(u); err == nil {
		return p.Path
	}
	return "(url)"
}

func (h *GitLabHook) resolve(ctx context.Context) error {
	if h.cfg.ID != 0 {
		return nil
	}
	for page := 1; page <= 10; page++ {
		var hooks []struct {
			ID  int64  `json:"id"`
			URL string `json:"url"`
		}
		hdr, err := h.do(ctx, http.MethodGet, fmt.Sprintf("%s?per_page=100&page=%d", h.api, page), &hooks)
		if err != nil {
			return fmt.Errorf("list hooks to find the one delivering to %s: %w", h.cfg.HookURL, err)
		}
		for _, hk := range hooks {
			if strings.TrimSuffix(hk.URL, "/") == strings.TrimSuffix(h.cfg.HookURL, "/") {
				h.cfg.ID = hk.ID
				return nil
			}
		}
		if hdr.Get("X-Next-Page") == "" {
			break
		}
	}
	return fmt.Errorf("no hook of project %s delivers to %s: add one, or set its id in deliveries.recovery.gitlab", h.cfg.Project, h.cfg.HookURL)
}

// glEvent is a hook event as GitLab lists it (the fields read).
type glEvent struct {
	ID             int64             `json:"id"`
	Trigger        string            `json:"trigger"`
	RequestHeaders map[string]string `json:"request_headers"`
	ResponseStatus string            `json:"response_status"`
}

// List implements Source. GitLab keeps a week of events and gives them no
// time, so since is not used: At is the time of the listing.
func (h *GitLabHook) List(ctx context.Context, _ time.Time, maxPages int) ([]Attempt, error) {
	if err := h.resolve(ctx); err != nil {
		return nil, err
	}
	now := time.Now()
	var out []Attempt
	for page := 1; page <= maxPages; page++ {
		var evs []glEvent
		hdr, err := h.do(ctx, http.MethodGet, fmt.Sprintf("%s/%d/events?per_page=100&page=%d", h.api, h.cfg.ID, page), &evs)
		if err != nil {
			return out, err
		}
		for _, e := range evs {
			code, _ := strconv.Atoi(e.ResponseStatus) // "internal error": no answer, 0
			// One time for all: Decide then orders attempts by id.
			out = append(out, Attempt{ID: e.ID, GUID: e.RequestHeaders["Idempotency-Key"], Code: code,
				Event: e.RequestHeaders["X-Gitlab-Event"], At: now})
		}
		if hdr.Get("X-Next-Page") == "" {
			break
		}
	}
	return out, nil
}

// Redeliver implements Source.
func (h *GitLabHook) Redeliver(ctx context.Context, a Attempt) error {
	_, err := h.do(ctx, http.MethodPost, fmt.Sprintf("%s/%d/events/%d/resend", h.api, h.cfg.ID, a.ID), nil)
	return err
}
