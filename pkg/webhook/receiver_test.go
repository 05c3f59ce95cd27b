package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/event"
	"github.com/ferryci/ferry/pkg/store"
)

// fakeStore records enqueued events and dedups like the real stores.
type fakeStore struct {
	mu     sync.Mutex
	seen   map[string]bool
	events []event.Event
	err    error
}

func (f *fakeStore) Enqueue(_ context.Context, key string, ev event.Event) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return false, f.err
	}
	if f.seen == nil {
		f.seen = map[string]bool{}
	}
	if f.seen[key] {
		return false, nil
	}
	f.seen[key] = true
	f.events = append(f.events, ev)
	return true, nil
}

func (f *fakeStore) stored() []event.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]event.Event(nil), f.events...)
}

const (
	ghSecret = "gh-secret-new"
	ghOld    = "gh-secret-old"
	glToken  = "gl-token"
)

func testConfig(t *testing.T) config.Config {
	t.Helper()
	c, err := config.Parse([]byte(`
jenkins: {url: "http://jenkins/"}
pipelines:
  - name: app
    repo: acme/app
    events: [push, tag, pull_request]
    job: app
  - name: infra
    repo: platform/infra/terraform
    events: [push, tag, pull_request]
    job: infra
`))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newServer(t *testing.T, st *fakeStore, max int64) http.Handler {
	t.Helper()
	r, err := New(Config{
		Store:         st,
		Matcher:       testConfig(t),
		GitHubSecrets: []string{ghSecret, ghOld},
		GitLabTokens:  []string{glToken},
		GitLabURL:     "https://gitlab.example.com",
		MaxBodyBytes:  max,
	})
	if err != nil {
		t.Fatal(err)
	}
	gin.SetMode(gin.TestMode)
	e := gin.New()
	r.Register(e)
	return e
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func githubReq(typ, delivery, secret string, body []byte) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/hooks/github", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", typ)
	req.Header.Set("X-GitHub-Delivery", delivery)
	if secret != "" {
		req.Header.Set("X-Hub-Signature-256", sign(secret, body))
	}
	return req
}

func gitlabReq(typ, key, token string, body []byte) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/hooks/gitlab", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Gitlab-Event", typ)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	req.Header.Set("X-Gitlab-Webhook-UUID", "uuid-"+key)
	if token != "" {
		req.Header.Set("X-Gitlab-Token", token)
	}
	return req
}

func do(h http.Handler, req *http.Request) (int, answer) {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	var a answer
	_ = json.Unmarshal(w.Body.Bytes(), &a)
	return w.Code, a
}

func TestGitHubEvents(t *testing.T) {
	tests := []struct {
		name, typ, file string
		wantCode        int
		wantStatus      string
		check           func(t *testing.T, ev event.Event)
	}{
		{"push", "push", "github_push.json", 202, "accepted", func(t *testing.T, ev event.Event) {
			want := event.Event{Provider: event.GitHub, Kind: event.Push, Repo: "acme/app", Ref: "refs/heads/main",
				SHA: strings.Repeat("a", 40), RepoURL: "https://github.com/acme/app.git", Sender: "octo-dev"}
			if ev.Provider != want.Provider || ev.Kind != want.Kind || ev.Repo != want.Repo || ev.Ref != want.Ref ||
				ev.SHA != want.SHA || ev.RepoURL != want.RepoURL || ev.Sender != want.Sender {
				t.Errorf("event = %+v\nwant %+v", ev, want)
			}
			if got := strings.Join(ev.ChangedPaths, ","); got != "src/retry/budget.go,src/retry/retry.go,go.mod,docs/retry.md" {
				t.Errorf("changed paths = %s", got)
			}
			if ev.ID != "gh-d-1" || ev.DeliveryID != "d-1" || ev.ReceivedAt.IsZero() {
				t.Errorf("id = %q delivery = %q received = %v", ev.ID, ev.DeliveryID, ev.ReceivedAt)
			}
		}},
		{"annotated tag push builds the commit, not the tag object", "push", "github_tag_push.json", 202, "accepted", func(t *testing.T, ev event.Event) {
			if ev.Kind != event.Tag || ev.Ref != "refs/tags/v1.2.0" || ev.SHA != strings.Repeat("a", 40) {
				t.Errorf("event = %+v", ev)
			}
		}},
		{"pull request from a fork", "pull_request", "github_pull_request_opened.json", 202, "accepted", func(t *testing.T, ev event.Event) {
			if ev.Kind != event.PullRequest || ev.Ref != "refs/pull/7/head" || ev.SHA != strings.Repeat("c", 40) ||
				ev.BaseRef != "main" || ev.Number != 7 || ev.Repo != "acme/app" || ev.RepoURL != "https://github.com/octo-dev/app.git" {
				t.Errorf("event = %+v", ev)
			}
		}},
		{"closed pull request", "pull_request", "github_pull_request_closed.json", 200, "ignored", nil},
		{"branch deletion", "push", "github_branch_delete.json", 200, "ignored", nil},
		{"create tag", "create", "github_create_tag.json", 200, "ignored", nil},
		{"ping", "ping", "github_ping.json", 200, "pong", nil},
		{"skip ci", "push", "github_push_skip_ci.json", 200, "skipped", nil},
		{"unbuilt event type", "issues", "github_ping.json", 200, "ignored", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := &fakeStore{}
			h := newServer(t, st, 0)
			code, a := do(h, githubReq(tt.typ, "d-1", ghSecret, fixture(t, tt.file)))
			if code != tt.wantCode || a.Status != tt.wantStatus {
				t.Fatalf("got %d %+v, want %d %s", code, a, tt.wantCode, tt.wantStatus)
			}
			evs := st.stored()
			if tt.wantCode != 202 {
				if len(evs) != 0 {
					t.Fatalf("stored %d events for a %s answer", len(evs), a.Status)
				}
				if a.Status != "pong" && a.Reason == "" {
					t.Errorf("a %s answer must give a reason", a.Status)
				}
				return
			}
			if len(evs) != 1 {
				t.Fatalf("stored %d events, want 1", len(evs))
			}
			tt.check(t, evs[0])
		})
	}
}

