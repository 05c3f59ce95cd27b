package promote_test

import (
	"context"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/promote"
	"github.com/ferryci/ferry/pkg/store"
)

// Canary steps on the bed: a real Deployment controller and scheduler run
// the canary's pods beside the stable's, and a real Prometheus scrapes an
// error ratio the test sets, so the analysis' pass and fail are real
// queries. Promotion one passes every step, survives a restart in the
// middle of its steps without repeating one, and ends with the stable on
// the new digest and no canary; promotion two fails its first analysis
// and is rolled back: canary deleted, stable untouched.
func TestCanaryStepsOnTheBed(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the test bed's kube-apiserver and a prometheus binary; skipped with -short")
	}
	errorsPerMille, prom := errorRatioPrometheus(t)
	b := newBed(t, redisStore(t))
	grantCanaryRights(t, b)
	ratio := `sum(web_requests{code="500"}) / sum(web_requests)`
	analysis := &config.CanaryAnalysis{
		Metrics:  []config.CanaryMetric{{Name: "error-ratio", Query: ratio, Max: ptr(0.05)}},
		Interval: config.Duration{Duration: 200 * time.Millisecond}, Passes: 3, FailureLimit: 2, InconclusiveLimit: 20,
	}
	b.app.Environments = []config.PromotionEnvironment{{
		Name: "production", Namespace: b.nsProd, Deployments: []string{"web"},
		RolloutTimeout: config.Duration{Duration: 2 * time.Minute},
		Canary: config.Canary{Prometheus: prom, Steps: []config.CanaryStep{
			{SetWeight: 25},
			{Analysis: analysis},
			{Pause: config.Duration{Duration: 3 * time.Second}},
			{SetWeight: 50},
			{Analysis: analysis},
		}},
	}}
	b.deploy(b.nsProd, nil)
	b.start()
	ctx := context.Background()

	// One: every step passes.
	scraped(t, prom, ratio, func(v float64) bool { return v < 0.05 })
	d1 := push(t, b.source+":v1", image(t, layers(t, 1, 1024)...))
	p, err := b.client().Create(ctx, promote.Request{App: "web", Image: b.source + ":v1", Commit: commit})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	want1 := b.target + "@" + d1.String()
	b.waitFor(p.ID, "the pause step", func(p store.Promotion) bool {
		return p.Environments[0].Phase == store.EnvCanary && p.Environments[0].CanaryStep == 2
	})
	// The Service's selector (app=web) selects the canary's pod beside the
	// stable's two.
	pods, err := b.kube.CoreV1().Pods(b.nsProd).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	images := map[string]int{}
	for _, pod := range pods.Items {
		if pod.DeletionTimestamp == nil {
			images[pod.Spec.Containers[0].Image]++
		}
	}
	if images[want1] != 1 || images[oldImage] != 2 {
		t.Errorf("pods selected by app=web at 25%%: %v; want 1 canary pod of %s beside 2 of %s", images, want1, oldImage)
	}
	canary, err := b.kube.AppsV1().Deployments(b.nsProd).Get(ctx, "web-canary", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the canary Deployment at step 3: %v", err)
	}
	b.stop() // a restart in the middle of the steps
	b.start()
	p = b.waitState(p.ID, store.PromotionSucceeded)
	if got := b.deployment(b.nsProd).Spec.Template.Spec.Containers[0].Image; got != want1 {
		t.Errorf("stable runs %s, want %s", got, want1)
	}
	if _, err := b.kube.AppsV1().Deployments(b.nsProd).Get(ctx, "web-canary", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the canary is left after the promotion: %v", err)
	}
	var steps []string
	for _, a := range p.Audit {
		if a.Action == "canary step" {
			steps = append(steps, a.Detail)
		}
	}
	wantSteps := []string{"step 1/5 setWeight 25: web-canary: 1 pods beside 2 of web (33% of pods)", "step 2/5 analysis of error-ratio: passed after 3 rounds",
		"step 3/5 pause 3s: paused", "step 4/5 setWeight 50: web-canary: 2 pods beside 2 of web (50% of pods)", "step 5/5 analysis of error-ratio: passed after 3 rounds", "steps done: the stable"}
	if len(steps) != len(wantSteps) {
		t.Fatalf("canary steps in the timeline:\n%s\nwant each of %d once", strings.Join(steps, "\n"), len(wantSteps))
	}
	for i, w := range wantSteps {
		if !strings.HasPrefix(steps[i], w) {
			t.Errorf("timeline step %d = %q, want %q…", i+1, steps[i], w)
		}
	}
	if !strings.Contains(lastAudit(p, "rolled out").Detail, "canary deleted: "+b.nsProd+"/web-canary") {
		t.Errorf("rolled out: %+v, want the canary's deletion recorded", lastAudit(p, "rolled out"))
	}
	t.Logf("canary %s (uid %s) at the restart; timeline:\n%s", canary.Name, canary.UID, strings.Join(steps, "\n"))

	// Two: the error ratio rises to 30%; the first analysis fails.
	errorsPerMille.Store(300)
	scraped(t, prom, ratio, func(v float64) bool { return v > 0.2 })
	stable := b.deployment(b.nsProd)
	d2 := push(t, b.source+":v2", image(t, layers(t, 1, 1024)...))
	p2, err := b.client().Create(ctx, promote.Request{App: "web", Image: b.source + ":v2", Commit: commit})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	p2 = b.waitState(p2.ID, store.PromotionFailed)
	if e := p2.Environments[0]; e.Phase != store.EnvRolledBack || !strings.Contains(p2.Reason, "canary step 2/5 analysis of error-ratio: failed after 2 rounds: error-ratio=0.3 (fail)") {
		t.Errorf("phase %s reason %q; want rolled back for the analysis", e.Phase, p2.Reason)
	}
	if actions(p2, "canary step", "production") != 1 || !strings.Contains(lastAudit(p2, "rolled back").Detail, "canary deleted: "+b.nsProd+"/web-canary") {
		t.Errorf("timeline %+v; want the canary made at step 1 and deleted by the rollback", p2.Audit)
	}
	if _, err := b.kube.AppsV1().Deployments(b.nsProd).Get(ctx, "web-canary", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the canary is left after the rollback: %v", err)
	}
	after := b.deployment(b.nsProd)
	if after.Generation != stable.Generation || after.Spec.Template.Spec.Containers[0].Image != want1 {
		t.Errorf("stable changed: generation %d -> %d, image %s; want untouched on %s", stable.Generation, after.Generation, after.Spec.Template.Spec.Containers[0].Image, want1)
	}
	if strings.Contains(after.Spec.Template.Spec.Containers[0].Image, d2.String()) {
		t.Error("the stable runs the failed digest")
	}
}

