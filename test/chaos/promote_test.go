package chaos_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/ferryci/ferry/pkg/promote"
	"github.com/ferryci/ferry/pkg/promote/api"
	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/test/chaos"
	"github.com/ferryci/ferry/test/testbed"
)

// The promoter's Lease on the bed, as short as the provisioner's.
const (
	promoteLease   = "ferry-promoter"
	promoteToken   = "chaos-pipeline-token-0123456789"
	approverToken  = "chaos-approver-token-0123456789"
	promoteOldImg  = "registry.example/web:v0"
	promotePatient = 3 * time.Minute
)

// promoteBed is three ferry processes whose promoters share a Lease on
// the bed, promoting one app through test and an approval-gated
// production, each one Deployment on the bed.
type promoteBed struct {
	t       *testing.T
	c       *chaos.Cluster
	cs      kubernetes.Interface
	leaseNS string
	envNS   map[string]string // environment → namespace
	source  string
	// gens is each environment's Deployment generation before the fault.
	gens map[string]int64
	rr   int
}

func startPromoteBed(t *testing.T) *promoteBed {
	t.Helper()
	if testing.Short() {
		t.Skip("promoter faults on the bed: skipped under -short (it builds ferry and needs the test bed's API server and registry)")
	}
	env := testbed.Kube(t)
	reg := testbed.RegistryAddr(t)
	b := &promoteBed{t: t, cs: testbed.Clientset(t), gens: map[string]int64{},
		leaseNS: testbed.Namespace(t, testbed.PromotionLeaseRole),
		envNS:   map[string]string{"test": testbed.Namespace(t, testbed.PromotionRole), "production": testbed.Namespace(t, testbed.PromotionRole)}}
	id := randHex(4)
	b.source = reg + "/ci/" + id + "/web"
	sum := sha256.Sum256([]byte(approverToken))
	extra := fmt.Sprintf(`promotion:
  enabled: true
  apiToken: %s
  kubeconfig: %s
  resync: 500ms
  leaseNamespace: %s
  leaderElection:
    enabled: true
    leaseName: %s
    leaseDuration: %s
    renewDeadline: %s
    retryPeriod: %s
  auth:
    tokens:
      - name: alice
        sha256: %s
        roles: [{apps: ["*"], environments: ["*"], verbs: [get, approve, reject]}]
  apps:
    - name: web
      source: %s
      target: %s/release/%s/web
      tags: ["{{version}}"]
      environments:
        - name: test
          namespace: %s
          deployments: [web]
          rolloutTimeout: 2m
          verify: {soak: 2s}
        - name: production
          namespace: %s
          deployments: [web]
          approval: true
          rolloutTimeout: 2m
          verify: {soak: 1s}
`, promoteToken, env.Get(testbed.KeyKubeconfigFerry), b.leaseNS, promoteLease, haLeaseFor, haRenewWithin, haRetryEvery,
		hex.EncodeToString(sum[:]), b.source, reg, id, b.envNS["test"], b.envNS["production"])
	for _, ns := range b.envNS {
		b.deploy(ns)
	}
	b.c = chaos.Start(t, chaos.Options{Replicas: 3, ExtraYAML: extra, LogLevel: "debug"})
	return b
}

func randHex(n int) string {
	buf := make([]byte, n)
	_, _ = rand.Read(buf)
	return hex.EncodeToString(buf)
}

// deploy creates Deployment web on the virtual nodes and waits until it
// runs.
func (b *promoteBed) deploy(ns string) {
	b.t.Helper()
	replicas := int32(2)
	labels := map[string]string{"app": "web"}
	one := intstr.FromInt32(1)
	zero := intstr.FromInt32(0)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &one, MaxUnavailable: &zero}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector: testbed.VirtualNodeSelector(),
					Tolerations:  []corev1.Toleration{testbed.VirtualNodeToleration()},
					Containers:   []corev1.Container{{Name: "web", Image: promoteOldImg}},
				},
			},
		},
	}
	if _, err := b.cs.AppsV1().Deployments(ns).Create(context.Background(), d, metav1.CreateOptions{}); err != nil {
		b.t.Fatalf("create deployment %s/web: %v", ns, err)
	}
	waitFor(b.t, "deployment "+ns+"/web rolled out", promotePatient, func() bool {
		d, err := b.cs.AppsV1().Deployments(ns).Get(context.Background(), "web", metav1.GetOptions{})
		if err != nil {
			return false
		}
		done, _, _ := promote.RolloutStatus(d)
		return done
	})
}