func TestGitLabEvents(t *testing.T) {
	tests := []struct {
		name, typ, file string
		wantCode        int
		wantStatus      string
		check           func(t *testing.T, ev event.Event)
	}{
		{"push", "Push Hook", "gitlab_push.json", 202, "accepted", func(t *testing.T, ev event.Event) {
			if ev.Provider != event.GitLab || ev.Kind != event.Push || ev.Repo != "platform/infra/terraform" ||
				ev.SHA != strings.Repeat("e", 40) || ev.ProjectID != 15 || ev.Message != "Add VPC module\n" ||
				ev.RepoURL != "https://gitlab.example.com/platform/infra/terraform.git" {
				t.Errorf("event = %+v", ev)
			}
			if ev.ID != "gl-k-1" {
				t.Errorf("id = %q, want one derived from Idempotency-Key", ev.ID)
			}
		}},
		{"annotated tag push uses checkout_sha", "Tag Push Hook", "gitlab_tag_push.json", 202, "accepted", func(t *testing.T, ev event.Event) {
			if ev.Kind != event.Tag || ev.SHA != strings.Repeat("e", 40) || ev.TagName() != "v0.3.0" {
				t.Errorf("event = %+v", ev)
			}
		}},
		{"merge request opened", "Merge Request Hook", "gitlab_merge_request_open.json", 202, "accepted", func(t *testing.T, ev event.Event) {
			if ev.Kind != event.PullRequest || ev.Ref != "refs/merge-requests/12/head" || ev.SHA != strings.Repeat("f", 40) || ev.BaseRef != "main" {
				t.Errorf("event = %+v", ev)
			}
		}},
		{"merge request update with commits", "Merge Request Hook", "gitlab_merge_request_update.json", 202, "accepted", func(*testing.T, event.Event) {}},
		{"merge request update without commits", "Merge Request Hook", "gitlab_merge_request_update_no_commits.json", 200, "ignored", nil},
		{"branch deletion", "Push Hook", "gitlab_branch_delete.json", 200, "ignored", nil},
		{"unbuilt event type", "Issue Hook", "gitlab_push.json", 200, "ignored", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := &fakeStore{}
			h := newServer(t, st, 0)
			code, a := do(h, gitlabReq(tt.typ, "k-1", glToken, fixture(t, tt.file)))
			if code != tt.wantCode || a.Status != tt.wantStatus {
				t.Fatalf("got %d %+v, want %d %s", code, a, tt.wantCode, tt.wantStatus)
			}
			evs := st.stored()
			if tt.wantCode != 202 {
				if len(evs) != 0 {
					t.Fatalf("stored %d events for a %s answer", len(evs), a.Status)
				}
				return
			}
			if len(evs) != 1 {
				t.Fatalf("stored %d events, want 1", len(evs))
			}
			tt.check(t, evs[0])
		})
	}
}

