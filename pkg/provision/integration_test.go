package provision

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/test/jenkinsemu"
	"github.com/ferryci/ferry/test/testbed"
)

// Integration tests: the provisioner against the test bed's real
// kube-apiserver, scheduler and kwok virtual nodes (make testbed-up), with
// ferry's own less-privileged identity, and the Jenkins emulator. The test
// plays the agent: when a pod runs, it connects the agent to the emulator
// with the secret from the pod's Secret.

type bed struct {
	*env
	ns    string
	admin kubernetes.Interface
}

// needBed skips (-short) or fails the test when the bed is down. Tests
// made of subtests call it first, so that they skip as a whole instead of
// passing with every subtest skipped.
func needBed(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test on the test bed (Kubernetes with kwok virtual nodes); skipped with -short")
	}
	testbed.Kube(t)
}

func newBed(t *testing.T) *bed {
	t.Helper()
	needBed(t)
	ns := testbed.Namespace(t)
	e := newEnv(t, testbed.FerryClientset(t))
	return &bed{env: e, ns: ns, admin: testbed.Clientset(t)}
}

func (b *bed) config(tmpl map[string]eci.Template) Config {
	return b.env.config(func(c *Config) {
		c.Namespace = b.ns
		c.Templates = tmpl
		c.Recorder = nil // real Events
		c.Resync = 500 * time.Millisecond
	})
}

func (b *bed) pods() []corev1.Pod {
	b.t.Helper()
	l, err := b.admin.CoreV1().Pods(b.ns).List(context.Background(), metav1.ListOptions{LabelSelector: eci.ManagedSelector})
	if err != nil {
		b.t.Fatal(err)
	}
	return l.Items
}

