package api_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/promote"
	"github.com/ferryci/ferry/pkg/promote/api"
	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/pkg/store/memstore"
	"github.com/ferryci/ferry/test/testbed"
)

// syncBuffer is a log sink tests read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// On the bed's real API server: two ServiceAccounts with TokenRequest
// tokens, RBAC that lets "approver" approve web in production and test,
// and "tester" only in test. ferry (the bed's ferry user, with the
// chart's review rights) verifies them by TokenReview and
// SubjectAccessReview. Unauthenticated and unauthorized approvals are
// refused with 401/403, change nothing and are logged without the token;
// allowed ones record the verified ServiceAccount.
func TestKubernetesApprovers(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the test bed's kube-apiserver (FERRY_TESTBED_ENV); skipped with -short")
	}
	admin := testbed.Clientset(t)
	nsTest := testbed.Namespace(t)
	nsProd := testbed.Namespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	testbed.GrantReviews(ctx, t)

	// The people: ServiceAccounts in the test namespace, tokens from the
	// TokenRequest API.
	tokens := map[string]string{}
	for _, sa := range []string{"approver", "tester"} {
		tokens[sa] = testbed.ServiceAccountToken(ctx, t, nsTest, sa)
	}
	user := func(sa string) string { return "system:serviceaccount:" + nsTest + ":" + sa }
	// What the README tells operators to grant.
	role := func(ns, name string, subjects ...string) {
		if _, err := admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{"ferry.dev"}, Resources: []string{"promotions"},
				ResourceNames: []string{"web"}, Verbs: []string{"get", "approve", "reject"}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create Role %s/%s: %v", ns, name, err)
		}
		rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}}
		for _, s := range subjects {
			rb.Subjects = append(rb.Subjects, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: s, Namespace: nsTest})
		}
		if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create RoleBinding %s/%s: %v", ns, name, err)
		}
	}
	role(nsProd, "web-approvers", "approver")
	role(nsTest, "web-approvers", "approver", "tester")
	waitAllowed(ctx, t, admin, user("approver"), nsProd, "approve")
	waitAllowed(ctx, t, admin, user("tester"), nsTest, "approve")

	st, err := memstore.New(memstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	p, err := promote.New(promote.Config{Store: st, Registry: registry{}, Apps: []config.PromotionApp{{
		Name: "web", Source: source, Target: "registry.example/release/web",
		Environments: []config.PromotionEnvironment{
			{Name: "test", Namespace: nsTest, Deployments: []string{"web"}, Approval: true},
			{Name: "production", Namespace: nsProd, Deployments: []string{"web"}, Approval: true},
		},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	auth, err := api.NewAuth(api.AuthConfig{PipelineToken: token, Kube: testbed.FerryClientset(t),
		Auth: config.PromotionAuth{Kubernetes: config.KubernetesAuth{Enabled: true, Group: "ferry.dev"}}})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	api.New(api.Config{Promoter: p, Auth: auth, Logger: slog.New(slog.NewTextHandler(&logs, nil))}).Register(e)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)

	waiting := func(id, env string) store.Promotion {
		pr := store.Promotion{ID: id, Kind: store.KindPromote, App: "web", State: store.PromotionWaiting, CreatedAt: time.Now(),
			Environments: []store.PromotionEnv{{Name: "test", Phase: store.EnvSucceeded}, {Name: "production", Phase: store.EnvPending}}}
		if env == "test" {
			pr.Environments[0].Phase = store.EnvAwaitingApprove
		} else {
			pr.Environments[1].Phase = store.EnvAwaitingApprove
		}
		saved, err := st.PutPromotion(ctx, pr)
		if err != nil {
			t.Fatal(err)
		}
		return saved
	}
	prod := waiting("prod-1", "production")
	tst := waiting("test-1", "test")

	approve := func(id, tok string) int {
		c := &api.Client{BaseURL: srv.URL, Token: tok}
		_, err := c.Approve(ctx, id, api.Decision{})
		if err == nil {
			return http.StatusOK
		}
		if e, ok := err.(*api.Error); ok { //nolint:errorlint // returned unwrapped
			return e.Status
		}
		t.Fatalf("approve %s: %v", id, err)
		return 0
	}
	unchanged := func(what string, before store.Promotion) {
		t.Helper()
		after, _ := st.GetPromotion(ctx, before.ID)
		if after.Revision != before.Revision || after.State != store.PromotionWaiting {
			t.Errorf("%s changed promotion %s: revision %d -> %d, state %s", what, before.ID, before.Revision, after.Revision, after.State)
		}
	}
	if got := approve(prod.ID, ""); got != http.StatusUnauthorized {
		t.Errorf("approve without a token = %d, want 401", got)
	}
	forged := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.c2lnbmF0dXJl"
	if got := approve(prod.ID, forged); got != http.StatusUnauthorized {
		t.Errorf("approve with a token the API server does not accept = %d, want 401", got)
	}
	if got := approve(prod.ID, token); got != http.StatusForbidden {
		t.Errorf("approve with the pipeline token = %d, want 403", got)
	}
	if got := approve(prod.ID, tokens["tester"]); got != http.StatusForbidden {
		t.Errorf("tester approves production = %d, want 403", got)
	}
	unchanged("refused approvals", prod)
	if got := approve(tst.ID, tokens["tester"]); got != http.StatusOK {
		t.Errorf("tester approves test = %d, want 200", got)
	}
	if got := approve(prod.ID, tokens["approver"]); got != http.StatusOK {
		t.Errorf("approver approves production = %d, want 200", got)
	}
	for id, who := range map[string]string{tst.ID: user("tester"), prod.ID: user("approver")} {
		got, _ := (&api.Client{BaseURL: srv.URL, Token: tokens["approver"]}).Get(ctx, id)
		last := got.Audit[len(got.Audit)-1]
		if last.Action != "approved" || last.Actor != who {
			t.Errorf("audit of %s ends with %+v, want approved by %s (the verified identity)", id, last, who)
		}
	}

	out := logs.String()
	for _, want := range []string{"refused: unauthenticated", "refused: forbidden", "user=" + user("tester"), "user=pipeline"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	for name, tok := range map[string]string{"tester": tokens["tester"], "approver": tokens["approver"], "forged": forged, "pipeline": token} {
		if strings.Contains(out, tok) {
			t.Errorf("log shows the %s token", name)
		}
	}
}

// waitAllowed waits until RBAC lets user verb web's promotions in ns.
func waitAllowed(ctx context.Context, t *testing.T, _ kubernetes.Interface, user, ns, verb string) {
	t.Helper()
	testbed.WaitAllowed(ctx, t, user, authorizationv1.ResourceAttributes{
		Namespace: ns, Group: "ferry.dev", Resource: "promotions", Name: "web", Verb: verb})
}