func TestVerification(t *testing.T) {
	push := fixture(t, "github_push.json")
	tampered := bytes.Replace(push, []byte(`"refs/heads/main"`), []byte(`"refs/heads/evil"`), 1)
	tests := []struct {
		name string
		req  *http.Request
		code int
	}{
		{"current secret", githubReq("push", "v1", ghSecret, push), 202},
		{"old secret during rotation", githubReq("push", "v2", ghOld, push), 202},
		{"wrong secret", githubReq("push", "v3", "nope", push), 401},
		{"no signature", githubReq("push", "v4", "", push), 401},
		{"tampered body", func() *http.Request {
			r := githubReq("push", "v5", ghSecret, tampered)
			r.Header.Set("X-Hub-Signature-256", sign(ghSecret, push))
			return r
		}(), 401},
		{"sha1 signature only", func() *http.Request {
			r := githubReq("push", "v6", "", push)
			r.Header.Set("X-Hub-Signature", "sha1=0000")
			return r
		}(), 401},
		{"gitlab right token", gitlabReq("Push Hook", "g1", glToken, fixture(t, "gitlab_push.json")), 202},
		{"gitlab wrong token", gitlabReq("Push Hook", "g2", "gl-tokex", fixture(t, "gitlab_push.json")), 401},
		{"gitlab no token", gitlabReq("Push Hook", "g3", "", fixture(t, "gitlab_push.json")), 401},
		// Garbage is never parsed before verification: a bad signature on
		// invalid JSON is 401, not 400.
		{"garbage with bad signature", githubReq("push", "v7", "nope", []byte("{not json")), 401},
		{"garbage with good signature", githubReq("push", "v8", ghSecret, []byte("{not json")), 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := &fakeStore{}
			code, a := do(newServer(t, st, 0), tt.req)
			if code != tt.code {
				t.Fatalf("code = %d (%+v), want %d", code, a, tt.code)
			}
			if code != 202 && len(st.stored()) != 0 {
				t.Errorf("a rejected delivery was stored")
			}
		})
	}
}

func TestFormEncodedGitHubPayload(t *testing.T) {
	st := &fakeStore{}
	body := []byte("payload=" + url.QueryEscape(string(fixture(t, "github_push.json"))))
	req := githubReq("push", "f1", ghSecret, body)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if code, a := do(newServer(t, st, 0), req); code != 202 {
		t.Fatalf("code = %d %+v", code, a)
	}
	if evs := st.stored(); len(evs) != 1 || evs[0].SHA != strings.Repeat("a", 40) {
		t.Fatalf("stored %+v", evs)
	}
}

func TestDuplicateDeliveries(t *testing.T) {
	st := &fakeStore{}
	h := newServer(t, st, 0)
	push := fixture(t, "github_push.json")
	if code, _ := do(h, githubReq("push", "dup-1", ghSecret, push)); code != 202 {
		t.Fatalf("first delivery: %d", code)
	}
	code, a := do(h, githubReq("push", "dup-1", ghSecret, push))
	if code != 200 || a.Status != "duplicate" {
		t.Fatalf("redelivery: %d %+v, want 200 duplicate", code, a)
	}
	// GitLab retries carry the same Idempotency-Key but a new webhook UUID.
	gl := fixture(t, "gitlab_push.json")
	r1 := gitlabReq("Push Hook", "idem-1", glToken, gl)
	r2 := gitlabReq("Push Hook", "idem-1", glToken, gl)
	r2.Header.Set("X-Gitlab-Webhook-UUID", "another-uuid")
	if code, _ := do(h, r1); code != 202 {
		t.Fatalf("gitlab first: %d", code)
	}
	if code, a := do(h, r2); code != 200 || a.Status != "duplicate" {
		t.Fatalf("gitlab retry: %d %+v", code, a)
	}
	// Without Idempotency-Key, the webhook UUID is the key.
	r3 := gitlabReq("Push Hook", "", glToken, gl)
	r3.Header.Set("X-Gitlab-Webhook-UUID", "u-77")
	if code, a := do(h, r3); code != 202 || a.ID != "gl-u-77" {
		t.Fatalf("gitlab without idempotency key: %d %+v", code, a)
	}
	if n := len(st.stored()); n != 3 {
		t.Fatalf("stored %d events, want 3", n)
	}
}