// playAgents connects the agent of every Running pod once.
func (b *bed) playAgents() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	b.t.Cleanup(func() { cancel(); wg.Wait() })
	go func() {
		defer wg.Done()
		done := map[string]bool{}
		for ctx.Err() == nil {
			for _, p := range b.pods() {
				if done[string(p.UID)] || p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
					continue
				}
				secret, err := agentSecret(ctx, b.admin, &p)
				if err != nil {
					continue
				}
				done[string(p.UID)] = true
				if err := b.emu.ConnectAgent(p.Name, secret); err != nil {
					b.t.Errorf("connect agent %s: %v", p.Name, err)
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
}

func bedTemplate(mut func(*eci.Template)) map[string]eci.Template {
	return testTemplate(func(t *eci.Template) {
		t.ECI.Specs = []string{"2-4Gi", "ecs.c6.large"}
		t.ECI.SpotStrategy = eci.SpotAsPriceGo
		t.PodAnnotations = map[string]string{testbed.StartDelayAnnotation: "0s"}
		if mut != nil {
			mut(t)
		}
	})
}

func TestBedBuildGetsAnAgentOnAVirtualNodeAndItGoesWithTheBuild(t *testing.T) {
	b := newBed(t)
	b.addJob(jenkinsemu.JobSpec{Duration: jenkinsemu.Forever, Pipeline: true})
	b.playAgents()
	b.start(b.config(bedTemplate(nil)))
	b.trigger(1)

	var pod corev1.Pod
	waitFor(t, "the build to run on an agent", func() bool {
		bl, ok := b.emu.Build(testJob, 1)
		if !ok || bl.Node == "" {
			return false
		}
		for _, p := range b.pods() {
			if p.Name == bl.Node {
				pod = p
			}
		}
		return pod.Name != ""
	})
	if got := len(b.pods()); got != 1 {
		t.Fatalf("%d agent pods, want 1", got)
	}
	node, err := b.admin.CoreV1().Nodes().Get(context.Background(), pod.Spec.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("pod's node %q: %v", pod.Spec.NodeName, err)
	}
	if node.Labels[testbed.VirtualNodeLabel] != testbed.VirtualNodeLabelValue {
		t.Errorf("pod runs on %s with labels %v, want a virtual node", node.Name, node.Labels)
	}
	for k, want := range map[string]string{
		"k8s.aliyun.com/eci-use-specs":     "2-4Gi,ecs.c6.large",
		"k8s.aliyun.com/eci-spot-strategy": eci.SpotAsPriceGo,
	} {
		if got := pod.Annotations[k]; got != want {
			t.Errorf("annotation %s = %q, want %q", k, got, want)
		}
	}

	if err := b.emu.FinishBuild(testJob, 1, jenkinsemu.Success); err != nil {
		t.Fatal(err)
	}
	ended := time.Now()
	waitFor(t, "pod and node to go", func() bool {
		_, err := b.admin.CoreV1().Pods(b.ns).Get(context.Background(), pod.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err) && len(b.agentNodes()) == 0
	})
	if took := time.Since(ended); took > 5*time.Second {
		t.Errorf("pod and node went %s after the build ended, want within 5s", took)
	}
	waitFor(t, "the Secret to go with its pod", func() bool {
		_, err := b.admin.CoreV1().Secrets(b.ns).Get(context.Background(), eci.SecretNameOf(&pod), metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
}

func TestBedFailuresAreRetriedWithFallbackThenCancelled(t *testing.T) {
	needBed(t)
	for _, tc := range []struct {
		simulate string
		reason   eci.Reason
	}{
		{testbed.SimulateProviderFailed, eci.ReasonProviderFailed},
		{testbed.SimulateNoStock, eci.ReasonNoStock},
	} {
		t.Run(tc.simulate, func(t *testing.T) {
			b := newBed(t)
			b.addJob(jenkinsemu.JobSpec{Duration: jenkinsemu.Forever})
			tmpl := bedTemplate(func(t *eci.Template) {
				t.PodAnnotations[testbed.SimulateAnnotation] = tc.simulate
				t.Fallbacks = []eci.Fallback{{OnDemand: true}, {DropSpecs: 1}}
			})
			var mu sync.Mutex
			fallbacks := map[string]string{}
			// A watch sees every attempt, however briefly it lives.
			w, err := b.admin.CoreV1().Pods(b.ns).Watch(context.Background(), metav1.ListOptions{LabelSelector: eci.ManagedSelector})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Stop()
			go func() {
				for ev := range w.ResultChan() {
					p, ok := ev.Object.(*corev1.Pod)
					if !ok {
						continue
					}
					mu.Lock()
					fallbacks[p.Name] = p.Annotations[eci.AnnotationFallback] + "|" + p.Annotations["k8s.aliyun.com/eci-spot-strategy"] + "|" + p.Annotations["k8s.aliyun.com/eci-use-specs"]
					mu.Unlock()
				}
			}()
			b.start(b.config(tmpl))
			q := b.trigger(1)
			waitFor(t, "the item to be cancelled", func() bool {
				it, ok := b.emu.QueueItem(q)
				return ok && it.Cancelled
			})
			// OnFailure is called after the cancel answers.
			waitFor(t, "the failure report", func() bool { return len(b.failuresSeen()) > 0 })
			f := b.failuresSeen()
			if len(f) != 1 || f[0].Reason != tc.reason || !f[0].Cancelled || f[0].Message == "" {
				t.Fatalf("failures = %+v, want one %s, cancelled, with a message", f, tc.reason)
			}
			mu.Lock()
			want := map[string]string{
				eci.AgentName(q, 1): "|SpotAsPriceGo|2-4Gi,ecs.c6.large",
				eci.AgentName(q, 2): "1||2-4Gi,ecs.c6.large",
				eci.AgentName(q, 3): "2||ecs.c6.large",
			}
			for name, w := range want {
				if got := fallbacks[name]; got != w {
					t.Errorf("agent %s: fallback|spot|specs = %q, want %q (all: %v)", name, got, w, fallbacks)
				}
			}
			if len(fallbacks) != len(want) {
				t.Errorf("agents = %v, want exactly %d attempts", fallbacks, len(want))
			}
			mu.Unlock()
			waitFor(t, "every agent to go", func() bool { return len(b.pods()) == 0 && len(b.agentNodes()) == 0 })
			waitFor(t, "an AgentFailed event", func() bool {
				ev, err := b.admin.CoreV1().Events(b.ns).List(context.Background(), metav1.ListOptions{})
				if err != nil {
					return false
				}
				for _, e := range ev.Items {
					if e.Reason == "AgentFailed" && strings.Contains(e.Message, string(tc.reason)) {
						return true
					}
				}
				return false
			})
		})
	}
}

func TestBedRestartMidFlightNeitherLeaksNorDuplicates(t *testing.T) {
	b := newBed(t)
	b.addJob(jenkinsemu.JobSpec{Duration: jenkinsemu.Forever})
	stop := b.start(b.config(bedTemplate(nil)))
	for i := range 3 {
		b.trigger(i)
	}
	waitFor(t, "three agents", func() bool { return len(b.pods()) == 3 })
	stop()
	before := podNames(b.pods())
	b.start(b.config(bedTemplate(nil)))
	b.playAgents()
	waitFor(t, "three builds", func() bool { return len(b.emu.Builds(testJob)) == 3 })
	if after := podNames(b.pods()); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("pods after restart %v, want the same as before %v", after, before)
	}
	for _, bl := range b.emu.Builds(testJob) {
		if err := b.emu.FinishBuild(testJob, bl.Number, jenkinsemu.Success); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every agent to go", func() bool { return len(b.pods()) == 0 && len(b.agentNodes()) == 0 })
}

func TestBedCapsHoldUnderABurst(t *testing.T) {
	b := newBed(t)
	b.addJob(jenkinsemu.JobSpec{Duration: 200 * time.Millisecond})
	b.playAgents()
	var mu sync.Mutex
	peak := 0
	stopWatch := make(chan struct{})
	go func() {
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(20 * time.Millisecond):
			}
			n := len(b.pods())
			mu.Lock()
			peak = max(peak, n)
			mu.Unlock()
		}
	}()
	defer close(stopWatch)
	cfg := b.config(bedTemplate(nil))
	cfg.MaxAgents = 3
	b.start(cfg)
	for i := range 10 {
		b.trigger(i)
	}
	waitFor(t, "ten builds to finish", func() bool {
		bl := b.emu.Builds(testJob)
		if len(bl) != 10 {
			return false
		}
		for _, x := range bl {
			if x.Building {
				return false
			}
		}
		return true
	})
	waitFor(t, "every agent to go", func() bool { return len(b.pods()) == 0 && len(b.agentNodes()) == 0 })
	mu.Lock()
	defer mu.Unlock()
	if peak > 3 || peak == 0 {
		t.Errorf("peak agent pods %d, want 1..3", peak)
	}
}

func TestBedOrphansAreCollected(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	tmpl := bedTemplate(nil)
	pod := eci.Render(tmpl["linux"], eci.Agent{Name: eci.AgentName(900, 1), Namespace: b.ns, QueueID: 900, Attempt: 1, JenkinsURL: "http://j/", SecretName: "gone"})
	if _, err := b.admin.CoreV1().Pods(b.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := b.config(tmpl)
	cfg.GCGrace = time.Second
	b.start(cfg)
	waitFor(t, "the orphan pod to go", func() bool { return len(b.pods()) == 0 })
}

// phaseWatch records the phases every agent pod was seen in, however
// briefly it lived.
type phaseWatch struct {
	mu     sync.Mutex
	phases map[string][]corev1.PodPhase
	pods   map[string]corev1.Pod
}

func (b *bed) watchPhases() *phaseWatch {
	b.t.Helper()
	w, err := b.admin.CoreV1().Pods(b.ns).Watch(context.Background(), metav1.ListOptions{LabelSelector: eci.ManagedSelector})
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(w.Stop)
	pw := &phaseWatch{phases: map[string][]corev1.PodPhase{}, pods: map[string]corev1.Pod{}}
	go func() {
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			pw.mu.Lock()
			if ph := pw.phases[p.Name]; len(ph) == 0 || ph[len(ph)-1] != p.Status.Phase {
				pw.phases[p.Name] = append(ph, p.Status.Phase)
			}
			if _, seen := pw.pods[p.Name]; !seen {
				pw.pods[p.Name] = *p
			}
			pw.mu.Unlock()
		}
	}()
	return pw
}

func (pw *phaseWatch) get(name string) ([]corev1.PodPhase, corev1.Pod, bool) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	p, ok := pw.pods[name]
	return slices.Clone(pw.phases[name]), p, ok
}

// hasEvent reports a Warning event of ferry's on the pod with the reason
// whose message contains want.
func (b *bed) hasEvent(pod, reason, want string) bool {
	ev, err := b.admin.CoreV1().Events(b.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return false
	}
	for _, e := range ev.Items {
		if e.InvolvedObject.Name == pod && e.Reason == reason && strings.Contains(e.Message, want) {
			return true
		}
	}
	return false
}

// An idle agent whose spot instance is about to go is replaced on-demand
// while it still runs: from the simulated ECI warning (event and
// condition), and from the event alone as virtual-kubelet may send it.
func TestBedSpotWarningReplacesAnIdleAgentBeforeItFails(t *testing.T) {
	needBed(t)
	for _, tc := range []struct {
		name     string
		simulate bool
	}{{"spot-reclaim simulation", true}, {"event only", false}} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBed(t)
			b.addJob(jenkinsemu.JobSpec{Duration: jenkinsemu.Forever})
			// No agent connects: the agent stays idle, waiting for its
			// item, when the warning comes.
			tmpl := bedTemplate(func(t *eci.Template) {
				if tc.simulate {
					t.PodAnnotations[testbed.SimulateAnnotation] = testbed.SimulateSpotReclaim
					t.PodAnnotations[testbed.SpotWarningDelayAnnotation] = "500ms"
					// ECI gives 3-5 minutes; the bed gives 2.
					t.PodAnnotations[testbed.SpotReleaseDelayAnnotation] = "2m"
				}
				t.Fallbacks = []eci.Fallback{{OnDemand: true}}
			})
			pw := b.watchPhases()
			b.start(b.config(tmpl))
			q := b.trigger(1)
			first, second := eci.AgentName(q, 1), eci.AgentName(q, 2)
			if !tc.simulate {
				var pod corev1.Pod
				waitFor(t, "the first agent to run", func() bool {
					ph, p, ok := pw.get(first)
					pod = p
					return ok && slices.Contains(ph, corev1.PodRunning)
				})
				ev := &corev1.Event{
					ObjectMeta: metav1.ObjectMeta{GenerateName: first + ".", Namespace: b.ns},
					InvolvedObject: corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: b.ns, Name: first,
						UID: pod.UID},
					Type: corev1.EventTypeWarning, Reason: testbed.ReasonSpotToBeReleased,
					Message:       "Spot ECI will be released in 3 minutes (posted by the test)",
					LastTimestamp: metav1.Now(), FirstTimestamp: metav1.Now(), Count: 1,
					Source: corev1.EventSource{Component: "virtual-kubelet"},
				}
				if _, err := b.admin.CoreV1().Events(b.ns).Create(context.Background(), ev, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "the second attempt", func() bool { _, _, ok := pw.get(second); return ok })
			_, next, _ := pw.get(second)
			if got := next.Annotations[eci.AnnotationFallback]; got != "1" {
				t.Errorf("second attempt fallback = %q, want 1", got)
			}
			if got, ok := next.Annotations["k8s.aliyun.com/eci-spot-strategy"]; ok {
				t.Errorf("second attempt spot strategy %q, want on-demand (none)", got)
			}
			waitFor(t, "the first agent to go", func() bool {
				_, err := b.admin.CoreV1().Pods(b.ns).Get(context.Background(), first, metav1.GetOptions{})
				return apierrors.IsNotFound(err)
			})
			if ph, _, _ := pw.get(first); slices.Contains(ph, corev1.PodFailed) {
				t.Errorf("first agent went through phases %v, want it replaced before it failed", ph)
			}
			waitFor(t, "an AgentRetry event naming the reclaim", func() bool {
				return b.hasEvent(first, "AgentRetry", string(eci.ReasonSpotReclaimed))
			})
			if f := b.failuresSeen(); len(f) != 0 {
				t.Errorf("failures = %+v, want none (the item was retried)", f)
			}
		})
	}
}

