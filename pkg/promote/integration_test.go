package promote_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferryci/ferry/pkg/promote"
	"github.com/ferryci/ferry/pkg/promote/api"
	"github.com/ferryci/ferry/pkg/store"
)

const commit = "4f2a9c0d1e3b5a7c9e1f3a5b7c9d1e3f5a7b9c1d"

// A promotion copies the image by digest (mounting what the target lacks,
// skipping what it has, streaming nothing), rolls test, verifies, waits for
// approval, and rolls production to exactly the digest that passed test.
func TestPromotionThroughTestAndProduction(t *testing.T) {
	b := newBed(t, memStore(t))
	ls := layers(t, 3, 64<<10)
	digest := push(t, b.source+":build-7", image(t, ls...))
	// The target already has the base layer (an earlier release).
	push(t, b.target+":base", image(t, ls[0]))
	b.deploy(b.nsTest, nil)
	b.deploy(b.nsProd, nil)
	prodGen := b.deployment(b.nsProd).Generation
	b.start()

	p, err := b.client().Create(context.Background(), promote.Request{
		App: "web", Image: b.source + ":build-7", Commit: commit, Version: "1.4.0",
		BuildURL: "http://jenkins/job/web/7/",
	})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if p.SourceDigest != digest.String() {
		t.Fatalf("resolved digest = %s, want %s", p.SourceDigest, digest)
	}
	p = b.waitState(p.ID, store.PromotionWaiting)
	want := b.target + "@" + digest.String()
	if p.Target != want {
		t.Fatalf("target = %s, want %s", p.Target, want)
	}

	// Copied by digest: same digest in the target, reachable by the tags.
	for _, ref := range []string{want, b.target + ":1.4.0", b.target + ":" + commit[:12]} {
		r, _ := name.ParseReference(ref)
		d, err := remote.Head(r)
		if err != nil || d.Digest != digest {
			t.Errorf("target %s: digest %v (err %v), want %s", ref, d, err, digest)
		}
	}
	// Nothing streamed: the base layer was there, the rest was mounted.
	if n, bytes := b.rec.uploads.Load(), b.rec.uploadBytes.Load(); n != 0 {
		t.Errorf("ferry streamed %d blob uploads (%d bytes); want 0 (skip present blobs, mount the rest)", n, bytes)
	}
	if m := b.rec.mounts.Load(); m != 3 { // two layers and the config
		t.Errorf("cross-repository mounts = %d, want 3 (two missing layers and the config blob)", m)
	}

	// Test runs the digest, its previous image is recorded; production is
	// untouched while the gate waits.
	got := b.waitDeployment(b.nsTest, want)
	if c := got.Spec.Template.Spec.Containers[1].Image; c != "registry.example/proxy:1" {
		t.Errorf("sidecar image changed to %s", c)
	}
	if prev := p.Environments[0].Previous; len(prev) != 1 || prev[0].Image != oldImage || prev[0].Container != "web" {
		t.Errorf("test previous = %+v, want web=%s", prev, oldImage)
	}
	if p.Environments[0].Phase != store.EnvSucceeded || p.Environments[1].Phase != store.EnvAwaitingApprove {
		t.Errorf("phases = %s, %s; want succeeded, awaiting_approval", p.Environments[0].Phase, p.Environments[1].Phase)
	}
	if d := b.deployment(b.nsProd); d.Generation != prodGen || d.Spec.Template.Spec.Containers[0].Image != oldImage {
		t.Fatalf("production changed before approval: generation %d image %s", d.Generation, d.Spec.Template.Spec.Containers[0].Image)
	}

	if _, err := b.as("alice").Approve(context.Background(), p.ID, api.Decision{Environment: "production"}); err != nil {
		t.Fatalf("approve: %v", err)
	}
	p = b.waitState(p.ID, store.PromotionSucceeded)
	b.waitDeployment(b.nsProd, want)
	if e := p.Environments[1]; e.Approver != "alice" || e.ApprovedAt.IsZero() {
		t.Errorf("production approver = %q at %s, want alice", e.Approver, e.ApprovedAt)
	}
	if p.RequestedBy != api.PipelineIdentity || actions(p, "approved", "production") != 1 || actions(p, "succeeded", "") != 1 {
		t.Errorf("audit trail = %+v", p.Audit)
	}

	// Approving a finished promotion is refused and changes nothing.
	_, err = b.as("bob").Approve(context.Background(), p.ID, api.Decision{})
	var apiErr *api.Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusConflict {
		t.Errorf("approve finished promotion: err = %v, want 409", err)
	}
	after, _ := b.store.GetPromotion(context.Background(), p.ID)
	if after.Revision != p.Revision {
		t.Errorf("revision %d -> %d after a refused approval", p.Revision, after.Revision)
	}
}