func TestBodyCap(t *testing.T) {
	st := &fakeStore{}
	h := newServer(t, st, 1024)
	big := append(fixture(t, "github_push.json"), bytes.Repeat([]byte(" "), 2048)...)
	code, a := do(h, githubReq("push", "big", ghSecret, big))
	if code != 413 || !strings.Contains(a.Error, "1024 bytes") {
		t.Fatalf("code = %d %+v, want 413 naming the cap", code, a)
	}
	// Without a Content-Length the cap still holds while reading.
	req := githubReq("push", "big2", ghSecret, big)
	req.ContentLength = -1
	if code, _ := do(h, req); code != 413 {
		t.Fatalf("chunked: code = %d, want 413", code)
	}
	if len(st.stored()) != 0 {
		t.Fatal("an oversized delivery was stored")
	}
}

func TestStoreUnavailableAnswers503(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code int
	}{
		{"unavailable", fmt.Errorf("enqueue: %w", store.ErrUnavailable), 503},
		{"deadline", context.DeadlineExceeded, 503},
		{"other", errors.New("boom"), 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &fakeStore{err: tt.err}
			w := httptest.NewRecorder()
			newServer(t, st, 0).ServeHTTP(w, githubReq("push", "x", ghSecret, fixture(t, "github_push.json")))
			if w.Code != tt.code {
				t.Fatalf("code = %d, want %d", w.Code, tt.code)
			}
			if tt.code != 503 {
				return
			}
			if w.Header().Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			// The store may have failed after the write: the sender must
			// not be told the event was refused, only that it should
			// redeliver, which dedup makes safe.
			var a answer
			if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"not known to be accepted", "redeliver", "duplicate is recognised"} {
				if !strings.Contains(a.Error, want) {
					t.Errorf("503 body %q does not say %q", a.Error, want)
				}
			}
			if strings.Contains(a.Error, "was not accepted") {
				t.Errorf("503 body %q claims the event was not accepted", a.Error)
			}
		})
	}
}

func TestUnmatchedRepoIsIgnoredWithReason(t *testing.T) {
	st := &fakeStore{}
	body := bytes.ReplaceAll(fixture(t, "github_push.json"), []byte("acme/app"), []byte("acme/other"))
	code, a := do(newServer(t, st, 0), githubReq("push", "u1", ghSecret, body))
	if code != 200 || a.Status != "ignored" || !strings.Contains(a.Reason, "acme/other") {
		t.Fatalf("got %d %+v", code, a)
	}
}

func TestUnconfiguredProvider(t *testing.T) {
	r, err := New(Config{Store: &fakeStore{}, Matcher: testConfig(t), GitHubSecrets: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	e := gin.New()
	r.Register(e)
	code, a := do(e, gitlabReq("Push Hook", "k", "t", []byte("{}")))
	if code != 404 || !strings.Contains(a.Error, "gitlab.webhookTokens") {
		t.Fatalf("got %d %+v", code, a)
	}
}

func TestEventIDs(t *testing.T) {
	if got := eventID(event.GitHub, "72d3162e-cc78-11e3-81ab-4c9367dc0958", nil); got != "gh-72d3162e-cc78-11e3-81ab-4c9367dc0958" {
		t.Errorf("github id = %s", got)
	}
	a := eventID(event.GitLab, "", []byte("body-a"))
	b := eventID(event.GitLab, "", []byte("body-b"))
	if a == b || !strings.HasPrefix(a, "gl-h") {
		t.Errorf("ids without delivery: %s %s", a, b)
	}
	if got := eventID(event.GitHub, "../../etc/passwd", nil); strings.Contains(got, "/") {
		t.Errorf("unsafe delivery id kept: %s", got)
	}
}

// observed captures a receiver's logs and request counts.
type observed struct {
	mu     sync.Mutex
	logs   bytes.Buffer
	reader *sdkmetric.ManualReader
}

func (o *observed) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.logs.Write(p)
}

func (o *observed) lines() []map[string]any {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(o.logs.Bytes()), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		m := map[string]any{}
		if err := json.Unmarshal(l, &m); err != nil {
			panic(err)
		}
		out = append(out, m)
	}
	return out
}