// A running build whose spot instance is about to go is reported at the
// warning, while its pod still runs; the build goes on until the instance
// goes, and that end is not reported twice.
func TestBedSpotWarningUnderARunningBuildIsReportedAtOnce(t *testing.T) {
	b := newBed(t)
	b.addJob(jenkinsemu.JobSpec{Duration: jenkinsemu.Forever, Pipeline: true})
	b.playAgents()
	type report struct {
		f     Failure
		phase corev1.PodPhase
	}
	var mu sync.Mutex
	var reports []report
	cfg := b.config(bedTemplate(nil))
	cfg.OnFailure = func(ctx context.Context, f Failure) {
		r := report{f: f}
		if p, err := b.admin.CoreV1().Pods(b.ns).Get(ctx, f.Agent, metav1.GetOptions{}); err == nil {
			r.phase = p.Status.Phase
		}
		mu.Lock()
		reports = append(reports, r)
		mu.Unlock()
	}
	b.start(cfg)
	b.trigger(1)
	var agent string
	waitFor(t, "the build to run on an agent", func() bool {
		bl, ok := b.emu.Build(testJob, 1)
		agent = bl.Node
		return ok && agent != ""
	})
	waitFor(t, "the agent to be offline for other builds", func() bool {
		return slices.ContainsFunc(b.agentNodes(), func(n jenkinsemu.Node) bool { return n.Name == agent && n.TemporarilyOffline })
	})
	// The instance is spot and gets ECI's warning now, mid-build.
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q,%q:"500ms",%q:"10s"}}}`,
		testbed.SimulateAnnotation, testbed.SimulateSpotReclaim,
		testbed.SpotWarningDelayAnnotation, testbed.SpotReleaseDelayAnnotation)
	if _, err := b.admin.CoreV1().Pods(b.ns).Patch(context.Background(), agent, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reclaim report", func() bool { mu.Lock(); defer mu.Unlock(); return len(reports) > 0 })
	mu.Lock()
	r := reports[0]
	mu.Unlock()
	if r.f.Reason != eci.ReasonSpotReclaimed || !r.f.Imminent || r.f.Build.Number != 1 || r.f.Agent != agent {
		t.Errorf("report = %+v, want an imminent SpotReclaimed for build 1 on %s", r.f, agent)
	}
	if r.phase != corev1.PodRunning {
		t.Errorf("pod phase at the report = %q, want Running (reported before the instance went)", r.phase)
	}
	if bl, _ := b.emu.Build(testJob, 1); !bl.Building {
		t.Errorf("build ended at the warning, want it running until the instance goes")
	}
	waitFor(t, "an AgentReclaiming event", func() bool { return b.hasEvent(agent, ReclaimEventReason, "SpotReclaimed") })

	// The bed releases the instance: the agent goes and the build ends.
	waitFor(t, "the agent to go and the build to end", func() bool {
		bl, _ := b.emu.Build(testJob, 1)
		_, err := b.admin.CoreV1().Pods(b.ns).Get(context.Background(), agent, metav1.GetOptions{})
		return apierrors.IsNotFound(err) && len(b.agentNodes()) == 0 && !bl.Building
	})
	waitFor(t, "an AgentLost event", func() bool { return b.hasEvent(agent, "AgentLost", "SpotReclaimed") })
	mu.Lock()
	defer mu.Unlock()
	if len(reports) != 1 {
		t.Errorf("reports = %+v, want only the one at the warning", reports)
	}
}
