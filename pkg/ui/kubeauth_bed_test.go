package ui_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/promote/api"
	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/test/testbed"
)

// On the bed's real API server: people sign in with ServiceAccount tokens,
// verified by TokenReview; what they may do is the SubjectAccessReview's
// answer, as for the API. "approver" may approve web in prod, "reader" may
// sign in but not approve; a token the API server does not accept is
// refused.
func TestKubernetesSignIn(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the test bed's kube-apiserver (FERRY_TESTBED_ENV); skipped with -short")
	}
	admin := testbed.Clientset(t)
	nsTest, nsProd := testbed.Namespace(t), testbed.Namespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	testbed.GrantReviews(ctx, t)
	approverTok := testbed.ServiceAccountToken(ctx, t, nsTest, "approver")
	readerTok := testbed.ServiceAccountToken(ctx, t, nsTest, "reader")
	// What the README tells operators to grant: the right in every
	// environment's namespace (reading looks at the first one's).
	for _, ns := range []string{nsTest, nsProd} {
		if _, err := admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "web-approvers"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{"ferry.dev"}, Resources: []string{"promotions"}, ResourceNames: []string{"web"},
				Verbs: []string{"get", "approve", "reject"}}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "web-approvers"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "web-approvers"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "approver", Namespace: nsTest}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	approver := "system:serviceaccount:" + nsTest + ":approver"
	testbed.WaitAllowed(ctx, t, approver, authorizationv1.ResourceAttributes{Namespace: nsProd, Group: "ferry.dev", Resource: "promotions", Name: "web", Verb: "approve"})
	testbed.WaitAllowed(ctx, t, approver, authorizationv1.ResourceAttributes{Namespace: nsTest, Group: "ferry.dev", Resource: "promotions", Name: "web", Verb: "get"})

	auth, err := api.NewAuth(api.AuthConfig{PipelineToken: pipelineToken, Kube: testbed.FerryClientset(t),
		Auth: config.PromotionAuth{Kubernetes: config.KubernetesAuth{Enabled: true, Group: "ferry.dev"}}})
	if err != nil {
		t.Fatal(err)
	}
	b := newBedOn(t, nil, auth, nsTest, nsProd)

	if a := b.signIn(b.client(), "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.c2lnbmF0dXJl", ""); a.code != http.StatusUnauthorized {
		t.Errorf("sign-in with a token the API server does not accept = %d, want 401", a.code)
	}
	// Any ServiceAccount of the cluster is verified; without a right on
	// an app's promotions it does not get in.
	reader := b.client()
	if a := b.signIn(reader, readerTok, ""); a.code != http.StatusForbidden || strings.Contains(a.body, readerTok) {
		t.Errorf("reader (no rights) signs in: %d, want 403 without the token in the page", a.code)
	}
	if a := b.do(reader, "GET", "/ui/activity", nil, nil); a.code != http.StatusSeeOther {
		t.Errorf("reader opens the activity: %d, want 303 to the sign-in", a.code)
	}
	if a := b.do(reader, "POST", "/ui/promotions/p-1/approve", url.Values{"environment": {"prod"}}, nil); a.code != http.StatusUnauthorized {
		t.Errorf("reader approves = %d, want 401", a.code)
	}

	c := b.signedIn(approverTok)
	page := b.do(c, "GET", "/ui/promotions/p-1", nil, nil)
	if !strings.Contains(page.body, `id="approve"`) || !strings.Contains(page.body, approver) {
		t.Fatalf("approver's page has no Approve button or does not name them:\n%s", page.body)
	}
	a := b.do(c, "POST", "/ui/promotions/p-1/approve", url.Values{"csrf": {csrfOf(t, page.body)}, "environment": {"prod"}}, nil)
	if a.code != http.StatusSeeOther {
		t.Fatalf("approver's approve = %d:\n%s", a.code, a.body)
	}
	p, _ := b.st.GetPromotion(ctx, "p-1")
	if p.Environments[1].Phase != store.EnvApproved || p.Environments[1].Approver != approver {
		t.Errorf("prod = %s by %q, want approved by %s", p.Environments[1].Phase, p.Environments[1].Approver, approver)
	}
}