// requests returns ferry_webhook_requests by outcome.
func (o *observed) requests(t *testing.T) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := o.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "ferry_webhook_requests" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				v, _ := dp.Attributes.Value("outcome")
				out[v.AsString()] += dp.Value
			}
		}
	}
	return out
}

// newObservedServer is newServer with logs and metrics captured.
func newObservedServer(t *testing.T, st Enqueuer, tweak func(*Config)) (http.Handler, *observed) {
	t.Helper()
	o := &observed{reader: sdkmetric.NewManualReader()}
	cfg := Config{
		Store:         st,
		Matcher:       testConfig(t),
		GitHubSecrets: []string{ghSecret},
		GitLabTokens:  []string{glToken},
		GitLabURL:     "https://gitlab.example.com",
		Logger:        slog.New(slog.NewJSONHandler(o, &slog.HandlerOptions{Level: slog.LevelDebug})),
		MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(o.reader)),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	gin.SetMode(gin.TestMode)
	e := gin.New()
	r.Register(e)
	return e, o
}

// enqueueFunc adapts a function to Enqueuer.
type enqueueFunc func(ctx context.Context, key string, ev event.Event) (bool, error)

func (f enqueueFunc) Enqueue(ctx context.Context, key string, ev event.Event) (bool, error) {
	return f(ctx, key, ev)
}

// A sender that hangs up while the durable write is in flight must not
// turn a stored event into a logged loss: the write runs on its own
// bounded context, and what is logged and counted is what happened.
func TestSenderHangingUpDoesNotCancelTheWrite(t *testing.T) {
	reqCtx, hangUp := context.WithCancel(context.Background())
	defer hangUp()
	type seen struct {
		err         error
		hasDeadline bool
	}
	got := make(chan seen, 1)
	var stored []event.Event
	st := enqueueFunc(func(ctx context.Context, _ string, ev event.Event) (bool, error) {
		hangUp()
		<-reqCtx.Done()
		// Give a cancellation that would propagate time to do so.
		time.Sleep(10 * time.Millisecond)
		_, ok := ctx.Deadline()
		got <- seen{ctx.Err(), ok}
		// Like Redis: the write is done, but a client whose context
		// ended reports that instead of the answer.
		stored = append(stored, ev)
		if err := ctx.Err(); err != nil {
			return false, fmt.Errorf("enqueue: %w", err)
		}
		return true, nil
	})
	h, o := newObservedServer(t, st, func(c *Config) { c.StoreTimeout = time.Minute })
	req := githubReq("push", "gone-1", ghSecret, fixture(t, "github_push.json")).WithContext(reqCtx)
	code, a := do(h, req)
	s := <-got
	if s.err != nil {
		t.Errorf("the store's context ended with the sender's connection: %v", s.err)
	}
	if !s.hasDeadline {
		t.Error("the durable write has no deadline")
	}
	if code != 202 || a.Status != "accepted" || len(stored) != 1 {
		t.Errorf("answer = %d %+v, stored %d; want 202 accepted, 1 stored", code, a, len(stored))
	}
	if n := o.requests(t); n["accepted"] != 1 || len(n) != 1 {
		t.Errorf("requests by outcome = %v, want accepted: 1", n)
	}
	var accepted bool
	for _, l := range o.lines() {
		if l["level"] == "ERROR" {
			t.Errorf("error logged for a stored event: %v", l)
		}
		if l["msg"] == "webhook event accepted" && l["delivery"] == "gone-1" && l["sender_gone"] == true {
			accepted = true
		}
	}
	if !accepted {
		t.Errorf("no accepted log line naming the delivery and that the sender had gone: %v", o.lines())
	}
}

