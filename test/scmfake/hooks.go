package scmfake

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// GitHub repository and organization webhooks, as far as ferry's recovery
// uses them:
//
//	GET  /repos/{owner}/{repo}/hooks                                  list hooks
//	GET  /orgs/{org}/hooks
//	GET  /repos/{owner}/{repo}/hooks/{id}/deliveries[?per_page&cursor] newest first, Link rel="next" with cursor=
//	GET  /orgs/{org}/hooks/{id}/deliveries
//	POST /repos/{owner}/{repo}/hooks/{id}/deliveries/{delivery_id}/attempts   202, delivered again in the background
//	POST /orgs/{org}/hooks/{id}/deliveries/{delivery_id}/attempts
//
// A hook also delivers: Deliver sends a signed event to its URL the way
// GitHub's hookshot does and records the attempt with GitHub's status
// values ("OK", "Invalid HTTP Response: 503", "timed out", "failed to
// connect to host"). Every call needs the token (401 "Requires
// authentication" without one, "Bad credentials" with a wrong one); an
// unknown repository, organization, hook or delivery is a 404; rate
// limits come from FailNext / SecondaryRateLimitNext as for every call.

const (
	ghDocsHooks      = "https://docs.github.com/rest/repos/webhooks"
	ghDocsDeliveries = "https://docs.github.com/rest/repos/webhooks#list-deliveries-for-a-repository-webhook"
	ghDeliveryPage   = 30  // GitHub's default per_page
	ghMaxPage        = 100 // and its maximum
)

// Hook is a webhook registered on the fake.
type Hook struct {
	ID int64
	// Repo ("owner/name") or Org owns the hook.
	Repo, Org string
	URL       string
	Secret    string
}

// HookDelivery is one delivery attempt of a hook, as GitHub lists it.
type HookDelivery struct {
	ID          int64
	GUID        string
	DeliveredAt time.Time
	Redelivery  bool
	Duration    float64
	Status      string
	StatusCode  int
	Event       string
	Action      string
	HookID      int64
	payload     []byte
}

type hookBook struct {
	mu         sync.Mutex
	next       int64
	hooks      map[int64]*Hook
	deliveries []*HookDelivery // oldest first
	inflight   sync.WaitGroup
	client     *http.Client
}

func isHookPath(parts []string) bool {
	return (len(parts) >= 4 && parts[0] == "repos" && parts[3] == "hooks") ||
		(len(parts) >= 3 && parts[0] == "orgs" && parts[2] == "hooks")
}

// AddHook registers a hook of a repository ("owner/name", which becomes
// known) or, with org set instead, of an organization, delivering to url
// signed with secret. It returns the hook's id.
func (g *GitHub) AddHook(repo, org, hookURL, secret string) int64 {
	if repo != "" {
		g.AddRepo(repo)
	}
	b := &g.hooks
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.hooks == nil {
		b.hooks = map[int64]*Hook{}
		b.next = 5000000
		b.client = &http.Client{Timeout: 10 * time.Second} // GitHub gives a receiver 10 s
	}
	b.next++
	b.hooks[b.next] = &Hook{ID: b.next, Repo: repo, Org: org, URL: hookURL, Secret: secret}
	return b.next
}

// SetHookURL points a hook elsewhere.
func (g *GitHub) SetHookURL(id int64, hookURL string) {
	g.hooks.mu.Lock()
	defer g.hooks.mu.Unlock()
	if h := g.hooks.hooks[id]; h != nil {
		h.URL = hookURL
	}
}

// Deliver sends an event to the hook's URL now, as GitHub does for a new
// event (a new GUID), and returns the recorded attempt.
func (g *GitHub) Deliver(hookID int64, event string, payload []byte) (HookDelivery, error) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	guid := fmt.Sprintf("%s-%s-%s-%s-%s", h[:8], h[8:12], h[12:16], h[16:20], h[20:])
	return g.deliver(hookID, guid, event, payload, false)
}

// HookDeliveries returns a hook's attempts, oldest first.
func (g *GitHub) HookDeliveries(hookID int64) []HookDelivery {
	g.hooks.mu.Lock()
	defer g.hooks.mu.Unlock()
	var out []HookDelivery
	for _, d := range g.hooks.deliveries {
		if d.HookID == hookID {
			out = append(out, *d)
		}
	}
	return out
}

