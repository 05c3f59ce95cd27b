package ui_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/deliveries"
	"github.com/ferryci/ferry/pkg/event"
	"github.com/ferryci/ferry/pkg/promote"
	"github.com/ferryci/ferry/pkg/promote/api"
	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/pkg/store/memstore"
	"github.com/ferryci/ferry/pkg/ui"
)

const (
	aliceToken    = "alice-token-0123456789"
	bobToken      = "bob-token-0123456789"
	carolToken    = "carol-token-0123456789"
	pipelineToken = "pipeline-token-0123456789"
	sha1          = "0123456789abcdef0123456789abcdef01234567"
	digest        = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	// hostile values a webhook may carry into the delivery log.
	hostileRepo = `acme/<script>alert(1)</script>`
	hostileRef  = `refs/heads/"><img src=x onerror=alert(2)>`
)

func hash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

type noRegistry struct{}

func (noRegistry) Resolve(_ context.Context, ref name.Reference) (name.Digest, error) {
	return ref.Context().Digest(digest), nil
}

func (noRegistry) Copy(context.Context, name.Digest, name.Repository, []string) (name.Digest, error) {
	return name.Digest{}, errors.New("not in this test")
}

type bed struct {
	t   *testing.T
	srv *httptest.Server
	st  store.Store
}

// newBed serves the UI over a memory store holding a few deliveries and
// a promotion of web waiting for approval to prod. alice may do anything
// to web, bob only read it, carol only read another app.
func newBed(t *testing.T, tweak func(*ui.Config)) *bed {
	t.Helper()
	return newBedOn(t, tweak, nil, "web-test", "web-prod")
}

