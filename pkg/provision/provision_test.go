package provision

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/pkg/jenkins"
	"github.com/ferryci/ferry/test/jenkinsemu"
)

func TestQueuedBuildGetsOneAgentThatGoesWithItsBuild(t *testing.T) {
	for _, pipeline := range []bool{false, true} {
		name := "freestyle"
		if pipeline {
			name = "pipeline"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.addJob(jenkinsemu.JobSpec{Duration: jenkinsemu.Forever, Pipeline: pipeline})
			var goneMu sync.Mutex
			var gone []AgentGone
			e.start(e.config(func(c *Config) {
				c.OnAgentGone = func(_ context.Context, g AgentGone) {
					goneMu.Lock()
					defer goneMu.Unlock()
					gone = append(gone, g)
				}
			}))
			e.trigger(1)

			waitFor(t, "an agent pod", func() bool { return len(e.pods()) == 1 })
			pod := e.pods()[0]
			nodes := e.agentNodes()
			if len(nodes) != 1 || nodes[0].Name != pod.Name {
				t.Fatalf("agent nodes = %s, want one named %s", describeNodes(nodes), pod.Name)
			}
			n := nodes[0]
			if n.Mode != "EXCLUSIVE" || n.NumExecutors != 1 || !n.WebSocket || !slices.Contains(n.Labels, testLabel) {
				t.Errorf("node = mode %s, %d executors, websocket %v, labels %v; want EXCLUSIVE, 1, true, with %s",
					n.Mode, n.NumExecutors, n.WebSocket, n.Labels, testLabel)
			}
			for _, env := range pod.Spec.Containers[0].Env {
				if env.Name == eci.EnvSecret && (env.Value != "" || env.ValueFrom == nil || env.ValueFrom.SecretKeyRef == nil) {
					t.Errorf("JENKINS_SECRET is not read from a Secret: %+v", env)
				}
			}
			if pod.Labels[eci.LabelManagedBy] != eci.ManagedBy || pod.Labels[eci.LabelTemplate] != "linux" {
				t.Errorf("pod labels = %v", pod.Labels)
			}
			// The Secret holds the agent's secret and is handed to its pod.
			waitFor(t, "the Secret to be owned by its pod", func() bool {
				s, err := e.kube.CoreV1().Secrets(testNS).Get(context.Background(), eci.SecretNameOf(&pod), metav1.GetOptions{})
				return err == nil && len(s.OwnerReferences) == 1 && s.OwnerReferences[0].UID == pod.UID
			})
			if got, err := agentSecret(context.Background(), e.kube, &pod); err != nil || got != e.emu.AgentSecret(pod.Name) {
				t.Errorf("the pod's JNLP secret is not the node's (err %v)", err)
			}

			e.startKubelet(&kubelet{})
			waitFor(t, "the build to start on the agent", func() bool {
				b, ok := e.emu.Build(testJob, 1)
				return ok && b.Building && b.Node == pod.Name
			})
			// Still one agent while the build runs.
			time.Sleep(300 * time.Millisecond)
			if got := len(e.pods()); got != 1 {
				t.Fatalf("%d pods while the build runs, want 1", got)
			}
			if err := e.emu.FinishBuild(testJob, 1, jenkinsemu.Success); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "pod and node to go", func() bool { return len(e.pods()) == 0 && len(e.agentNodes()) == 0 })
			if f := e.failuresSeen(); len(f) != 0 {
				t.Errorf("failures = %+v, want none", f)
			}
			// The usage hook heard of the agent, with its pod's life and its build.
			goneMu.Lock()
			defer goneMu.Unlock()
			if len(gone) == 0 {
				t.Fatal("OnAgentGone was not called")
			}
			for _, g := range gone {
				if g.Name != pod.Name || g.Template != "linux" || g.Cause != "build_over" || !g.Created.Equal(pod.CreationTimestamp.Time) ||
					g.RanSince.IsZero() || g.RanSince.Before(g.Created) || g.Ended.Before(g.RanSince) {
					t.Errorf("OnAgentGone(%+v): want %s of linux, build_over, created %s, with a build time inside its life", g, pod.Name, pod.CreationTimestamp)
				}
			}
		})
	}
}