// scraped waits until Prometheus has a value of query that ok accepts.
func scraped(t *testing.T, prom, query string, ok func(float64) bool) {
	t.Helper()
	q := promote.PrometheusQuerier{URL: prom}
	for deadline := time.Now().Add(patience); ; {
		v, err := q.Query(context.Background(), query)
		if err == nil && ok(v) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus never had the value wanted of %s: last %g, %v", query, v, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func lastAudit(p store.Promotion, action string) store.AuditEntry {
	for i := len(p.Audit) - 1; i >= 0; i-- {
		if p.Audit[i].Action == action {
			return p.Audit[i]
		}
	}
	return store.AuditEntry{}
}

// grantCanaryRights makes sure ferry may create and delete Deployments in
// the test's production namespace.
func grantCanaryRights(t *testing.T, b *bed) {
	t.Helper()
	grantMissing(t, b, "ferry-canary", rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"create", "delete"}})
}

// grantMissing makes sure ferry has the rights of rules in the test's
// production namespace. test/bed/rbac-ferry.yaml's ferry-promotion grants
// them; a bed brought up before they were added there gets them from a
// Role named name here.
func grantMissing(t *testing.T, b *bed, name string, rules ...rbacv1.PolicyRule) {
	t.Helper()
	ctx := context.Background()
	allowed := func() bool {
		for _, r := range rules {
			for _, verb := range r.Verbs {
				for _, res := range r.Resources {
					rev, err := b.kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
						Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
							Namespace: b.nsProd, Verb: verb, Group: r.APIGroups[0], Resource: res}},
					}, metav1.CreateOptions{})
					if err != nil {
						t.Fatalf("self subject access review: %v", err)
					}
					if !rev.Status.Allowed {
						return false
					}
				}
			}
		}
		return true
	}
	if allowed() {
		return
	}
	t.Logf("the bed's ferry-promotion ClusterRole predates %s; granting its rights in the test namespace", name)
	if _, err := b.admin.RbacV1().Roles(b.nsProd).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.admin.RbacV1().RoleBindings(b.nsProd).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "ferry"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); !allowed(); {
		if time.Now().After(deadline) {
			t.Fatalf("the rights of %s never took effect", name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