// newBedOn is newBed with auth deciding (nil: the tokens of alice, bob and
// carol) and the environments' namespaces.
func newBedOn(t *testing.T, tweak func(*ui.Config), auth *api.Auth, nsTest, nsProd string) *bed {
	t.Helper()
	st, err := memstore.New(memstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ctx := context.Background()
	now := time.Now().UTC()
	recs := []store.Delivery{
		{Provider: event.GitHub, DeliveryID: "d-1", Event: "push", EventID: "ev-1", Repo: "acme/app", Ref: "refs/heads/main", SHA: sha1,
			Outcome: store.DeliveryAccepted, Status: 202, Pipelines: []string{"app"}, ReceivedAt: now.Add(-time.Minute)},
		{Provider: event.GitHub, DeliveryID: "d-2", Event: "push", Repo: hostileRepo, Ref: hostileRef, SHA: sha1,
			Outcome: store.DeliveryIgnored, Status: 200, Reason: `no pipeline matches <b>this</b>`, ReceivedAt: now},
	}
	for _, d := range recs {
		if _, err := st.RecordDelivery(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.PutTrail(ctx, store.BuildTrail{
		Build: store.Build{Key: "ev-1/app", Pipeline: "app", Job: "acme/app", QueueID: 7, Number: 3, URL: "javascript:alert(3)", Result: "SUCCESS"},
		Steps: []store.BuildStep{{Step: deliveries.StepQueued, At: now.Add(-50 * time.Second)}, {Step: deliveries.StepStarted, At: now.Add(-40 * time.Second)}},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutPromotion(ctx, store.Promotion{ID: "p-1", Kind: store.KindPromote, App: "web", Source: "registry.example/ci/web:1",
		SourceDigest: digest, Target: "registry.example/release/web@" + digest, RequestedBy: "pipeline", State: store.PromotionWaiting,
		CreatedAt: now.Add(-time.Hour), UpdatedAt: now,
		Environments: []store.PromotionEnv{{Name: "test", Phase: store.EnvSucceeded, FinishedAt: now.Add(-30 * time.Minute)},
			{Name: "prod", Phase: store.EnvAwaitingApprove, NeedsApproval: true}},
		Audit: []store.AuditEntry{{At: now.Add(-time.Hour), Actor: "pipeline", Action: "requested", Detail: "<i>hostile</i>"}},
	}); err != nil {
		t.Fatal(err)
	}
	p, err := promote.New(promote.Config{Store: st, Registry: noRegistry{}, Apps: []config.PromotionApp{{
		Name: "web", Source: "registry.example/ci/web", Target: "registry.example/release/web",
		Environments: []config.PromotionEnvironment{{Name: "test", Namespace: nsTest, Deployments: []string{"web"}},
			{Name: "prod", Namespace: nsProd, Deployments: []string{"web"}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if auth == nil {
		auth = tokenAuth(t)
	}
	promos := api.New(api.Config{Promoter: p, Auth: auth})
	cfg := ui.Config{Deliveries: deliveries.NewServer(deliveries.Config{Log: st, Agents: true}), Auth: promos, Promotions: promos,
		Key: []byte("0123456789abcdef0123456789abcdef")}
	if tweak != nil {
		tweak(&cfg)
	}
	s, err := ui.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	s.Register(e)
	promos.Register(e)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return &bed{t: t, srv: srv, st: st}
}

// tokenAuth knows alice (every right on web), bob (reading web) and carol
// (every right on another app), and the pipelines' token.
func tokenAuth(t *testing.T) *api.Auth {
	t.Helper()
	auth, err := api.NewAuth(api.AuthConfig{PipelineToken: pipelineToken, Auth: config.PromotionAuth{Tokens: []config.PromotionToken{
		{Name: "alice", SHA256: hash(aliceToken), Roles: []config.PromotionRole{{Apps: []string{"web"}, Environments: []string{"*"}, Verbs: config.PromotionVerbs}}},
		{Name: "bob", SHA256: hash(bobToken), Roles: []config.PromotionRole{{Apps: []string{"web"}, Environments: []string{"*"}, Verbs: []string{api.VerbGet}}}},
		{Name: "carol", SHA256: hash(carolToken), Roles: []config.PromotionRole{{Apps: []string{"api"}, Environments: []string{"*"}, Verbs: config.PromotionVerbs}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return auth
}

// client is a browser: cookies, no automatic redirects.
func (b *bed) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type answer struct {
	code   int
	body   string
	header http.Header
}

func (b *bed) do(c *http.Client, method, path string, form url.Values, header map[string]string) answer {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.srv.URL+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return answer{code: resp.StatusCode, body: string(raw), header: resp.Header}
}

var csrfValue = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

func csrfOf(t *testing.T, body string) string {
	t.Helper()
	m := csrfValue.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", body)
	}
	return m[1]
}

// signIn signs c in with token and returns the answer to the sign-in.
func (b *bed) signIn(c *http.Client, token, next string) answer {
	b.t.Helper()
	page := b.do(c, "GET", "/ui/login", nil, nil)
	return b.do(c, "POST", "/ui/login", url.Values{"csrf": {csrfOf(b.t, page.body)}, "token": {token}, "next": {next}}, nil)
}

func (b *bed) signedIn(token string) *http.Client {
	b.t.Helper()
	c := b.client()
	if a := b.signIn(c, token, ""); a.code != http.StatusSeeOther {
		b.t.Fatalf("sign-in = %d %s", a.code, a.body)
	}
	return c
}

func TestAnonymousSeesNothing(t *testing.T) {
	b := newBed(t, nil)
	for _, path := range []string{"/ui/activity", "/ui/why?repo=acme/app&sha=" + sha1, "/ui/promotions", "/ui/promotions/p-1"} {
		a := b.do(b.client(), "GET", path, nil, nil)
		if a.code != http.StatusSeeOther || a.header.Get("Location") != "/ui/login?next="+url.QueryEscape(path) {
			t.Errorf("GET %s = %d to %q, want 303 to the sign-in", path, a.code, a.header.Get("Location"))
		}
		if live := b.do(b.client(), "GET", path, nil, map[string]string{"X-Ferry-Live": "1"}); live.code != http.StatusUnauthorized {
			t.Errorf("live GET %s = %d, want 401", path, live.code)
		}
		if strings.Contains(a.body, "acme/app") {
			t.Errorf("GET %s shows data to an anonymous visitor", path)
		}
	}
	if a := b.do(b.client(), "POST", "/ui/promotions/p-1/approve", url.Values{"environment": {"prod"}}, nil); a.code != http.StatusUnauthorized {
		t.Errorf("anonymous approve = %d, want 401", a.code)
	}
}

func TestAnonymousReadWhenConfigured(t *testing.T) {
	b := newBed(t, func(c *ui.Config) { c.AnonymousRead = true })
	c := b.client()
	if a := b.do(c, "GET", "/ui/activity", nil, nil); a.code != http.StatusOK || !strings.Contains(a.body, "acme/app") {
		t.Errorf("activity = %d, want 200 with the deliveries", a.code)
	}
	a := b.do(c, "GET", "/ui/promotions/p-1", nil, nil)
	if a.code != http.StatusOK || strings.Contains(a.body, `id="approve"`) || !strings.Contains(a.body, "Sign in</a> to approve") {
		t.Errorf("promotion = %d, want 200 without buttons, asking to sign in:\n%s", a.code, a.body)
	}
	if a := b.do(c, "POST", "/ui/promotions/p-1/approve", url.Values{"environment": {"prod"}}, nil); a.code != http.StatusUnauthorized {
		t.Errorf("anonymous approve = %d, want 401", a.code)
	}
}

func TestEveryPageRendersWithStrictHeaders(t *testing.T) {
	b := newBed(t, nil)
	c := b.signedIn(aliceToken)
	for _, path := range []string{"/ui/login", "/ui/activity", "/ui/activity?repo=acme/app&branch=main", "/ui/activity?pr=42",
		"/ui/why?repo=acme/app&sha=" + sha1, "/ui/promotions", "/ui/promotions/p-1", "/ui/static/ui.css", "/ui/static/live.js"} {
		a := b.do(c, "GET", path, nil, nil)
		if a.code != http.StatusOK {
			t.Errorf("GET %s = %d, want 200: %s", path, a.code, a.body)
		}
		csp := a.header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("GET %s: CSP %q lacks %q", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("GET %s: CSP %q allows inline code", path, csp)
		}
		if a.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", path)
		}
		if strings.HasSuffix(path, ".js") || strings.HasSuffix(path, ".css") {
			continue
		}
		if strings.Contains(a.body, "<script>") || strings.Contains(a.body, " style=") || strings.Contains(a.body, "<style") {
			t.Errorf("GET %s has inline script or style", path)
		}
	}
}

func TestActivityAndWhyEscapeHostileValues(t *testing.T) {
	b := newBed(t, nil)
	c := b.signedIn(aliceToken)
	for _, path := range []string{"/ui/activity", "/ui/activity?repo=" + url.QueryEscape(hostileRepo), "/ui/why?delivery=d-2"} {
		a := b.do(c, "GET", path, nil, nil)
		if a.code != http.StatusOK {
			t.Fatalf("GET %s = %d: %s", path, a.code, a.body)
		}
		for _, raw := range []string{"<script>alert(1)", "<img src=x", "<b>this</b>", "javascript:alert"} {
			if strings.Contains(a.body, raw) {
				t.Errorf("GET %s renders %q unescaped", path, raw)
			}
		}
		if !strings.Contains(a.body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Errorf("GET %s does not show the hostile repository escaped", path)
		}
	}
	a := b.do(c, "GET", "/ui/why?repo=acme/app&sha="+sha1, nil, nil)
	for _, want := range []string{"d-1", "202", "accepted", "queue item 7", "#3", "ferry-agent-7-1", "started"} {
		if !strings.Contains(a.body, want) {
			t.Errorf("why page lacks %q", want)
		}
	}
	if bad := b.do(c, "GET", "/ui/why?repo=acme/app&sha=xyz", nil, nil); bad.code != http.StatusBadRequest || !strings.Contains(bad.body, "full commit id") {
		t.Errorf("why with a bad sha = %d, want 400 saying what is wrong", bad.code)
	}
	if bad := b.do(c, "GET", "/ui/activity?pr=abc", nil, nil); bad.code != http.StatusBadRequest {
		t.Errorf("activity with a bad PR = %d, want 400", bad.code)
	}
}

func TestLiveRefreshGetsTheContentAlone(t *testing.T) {
	b := newBed(t, nil)
	c := b.signedIn(aliceToken)
	a := b.do(c, "GET", "/ui/activity", nil, map[string]string{"X-Ferry-Live": "1"})
	if a.code != http.StatusOK || strings.Contains(a.body, "<html") || !strings.Contains(a.body, "acme/app") {
		t.Errorf("live activity = %d, want the content without the layout:\n%s", a.code, a.body)
	}
}

func TestSignIn(t *testing.T) {
	b := newBed(t, nil)
	tests := []struct {
		name, token, next string
		want              int
		wantTo, wantMsg   string
	}{
		{"unknown token", "nope", "", http.StatusUnauthorized, "", "not accepted"},
		{"pipeline token", pipelineToken, "", http.StatusForbidden, "", "token cannot sign in"},
		{"empty", "", "", http.StatusBadRequest, "", "Paste your"},
		{"good, next kept", aliceToken, "/ui/promotions/p-1", http.StatusSeeOther, "/ui/promotions/p-1", ""},
		{"absolute next refused", aliceToken, "https://evil.example/ui/", http.StatusSeeOther, "/ui/activity", ""},
		{"scheme-relative next refused", aliceToken, "//evil.example/ui/", http.StatusSeeOther, "/ui/activity", ""},
		{"backslash next refused", aliceToken, `/\evil.example`, http.StatusSeeOther, "/ui/activity", ""},
		{"next outside the UI refused", aliceToken, "/api/v1/promotions", http.StatusSeeOther, "/ui/activity", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := b.client()
			a := b.signIn(c, tt.token, tt.next)
			if a.code != tt.want || a.header.Get("Location") != tt.wantTo || !strings.Contains(a.body, tt.wantMsg) {
				t.Errorf("sign-in = %d to %q, want %d to %q with %q:\n%s", a.code, a.header.Get("Location"), tt.want, tt.wantTo, tt.wantMsg, a.body)
			}
			if strings.Contains(a.body, tt.token) && tt.token != "" {
				t.Errorf("the answer shows the token")
			}
		})
	}
}

func TestSessionCookie(t *testing.T) {
	b := newBed(t, nil)
	c := b.client()
	page := b.do(c, "GET", "/ui/login", nil, nil)
	a := b.do(c, "POST", "/ui/login", url.Values{"csrf": {csrfOf(t, page.body)}, "token": {aliceToken}}, map[string]string{"X-Forwarded-Proto": "https"})
	var ck string
	for _, line := range a.header.Values("Set-Cookie") {
		if strings.HasPrefix(line, "ferry_session=") {
			ck = line
		}
	}
	for _, want := range []string{"HttpOnly", "SameSite=Strict", "Secure", "Path=/ui", "Max-Age="} {
		if !strings.Contains(ck, want) {
			t.Errorf("session cookie %q lacks %s", ck, want)
		}
	}
	if strings.Contains(ck, aliceToken) || strings.Contains(ck, "alice") {
		t.Errorf("the session cookie shows the token or the name: %q", ck)
	}
	// A tampered cookie is no session.
	u, _ := url.Parse(b.srv.URL + "/ui/")
	for _, k := range c.Jar.Cookies(u) {
		if k.Name == "ferry_session" {
			k.Value = k.Value[:len(k.Value)-2] + "AA"
			c.Jar.SetCookies(u, []*http.Cookie{k})
		}
	}
	if a := b.do(c, "GET", "/ui/activity", nil, nil); a.code != http.StatusSeeOther {
		t.Errorf("with a tampered cookie: %d, want 303 to the sign-in", a.code)
	}
}

func TestSignInFormNeedsItsCSRF(t *testing.T) {
	b := newBed(t, nil)
	c := b.client()
	b.do(c, "GET", "/ui/login", nil, nil)
	if a := b.do(c, "POST", "/ui/login", url.Values{"csrf": {"forged"}, "token": {aliceToken}}, nil); a.code != http.StatusForbidden {
		t.Errorf("sign-in with a forged CSRF = %d, want 403", a.code)
	}
	page := b.do(c, "GET", "/ui/login", nil, nil)
	if a := b.do(c, "POST", "/ui/login", url.Values{"csrf": {csrfOf(t, page.body)}, "token": {aliceToken}}, map[string]string{"Origin": "https://evil.example"}); a.code != http.StatusForbidden {
		t.Errorf("sign-in from another origin = %d, want 403", a.code)
	}
}

func TestPromotionActions(t *testing.T) {
	b := newBed(t, nil)
	bob := b.signedIn(bobToken)
	page := b.do(bob, "GET", "/ui/promotions/p-1", nil, nil)
	if page.code != http.StatusOK || strings.Contains(page.body, `id="approve"`) || !strings.Contains(page.body, "bob may not approve") {
		t.Errorf("bob's page = %d, want no Approve button and a word why:\n%s", page.code, page.body)
	}
	if strings.Contains(page.body, "<i>hostile</i>") {
		t.Errorf("the audit trail is rendered unescaped")
	}
	bobCSRF := csrfOf(t, page.body)
	if a := b.do(bob, "POST", "/ui/promotions/p-1/approve", url.Values{"csrf": {bobCSRF}, "environment": {"prod"}}, nil); a.code != http.StatusForbidden || !strings.Contains(a.body, "bob (verified by token) may not approve promotions of web in prod") {
		t.Errorf("bob's approve = %d, want 403 from the API's authorization:\n%s", a.code, a.body)
	}
	if a := b.do(bob, "POST", "/ui/rollback", url.Values{"csrf": {bobCSRF}, "app": {"web"}, "environment": {"test"}}, nil); a.code != http.StatusForbidden {
		t.Errorf("bob's rollback = %d, want 403", a.code)
	}
	carol := b.client()
	if a := b.signIn(carol, carolToken, ""); a.code != http.StatusForbidden || !strings.Contains(a.body, "carol (verified by token) may not read ferry") {
		t.Errorf("carol, with rights on no configured app, signs in: %d, want 403", a.code)
	}
	if a := b.do(carol, "GET", "/ui/promotions/p-1", nil, nil); a.code != http.StatusSeeOther {
		t.Errorf("carol reads web's promotion: %d, want 303 to the sign-in", a.code)
	}

	alice := b.signedIn(aliceToken)
	page = b.do(alice, "GET", "/ui/promotions/p-1", nil, nil)
	if !strings.Contains(page.body, `id="approve"`) || !strings.Contains(page.body, `id="reject"`) {
		t.Fatalf("alice's page has no Approve and Reject buttons:\n%s", page.body)
	}
	csrf := csrfOf(t, page.body)
	if a := b.do(alice, "POST", "/ui/promotions/p-1/approve", url.Values{"environment": {"prod"}}, nil); a.code != http.StatusForbidden {
		t.Errorf("approve without CSRF = %d, want 403", a.code)
	}
	if a := b.do(alice, "POST", "/ui/promotions/p-1/approve", url.Values{"csrf": {bobCSRF}, "environment": {"prod"}}, nil); a.code != http.StatusForbidden {
		t.Errorf("approve with another session's CSRF = %d, want 403", a.code)
	}
	if a := b.do(alice, "POST", "/ui/promotions/p-1/approve", url.Values{"csrf": {csrf}, "environment": {"prod"}}, map[string]string{"Origin": "https://evil.example"}); a.code != http.StatusForbidden {
		t.Errorf("approve from another origin = %d, want 403", a.code)
	}
	if p, _ := b.st.GetPromotion(context.Background(), "p-1"); p.State != store.PromotionWaiting {
		t.Fatalf("a refused action changed the promotion: %s", p.State)
	}
	a := b.do(alice, "POST", "/ui/promotions/p-1/approve", url.Values{"csrf": {csrf}, "environment": {"prod"}}, map[string]string{"Origin": b.srv.URL})
	if a.code != http.StatusSeeOther || a.header.Get("Location") != "/ui/promotions/p-1?done=approved" {
		t.Fatalf("alice's approve = %d to %q:\n%s", a.code, a.header.Get("Location"), a.body)
	}
	p, _ := b.st.GetPromotion(context.Background(), "p-1")
	if p.Environments[1].Phase != store.EnvApproved || p.Environments[1].Approver != "alice" {
		t.Errorf("prod = %s by %q, want approved by alice", p.Environments[1].Phase, p.Environments[1].Approver)
	}
	if a := b.do(alice, "POST", "/ui/promotions/p-1/reject", url.Values{"csrf": {csrf}, "environment": {"prod"}}, nil); a.code != http.StatusConflict {
		t.Errorf("reject after approval = %d, want 409", a.code)
	}
	if a := b.do(alice, "POST", "/ui/rollback", url.Values{"csrf": {csrf}, "app": {"web"}, "environment": {"test"}}, nil); a.code != http.StatusConflict || !strings.Contains(a.body, "no earlier promoted digest") {
		t.Errorf("rollback without history = %d, want 409:\n%s", a.code, a.body)
	}
	// Signing out ends the session.
	if a := b.do(alice, "POST", "/ui/logout", url.Values{"csrf": {csrf}}, nil); a.code != http.StatusSeeOther {
		t.Errorf("sign-out = %d", a.code)
	}
	if a := b.do(alice, "GET", "/ui/promotions", nil, nil); a.code != http.StatusSeeOther {
		t.Errorf("after sign-out: %d, want 303 to the sign-in", a.code)
	}
}

func TestPromotionsPageShowsWhatRunsWhere(t *testing.T) {
	b := newBed(t, nil)
	a := b.do(b.signedIn(aliceToken), "GET", "/ui/promotions", nil, nil)
	for _, want := range []string{"web", "test", "sha256:0123456789ab", "p-1", "Roll back", "Promotion lead time"} {
		if !strings.Contains(a.body, want) {
			t.Errorf("promotions page lacks %q", want)
		}
	}
}

type fakeAgents struct{ snap ui.AgentSnapshot }

func (f fakeAgents) Snapshot(context.Context) (ui.AgentSnapshot, error) { return f.snap, nil }

func TestAgentsPage(t *testing.T) {
	now := time.Now()
	snap := ui.AgentSnapshot{At: now,
		Agents:   []ui.AgentRow{{Name: "ferry-agent-9-1", Template: "maven", Specs: "2-4Gi", Spot: "SpotAsPriceGo", State: ui.AgentBuilding, Created: now}},
		ByState:  []ui.StateCount{{Template: "maven", Counts: [7]int{0, 0, 0, 1}}},
		Failures: []ui.AgentFailure{{Agent: "ferry-agent-8-1", Reason: "AgentRetry", Message: `<script>x()</script> stock-out`, Count: 2, Last: now}},
		Usage:    []ui.TemplateUsage{{Template: "maven", PodSeconds: 100, BuildSeconds: 80, Agents: 2, Ratio: "80%"}}, UsageDay: "2026-12-06", UsageError: `<b>store</b> down`}
	snap.Warm, snap.WarmFromLeader, snap.WarmAt, snap.Since = []ui.WarmRow{{Template: "maven", Desired: 2, Source: "window <i>biz</i>",
		States: []int64{0, 0, 1, 1, 0}, Pods: 2, Hits: 3, Misses: 1, HitRate: "75%", IdleSeconds: 95}}, true, now, now
	b := newBed(t, func(c *ui.Config) { c.Agents = fakeAgents{snap} })
	a := b.do(b.signedIn(bobToken), "GET", "/ui/agents", nil, nil)
	if a.code != http.StatusOK {
		t.Fatalf("agents = %d: %s", a.code, a.body)
	}
	for _, want := range []string{"ferry-agent-9-1", "2-4Gi", "SpotAsPriceGo", "building", "AgentRetry", "&lt;script&gt;x()&lt;/script&gt; stock-out", "80%", "Agents over time", "Today is 2026-12-06 since 00:00 UTC", "&lt;b&gt;store&lt;/b&gt; down"} {
		if !strings.Contains(a.body, want) {
			t.Errorf("agents page lacks %q", want)
		}
	}
	if strings.Contains(a.body, "<script>x()") {
		t.Errorf("an event message is rendered unescaped")
	}
	for _, want := range []string{`id="warm"`, "window &lt;i&gt;biz&lt;/i&gt;", "75%", "since it began leading", "<th>serving</th>"} {
		if !strings.Contains(a.body, want) {
			t.Errorf("agents page lacks %q in its warm pools", want)
		}
	}
	// Another replica: only the labelled pods, and where the rest is known.
	snap.WarmFromLeader = false
	b = newBed(t, func(c *ui.Config) { c.Agents = fakeAgents{snap} })
	a = b.do(b.signedIn(bobToken), "GET", "/ui/agents", nil, nil)
	if !strings.Contains(a.body, "known on the leader") || strings.Contains(a.body, "75%</td><td") {
		t.Errorf("a non-leader's agents page shows the leader's figures or does not say where they are: %s", a.body)
	}
	if a := b.do(b.client(), "GET", "/ui/agents", nil, nil); a.code != http.StatusSeeOther {
		t.Errorf("anonymous agents = %d, want 303", a.code)
	}
}

func TestRollbackByButton(t *testing.T) {
	b := newBed(t, nil)
	older := "sha256:" + strings.Repeat("1", 64)
	if _, err := b.st.PutPromotion(context.Background(), store.Promotion{ID: "p-0", Kind: store.KindPromote, App: "web",
		SourceDigest: older, Target: "registry.example/release/web@" + older, State: store.PromotionSucceeded,
		CreatedAt: time.Now().Add(-48 * time.Hour), FinishedAt: time.Now().Add(-47 * time.Hour),
		Environments: []store.PromotionEnv{{Name: "test", Phase: store.EnvSucceeded}, {Name: "prod", Phase: store.EnvSucceeded}}}); err != nil {
		t.Fatal(err)
	}
	alice := b.signedIn(aliceToken)
	page := b.do(alice, "GET", "/ui/promotions", nil, nil)
	if !strings.Contains(page.body, `action="/ui/rollback"`) {
		t.Fatalf("alice's promotions page has no Roll back button:\n%s", page.body)
	}
	a := b.do(alice, "POST", "/ui/rollback", url.Values{"csrf": {csrfOf(t, page.body)}, "app": {"web"}, "environment": {"test"}}, nil)
	if a.code != http.StatusSeeOther || !strings.HasSuffix(a.header.Get("Location"), "?done=rollback+requested") {
		t.Fatalf("rollback = %d to %q:\n%s", a.code, a.header.Get("Location"), a.body)
	}
	id := strings.TrimSuffix(strings.TrimPrefix(a.header.Get("Location"), "/ui/promotions/"), "?done=rollback+requested")
	p, err := b.st.GetPromotion(context.Background(), id)
	if err != nil || p.Kind != store.KindRollback || p.RequestedBy != "alice" || p.RollbackOf != "p-0" || p.Environments[0].Name != "test" {
		t.Errorf("rollback recorded as %+v (%v), want alice's rollback of test to p-0", p, err)
	}
	if bob := b.do(b.signedIn(bobToken), "GET", "/ui/promotions", nil, nil); strings.Contains(bob.body, `action="/ui/rollback"`) {
		t.Error("bob, who may only read, is shown Roll back")
	}
}