// Header values are the sender's to choose, signed or not: what is echoed
// in an answer or written to a log is capped and free of control
// characters.
func TestHeaderValuesAreCappedWhenEchoedOrLogged(t *testing.T) {
	huge := strings.Repeat("x", 100<<10)
	tests := []struct {
		name string
		req  func() *http.Request
		code int
	}{
		{"github event type", func() *http.Request {
			return githubReq("is\r\nsues"+huge, "d-1", ghSecret, fixture(t, "github_ping.json"))
		}, 200},
		{"gitlab event type", func() *http.Request {
			return gitlabReq("Issue\x1b[31m Hook"+huge, "k-1", glToken, fixture(t, "gitlab_push.json"))
		}, 200},
		{"github delivery id, unverified", func() *http.Request {
			return githubReq("push", "d\n"+huge, "wrong", fixture(t, "github_push.json"))
		}, 401},
		{"gitlab idempotency key, unverified", func() *http.Request {
			return gitlabReq("Push Hook", "k\n"+huge, "wrong", fixture(t, "gitlab_push.json"))
		}, 401},
		{"github delivery id, accepted", func() *http.Request {
			return githubReq("push", "d\n"+huge, ghSecret, fixture(t, "github_push.json"))
		}, 202},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := &fakeStore{}
			h, o := newObservedServer(t, st, nil)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, tt.req())
			if w.Code != tt.code {
				t.Fatalf("code = %d, want %d (%.300s)", w.Code, tt.code, w.Body)
			}
			for _, ev := range st.stored() {
				if len(ev.DeliveryID) > 256 || strings.Contains(ev.DeliveryID, "\n") {
					t.Errorf("stored delivery id of %d bytes: %.300q", len(ev.DeliveryID), ev.DeliveryID)
				}
			}
			if n := w.Body.Len(); n > 512 {
				t.Errorf("answer is %d bytes: %.300s…", n, w.Body)
			}
			var a answer
			if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil {
				t.Fatal(err)
			}
			if tt.code == 200 && !strings.Contains(a.Reason, "…(truncated)") {
				t.Errorf("reason %q does not say it was truncated", a.Reason)
			}
			if strings.ContainsAny(a.Reason+a.Error, "\r\n\x1b") {
				t.Errorf("control characters echoed: %q", a.Reason+a.Error)
			}
			o.mu.Lock()
			logs := o.logs.String()
			o.mu.Unlock()
			if len(logs) > 1024 {
				t.Errorf("logged %d bytes: %.300s…", len(logs), logs)
			}
			for _, l := range o.lines() {
				for k, v := range l {
					if s, ok := v.(string); ok && strings.ContainsAny(s, "\r\n\x1b") {
						t.Errorf("log field %s has control characters: %q", k, s)
					}
				}
			}
		})
	}
}