func TestCancelledItemLosesItsAgent(t *testing.T) {
	e := newEnv(t, nil)
	e.addJob(jenkinsemu.JobSpec{Duration: jenkinsemu.Forever})
	e.start(e.config(nil))
	q := e.trigger(1)
	waitFor(t, "an agent pod", func() bool { return len(e.pods()) == 1 })
	if err := e.jc.CancelQueueItem(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pod and node to go", func() bool { return len(e.pods()) == 0 && len(e.agentNodes()) == 0 })
}

func TestFailedAgentsAreRetriedWithFallbackThenTheItemIsCancelled(t *testing.T) {
	e := newEnv(t, nil)
	e.addJob(jenkinsemu.JobSpec{Duration: jenkinsemu.Forever})
	var mu sync.Mutex
	seen := map[string]string{} // pod name → fallback annotation
	e.startKubelet(&kubelet{status: func(p *corev1.Pod) *corev1.PodStatus {
		mu.Lock()
		seen[p.Name] = p.Annotations[eci.AnnotationFallback]
		mu.Unlock()
		return providerFailedStatus()
	}})
	tmpl := testTemplate(func(t *eci.Template) {
		t.ECI.SpotStrategy = eci.SpotAsPriceGo
		t.Fallbacks = []eci.Fallback{{OnDemand: true}}
	})
	e.start(e.config(func(c *Config) { c.Templates = tmpl }))
	q := e.trigger(1)

	waitFor(t, "the item to be cancelled", func() bool {
		it, ok := e.emu.QueueItem(q)
		return ok && it.Cancelled
	})
	waitFor(t, "every agent to go", func() bool { return len(e.pods()) == 0 && len(e.agentNodes()) == 0 })
	mu.Lock()
	want := map[string]string{eci.AgentName(q, 1): "", eci.AgentName(q, 2): "1", eci.AgentName(q, 3): "1"}
	if len(seen) != len(want) {
		t.Errorf("attempts = %v, want %v", seen, want)
	}
	for name, fb := range want {
		if got, ok := seen[name]; !ok || got != fb {
			t.Errorf("attempt %s: fallback %q (seen %v), want %q", name, got, ok, fb)
		}
	}
	mu.Unlock()
	f := e.failuresSeen()
	if len(f) != 1 || f[0].QueueID != q || f[0].Reason != eci.ReasonProviderFailed || !f[0].Cancelled ||
		!strings.Contains(f[0].Message, "InternalError") {
		t.Fatalf("failures = %+v, want one ProviderFailed for item %d, cancelled", f, q)
	}
	var events []string
	for len(e.rec.Events) > 0 {
		events = append(events, <-e.rec.Events)
	}
	if !slices.ContainsFunc(events, func(s string) bool { return strings.HasPrefix(s, "Warning AgentFailed") }) {
		t.Errorf("events = %q, want a Warning AgentFailed", events)
	}
}

func TestAgentDyingMidBuildIsReported(t *testing.T) {
	e := newEnv(t, nil)
	e.addJob(jenkinsemu.JobSpec{Duration: jenkinsemu.Forever, Pipeline: true})
	e.startKubelet(&kubelet{})
	e.start(e.config(nil))
	e.trigger(1)
	waitFor(t, "the build to run on an agent", func() bool {
		b, ok := e.emu.Build(testJob, 1)
		return ok && b.Node != ""
	})
	pod := e.pods()[0]
	if err := e.kube.CoreV1().Pods(testNS).Delete(context.Background(), pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the failure report", func() bool { return len(e.failuresSeen()) == 1 })
	f := e.failuresSeen()[0]
	if f.Agent != pod.Name || f.Build.Number == 0 || f.Reason != eci.ReasonPodGone {
		t.Errorf("failure = %+v, want agent %s, a build, PodGone", f, pod.Name)
	}
	waitFor(t, "the node to go and the build to end", func() bool {
		b, _ := e.emu.Build(testJob, 1)
		return len(e.agentNodes()) == 0 && !b.Building
	})
}

func TestCapsHoldUnderABurst(t *testing.T) {
	const burst, global, perTemplate = 12, 4, 3
	for _, tc := range []struct {
		name     string
		global   int
		template int
		want     int
	}{
		{"global", global, 0, global},
		{"template", 100, perTemplate, perTemplate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.addJob(jenkinsemu.JobSpec{Duration: 50 * time.Millisecond})
			var mu sync.Mutex
			peak := 0
			e.startKubelet(&kubelet{observe: func(pods []corev1.Pod) {
				mu.Lock()
				defer mu.Unlock()
				peak = max(peak, len(pods), len(e.agentNodes()))
			}})
			tmpl := testTemplate(func(t *eci.Template) { t.MaxAgents = tc.template })
			e.start(e.config(func(c *Config) { c.MaxAgents = tc.global; c.Templates = tmpl }))
			for i := range burst {
				e.trigger(i)
			}
			waitFor(t, "every build to finish", func() bool {
				b := e.emu.Builds(testJob)
				return len(b) == burst && !slices.ContainsFunc(b, func(b jenkinsemu.Build) bool { return b.Building }) &&
					len(e.emu.QueueItems()) == 0
			})
			waitFor(t, "every agent to go", func() bool { return len(e.pods()) == 0 && len(e.agentNodes()) == 0 })
			mu.Lock()
			defer mu.Unlock()
			if peak > tc.want || peak == 0 {
				t.Errorf("peak agents = %d, want 1..%d", peak, tc.want)
			}
			for _, b := range e.emu.Builds(testJob) {
				if b.Result != jenkinsemu.Success {
					t.Errorf("build %d: %s", b.Number, b.Result)
				}
			}
		})
	}
}

// TestEveryBuildRunsOnItsOwnAgent: with more builds than agents allowed,
// items wait while builds end, and Jenkins hands a waiting item to any idle
// node of its label. ferry takes each agent offline as it sees its build
// start, so a build that ends leaves no node to take the next one: every
// build runs on its own agent, and no agent runs two. Builds end only once
// ferry has seen them (the node is marked), which is what the guarantee
// covers; see TestShortBuildsAllRunOnFerryAgents for builds shorter than
// a cycle.
func TestEveryBuildRunsOnItsOwnAgent(t *testing.T) {
	for _, pipeline := range []bool{false, true} {
		name := "freestyle"
		if pipeline {
			name = "pipeline"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.addJob(jenkinsemu.JobSpec{Duration: jenkinsemu.Forever, Pipeline: pipeline})
			e.startKubelet(&kubelet{})
			e.start(e.config(func(c *Config) { c.MaxAgents = 2 }))
			const n = 6
			for i := range n {
				e.trigger(i)
			}
			finished := 0
			for finished < n {
				var b jenkinsemu.Build
				waitFor(t, fmt.Sprintf("build %d to run on a marked agent", finished+1), func() bool {
					for _, x := range e.emu.Builds(testJob) {
						if x.Building && x.Node != "" {
							if nd, ok := e.emu.Node(x.Node); ok && nd.TemporarilyOffline {
								b = x
								return true
							}
						}
					}
					return false
				})
				nd, _ := e.emu.Node(b.Node)
				if !nd.Connected || nd.OfflineMessage != OneBuildReason {
					t.Errorf("node %s = %+v, want connected, offline with %q", b.Node, nd, OneBuildReason)
				}
				if err := e.emu.FinishBuild(testJob, b.Number, jenkinsemu.Success); err != nil {
					t.Fatal(err)
				}
				finished++
			}
			waitFor(t, "every agent to go", func() bool { return len(e.pods()) == 0 && len(e.agentNodes()) == 0 })
			builds := e.emu.Builds(testJob)
			if len(builds) != n {
				t.Fatalf("%d builds, want %d", len(builds), n)
			}
			ranOn := map[string][]int{}
			for _, b := range builds {
				if _, _, ok := parseAgentName(b.Node); !ok || b.Result != jenkinsemu.Success {
					t.Errorf("build %d ran on %q with %s, want a ferry agent and SUCCESS", b.Number, b.Node, b.Result)
				}
				ranOn[b.Node] = append(ranOn[b.Node], b.Number)
			}
			for node, nums := range ranOn {
				if len(nums) != 1 {
					t.Errorf("agent %s ran builds %v, want one", node, nums)
				}
			}
			if f := e.failuresSeen(); len(f) != 0 {
				t.Errorf("failures = %+v, want none", f)
			}
		})
	}
}