// A verification that fails in test rolls test back to its previous image
// and leaves production alone.
func TestFailingVerificationRollsTestBack(t *testing.T) {
	b := newBed(t, memStore(t))
	digest := push(t, b.source+":v2", image(t, layers(t, 1, 1024)...))
	b.deploy(b.nsTest, nil)
	b.deploy(b.nsProd, nil)
	prodGen := b.deployment(b.nsProd).Generation
	b.health["test"].Store(http.StatusInternalServerError)
	b.start()

	p, err := b.client().Create(context.Background(), promote.Request{App: "web", Image: b.source + "@" + digest.String(), Commit: commit})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	p = b.waitState(p.ID, store.PromotionFailed)
	if p.Environments[0].Phase != store.EnvRolledBack || p.Environments[1].Phase != store.EnvPending {
		t.Errorf("phases = %s, %s; want rolled_back, pending", p.Environments[0].Phase, p.Environments[1].Phase)
	}
	if !strings.Contains(p.Reason, "test:") || !strings.Contains(p.Reason, "500") {
		t.Errorf("reason = %q, want it to name test and the 500", p.Reason)
	}
	if actions(p, "rolled out", "test") != 1 || actions(p, "rolled back", "test") != 1 {
		t.Errorf("audit = %+v, want one rollout and one rollback of test", p.Audit)
	}
	b.waitDeployment(b.nsTest, oldImage)
	if d := b.deployment(b.nsProd); d.Generation != prodGen || d.Spec.Template.Spec.Containers[0].Image != oldImage {
		t.Errorf("production touched: generation %d -> %d, image %s", prodGen, d.Generation, d.Spec.Template.Spec.Containers[0].Image)
	}
}

// A rollout that cannot progress (a quota leaves no room for the new
// pods) ends with ProgressDeadlineExceeded and is rolled back.
func TestStuckRolloutIsRolledBack(t *testing.T) {
	b := newBed(t, memStore(t))
	digest := push(t, b.source+":v3", image(t, layers(t, 1, 1024)...))
	ctx := context.Background()
	quota := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "two-pods"},
		Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("2")}},
	}
	if _, err := b.admin.CoreV1().ResourceQuotas(b.nsTest).Create(ctx, quota, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create quota: %v", err)
	}
	// Quota admission refuses pods until the quota's usage is computed.
	deadline := time.Now().Add(patience)
	for {
		q, err := b.admin.CoreV1().ResourceQuotas(b.nsTest).Get(ctx, "two-pods", metav1.GetOptions{})
		if err == nil && q.Status.Used != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("quota usage never computed")
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.deploy(b.nsTest, func(d *appsv1.Deployment) { d.Spec.ProgressDeadlineSeconds = ptr(int32(3)) })
	b.deploy(b.nsProd, nil)
	b.start()

	p, err := b.client().Create(ctx, promote.Request{App: "web", Image: b.source + ":v3"})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	p = b.waitState(p.ID, store.PromotionFailed)
	if !strings.Contains(p.Reason, "progress deadline") {
		t.Errorf("reason = %q, want the progress deadline", p.Reason)
	}
	if p.Environments[0].Phase != store.EnvRolledBack {
		t.Errorf("test phase = %s, want rolled_back", p.Environments[0].Phase)
	}
	b.waitDeployment(b.nsTest, oldImage)
	if img := b.deployment(b.nsProd).Spec.Template.Spec.Containers[0].Image; img != oldImage {
		t.Errorf("production image = %s, want untouched %s", img, oldImage)
	}
	_ = digest
}
