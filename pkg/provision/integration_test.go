package provision

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

func newBed(t *testing.T) *bed {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test on the test bed (Kubernetes with kwok virtual nodes); skipped with -short")
	}
	testbed.Kube(t)
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
				s, err := b.admin.CoreV1().Secrets(b.ns).Get(ctx, p.Name, metav1.GetOptions{})
				if err != nil {
					continue
				}
				done[string(p.UID)] = true
				if err := b.emu.ConnectAgent(p.Name, string(s.Data[eci.SecretKey])); err != nil {
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
		_, err := b.admin.CoreV1().Secrets(b.ns).Get(context.Background(), pod.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
}

func TestBedFailuresAreRetriedWithFallbackThenCancelled(t *testing.T) {
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
	pod, _ := eci.Render(tmpl["linux"], eci.Agent{Name: eci.AgentName(900, 1), Namespace: b.ns, QueueID: 900, Attempt: 1, JenkinsURL: "http://j/", Secret: "s"})
	if _, err := b.admin.CoreV1().Pods(b.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := b.config(tmpl)
	cfg.GCGrace = time.Second
	b.start(cfg)
	waitFor(t, "the orphan pod to go", func() bool { return len(b.pods()) == 0 })
}
