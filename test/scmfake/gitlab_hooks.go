package scmfake

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"
)

// GitLab project hooks, as far as ferry's recovery uses them (GitLab 17.4):
//
//	GET  /api/v4/projects/:id/hooks                                     list hooks (page, per_page, X-Next-Page)
//	GET  /api/v4/projects/:id/hooks/:hook_id/events                     hook events, newest first (page, per_page ≤ 100)
//	POST /api/v4/projects/:id/hooks/:hook_id/events/:hook_event_id/resend   201 {"response_status": N}
//
// DeliverGitLab sends a hook event to the hook's URL as GitLab does (X-Gitlab-Event,
// X-Gitlab-Token, Idempotency-Key kept across resends, X-Gitlab-Event-UUID)
// and logs it with GitLab's response_status ("200", "503", or "internal
// error" when nothing answered). A resend delivers at once and is limited,
// as on GitLab, to five a minute per hook (429 beyond). Every call needs the
// token (401); an unknown project or hook is a 404.

// glResendLimit is GitLab's resend rate limit per hook and user, a minute.
const glResendLimit = 5

// GitLabHook is a project hook registered on the fake.
type GitLabHook struct {
	ID        int64
	ProjectID int64
	URL       string
	Token     string
}

// GitLabHookEvent is one logged delivery of a hook.
type GitLabHookEvent struct {
	ID             int64
	HookID         int64
	Trigger        string
	Event          string
	IdempotencyKey string
	ResponseStatus string
	At             time.Time
	payload        []byte
}

type glHookBook struct {
	mu      sync.Mutex
	next    int64
	nextEv  int64
	hooks   map[int64]*GitLabHook
	events  []*GitLabHookEvent
	resends map[int64][]time.Time // hook → resend times
	// limitOff lifts the five-a-minute limit, as the feature flag
	// web_hook_event_resend_api_endpoint_rate_limit does.
	limitOff bool
}

// AddHook registers a project hook delivering to url with token; the
// project must be known. It returns the hook's id.
func (g *GitLab) AddHook(projectID int64, hookURL, token string) int64 {
	b := &g.hooks
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.hooks == nil {
		b.hooks, b.resends, b.next = map[int64]*GitLabHook{}, map[int64][]time.Time{}, 700
	}
	b.next++
	b.hooks[b.next] = &GitLabHook{ID: b.next, ProjectID: projectID, URL: hookURL, Token: token}
	return b.next
}

// SetResendLimit turns GitLab's five-resends-a-minute limit on or off.
func (g *GitLab) SetResendLimit(on bool) {
	g.hooks.mu.Lock()
	defer g.hooks.mu.Unlock()
	g.hooks.limitOff = !on
}

// Deliver sends a hook event (X-Gitlab-Event event, e.g. "Push Hook") with a
// new Idempotency-Key and returns the logged event.
func (g *GitLab) Deliver(hookID int64, event string, payload []byte) (GitLabHookEvent, error) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return g.deliverEvent(hookID, hex.EncodeToString(b[:]), event, payload)
}

// HookEvents returns a hook's logged events, oldest first.
func (g *GitLab) HookEvents(hookID int64) []GitLabHookEvent {
	g.hooks.mu.Lock()
	defer g.hooks.mu.Unlock()
	var out []GitLabHookEvent
	for _, e := range g.hooks.events {
		if e.HookID == hookID {
			out = append(out, *e)
		}
	}
	return out
}

func (g *GitLab) deliverEvent(hookID int64, key, event string, payload []byte) (GitLabHookEvent, error) {
	b := &g.hooks
	b.mu.Lock()
	h := b.hooks[hookID]
	b.mu.Unlock()
	if h == nil {
		return GitLabHookEvent{}, fmt.Errorf("no hook %d", hookID)
	}
	req, err := http.NewRequest(http.MethodPost, h.URL, bytes.NewReader(payload))
	if err != nil {
		return GitLabHookEvent{}, err
	}
	var u [16]byte
	_, _ = rand.Read(u[:])
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitLab/17.4.0")
	req.Header.Set("X-Gitlab-Event", event)
	req.Header.Set("X-Gitlab-Token", h.Token)
	req.Header.Set("Idempotency-Key", key)
	req.Header.Set("X-Gitlab-Event-UUID", hex.EncodeToString(u[:]))
	req.Header.Set("X-Gitlab-Webhook-UUID", hex.EncodeToString(u[:]))
	e := &GitLabHookEvent{HookID: hookID, Trigger: "push_hooks", Event: event, IdempotencyKey: key, At: time.Now().UTC(), payload: payload}
	if event == "Merge Request Hook" {
		e.Trigger = "merge_request_hooks"
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		e.ResponseStatus = "internal error"
	} else {
		resp.Body.Close()
		e.ResponseStatus = strconv.Itoa(resp.StatusCode)
	}
	b.mu.Lock()
	b.nextEv++
	e.ID = b.nextEv
	b.events = append(b.events, e)
	b.mu.Unlock()
	return *e, nil
}

