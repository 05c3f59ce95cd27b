package provision

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	testingclock "k8s.io/utils/clock/testing"
	"sigs.k8s.io/yaml"

	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/test/jenkinsemu"
	"github.com/ferryci/ferry/test/testbed"
)

// Warm pools on the bed: real pods on kwok virtual nodes, agents played
// into the Jenkins emulator as their pods run.

// warmAgents returns the emulator's warm nodes: connected and idle, and
// all.
func (b *bed) warmAgents() (ready, all int) {
	for _, n := range b.emu.Nodes() {
		if !isWarmName(n.Name) {
			continue
		}
		all++
		if n.Connected && n.Online && len(n.Running) == 0 {
			ready++
		}
	}
	return ready, all
}

// waitWarm waits until the pool holds exactly want ready warm agents and
// no other warm node.
func (b *bed) waitWarm(want int) {
	b.t.Helper()
	waitFor(b.t, "the warm pool to hold "+itoa(want)+" ready agents", func() bool {
		ready, all := b.warmAgents()
		return ready == want && all == want
	})
}

func itoa(n int) string { return strconv.Itoa(n) }

// noAgentTookTwo fails the test if two builds ran on one agent.
func (b *bed) noAgentTookTwo() {
	b.t.Helper()
	on := map[string]int{}
	for _, bl := range b.emu.Builds(testJob) {
		if bl.Node == "" {
			continue
		}
		if other, ok := on[bl.Node]; ok {
			b.t.Errorf("agent %s ran builds %d and %d", bl.Node, other, bl.Number)
		}
		on[bl.Node] = bl.Number
	}
}

func TestBedWarmPoolFillsServesABurstAndRefills(t *testing.T) {
	b := newBed(t)
	b.addJob(jenkinsemu.JobSpec{Duration: jenkinsemu.Forever})
	b.playAgents()
	b.start(b.config(bedTemplate(func(t *eci.Template) { t.WarmPool = &eci.WarmPool{Size: 3} })))
	b.waitWarm(3)
	for _, p := range b.pods() {
		if p.Labels[LabelWarmPool] != "linux" || p.Spec.NodeName == "" {
			t.Errorf("warm pod %s: label %q on node %q, want the pool's label on a virtual node", p.Name, p.Labels[LabelWarmPool], p.Spec.NodeName)
		}
	}

	const burst = 5
	for i := range burst {
		b.trigger(i)
	}
	warm := 0
	waitFor(t, "the burst's builds to run", func() bool {
		bs := b.emu.Builds(testJob)
		warm = 0
		for _, bl := range bs {
			if bl.Node == "" || !bl.Building {
				return false
			}
			if isWarmName(bl.Node) {
				warm++
			}
		}
		return len(bs) == burst
	})
	if warm < 3 {
		t.Errorf("%d of %d builds ran on warm agents, want at least the pool's 3", warm, burst)
	}
	for _, bl := range b.emu.Builds(testJob) {
		if err := b.emu.FinishBuild(testJob, bl.Number, jenkinsemu.Success); err != nil {
			t.Fatal(err)
		}
	}
	b.waitWarm(3)
	defer func() {
		if t.Failed() {
			for _, n := range b.emu.Nodes() {
				t.Logf("node %s connected %v online %v offline %v %q running %v", n.Name, n.Connected, n.Online, n.TemporarilyOffline, n.OfflineMessage, n.Running)
			}
			for _, bl := range b.emu.Builds(testJob) {
				t.Logf("build %d on %s building %v", bl.Number, bl.Node, bl.Building)
			}
		}
	}()
	waitFor(t, "the agents of the finished builds to go", func() bool {
		for _, bl := range b.emu.Builds(testJob) {
			for _, n := range b.emu.Nodes() {
				if n.Name == bl.Node {
					return false
				}
			}
		}
		return true
	})
	b.noAgentTookTwo()
}

// countingClock is a fake schedule clock that counts its reads: each
// cycle reads it once, so a test knows cycles ran at a time it set.
type countingClock struct {
	*testingclock.FakePassiveClock
	reads atomic.Int64
}

func (c *countingClock) Now() time.Time {
	c.reads.Add(1)
	return c.FakePassiveClock.Now()
}

// cycles waits for n more cycles.
func (c *countingClock) cycles(t *testing.T, n int64) {
	t.Helper()
	from := c.reads.Load()
	waitFor(t, "provisioner cycles", func() bool { return c.reads.Load() >= from+n })
}