// TestLateAgentsTakeOneBuildEach: agents connect a while after their pod
// runs (the JVM starts), the first two well before the others, and builds
// are shorter than the resync, so no pod event comes between the first
// builds' start and their end while the other items still wait. Cycles
// come faster while agents are about to take their build and other items
// wait (awaitBuildPoll), so each build is seen and its agent taken
// offline before it could take another item.
func TestLateAgentsTakeOneBuildEach(t *testing.T) {
	e := newEnv(t, nil)
	e.addJob(jenkinsemu.JobSpec{Duration: time.Second})
	var mu sync.Mutex
	started := 0
	e.startKubelet(&kubelet{connectDelay: func(*corev1.Pod) time.Duration {
		mu.Lock()
		defer mu.Unlock()
		started++
		if started <= 2 {
			return 200 * time.Millisecond
		}
		return 2500 * time.Millisecond
	}})
	e.start(e.config(func(c *Config) { c.Resync = 3 * time.Second }))
	const n = 6
	for i := range n {
		e.trigger(i)
	}
	waitFor(t, "every build to finish", func() bool {
		b := e.emu.Builds(testJob)
		return len(b) == n && !slices.ContainsFunc(b, func(b jenkinsemu.Build) bool { return b.Building })
	})
	ranOn := map[string][]int{}
	for _, b := range e.emu.Builds(testJob) {
		ranOn[b.Node] = append(ranOn[b.Node], b.Number)
	}
	for node, nums := range ranOn {
		if len(nums) != 1 {
			t.Errorf("agent %s ran builds %v, want one", node, nums)
		}
	}
	waitFor(t, "every agent to go", func() bool { return len(e.pods()) == 0 && len(e.agentNodes()) == 0 })
}