func TestPrintable(t *testing.T) {
	tests := []struct{ in, want string }{
		{"push", "push"},
		{"", ""},
		{"a\r\nb\x00c\x7fd\u0085e", "abcde"},
		{strings.Repeat("é", 100), strings.Repeat("é", 64) + "…(truncated)"},
		{strings.Repeat("x", 128), strings.Repeat("x", 128)},
		{strings.Repeat("x", 129), strings.Repeat("x", 128) + "…(truncated)"},
		{"bad\xffutf8", "bad\uFFFDutf8"},
	}
	for _, tt := range tests {
		if got := printable(tt.in); got != tt.want {
			t.Errorf("printable(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// "Why did my push not build?" must be answerable from the logs: every
// delivery that is not accepted writes one line naming its delivery id and
// why.
func TestEveryDeliveryIsLoggedWithItsDeliveryID(t *testing.T) {
	push := fixture(t, "github_push.json")
	unmatched := bytes.ReplaceAll(push, []byte("acme/app"), []byte("acme/other"))
	big := append(append([]byte(nil), push...), bytes.Repeat([]byte(" "), 64<<10)...)
	noSHA := bytes.Replace(push, []byte(`"after": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"`), []byte(`"after": ""`), 1)
	tests := []struct {
		name    string
		req     *http.Request
		code    int
		level   string
		msg     string
		mention string // what the line must say
	}{
		{"unbuilt event type", githubReq("issues", "L-1", ghSecret, fixture(t, "github_ping.json")), 200, "INFO", "webhook delivery ignored", `"issues" events are not built`},
		{"unmatched repository", githubReq("push", "L-2", ghSecret, unmatched), 200, "INFO", "webhook delivery ignored", "acme/other"},
		{"skip ci", githubReq("push", "L-3", ghSecret, fixture(t, "github_push_skip_ci.json")), 200, "INFO", "webhook delivery skipped", "skip CI"},
		{"branch deletion", gitlabReq("Push Hook", "L-4", glToken, fixture(t, "gitlab_branch_delete.json")), 200, "INFO", "webhook delivery ignored", "deleting refs/heads/old"},
		{"ping", githubReq("ping", "L-5", ghSecret, fixture(t, "github_ping.json")), 200, "INFO", "webhook ping answered", ""},
		{"oversized", githubReq("push", "L-6", ghSecret, big), 413, "WARN", "webhook body too large", "server.maxBodyBytes"},
		{"not JSON", githubReq("push", "L-7", ghSecret, []byte("{not json")), 400, "WARN", "webhook payload rejected", "not valid JSON"},
		{"incomplete event", githubReq("push", "L-8", ghSecret, noSHA), 400, "WARN", "webhook payload rejected", "sha"},
		{"unavailable store", githubReq("push", "L-9", ghSecret, push), 503, "ERROR", "could not store webhook event", "unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := &fakeStore{}
			if tt.code == 503 {
				st.err = store.ErrUnavailable
			}
			h, o := newObservedServer(t, st, func(c *Config) { c.MaxBodyBytes = 32 << 10 })
			code, a := do(h, tt.req)
			if code != tt.code {
				t.Fatalf("code = %d %+v, want %d", code, a, tt.code)
			}
			lines := o.lines()
			if len(lines) != 1 {
				t.Fatalf("%d log lines, want 1: %v", len(lines), lines)
			}
			l := lines[0]
			if l["level"] != tt.level || l["msg"] != tt.msg || l["delivery"] != tt.req.Header.Get("X-GitHub-Delivery")+tt.req.Header.Get("Idempotency-Key") {
				t.Errorf("log line = %v, want %s %q with the delivery id", l, tt.level, tt.msg)
			}
			if !strings.Contains(fmt.Sprint(l["reason"], l["error"]), tt.mention) {
				t.Errorf("log line %v does not say %q", l, tt.mention)
			}
		})
	}
	t.Run("duplicate", func(t *testing.T) {
		h, o := newObservedServer(t, &fakeStore{}, nil)
		do(h, githubReq("push", "L-10", ghSecret, push))
		if code, a := do(h, githubReq("push", "L-10", ghSecret, push)); code != 200 || a.Status != "duplicate" {
			t.Fatalf("redelivery: %d %+v", code, a)
		}
		lines := o.lines()
		if len(lines) != 2 || lines[0]["msg"] != "webhook event accepted" || lines[1]["msg"] != "webhook delivery is a duplicate" ||
			lines[0]["delivery"] != "L-10" || lines[1]["delivery"] != "L-10" {
			t.Errorf("log lines = %v, want accepted then duplicate, both naming L-10", lines)
		}
	})
}

// A body that is empty, cut short or not JSON says so in words a sender
// can act on, not as a decoder's complaint about the first byte.
func TestUnparsableBodiesSayWhatIsWrong(t *testing.T) {
	tests := []struct {
		name string
		req  *http.Request
		want string
	}{
		{"github empty", githubReq("push", "e-1", ghSecret, nil), "the body is empty"},
		{"github blank", githubReq("push", "e-2", ghSecret, []byte(" \n\t")), "the body is empty"},
		{"gitlab empty", gitlabReq("Push Hook", "e-3", glToken, nil), "the body is empty"},
		{"github truncated", githubReq("push", "e-4", ghSecret, fixture(t, "github_push.json")[:300]), "the JSON body ends early after 300 bytes (truncated?)"},
		{"gitlab truncated", gitlabReq("Merge Request Hook", "e-5", glToken, []byte(`{"object_kind":"merge_request"`)), "ends early"},
		{"NUL bytes", githubReq("push", "e-6", ghSecret, []byte("\x00\x00\x00")), `the body is not valid JSON: invalid character '\x00' looking for beginning of value (at byte 1)`},
		{"trailing garbage", gitlabReq("Push Hook", "e-7", glToken, []byte(`{"ref":"refs/heads/main"} x`)), "the body is not valid JSON: invalid character 'x' after top-level value (at byte 27)"},
		{"wrong type", githubReq("push", "e-8", ghSecret, []byte(`{"ref":7}`)), "field ref holds a JSON number where a string belongs"},
		{"array for an object", githubReq("push", "e-11", ghSecret, []byte(`{"repository":[]}`)), "field repository holds a JSON array where an object belongs"},
		{"wrong nested type", gitlabReq("Push Hook", "e-10", glToken, []byte(`{"project":{"id":"15"}}`)), "field project.id holds a JSON string where an integer belongs"},
		{"form without payload", func() *http.Request {
			r := githubReq("push", "e-9", ghSecret, []byte("other=1"))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}(), "the form body has no payload field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, a := do(newServer(t, &fakeStore{}, 0), tt.req)
			if code != 400 || !strings.Contains(a.Error, tt.want) {
				t.Errorf("got %d %q, want 400 saying %q", code, a.Error, tt.want)
			}
		})
	}
}
