package promote_test

import (
	"context"
	"strings"
	"testing"

	"github.com/ferryci/ferry/pkg/promote"
	"github.com/ferryci/ferry/pkg/promote/api"
	"github.com/ferryci/ferry/pkg/store"
)

// promoteAll takes the source image ref through test and, approved,
// production, and returns the succeeded promotion.
func (b *bed) promoteAll(ref string) store.Promotion {
	b.t.Helper()
	ctx := context.Background()
	p, err := b.client().Create(ctx, promote.Request{App: "web", Image: ref, Commit: commit})
	if err != nil {
		b.t.Fatalf("create promotion of %s: %v", ref, err)
	}
	b.waitState(p.ID, store.PromotionWaiting)
	if _, err := b.as("alice").Approve(ctx, p.ID, api.Decision{Environment: "production"}); err != nil {
		b.t.Fatalf("approve promotion of %s: %v", ref, err)
	}
	return b.waitState(p.ID, store.PromotionSucceeded)
}

// After A and then B were promoted through both environments, a rollback
// of production without naming a promotion returns production to A's
// digest (the last promotion before the newest), recorded as its own
// promotion with its audit trail; test keeps running B. A rollback naming
// A's promotion returns test to A as well, leaving production alone.
func TestRollbackReturnsEnvironmentToEarlierDigest(t *testing.T) {
	b := newBed(t, memStore(t))
	digestA := push(t, b.source+":a", image(t, layers(t, 1, 2048)...))
	digestB := push(t, b.source+":b", image(t, layers(t, 1, 2048)...))
	b.deploy(b.nsTest, nil)
	b.deploy(b.nsProd, nil)
	b.start()
	ctx := context.Background()

	pa := b.promoteAll(b.source + ":a")
	pb := b.promoteAll(b.source + ":b")
	wantA, wantB := b.target+"@"+digestA.String(), b.target+"@"+digestB.String()
	if pa.Target != wantA || pb.Target != wantB {
		t.Fatalf("targets = %s, %s; want %s, %s", pa.Target, pb.Target, wantA, wantB)
	}
	b.waitDeployment(b.nsProd, wantB)
	testBefore := b.waitDeployment(b.nsTest, wantB)

	// Production, no "to": back to A.
	rb, err := b.as("carol").Rollback(ctx, promote.RollbackRequest{
		App: "web", Environment: "production", Reason: "B breaks checkout",
	})
	if err != nil {
		t.Fatalf("rollback production: %v", err)
	}
	if rb.Kind != store.KindRollback || rb.RollbackOf != pa.ID || rb.SourceDigest != digestA.String() || rb.Target != wantA {
		t.Fatalf("rollback = kind %s of %s digest %s target %s; want rollback of %s digest %s target %s",
			rb.Kind, rb.RollbackOf, rb.SourceDigest, rb.Target, pa.ID, digestA, wantA)
	}
	if len(rb.Environments) != 1 || rb.Environments[0].Name != "production" {
		t.Fatalf("rollback environments = %+v, want production only", rb.Environments)
	}
	rb = b.waitState(rb.ID, store.PromotionSucceeded)
	d := b.waitDeployment(b.nsProd, wantA) // image and kubectl's rollout rules
	if img := d.Spec.Template.Spec.Containers[0].Image; img != wantA {
		t.Errorf("production web image = %s, want %s", img, wantA)
	}
	if img := d.Spec.Template.Spec.Containers[1].Image; img != "registry.example/proxy:1" {
		t.Errorf("production sidecar image changed to %s", img)
	}
	if prev := rb.Environments[0].Previous; len(prev) != 1 || prev[0].Image != wantB {
		t.Errorf("rollback previous = %+v, want web=%s", prev, wantB)
	}

	// The audit trail, as the API returns it.
	got, err := b.client().Get(ctx, rb.ID)
	if err != nil {
		t.Fatalf("get rollback: %v", err)
	}
	if got.RequestedBy != "carol" {
		t.Errorf("rollback requested by %q, want carol", got.RequestedBy)
	}
	var requested *store.AuditEntry
	for i, a := range got.Audit {
		if a.Action == "rollback requested" {
			requested = &got.Audit[i]
		}
	}
	switch {
	case requested == nil:
		t.Errorf("audit has no rollback request: %+v", got.Audit)
	case requested.Actor != "carol" || requested.Environment != "production" ||
		!strings.Contains(requested.Detail, pa.ID) || !strings.Contains(requested.Detail, "B breaks checkout"):
		t.Errorf("rollback request audit = %+v, want carol, production, naming %s and the reason", *requested, pa.ID)
	}
	for _, action := range []string{"rollout started", "rolled out", "verified"} {
		if n := actions(got, action, "production"); n != 1 {
			t.Errorf("audit has %d %q entries for production, want 1: %+v", n, action, got.Audit)
		}
	}
	if actions(got, "succeeded", "") != 1 {
		t.Errorf("audit has no success: %+v", got.Audit)
	}
	list, err := b.client().List(ctx, "web")
	if err != nil || len(list) != 3 || list[0].ID != rb.ID {
		t.Errorf("list = %d promotions (err %v), want 3 with the rollback first", len(list), err)
	}

	// Test and the earlier promotions are untouched.
	if d := b.deployment(b.nsTest); d.Generation != testBefore.Generation || d.Spec.Template.Spec.Containers[0].Image != wantB {
		t.Errorf("test touched by production's rollback: generation %d -> %d, image %s",
			testBefore.Generation, d.Generation, d.Spec.Template.Spec.Containers[0].Image)
	}
	for _, p := range []store.Promotion{pa, pb} {
		if after, _ := b.store.GetPromotion(ctx, p.ID); after.Revision != p.Revision || after.State != store.PromotionSucceeded {
			t.Errorf("promotion %s changed by the rollback: revision %d -> %d, state %s", p.ID, p.Revision, after.Revision, after.State)
		}
	}

	// Test, to A's promotion by id.
	prodBefore := b.deployment(b.nsProd)
	rt, err := b.as("dave").Rollback(ctx, promote.RollbackRequest{App: "web", Environment: "test", To: pa.ID})
	if err != nil {
		t.Fatalf("rollback test to %s: %v", pa.ID, err)
	}
	if rt.RollbackOf != pa.ID || rt.Target != wantA {
		t.Errorf("rollback of test = of %s target %s, want of %s target %s", rt.RollbackOf, rt.Target, pa.ID, wantA)
	}
	rt = b.waitState(rt.ID, store.PromotionSucceeded)
	b.waitDeployment(b.nsTest, wantA)
	if rt.RequestedBy != "dave" || actions(rt, "rollback requested", "test") != 1 {
		t.Errorf("rollback of test: requested by %q, audit %+v", rt.RequestedBy, rt.Audit)
	}
	if d := b.deployment(b.nsProd); d.Generation != prodBefore.Generation || d.Spec.Template.Spec.Containers[0].Image != wantA {
		t.Errorf("production touched by test's rollback: generation %d -> %d, image %s",
			prodBefore.Generation, d.Generation, d.Spec.Template.Spec.Containers[0].Image)
	}
}