// client is a client of the next process, round-robin (a Service); the
// pipeline's token unless token is given.
func (b *promoteBed) client(token string) *api.Client {
	var f *chaos.Ferry
	for range len(b.c.Ferries()) {
		f = b.c.Ferry(b.rr % len(b.c.Ferries()))
		b.rr++
		if f.Running() {
			break
		}
	}
	if token == "" {
		token = promoteToken
	}
	return &api.Client{BaseURL: f.URL(), Token: token}
}

// leader returns the process holding the promoter's Lease, or nil.
func (b *promoteBed) leader() *chaos.Ferry {
	l, err := b.cs.CoordinationV1().Leases(b.leaseNS).Get(context.Background(), promoteLease, metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return nil
	}
	for _, f := range b.c.Ferries() {
		if f.PID() != 0 && *l.Spec.HolderIdentity == f.Name() {
			return f
		}
	}
	return nil
}

// request pushes a new image to the source repository and asks for its
// promotion, retried against the next process while one is down.
func (b *promoteBed) request(version string) store.Promotion {
	b.t.Helper()
	layer, err := random.Layer(256, "application/vnd.oci.image.layer.v1.tar+gzip")
	if err != nil {
		b.t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		b.t.Fatal(err)
	}
	ref, err := name.ParseReference(b.source + ":" + version)
	if err != nil {
		b.t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		b.t.Fatalf("push %s: %v", ref, err)
	}
	var pr store.Promotion
	key := "chaos-" + version
	waitFor(b.t, "promotion of "+version+" accepted", time.Minute, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		pr, err = b.client("").CreateIdempotent(ctx, key, promote.Request{App: "web", Image: ref.String(), Version: version})
		return err == nil
	})
	return pr
}

// get reads a promotion from whichever process answers.
func (b *promoteBed) get(id string) (store.Promotion, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return b.client("").Get(ctx, id)
}

func (b *promoteBed) waitPromotion(id, what string, ok func(store.Promotion) bool) store.Promotion {
	b.t.Helper()
	var pr store.Promotion
	waitFor(b.t, "promotion "+id+" "+what, promotePatient, func() bool {
		var err error
		pr, err = b.get(id)
		return err == nil && ok(pr)
	})
	return pr
}

func envPhase(pr store.Promotion, env string) string {
	for _, e := range pr.Environments {
		if e.Name == env {
			return e.Phase
		}
	}
	return ""
}

func (b *promoteBed) generation(env string) int64 {
	d, err := b.cs.AppsV1().Deployments(b.envNS[env]).Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		b.t.Fatalf("read deployment of %s: %v", env, err)
	}
	return d.Generation
}

// mark remembers the Deployments' generations before a promotion.
func (b *promoteBed) mark() {
	for env := range b.envNS {
		b.gens[env] = b.generation(env)
	}
}

// kill SIGKILLs the promoter's leader, restarts it, and returns how long
// it took until another process held the Lease.
func (b *promoteBed) kill(t *testing.T) time.Duration {
	t.Helper()
	old := b.leader()
	if old == nil {
		t.Fatal("nobody holds the promoter's Lease")
	}
	if err := old.Kill(); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, "another replica takes the promoter's Lease", 2*haLeaseFor+30*time.Second, func() bool {
		l := b.leader()
		return l != nil && l != old
	})
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	return took
}