// TestShortBuildsAllRunOnFerryAgents runs a burst of builds shorter than a
// cycle. A build that starts and ends between two looks at Jenkins is
// never seen, so its agent cannot be marked in time and may take a second
// build (see OneBuildReason): only "every build ran on a ferry agent and
// every agent went" is asserted here.
func TestShortBuildsAllRunOnFerryAgents(t *testing.T) {
	e := newEnv(t, nil)
	e.addJob(jenkinsemu.JobSpec{Duration: 30 * time.Millisecond})
	e.startKubelet(&kubelet{})
	e.start(e.config(nil))
	const n = 8
	for i := range n {
		e.trigger(i)
	}
	waitFor(t, "every build to finish", func() bool {
		b := e.emu.Builds(testJob)
		return len(b) == n && !slices.ContainsFunc(b, func(b jenkinsemu.Build) bool { return b.Building })
	})
	waitFor(t, "every agent to go", func() bool { return len(e.pods()) == 0 && len(e.agentNodes()) == 0 })
	for _, b := range e.emu.Builds(testJob) {
		if _, _, ok := parseAgentName(b.Node); !ok || b.Result != jenkinsemu.Success {
			t.Errorf("build %d ran on %q with %s, want a ferry agent and SUCCESS", b.Number, b.Node, b.Result)
		}
	}
}

