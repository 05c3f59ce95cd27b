package promote_test

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/promote"
	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/test/knative"
	"github.com/ferryci/ferry/test/testbed"
)

// A Knative Service as a promotion target, on the bed's real API server
// with Knative's CRDs and the test playing Knative's controller
// (test/knative): the image is set by digest in spec.template, the new
// Revision hello-00002 gets no traffic until it is Ready, then 20% and
// 60% through spec.traffic, then all of it, through a restart of the
// promoter at 20% that changes nothing; a second promotion whose
// Revision fails is rolled back by routing 100% to hello-00002 again.
func TestKnativeServiceTarget(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the test bed's kube-apiserver; skipped with -short")
	}
	b := newBed(t, memStore(t))
	admin, err := dynamic.NewForConfig(testbed.RESTConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if b.dynamic, err = dynamic.NewForConfig(testbed.FerryRESTConfig(t)); err != nil {
		t.Fatal(err)
	}
	knative.Install(t, admin)
	grantMissing(t, b, "ferry-knative",
		rbacv1.PolicyRule{APIGroups: []string{"serving.knative.dev"}, Resources: []string{"services"}, Verbs: []string{"get", "update"}},
		rbacv1.PolicyRule{APIGroups: []string{"serving.knative.dev"}, Resources: []string{"revisions"}, Verbs: []string{"get"}})
	var failing atomic.Value
	failing.Store("")
	ctrl := &knative.Controller{Dyn: admin, Namespace: b.nsProd, Fail: func(image string) string {
		if image == failing.Load().(string) {
			return "Container failed with: exit status 1"
		}
		return ""
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ctrl.Run(ctx, t) }()
	t.Cleanup(func() { cancel(); <-done })

	services := admin.Resource(knative.ServiceGVR).Namespace(b.nsProd)
	hello := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "serving.knative.dev/v1", "kind": "Service",
		"metadata": map[string]any{"name": "hello"},
		"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
			"containers": []any{map[string]any{"image": oldImage, "ports": []any{map[string]any{"containerPort": int64(8080)}}}},
		}}},
	}}
	if _, err := services.Create(ctx, hello, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create knative service: %v", err)
	}
	waitSplit(t, ctrl, map[string]int64{"hello-00001": 100})

	b.app.Environments = []config.PromotionEnvironment{{
		Name: "production", Namespace: b.nsProd, KnativeServices: []string{"hello"},
		RolloutTimeout: config.Duration{Duration: time.Minute},
		Canary: config.Canary{Steps: []config.CanaryStep{
			{SetWeight: 20}, {Pause: config.Duration{Duration: 2 * time.Second}}, {SetWeight: 60},
		}},
	}}
	b.start()

	// One: through 20% and 60% to all.
	d1 := push(t, b.source+":v1", image(t, layers(t, 1, 1024)...))
	p, err := b.client().Create(ctx, promote.Request{App: "web", Image: b.source + ":v1", Commit: commit})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	b.waitFor(p.ID, "the pause", func(p store.Promotion) bool {
		return p.Environments[0].Phase == store.EnvCanary && p.Environments[0].CanaryStep == 1
	})
	b.stop() // a restart at 20%: the split is neither undone nor made again
	b.start()
	p = b.waitState(p.ID, store.PromotionSucceeded)
	want1 := b.target + "@" + d1.String()
	svc, err := services.Get(ctx, "hello", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cs, _, _ := unstructured.NestedSlice(svc.Object, "spec", "template", "spec", "containers")
	traffic, _, _ := unstructured.NestedSlice(svc.Object, "spec", "traffic")
	if img := cs[0].(map[string]any)["image"]; img != want1 {
		t.Errorf("template image %v, want %s", img, want1)
	}
	if fmt.Sprint(traffic) != "[map[latestRevision:true percent:100]]" {
		t.Errorf("spec.traffic = %v, want all to the latest revision", traffic)
	}
	wantHistory := []map[string]int64{
		{"hello-00001": 100},
		{"hello-00001": 80, "hello-00002": 20},
		{"hello-00001": 40, "hello-00002": 60},
		{"hello-00002": 100},
	}
	if h := ctrl.History("hello"); !equalSplits(h, wantHistory) {
		t.Errorf("traffic went %v, want %v (no request to hello-00002 before the 20%% step)", h, wantHistory)
	}
	if prev := p.Environments[0].Previous; len(prev) != 1 || prev[0].Revision != "hello-00001" || prev[0].Image != oldImage {
		t.Errorf("previous = %+v, want hello-00001 running %s", prev, oldImage)
	}
	var steps []string
	for _, a := range p.Audit {
		if a.Action == "canary step" {
			steps = append(steps, a.Detail)
		}
	}
	if len(steps) != 4 || !strings.Contains(steps[0], "hello: 20% of requests to hello-00002, 80% to hello-00001") ||
		!strings.Contains(steps[2], "hello: 60% of requests to hello-00002, 40% to hello-00001") {
		t.Errorf("timeline:\n%s", strings.Join(steps, "\n"))
	}

	// Two: its Revision fails; all traffic goes back to hello-00002.
	d2 := push(t, b.source+":v2", image(t, layers(t, 1, 1024)...))
	failing.Store(b.target + "@" + d2.String())
	p2, err := b.client().Create(ctx, promote.Request{App: "web", Image: b.source + ":v2", Commit: commit})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	p2 = b.waitState(p2.ID, store.PromotionFailed)
	if e := p2.Environments[0]; e.Phase != store.EnvRolledBack || !strings.Contains(p2.Reason, "revision hello-00003 failed: ExitCode1: Container failed with: exit status 1") {
		t.Errorf("phase %s reason %q; want rolled back for hello-00003's failure", e.Phase, p2.Reason)
	}
	if prev := p2.Environments[0].Previous; len(prev) != 1 || prev[0].Revision != "hello-00002" || prev[0].Image != want1 {
		t.Errorf("previous = %+v, want hello-00002 running %s", prev, want1)
	}
	svc, _ = services.Get(ctx, "hello", metav1.GetOptions{})
	traffic, _, _ = unstructured.NestedSlice(svc.Object, "spec", "traffic")
	if fmt.Sprint(traffic) != "[map[latestRevision:false percent:100 revisionName:hello-00002]]" {
		t.Errorf("spec.traffic = %v, want all pinned to hello-00002", traffic)
	}
	for _, split := range ctrl.History("hello") {
		if split["hello-00003"] > 0 {
			t.Errorf("the failed revision got traffic: %v", split)
		}
	}
	if h := ctrl.History("hello"); !maps.Equal(h[len(h)-1], map[string]int64{"hello-00002": 100}) {
		t.Errorf("traffic now %v, want all on hello-00002", h[len(h)-1])
	}
}

func waitSplit(t *testing.T, c *knative.Controller, want map[string]int64) {
	t.Helper()
	for deadline := time.Now().Add(patience); ; {
		if h := c.History("hello"); len(h) > 0 && maps.Equal(h[len(h)-1], want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("knative service never routed %v: %v", want, c.History("hello"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func equalSplits(a, b []map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !maps.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}