// approve approves the production gate through a process other than the
// leader (any replica serves the API), retried while one is down.
func (b *promoteBed) approve(t *testing.T, id string) {
	t.Helper()
	waitFor(t, "approval of "+id+" accepted", time.Minute, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := b.client(approverToken).Approve(ctx, id, api.Decision{Environment: "production"})
		return err == nil
	})
}

// settle checks a promotion after a fault: it ended in one final state,
// succeeded, and each environment was rolled exactly once (its Deployment
// changed once, one rollout started and finished in the audit trail).
func (b *promoteBed) settle(t *testing.T, fault string, id string, handoff time.Duration) {
	t.Helper()
	pr := b.waitPromotion(id, "finished", store.Promotion.Finished)
	doubled := 0
	if pr.State != store.PromotionSucceeded {
		t.Errorf("%s: promotion %s ended %s (%s), want succeeded", fault, id, pr.State, pr.Reason)
	}
	finals := 0
	for _, a := range pr.Audit {
		switch a.Action {
		case "succeeded", "failed", "rejected", "rolled back":
			finals++
		}
	}
	if finals != 1 {
		t.Errorf("%s: promotion %s recorded %d final steps, want 1: %+v", fault, id, finals, pr.Audit)
	}
	for env := range b.envNS {
		started, rolled := auditCount(pr, "rollout started", env), auditCount(pr, "rolled out", env)
		changed := b.generation(env) - b.gens[env]
		if started != 1 || rolled != 1 || changed != 1 {
			doubled++
			t.Errorf("%s: %s was rolled %d times by the audit (%d finished) and its Deployment changed %d times, want once",
				fault, env, started, rolled, changed)
		}
	}
	if n := auditCount(pr, "approved", "production"); n != 1 {
		t.Errorf("%s: production approved %d times, want 1", fault, n)
	}
	succeeded := 0
	if pr.State == store.PromotionSucceeded {
		succeeded = 1
	}
	chaos.Summary(t, "fault=%s handoff=%s unit=promotions sent=1 accepted=1 builds=%d doubles=%d missing=%d leaked=0",
		fault, handoff.Round(10*time.Millisecond), succeeded, doubled, 1-succeeded)
}

func auditCount(pr store.Promotion, action, env string) int {
	n := 0
	for _, a := range pr.Audit {
		if a.Action == action && a.Environment == env {
			n++
		}
	}
	return n
}

// TestPromoterFaultsOnTheBed runs three ferry processes whose promoters
// share a Lease on the bed and SIGKILLs the promoter's leader twice: while
// it rolls the test environment out, and while a promotion waits at
// production's approval gate (then approved through another replica).
// After each: the promotion ended in exactly one final state, each
// environment's Deployment was changed exactly once, and the approval
// given after the hand-off took effect.
func TestPromoterFaultsOnTheBed(t *testing.T) {
	b := startPromoteBed(t)
	waitFor(t, "a promoter leader", time.Minute, func() bool { return b.leader() != nil })

	t.Run("leader_killed_mid_rollout", func(t *testing.T) {
		b.mark()
		pr := b.request("v1-" + randHex(3))
		b.waitPromotion(pr.ID, "rolling test", func(p store.Promotion) bool {
			ph := envPhase(p, "test")
			return ph == store.EnvRolling || ph == store.EnvVerifying
		})
		handoff := b.kill(t)
		b.waitPromotion(pr.ID, "waiting for approval", func(p store.Promotion) bool {
			return p.State == store.PromotionWaiting || p.Finished()
		})
		b.approve(t, pr.ID)
		b.settle(t, "promoter-leader-SIGKILL-mid-rollout", pr.ID, handoff)
	})

	t.Run("leader_killed_at_approval_gate", func(t *testing.T) {
		b.mark()
		pr := b.request("v2-" + randHex(3))
		b.waitPromotion(pr.ID, "waiting for approval", func(p store.Promotion) bool {
			return p.State == store.PromotionWaiting || p.Finished()
		})
		handoff := b.kill(t)
		b.approve(t, pr.ID)
		b.settle(t, "promoter-leader-SIGKILL-at-approval", pr.ID, handoff)
	})
}