// TestCallsPerBuild pins what one build costs in writes: in Jenkins create
// node, read its secret, mark it offline, delete it; in Kubernetes create
// the Secret and the pod, hand the Secret to the pod, delete the pod (one
// build at a time: each is a batch of one). The polls (computers and
// queue, once a cycle) are shared by every agent and not counted.
func TestCallsPerBuild(t *testing.T) {
	e := newEnv(t, nil)
	cs := e.kube.(*fake.Clientset)
	e.addJob(jenkinsemu.JobSpec{Duration: jenkinsemu.Forever})
	e.startKubelet(&kubelet{})
	e.start(e.config(nil))
	waitFor(t, "the anchor node", func() bool { _, ok := e.emu.Node(anchorName("linux")); return ok })
	e.emu.ResetCalls()
	cs.ClearActions()
	// One build at a time: with several waiting, Jenkins may give an item
	// to another item's agent, and ferry then sometimes makes one more.
	const n = 3
	for i := 1; i <= n; i++ {
		e.trigger(i)
		waitFor(t, fmt.Sprintf("build %d to run on a marked agent", i), func() bool {
			b, ok := e.emu.Build(testJob, i)
			if !ok || !b.Building || b.Node == "" {
				return false
			}
			nd, ok := e.emu.Node(b.Node)
			return ok && nd.TemporarilyOffline
		})
		if err := e.emu.FinishBuild(testJob, i, jenkinsemu.Success); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the agent to go", func() bool { return len(e.pods()) == 0 && len(e.agentNodes()) == 0 })
	}

	calls := e.emu.Calls()
	jenkinsWrites := map[string]int{}
	for _, r := range []string{jenkinsemu.RouteCreateNode, jenkinsemu.RouteAgentJNLP, jenkinsemu.RouteSlaveAgentJNLP,
		jenkinsemu.RouteChangeOfflineCause, jenkinsemu.RouteToggleOffline, jenkinsemu.RouteDeleteNode, jenkinsemu.RouteCancelItem} {
		if calls[r] > 0 {
			jenkinsWrites[r] = calls[r]
		}
	}
	wantJenkins := map[string]int{jenkinsemu.RouteCreateNode: n, jenkinsemu.RouteAgentJNLP: n,
		jenkinsemu.RouteChangeOfflineCause: n, jenkinsemu.RouteDeleteNode: n}
	if !maps.Equal(jenkinsWrites, wantJenkins) {
		t.Errorf("Jenkins calls = %v, want %v (all calls: %v)", jenkinsWrites, wantJenkins, calls)
	}
	kubeWrites := map[string]int{}
	for _, a := range cs.Actions() {
		switch a.GetVerb() {
		case "create", "update", "patch", "delete":
		default:
			continue
		}
		if a.GetSubresource() == "status" {
			continue // the test's kubelet
		}
		if a.GetVerb() == "delete" && a.GetResource().Resource == "secrets" {
			// The fake clientset has no garbage collector: the Secret
			// outlives its pod, and ferry deletes what is left of the
			// agent. In a cluster it goes with the pod.
			continue
		}
		kubeWrites[a.GetVerb()+" "+a.GetResource().Resource]++
	}
	wantKube := map[string]int{"create secrets": n, "create pods": n, "patch secrets": n, "delete pods": n}
	if !maps.Equal(kubeWrites, wantKube) {
		t.Errorf("Kubernetes writes = %v, want %v", kubeWrites, wantKube)
	}
	total := 0
	for _, v := range jenkinsWrites {
		total += v
	}
	for _, v := range kubeWrites {
		total += v
	}
	t.Logf("per build: %d Jenkins calls, %d Kubernetes writes", len(wantJenkins), len(wantKube))
	if total != 8*n {
		t.Errorf("%d calls for %d builds, want %d", total, n, 8*n)
	}
}

