package promote_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/ferryci/ferry/pkg/promote"
	"github.com/ferryci/ferry/pkg/promote/api"
	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/pkg/store/redisstore"
	"github.com/ferryci/ferry/test/testbed"
)

func redisStore(t *testing.T) store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := redisstore.New(ctx, redisstore.Config{Addr: testbed.RedisAddr(t), Prefix: "promote-test-" + suffix() + ":"})
	if err != nil {
		t.Fatalf("redis store: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// A promoter stopped in the middle of test's rollout, and again at the
// approval gate, is replaced by a new one (a restart, a new leader) on the
// same Redis store: it resumes without copying again, without re-recording
// the previous image, and without rolling test a second time.
func TestRestartMidPromotionResumes(t *testing.T) {
	b := newBed(t, redisStore(t))
	digest := push(t, b.source+":v5", image(t, layers(t, 2, 4096)...))
	// Slow pods keep the rollout going long enough to stop in it.
	slow := func(d *appsv1.Deployment) { d.Spec.Template.Annotations[testbed.StartDelayAnnotation] = "3s" }
	b.deploy(b.nsTest, slow)
	b.deploy(b.nsProd, nil)
	b.start()

	p, err := b.client().Create(context.Background(), promote.Request{App: "web", Image: b.source + ":v5", Commit: commit})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	b.waitFor(p.ID, "test rolling", func(p store.Promotion) bool { return p.Environments[0].Phase == store.EnvRolling })
	b.stop()
	mid, _ := b.store.GetPromotion(context.Background(), p.ID)
	t.Logf("stopped with test in phase %s", mid.Environments[0].Phase)
	uploads, mounts := b.rec.uploads.Load(), b.rec.mounts.Load()

	b.start() // the restarted ferry
	p = b.waitState(p.ID, store.PromotionWaiting)
	genAtGate := b.deployment(b.nsTest).Generation
	b.stop()

	b.start() // and once more, while the gate waits
	if _, err := b.as("bob").Approve(context.Background(), p.ID, api.Decision{}); err != nil {
		t.Fatalf("approve: %v", err)
	}
	p = b.waitState(p.ID, store.PromotionSucceeded)
	want := b.target + "@" + digest.String()
	b.waitDeployment(b.nsProd, want)

	if b.rec.uploads.Load() != uploads || b.rec.mounts.Load() != mounts {
		t.Errorf("registry writes after restart: uploads %d -> %d, mounts %d -> %d; the copy was repeated",
			uploads, b.rec.uploads.Load(), mounts, b.rec.mounts.Load())
	}
	if prev := p.Environments[0].Previous; len(prev) != 1 || prev[0].Image != oldImage {
		t.Errorf("test previous = %+v, want %s (recorded once, before the rollout)", prev, oldImage)
	}
	if g := b.deployment(b.nsTest).Generation; g != genAtGate {
		t.Errorf("test deployment generation %d -> %d after the restart at the gate: test was rolled again", genAtGate, g)
	}
	for action, n := range map[string]int{"copied": 1, "rollout started": 1, "rolled out": 1, "verified": 1} {
		if got := actions(p, action, envFor(action)); got != n {
			t.Errorf("audit has %d %q entries, want %d: %+v", got, action, n, p.Audit)
		}
	}
}

func envFor(action string) string {
	if action == "copied" {
		return ""
	}
	return "test"
}

// Bad requests get clear 4xx answers and change nothing.
func TestBadRequestsChangeNothing(t *testing.T) {
	b := newBed(t, memStore(t))
	push(t, b.source+":ok", image(t, layers(t, 1, 512)...))
	b.start()
	ctx := context.Background()
	finished := store.Promotion{ID: "done-1", Kind: store.KindPromote, App: "web", State: store.PromotionSucceeded, CreatedAt: time.Now()}
	if _, err := b.store.PutPromotion(ctx, finished); err != nil {
		t.Fatal(err)
	}
	before, _ := b.store.ListPromotions(ctx)

	tests := []struct {
		name, method, path, token, body string
		want                            int
		wantMsg                         string
	}{
		{"no token", "POST", "/api/v1/promotions", "", `{"app":"web","image":"` + b.source + `:ok"}`, 401, "bearer token"},
		{"wrong token", "POST", "/api/v1/promotions", "nope", `{"app":"web","image":"` + b.source + `:ok"}`, 401, "bearer token"},
		{"wrong token list", "GET", "/api/v1/promotions", apiToken + "x", "", 401, "bearer token"},
		{"unknown app", "POST", "/api/v1/promotions", apiToken, `{"app":"nope","image":"` + b.source + `:ok"}`, 404, `unknown app "nope"`},
		{"malformed image", "POST", "/api/v1/promotions", apiToken, `{"app":"web","image":"` + b.source + `:bad tag!"}`, 400, "not a valid reference"},
		{"image of another repository", "POST", "/api/v1/promotions", apiToken, `{"app":"web","image":"` + b.reg + `/other/web:ok"}`, 400, "not in the app's source repository"},
		{"missing tag", "POST", "/api/v1/promotions", apiToken, `{"app":"web","image":"` + b.source + `:never-pushed"}`, 400, "MANIFEST_UNKNOWN"},
		{"bad commit", "POST", "/api/v1/promotions", apiToken, `{"app":"web","image":"` + b.source + `:ok","commit":"main"}`, 400, "not a hexadecimal SHA"},
		{"not json", "POST", "/api/v1/promotions", apiToken, `{"app":`, 400, "not valid JSON"},
		{"unknown field", "POST", "/api/v1/promotions", apiToken, `{"app":"web","img":"x"}`, 400, "unknown field"},
		{"approve finished", "POST", "/api/v1/promotions/done-1/approve", personToken("alice"), `{}`, 409, "not waiting for approval"},
		{"approver named", "POST", "/api/v1/promotions/done-1/approve", personToken("alice"), `{"approver":"eve"}`, 400, "approver is not accepted"},
		{"pipeline approves", "POST", "/api/v1/promotions/done-1/approve", apiToken, `{}`, 403, "may not approve"},
		{"reject finished", "POST", "/api/v1/promotions/done-1/reject", personToken("carol"), `{}`, 409, "not waiting for approval"},
		{"approve unknown", "POST", "/api/v1/promotions/nope/approve", apiToken, `{}`, 404, "not found"},
		{"get unknown", "GET", "/api/v1/promotions/nope", apiToken, "", 404, "not found"},
		{"rollback without history", "POST", "/api/v1/rollbacks", personToken("dave"), `{"app":"web","environment":"production"}`, 409, "no earlier promoted digest"},
		{"pipeline rolls back", "POST", "/api/v1/rollbacks", apiToken, `{"app":"web","environment":"production"}`, 403, "may not rollback"},
		{"rollback unknown env", "POST", "/api/v1/rollbacks", personToken("dave"), `{"app":"web","environment":"staging"}`, 400, `no environment "staging"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, b.api.URL+tt.path, strings.NewReader(tt.body))
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Error string `json:"error"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != tt.want || !strings.Contains(body.Error, tt.wantMsg) {
				t.Errorf("%s %s = %d %q, want %d containing %q", tt.method, tt.path, resp.StatusCode, body.Error, tt.want, tt.wantMsg)
			}
			if tt.token != "" && strings.Contains(body.Error, tt.token) {
				t.Errorf("answer shows the token: %q", body.Error)
			}
		})
	}
	after, _ := b.store.ListPromotions(ctx)
	if len(after) != len(before) || after[0].Revision != before[0].Revision {
		t.Errorf("store changed: %d promotions (revision %d), want %d (revision %d)", len(after), after[0].Revision, len(before), before[0].Revision)
	}
}