func TestBedWarmPoolFollowsAScheduleAcrossAWindowEdgeAndAnExcludedDate(t *testing.T) {
	b := newBed(t)
	b.playAgents()
	berlin := func(v string) time.Time {
		loc, err := time.LoadLocation("Europe/Berlin")
		if err != nil {
			t.Fatal(err)
		}
		ts, err := time.ParseInLocation(time.DateTime, v, loc)
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	clk := &countingClock{FakePassiveClock: testingclock.NewFakePassiveClock(berlin("2026-12-07 08:59:30"))}
	cfg := b.config(bedTemplate(func(t *eci.Template) {
		t.WarmPool = &eci.WarmPool{TimeZone: "Europe/Berlin", ExcludeDates: []string{"2026-12-24"},
			Schedule: []eci.WarmWindow{{Name: "mornings", Start: "0 9 * * 1-5", Duration: eci.Duration{Duration: time.Hour}, Size: 2}}}
	}))
	cfg.ScheduleClock = clk
	b.start(cfg)

	clk.cycles(t, 3)
	if _, all := b.warmAgents(); all != 0 {
		t.Fatalf("%d warm agents before the window opens, want none", all)
	}
	clk.SetTime(berlin("2026-12-07 09:00:30")) // Monday, the window is open
	b.waitWarm(2)
	clk.SetTime(berlin("2026-12-07 10:00:00")) // it closed
	b.waitWarm(0)
	waitFor(t, "the retired warm pods to go", func() bool { return len(b.pods()) == 0 })

	clk.SetTime(berlin("2026-12-24 09:30:00")) // Thursday, but excluded
	clk.cycles(t, 5)
	if _, all := b.warmAgents(); all != 0 {
		t.Fatalf("%d warm agents on an excluded date, want none", all)
	}
	clk.SetTime(berlin("2026-12-25 09:30:00")) // Friday
	b.waitWarm(2)
}

// agentPoolCRD installs the chart's AgentPool CRD on the bed (once; the
// bed is shared) and waits until it is served.
func agentPoolCRD(t *testing.T) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "charts", "ferry", "crds", "agentpools.ferry.dev.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	crd := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(data, &crd.Object); err != nil {
		t.Fatalf("chart's AgentPool CRD: %v", err)
	}
	dyn := dynamic.NewForConfigOrDie(testbed.RESTConfig(t))
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	ctx := context.Background()
	if _, err := dyn.Resource(gvr).Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("install the AgentPool CRD: %v", err)
	}
	waitFor(t, "the AgentPool CRD to be served", func() bool {
		_, err := dyn.Resource(AgentPoolResource).Namespace("default").List(ctx, metav1.ListOptions{})
		return err == nil
	})
}

func TestBedWarmPoolFollowsTheScaleSubresource(t *testing.T) {
	needBed(t)
	agentPoolCRD(t)
	b := newBed(t)
	ctx := context.Background()
	// The rights the chart gives ferry on AgentPools, in this namespace
	// (the shared bed's ferry-agents role may predate them).
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "ferry-agentpools"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"ferry.dev"}, Resources: []string{"agentpools"}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{"ferry.dev"}, Resources: []string{"agentpools/status"}, Verbs: []string{"update"}},
	}}
	if _, err := b.admin.RbacV1().Roles(b.ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	user := testbed.Kube(t).Get(testbed.KeyFerryUser)
	if user == "" {
		user = "ferry"
	}
	if _, err := b.admin.RbacV1().RoleBindings(b.ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "ferry-agentpools"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	admin := dynamic.NewForConfigOrDie(testbed.RESTConfig(t)).Resource(AgentPoolResource).Namespace(b.ns)
	pool := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "ferry.dev/v1alpha1", "kind": "AgentPool",
		"metadata": map[string]any{"name": "linux-pool"}, "spec": map[string]any{"replicas": int64(1)},
	}}
	if _, err := admin.Create(ctx, pool, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create AgentPool: %v", err)
	}

	b.playAgents()
	cfg := b.config(bedTemplate(func(t *eci.Template) { t.WarmPool = &eci.WarmPool{Size: 2, PoolRef: "linux-pool"} }))
	cfg.Dynamic = dynamic.NewForConfigOrDie(testbed.FerryRESTConfig(t))
	b.start(cfg)

	status := func(want int64) func() bool {
		return func() bool {
			u, err := admin.Get(ctx, "linux-pool", metav1.GetOptions{}, "scale")
			if err != nil {
				return false
			}
			n, _, _ := unstructured.NestedInt64(u.Object, "status", "replicas")
			sel, _, _ := unstructured.NestedString(u.Object, "status", "selector")
			return n == want && sel == LabelWarmPool+"=linux"
		}
	}
	b.waitWarm(1) // the object's 1 wins over the template's size 2
	waitFor(t, "the scale subresource to say 1 warm agent", status(1))

	// kubectl scale agentpool linux-pool --replicas=3 patches /scale.
	scale := func(n int) {
		t.Helper()
		patch := []byte(`{"spec":{"replicas":` + itoa(n) + `}}`)
		if _, err := admin.Patch(ctx, "linux-pool", types.MergePatchType, patch, metav1.PatchOptions{}, "scale"); err != nil {
			t.Fatalf("scale the AgentPool to %d: %v", n, err)
		}
	}
	scale(3)
	b.waitWarm(3)
	waitFor(t, "the scale subresource to say 3 warm agents", status(3))
	scale(0)
	b.waitWarm(0)
	waitFor(t, "the warm pods to go", func() bool {
		for _, p := range b.pods() {
			if p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded {
				return false
			}
		}
		return true
	})
	waitFor(t, "the scale subresource to say 0", status(0))
}