func (g *GitLab) handleHooks(w http.ResponseWriter, r *http.Request, call *Call, parts []string) int {
	notFound := func(what string) int {
		return glWrite(w, http.StatusNotFound, map[string]any{"message": "404 " + what + " Not Found"})
	}
	if !call.Authorized {
		return glWrite(w, http.StatusUnauthorized, map[string]any{"message": "401 Unauthorized"})
	}
	idOrPath, _ := url.PathUnescape(parts[0])
	g.mu.Lock()
	pid, _, ok := g.lookup(idOrPath)
	g.mu.Unlock()
	if !ok {
		return notFound("Project")
	}
	page, per, bad := glPage(r)
	if bad != "" {
		return glWrite(w, http.StatusBadRequest, map[string]any{"error": bad})
	}
	b := &g.hooks
	if len(parts) == 2 && r.Method == http.MethodGet {
		b.mu.Lock()
		var hooks []map[string]any
		for _, h := range b.hooks {
			if h.ProjectID == pid {
				hooks = append(hooks, map[string]any{"id": h.ID, "url": h.URL, "project_id": pid, "push_events": true,
					"merge_requests_events": true, "enable_ssl_verification": true, "alert_status": "executable", "disabled_until": nil})
			}
		}
		b.mu.Unlock()
		slices.SortFunc(hooks, func(a, c map[string]any) int { return int(a["id"].(int64) - c["id"].(int64)) })
		return glPaged(w, hooks, page, per)
	}
	hookID, err := strconv.ParseInt(parts[2], 10, 64)
	b.mu.Lock()
	h := b.hooks[hookID]
	b.mu.Unlock()
	if err != nil || h == nil || h.ProjectID != pid || len(parts) < 4 || parts[3] != "events" {
		return notFound("")
	}
	switch {
	case len(parts) == 4 && r.Method == http.MethodGet:
		evs := g.HookEvents(hookID)
		slices.Reverse(evs)
		out := make([]map[string]any, 0, len(evs))
		for _, e := range evs {
			if time.Since(e.At) > 7*24*time.Hour {
				continue
			}
			out = append(out, map[string]any{
				"id": e.ID, "url": h.URL, "trigger": e.Trigger,
				"request_headers": map[string]string{"Content-Type": "application/json", "User-Agent": "GitLab/17.4.0",
					"Idempotency-Key": e.IdempotencyKey, "X-Gitlab-Event": e.Event, "X-Gitlab-Token": "[REDACTED]"},
				"request_data": map[string]any{}, "response_headers": map[string]string{}, "response_body": "",
				"execution_duration": 0.01, "response_status": e.ResponseStatus,
			})
		}
		return glPaged(w, out, page, per)
	case len(parts) == 6 && parts[5] == "resend" && r.Method == http.MethodPost:
		evID, err := strconv.ParseInt(parts[4], 10, 64)
		var ev *GitLabHookEvent
		for _, e := range g.HookEvents(hookID) {
			if e.ID == evID {
				ev = &e
			}
		}
		if err != nil || ev == nil {
			return notFound("")
		}
		b.mu.Lock()
		now := time.Now()
		recent := slices.DeleteFunc(b.resends[hookID], func(t time.Time) bool { return now.Sub(t) > time.Minute })
		if !b.limitOff && len(recent) >= glResendLimit {
			b.resends[hookID] = recent
			b.mu.Unlock()
			w.Header().Set("Retry-After", "60")
			return glWrite(w, http.StatusTooManyRequests, map[string]any{"message": map[string]string{"error": "This endpoint has been requested too many times. Try again later."}})
		}
		b.resends[hookID] = append(recent, now)
		b.mu.Unlock()
		sent, err := g.deliverEvent(hookID, ev.IdempotencyKey, ev.Event, ev.payload)
		if err != nil {
			return glWrite(w, http.StatusUnprocessableEntity, map[string]any{"message": err.Error()})
		}
		code, _ := strconv.Atoi(sent.ResponseStatus)
		return glWrite(w, http.StatusCreated, map[string]any{"response_status": code})
	}
	return notFound("")
}

// glPage reads GitLab's offset pagination parameters.
func glPage(r *http.Request) (page, per int, bad string) {
	page, per = 1, 20
	if v := r.URL.Query().Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return 0, 0, "page is invalid"
		}
		page = n
	}
	if v := r.URL.Query().Get("per_page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return 0, 0, "per_page is invalid"
		}
		per = min(n, 100)
	}
	return page, per, ""
}

// glPaged writes one page with GitLab's pagination headers.
func glPaged[T any](w http.ResponseWriter, all []T, page, per int) int {
	start := min((page-1)*per, len(all))
	end := min(start+per, len(all))
	h := w.Header()
	h.Set("X-Page", strconv.Itoa(page))
	h.Set("X-Per-Page", strconv.Itoa(per))
	h.Set("X-Total", strconv.Itoa(len(all)))
	h.Set("X-Total-Pages", strconv.Itoa(max(1, (len(all)+per-1)/per)))
	if end < len(all) {
		h.Set("X-Next-Page", strconv.Itoa(page+1))
	} else {
		h.Set("X-Next-Page", "")
	}
	if page > 1 {
		h.Set("X-Prev-Page", strconv.Itoa(page-1))
	}
	return glWrite(w, http.StatusOK, all[start:end])
}
