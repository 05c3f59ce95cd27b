package api_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/promote"
	"github.com/ferryci/ferry/pkg/promote/api"
	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/pkg/store/memstore"
	"github.com/ferryci/ferry/pkg/store/redisstore"
	"github.com/ferryci/ferry/test/testbed"
)

const (
	aliceToken = "alice-token-0123456789"
	bobToken   = "bob-token-0123456789"
	token      = "api-test-token-0123"
	source     = "registry.example/ci/web"
	digest     = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

// registry resolves every tag to digest, except "down" (the registry does
// not answer) and "missing" (it has no such tag).
type registry struct{}

func (registry) Resolve(_ context.Context, ref name.Reference) (name.Digest, error) {
	switch ref.Identifier() {
	case "down":
		return name.Digest{}, &transport.Error{StatusCode: http.StatusServiceUnavailable}
	case "missing":
		return name.Digest{}, &transport.Error{StatusCode: http.StatusNotFound, Errors: []transport.Diagnostic{{Code: transport.ManifestUnknownErrorCode}}}
	}
	return ref.Context().Digest(digest), nil
}

func (registry) Copy(context.Context, name.Digest, name.Repository, []string) (name.Digest, error) {
	return name.Digest{}, errors.New("not in this test")
}

func newServer(t *testing.T, token string) (*httptest.Server, store.Store) {
	t.Helper()
	st, err := memstore.New(memstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return newServerOn(t, token, st)
}

func newServerOn(t *testing.T, token string, st store.Store) (*httptest.Server, store.Store) {
	t.Helper()
	t.Cleanup(func() { _ = st.Close() })
	p, err := promote.New(promote.Config{Store: st, Registry: registry{}, Apps: []config.PromotionApp{{
		Name: "web", Source: source, Target: "registry.example/release/web",
		Environments: []config.PromotionEnvironment{{Name: "test", Namespace: "web-test", Deployments: []string{"web"}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	auth, err := api.NewAuth(api.AuthConfig{PipelineToken: token, Auth: config.PromotionAuth{Tokens: []config.PromotionToken{
		{Name: "alice", SHA256: sha(aliceToken), Roles: []config.PromotionRole{{Apps: []string{"web"}, Environments: []string{"*"}, Verbs: config.PromotionVerbs}}},
		{Name: "bob", SHA256: sha(bobToken), Roles: []config.PromotionRole{{Apps: []string{"api"}, Environments: []string{"*"}, Verbs: config.PromotionVerbs}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	api.New(api.Config{Promoter: p, Auth: auth}).Register(e)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv, st
}

// Requests are answered with the status their outcome calls for, behind
// the bearer token; refused ones change nothing.
func TestServerAnswers(t *testing.T) {
	srv, st := newServer(t, token)
	finished := store.Promotion{ID: "done-1", Kind: store.KindPromote, App: "web", State: store.PromotionSucceeded, CreatedAt: time.Now()}
	if _, err := st.PutPromotion(context.Background(), finished); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, method, path, token, body string
		want                            int
		wantMsg                         string
	}{
		{"no token", "GET", "/api/v1/promotions", "", "", 401, "bearer token"},
		{"wrong token", "GET", "/api/v1/promotions", token + "x", "", 401, "bearer token"},
		{"unknown app", "POST", "/api/v1/promotions", token, `{"app":"api","image":"x"}`, 404, `unknown app "api"`},
		{"image of another repository", "POST", "/api/v1/promotions", token, `{"app":"web","image":"registry.example/other:1"}`, 400, "not in the app's source repository"},
		{"tag the registry does not have", "POST", "/api/v1/promotions", token, `{"app":"web","image":"` + source + `:missing"}`, 400, "MANIFEST_UNKNOWN"},
		{"registry down", "POST", "/api/v1/promotions", token, `{"app":"web","image":"` + source + `:down"}`, 502, "registry error"},
		{"not JSON", "POST", "/api/v1/promotions", token, `{"app":`, 400, "not valid JSON"},
		{"unknown field", "POST", "/api/v1/promotions", token, `{"app":"web","img":"x"}`, 400, "unknown field"},
		{"approve finished", "POST", "/api/v1/promotions/done-1/approve", aliceToken, `{}`, 409, "not waiting for approval"},
		{"pipeline may not approve", "POST", "/api/v1/promotions/done-1/approve", token, `{}`, 403, "pipeline (verified by pipeline-token) may not approve"},
		{"approver is not a field", "POST", "/api/v1/promotions/done-1/approve", aliceToken, `{"approver":"mallory"}`, 400, "approver is not accepted"},
		{"requested_by is not a field", "POST", "/api/v1/promotions", token, `{"app":"web","image":"` + source + `:1","requested_by":"mallory"}`, 400, "requested_by is not accepted"},
		{"bob may not roll back", "POST", "/api/v1/rollbacks", bobToken, `{"app":"web","environment":"test"}`, 403, "bob (verified by token) may not rollback promotions of web in test"},
		{"bob may not read", "GET", "/api/v1/promotions/done-1", bobToken, ``, 403, "may not get"},
		{"reject unknown", "POST", "/api/v1/promotions/nope/reject", token, `{}`, 404, "not found"},
		{"rollback without history", "POST", "/api/v1/rollbacks", aliceToken, `{"app":"web","environment":"test"}`, 409, "no earlier promoted digest"},
		{"list", "GET", "/api/v1/promotions?app=web", token, "", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, strings.NewReader(tt.body))
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			var body struct {
				Error string `json:"error"`
			}
			_ = json.Unmarshal(raw, &body)
			if resp.StatusCode != tt.want || !strings.Contains(body.Error, tt.wantMsg) {
				t.Errorf("%s %s = %d %s, want %d containing %q", tt.method, tt.path, resp.StatusCode, raw, tt.want, tt.wantMsg)
			}
			if strings.Contains(string(raw), token) {
				t.Errorf("the answer shows the token")
			}
		})
	}
	if all, _ := st.ListPromotions(context.Background()); len(all) != 1 || all[0].Revision != 1 {
		t.Errorf("store holds %d promotions (first at revision %d), want only the finished one, untouched", len(all), all[0].Revision)
	}
}

// The client sends what the server takes and returns its answers; a
// refusal is an *api.Error with the status.
func TestClientRoundTrip(t *testing.T) {
	srv, _ := newServer(t, token)
	c := &api.Client{BaseURL: srv.URL + "/", Token: token}
	ctx := context.Background()
	p, err := c.Create(ctx, promote.Request{App: "web", Image: source + ":1", Commit: "4f2a9c0d"})
	if err != nil || p.SourceDigest != digest || p.RequestedBy != api.PipelineIdentity || p.State != store.PromotionRunning {
		t.Fatalf("create = %+v, %v", p, err)
	}
	if got, err := c.Get(ctx, p.ID); err != nil || got.ID != p.ID {
		t.Errorf("get = %+v, %v", got, err)
	}
	if ps, err := c.List(ctx, "web"); err != nil || len(ps) != 1 || ps[0].ID != p.ID {
		t.Errorf("list = %+v, %v", ps, err)
	}
	alice := &api.Client{BaseURL: srv.URL, Token: aliceToken}
	_, err = alice.Approve(ctx, p.ID, api.Decision{})
	var apiErr *api.Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusConflict || !strings.Contains(apiErr.Message, "not waiting for approval") {
		t.Errorf("approve a running promotion: err = %v, want a 409 *api.Error", err)
	}
	wrong := &api.Client{BaseURL: srv.URL, Token: "nope"}
	if _, err := wrong.List(ctx, ""); !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnauthorized {
		t.Errorf("wrong token: err = %v, want a 401 *api.Error", err)
	}
}

func sha(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// A create repeated with its Idempotency-Key returns the first promotion
// (even after the tag moved: it is not resolved again); the same key with
// another body is refused with 422; another identity's key is its own.
func TestIdempotentCreate(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		srv, st := newServer(t, token)
		testIdempotentCreate(t, srv, st)
	})
	t.Run("redis", func(t *testing.T) {
		if testing.Short() {
			t.Skip("needs the test bed's redis-server (FERRY_TESTBED_ENV); skipped with -short")
		}
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		st, err := redisstore.New(context.Background(), redisstore.Config{Addr: testbed.RedisAddr(t), Prefix: "promote-idem-" + hex.EncodeToString(b) + ":"})
		if err != nil {
			t.Fatal(err)
		}
		srv, _ := newServerOn(t, token, st)
		testIdempotentCreate(t, srv, st)
	})
}

func testIdempotentCreate(t *testing.T, srv *httptest.Server, st store.Store) {
	ctx := context.Background()
	pipeline := &api.Client{BaseURL: srv.URL, Token: token}
	alice := &api.Client{BaseURL: srv.URL, Token: aliceToken}
	r := promote.Request{App: "web", Image: source + ":1", BuildURL: "http://jenkins/job/web/7/"}
	first, err := pipeline.CreateIdempotent(ctx, "build-7", r)
	if err != nil {
		t.Fatal(err)
	}
	again, err := pipeline.CreateIdempotent(ctx, "build-7", r)
	if err != nil || again.ID != first.ID {
		t.Fatalf("repeat = %s, %v; want the first promotion %s", again.ID, err, first.ID)
	}
	var apiErr *api.Error
	other := r
	other.Image = source + ":2"
	if _, err := pipeline.CreateIdempotent(ctx, "build-7", other); !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnprocessableEntity {
		t.Errorf("same key, other image: err = %v, want 422", err)
	}
	mine, err := alice.CreateIdempotent(ctx, "build-7", r)
	if err != nil || mine.ID == first.ID || mine.RequestedBy != "alice" {
		t.Errorf("alice's create with the pipeline's key = %+v, %v; want her own promotion", mine, err)
	}
	// Concurrent repeats of a new key: one promotion, every answer it.
	r2 := r
	r2.BuildURL = "http://jenkins/job/web/8/"
	ids := make(chan string, 6)
	for range 6 {
		go func() {
			p, err := pipeline.CreateIdempotent(ctx, "build-8", r2)
			if err != nil {
				t.Errorf("concurrent repeat: %v", err)
			}
			ids <- p.ID
		}()
	}
	seen := map[string]bool{}
	for range 6 {
		seen[<-ids] = true
	}
	if len(seen) != 1 {
		t.Errorf("6 concurrent creates with one key made promotions %v, want one", seen)
	}
	unkeyed, err := pipeline.Create(ctx, r)
	if err != nil || unkeyed.ID == first.ID {
		t.Errorf("create without a key = %s, %v; want a new promotion", unkeyed.ID, err)
	}
	if all, _ := st.ListPromotions(ctx); len(all) != 4 {
		t.Errorf("store holds %d promotions, want 4", len(all))
	}
	req, _ := http.NewRequest("POST", srv.URL+"/api/v1/promotions", strings.NewReader(`{"app":"web","image":"`+source+`:1","build_url":"http://jenkins/job/web/7/"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Idempotency-Key", "build-7")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay = %d, Idempotent-Replayed %q; want 201, true", resp.StatusCode, resp.Header.Get("Idempotent-Replayed"))
	}
}

// A server without a token refuses every request, an empty bearer too
// (served directly: an HTTP connection would trim the header's spaces).
func TestServerWithoutTokenRefusesAll(t *testing.T) {
	srv, _ := newServer(t, "")
	for _, auth := range []string{"", "Bearer ", "Bearer  "} {
		req := httptest.NewRequest("GET", "/api/v1/promotions", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		srv.Config.Handler.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("Authorization %q = %d, want 401", auth, rec.Code)
		}
	}
}