// WaitRedeliveries waits until the redeliveries asked for so far were made.
func (g *GitHub) WaitRedeliveries() { g.hooks.inflight.Wait() }

func (g *GitHub) deliver(hookID int64, guid, event string, payload []byte, redelivery bool) (HookDelivery, error) {
	b := &g.hooks
	b.mu.Lock()
	h := b.hooks[hookID]
	client := b.client
	b.mu.Unlock()
	if h == nil {
		return HookDelivery{}, fmt.Errorf("no hook %d", hookID)
	}
	d := &HookDelivery{GUID: guid, Redelivery: redelivery, Event: event, HookID: hookID, payload: payload}
	var probe struct {
		Action string `json:"action"`
	}
	_ = json.Unmarshal(payload, &probe)
	d.Action = probe.Action
	req, err := http.NewRequest(http.MethodPost, h.URL, bytes.NewReader(payload))
	if err != nil {
		return HookDelivery{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/scmfake")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", guid)
	req.Header.Set("X-GitHub-Hook-ID", strconv.FormatInt(hookID, 10))
	if h.Secret != "" {
		m := hmac.New(sha256.New, []byte(h.Secret))
		m.Write(payload)
		req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(m.Sum(nil)))
	}
	start := time.Now()
	resp, err := client.Do(req)
	d.DeliveredAt = start.UTC().Truncate(time.Second)
	d.Duration = time.Since(start).Seconds()
	var nerr net.Error
	switch {
	case err != nil && errors.As(err, &nerr) && nerr.Timeout():
		d.Status = "timed out"
	case err != nil:
		d.Status = "failed to connect to host"
	default:
		resp.Body.Close()
		d.StatusCode = resp.StatusCode
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			d.Status = "OK"
		} else {
			d.Status = fmt.Sprintf("Invalid HTTP Response: %d", resp.StatusCode)
		}
	}
	b.mu.Lock()
	d.ID = int64(len(b.deliveries)) + 90000000001
	b.deliveries = append(b.deliveries, d)
	b.mu.Unlock()
	return *d, nil
}

func (g *GitHub) handleHooks(w http.ResponseWriter, r *http.Request, call *Call, parts []string) int {
	notFound := func() int {
		return ghWrite(w, http.StatusNotFound, ghError{Message: "Not Found", DocumentationURL: ghDocsHooks, Status: "404"})
	}
	if !call.Authorized {
		return ghWrite(w, http.StatusUnauthorized, ghError{Message: "Requires authentication", DocumentationURL: ghDocsHooks, Status: "401"})
	}
	var repo, org string
	var rest []string
	if parts[0] == "repos" {
		repo, rest = parts[1]+"/"+parts[2], parts[4:]
		if !g.knows(repo) {
			return notFound()
		}
	} else {
		org, rest = parts[1], parts[3:]
	}
	hooks := g.hooksOf(repo, org)
	if org != "" && len(hooks) == 0 {
		return notFound() // an organization the token cannot see
	}
	if len(rest) == 0 {
		if r.Method != http.MethodGet {
			return notFound()
		}
		out := make([]map[string]any, 0, len(hooks))
		for _, h := range hooks {
			out = append(out, g.hookJSON(r, h))
		}
		return ghWrite(w, http.StatusOK, out)
	}
	id, err := strconv.ParseInt(rest[0], 10, 64)
	var hook *Hook
	for _, h := range hooks {
		if h.ID == id {
			hook = h
		}
	}
	if err != nil || hook == nil || len(rest) < 2 || rest[1] != "deliveries" {
		return notFound()
	}
	switch {
	case len(rest) == 2 && r.Method == http.MethodGet:
		return g.listDeliveries(w, r, hook)
	case len(rest) == 4 && rest[3] == "attempts" && r.Method == http.MethodPost:
		did, err := strconv.ParseInt(rest[2], 10, 64)
		d := g.findDelivery(hook.ID, did)
		if err != nil || d == nil {
			return notFound()
		}
		g.hooks.inflight.Add(1)
		go func() {
			defer g.hooks.inflight.Done()
			_, _ = g.deliver(hook.ID, d.GUID, d.Event, d.payload, true)
		}()
		return ghWrite(w, http.StatusAccepted, map[string]any{})
	}
	return notFound()
}