func TestRestartNeitherLeaksNorDuplicates(t *testing.T) {
	e := newEnv(t, nil)
	e.addJob(jenkinsemu.JobSpec{Duration: jenkinsemu.Forever})
	stop := e.start(e.config(nil))
	for i := range 3 {
		e.trigger(i)
	}
	waitFor(t, "three agents", func() bool { return len(e.pods()) == 3 })
	stop()
	before := podNames(e.pods())

	e.start(e.config(nil))
	e.trigger(10)
	waitFor(t, "a fourth agent", func() bool { return len(e.pods()) == 4 })
	time.Sleep(300 * time.Millisecond)
	after := podNames(e.pods())
	for _, n := range before {
		if !slices.Contains(after, n) {
			t.Errorf("agent %s of the first provisioner was replaced; pods now %v", n, after)
		}
	}
	if len(after) != 4 || len(e.agentNodes()) != 4 {
		t.Fatalf("pods %v, nodes %s; want 4 of each", after, describeNodes(e.agentNodes()))
	}
	e.startKubelet(&kubelet{})
	waitFor(t, "four builds", func() bool { return len(e.emu.Builds(testJob)) == 4 })
	for _, b := range e.emu.Builds(testJob) {
		if err := e.emu.FinishBuild(testJob, b.Number, jenkinsemu.Success); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every agent to go", func() bool { return len(e.pods()) == 0 && len(e.agentNodes()) == 0 })
}

func podNames(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	slices.Sort(out)
	return out
}

func TestOrphansAreCollected(t *testing.T) {
	e := newEnv(t, nil)
	e.addJob(jenkinsemu.JobSpec{Duration: jenkinsemu.Forever})
	ctx := context.Background()
	// A pod and its Secret without a node, a Secret no pod reads, and a
	// node without a pod or item.
	tmpl := testTemplate(nil)["linux"]
	a := eci.Agent{Name: eci.AgentName(900, 1), Namespace: testNS, QueueID: 900, Attempt: 1, JenkinsURL: "http://j/"}
	sec, err := e.kube.CoreV1().Secrets(testNS).Create(ctx, eci.RenderSecret(testNS, nil, map[string]string{a.Name: "s"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a.SecretName = sec.Name
	if _, err := e.kube.CoreV1().Pods(testNS).Create(ctx, eci.Render(tmpl, a), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.kube.CoreV1().Secrets(testNS).Create(ctx, eci.RenderSecret(testNS, nil, map[string]string{eci.AgentName(901, 1): "s"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.jc.CreateNode(ctx, jenkins.NodeSpec{Name: eci.AgentName(902, 1), Labels: []string{testLabel}, WebSocket: true}); err != nil {
		t.Fatal(err)
	}
	// Someone else's pod, node and Secret stay.
	if _, err := e.kube.CoreV1().Pods(testNS).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "other"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.jc.CreateNode(ctx, jenkins.NodeSpec{Name: "static-agent", Labels: []string{testLabel}}); err != nil {
		t.Fatal(err)
	}
	e.start(e.config(func(c *Config) { c.GCGrace = 200 * time.Millisecond }))
	waitFor(t, "orphans to go", func() bool {
		s, _ := e.kube.CoreV1().Secrets(testNS).List(ctx, metav1.ListOptions{})
		return len(e.agentNodes()) == 0 && len(e.pods()) == 1 && len(s.Items) == 0
	})
	if _, ok := e.emu.Node("static-agent"); !ok {
		t.Error("a node ferry does not own was deleted")
	}
}

func TestQuotaErrorsBackOffWithoutChurn(t *testing.T) {
	cs := newFakeKube()
	var mu sync.Mutex
	refused := 0
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		if refused < 3 {
			refused++
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "x",
				errorString(`exceeded quota: agents, requested: pods=1, used: pods=10, limited: pods=10`))
		}
		return false, nil, nil
	})
	e := newEnv(t, cs)
	e.addJob(jenkinsemu.JobSpec{Duration: jenkinsemu.Forever})
	e.start(e.config(nil))
	waitFor(t, "the anchor node", func() bool { _, ok := e.emu.Node(anchorName("linux")); return ok })
	e.emu.ResetCalls()
	e.trigger(1)
	waitFor(t, "the pod after the quota frees", func() bool { return len(e.pods()) == 1 })
	calls := e.emu.Calls()
	var creates, deletes int
	for route, n := range calls {
		if strings.Contains(route, "doCreateItem") {
			creates += n
		}
		if strings.Contains(route, "doDelete") {
			deletes += n
		}
	}
	if creates != 1 || deletes != 0 {
		t.Errorf("node creates %d, deletes %d (calls %v); want 1 and 0", creates, deletes, calls)
	}
	mu.Lock()
	defer mu.Unlock()
	if refused != 3 {
		t.Errorf("refused %d pod creations, want 3", refused)
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

func TestItemsOfOtherLabelsAreLeftAlone(t *testing.T) {
	e := newEnv(t, nil)
	if err := e.emu.AddJob("other", jenkinsemu.JobSpec{Label: "windows", Duration: jenkinsemu.Forever, Params: []jenkinsemu.Param{{Name: "N"}}}); err != nil {
		t.Fatal(err)
	}
	e.start(e.config(nil))
	if _, err := e.jc.Trigger(context.Background(), "other", map[string]string{"N": "1"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if p := e.pods(); len(p) != 0 {
		t.Fatalf("pods = %v, want none for a label no template serves", podNames(p))
	}
}

func TestWithoutAnchorsTheLabelHintServes(t *testing.T) {
	e := newEnv(t, nil)
	e.addJob(jenkinsemu.JobSpec{Duration: jenkinsemu.Forever})
	e.start(e.config(func(c *Config) {
		c.DisableAnchors = true
		c.Label = func(it jenkins.QueueItem) string {
			if it.TaskName == "app" {
				return testLabel
			}
			return ""
		}
	}))
	e.trigger(1)
	waitFor(t, "an agent pod", func() bool { return len(e.pods()) == 1 })
	for _, n := range e.emu.Nodes() {
		if strings.HasPrefix(n.Name, anchorPrefix) {
			t.Errorf("anchor %s created with DisableAnchors", n.Name)
		}
	}
}

func TestNewChecksConfig(t *testing.T) {
	ok := Config{Jenkins: &jenkins.Client{}, Kube: fake.NewClientset(), Namespace: "ns", Templates: testTemplate(nil), JenkinsURL: "http://j/"}
	for _, tc := range []struct {
		name string
		mut  func(*Config)
		want string
	}{
		{"ok", func(*Config) {}, ""},
		{"no jenkins", func(c *Config) { c.Jenkins = nil }, "Jenkins is required"},
		{"no kube", func(c *Config) { c.Kube = nil }, "Kube is required"},
		{"no namespace", func(c *Config) { c.Namespace = "" }, "Namespace"},
		{"no templates", func(c *Config) { c.Templates = nil }, "template"},
		{"no url", func(c *Config) { c.JenkinsURL = "" }, "JenkinsURL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mut(&c)
			_, err := New(c)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("New = %v, want error containing %q", err, tc.want)
			}
		})
	}
}

// TestRestartKeepsFallbackLevels starts a provisioner on what another left:
// the node of a retry, whose pod was still to come, gets its pod at the
// level the node's description names, once the backoff it names is over;
// an item whose first agent ran a build (Jenkins gave it another item)
// gets a new attempt at the same level, not one fallback level up, since
// nothing failed.
func TestRestartKeepsFallbackLevels(t *testing.T) {
	e := newEnv(t, nil)
	e.addJob(jenkinsemu.JobSpec{Duration: jenkinsemu.Forever})
	tmpl := testTemplate(func(t *eci.Template) {
		t.ECI.Specs = []string{"2-4Gi", "4-8Gi"}
		t.ECI.SpotStrategy = eci.SpotAsPriceGo
		t.Fallbacks = []eci.Fallback{{OnDemand: true}, {DropSpecs: 1}}
	})
	ctx := context.Background()
	retried, spent, waiting := e.trigger(1), e.trigger(2), e.trigger(3)
	p, err := New(e.config(func(c *Config) { c.Templates = tmpl }))
	if err != nil {
		t.Fatal(err)
	}
	// What the earlier provisioner left.
	for _, n := range []struct {
		q         int64
		attempt   int
		fallback  int
		notBefore time.Time
	}{{retried, 2, 1, time.Now().Add(-time.Second)}, {spent, 1, 0, time.Time{}}, {waiting, 2, 1, time.Now().Add(time.Hour)}} {
		spec := p.nodeSpec(eci.AgentName(n.q, n.attempt), "linux", nodeWhat(n.q, n.attempt, n.fallback, n.notBefore))
		if err := e.jc.CreateNode(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.jc.MarkOffline(ctx, eci.AgentName(spent, 1), OneBuildReason); err != nil {
		t.Fatal(err)
	}

	e.start(e.config(func(c *Config) { c.Templates = tmpl }))
	want := map[string]string{eci.AgentName(retried, 2): "1", eci.AgentName(spent, 2): ""}
	waitFor(t, "the pods of both items", func() bool {
		n := 0
		for _, pod := range e.pods() {
			if _, ok := want[pod.Name]; ok {
				n++
			}
		}
		return n == len(want)
	})
	for _, pod := range e.pods() {
		w, ok := want[pod.Name]
		if !ok {
			t.Errorf("unexpected pod %s", pod.Name)
			continue
		}
		if got := pod.Annotations[eci.AnnotationFallback]; got != w {
			t.Errorf("pod %s at fallback level %q, want %q", pod.Name, got, w)
		}
	}
	if _, ok := e.emu.Node(eci.AgentName(spent, 1)); ok {
		t.Errorf("the spent agent %s was not deleted", eci.AgentName(spent, 1))
	}
	// The retry still in its backoff waits for it.
	time.Sleep(300 * time.Millisecond)
	for _, pod := range e.pods() {
		if pod.Name == eci.AgentName(waiting, 2) {
			t.Errorf("pod %s made before its retry's backoff ended", pod.Name)
		}
	}
}

// TestSlowJenkinsIsPolledLess: when Jenkins takes long to answer (a big
// queue, a loaded controller), cycles are spaced by four times their polls'
// duration, whatever wakes them, so ferry never keeps Jenkins busy more
// than a quarter of the time.
func TestSlowJenkinsIsPolledLess(t *testing.T) {
	e := newEnv(t, nil)
	e.addJob(jenkinsemu.JobSpec{Duration: jenkinsemu.Forever})
	e.start(e.config(func(c *Config) { c.Resync = 20 * time.Millisecond }))
	waitFor(t, "the anchor node", func() bool { _, ok := e.emu.Node(anchorName("linux")); return ok })
	e.emu.SetLatency(100 * time.Millisecond)
	e.emu.ResetCalls()
	const window = 3 * time.Second
	time.Sleep(window)
	polls := e.emu.Calls()[jenkinsemu.RouteQueue]
	e.emu.SetLatency(0)
	// Each cycle's two polls take at least 200 ms, so cycles start at
	// least 800 ms apart: at most 4 in the window, one more for a poll in
	// flight at its start. Back to back (a cycle every resync, 20 ms) it
	// would be about 14.
	if polls == 0 || polls > 5 {
		t.Errorf("%d queue polls in %s with Jenkins answering in 100 ms, want 1..5", polls, window)
	}
}