func (g *GitHub) hooksOf(repo, org string) []*Hook {
	g.hooks.mu.Lock()
	defer g.hooks.mu.Unlock()
	var out []*Hook
	for _, h := range g.hooks.hooks {
		if (repo != "" && strings.EqualFold(h.Repo, repo)) || (org != "" && strings.EqualFold(h.Org, org)) {
			out = append(out, h)
		}
	}
	slices.SortFunc(out, func(a, b *Hook) int { return int(a.ID - b.ID) })
	return out
}

func (g *GitHub) findDelivery(hookID, id int64) *HookDelivery {
	g.hooks.mu.Lock()
	defer g.hooks.mu.Unlock()
	for _, d := range g.hooks.deliveries {
		if d.HookID == hookID && d.ID == id {
			return d
		}
	}
	return nil
}

func (g *GitHub) hookJSON(r *http.Request, h *Hook) map[string]any {
	typ, self := "Repository", fmt.Sprintf("%s/repos/%s/hooks/%d", g.apiRoot(r), h.Repo, h.ID)
	if h.Org != "" {
		typ, self = "Organization", fmt.Sprintf("%s/orgs/%s/hooks/%d", g.apiRoot(r), h.Org, h.ID)
	}
	cfg := map[string]any{"content_type": "json", "insecure_ssl": "0", "url": h.URL}
	if h.Secret != "" {
		cfg["secret"] = "********"
	}
	return map[string]any{
		"type": typ, "id": h.ID, "name": "web", "active": true, "events": []string{"push", "pull_request"},
		"config": cfg, "updated_at": "2026-01-02T03:04:05Z", "created_at": "2026-01-02T03:04:05Z",
		"url": self, "ping_url": self + "/pings", "deliveries_url": self + "/deliveries",
		"last_response": map[string]any{"code": nil, "status": "unused", "message": nil},
	}
}

// listDeliveries pages newest first; the cursor names the last delivery
// of the previous page, opaque to clients as GitHub's is.
func (g *GitHub) listDeliveries(w http.ResponseWriter, r *http.Request, h *Hook) int {
	q := r.URL.Query()
	per := ghDeliveryPage
	if v := q.Get("per_page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return ghWrite(w, http.StatusUnprocessableEntity, ghError{Message: "Invalid per_page", DocumentationURL: ghDocsDeliveries, Status: "422"})
		}
		per = min(n, ghMaxPage)
	}
	all := g.HookDeliveries(h.ID)
	slices.Reverse(all)
	start := 0
	if c := q.Get("cursor"); c != "" {
		after, err := strconv.ParseInt(strings.TrimPrefix(c, "v1_"), 10, 64)
		if err != nil || !strings.HasPrefix(c, "v1_") {
			return ghWrite(w, http.StatusBadRequest, ghError{Message: "Invalid cursor", DocumentationURL: ghDocsDeliveries, Status: "400"})
		}
		start = len(all)
		for i, d := range all {
			if d.ID < after {
				start = i
				break
			}
		}
	}
	end := min(start+per, len(all))
	page := all[start:end]
	if end < len(all) {
		next := *r.URL
		nq := next.Query()
		nq.Set("per_page", strconv.Itoa(per))
		nq.Set("cursor", "v1_"+strconv.FormatInt(page[len(page)-1].ID, 10))
		next.RawQuery = nq.Encode()
		w.Header().Set("Link", fmt.Sprintf(`<%s%s>; rel="next"`, g.URL(), (&url.URL{Path: next.Path, RawQuery: next.RawQuery}).String()))
	}
	out := make([]map[string]any, 0, len(page))
	for _, d := range page {
		out = append(out, map[string]any{
			"id": d.ID, "guid": d.GUID, "delivered_at": d.DeliveredAt.Format(time.RFC3339), "redelivery": d.Redelivery,
			"duration": d.Duration, "status": d.Status, "status_code": d.StatusCode, "event": d.Event,
			"action": nullable(d.Action), "installation_id": nil, "repository_id": nil, "throttled_at": nil,
		})
	}
	return ghWrite(w, http.StatusOK, out)
}
