package provision

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/test/jenkinsemu"
)

func warning(pod, reason string, at time.Time) *corev1.Event {
	return &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: fmt.Sprintf("%s.%s.%d", pod, strings.ToLower(reason), at.UnixNano()), Namespace: testNS},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: testNS, Name: pod},
		Type:           corev1.EventTypeWarning,
		Reason:         reason,
		Message:        reason + " happened",
		LastTimestamp:  metav1.NewTime(at),
		Source:         corev1.EventSource{Component: "virtual-kubelet"},
	}
}

func TestIsAgentEvent(t *testing.T) {
	agent := eci.AgentName(7, 1)
	for _, tc := range []struct {
		name string
		mut  func(*corev1.Event)
		want bool
	}{
		{"warning about an agent pod", nil, true},
		{"normal event", func(e *corev1.Event) { e.Type = corev1.EventTypeNormal }, false},
		{"another pod", func(e *corev1.Event) { e.InvolvedObject.Name = "web-1" }, false},
		{"an anchor's name", func(e *corev1.Event) { e.InvolvedObject.Name = anchorName("linux") }, false},
		{"not a pod", func(e *corev1.Event) { e.InvolvedObject.Kind = "Node" }, false},
		{"another namespace", func(e *corev1.Event) { e.InvolvedObject.Namespace = "other" }, false},
		{"ferry's own event", func(e *corev1.Event) { e.Source.Component = eventComponent }, false},
		{"ferry's own event (events.k8s.io)", func(e *corev1.Event) { e.Source = corev1.EventSource{}; e.ReportingController = eventComponent }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := warning(agent, "SpotToBeReleased", time.Now())
			if tc.mut != nil {
				tc.mut(e)
			}
			if got := isAgentEvent(e, testNS); got != tc.want {
				t.Errorf("isAgentEvent = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestEventIndexKeepsRecentEventsPerAgent(t *testing.T) {
	a, b := eci.AgentName(1, 1), eci.AgentName(2, 1)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	reasons := func(evs []corev1.Event) []string {
		var out []string
		for _, e := range evs {
			out = append(out, e.Reason)
		}
		return out
	}

	t.Run("newest kept, oldest dropped", func(t *testing.T) {
		x := newEventIndex()
		// Added out of order: the index orders by event time.
		for i := maxEventsPerAgent + 2; i >= 1; i-- {
			x.add(warning(a, fmt.Sprintf("R%02d", i), t0.Add(time.Duration(i)*time.Second)), t0)
		}
		got := reasons(x.of(a))
		var want []string
		for i := 3; i <= maxEventsPerAgent+2; i++ {
			want = append(want, fmt.Sprintf("R%02d", i))
		}
		if !slices.Equal(got, want) {
			t.Errorf("events = %v, want %v", got, want)
		}
	})
	t.Run("a repeated event replaces itself", func(t *testing.T) {
		x := newEventIndex()
		e := warning(a, "BackOff", t0)
		x.add(e, t0)
		e2 := e.DeepCopy()
		e2.Count, e2.LastTimestamp = 5, metav1.NewTime(t0.Add(time.Minute))
		x.add(e2, t0)
		got := x.of(a)
		if len(got) != 1 || got[0].Count != 5 {
			t.Errorf("events = %+v, want the one event with count 5", got)
		}
		x.remove(e)
		if got := x.of(a); got != nil || x.len() != 0 {
			t.Errorf("after remove: events %v, %d pods; want none", got, x.len())
		}
	})
	t.Run("copies out", func(t *testing.T) {
		x := newEventIndex()
		x.add(warning(a, "SpotToBeReleased", t0), t0)
		x.of(a)[0].Reason = "changed"
		if got := x.of(a)[0].Reason; got != "SpotToBeReleased" {
			t.Errorf("reason = %q after changing a copy", got)
		}
	})
	t.Run("prune and forget", func(t *testing.T) {
		x := newEventIndex()
		x.add(warning(a, "X", t0), t0)
		x.add(warning(b, "X", t0), t0)
		live := func(n string) bool { return n == a }
		x.prune(live, t0.Add(eventKeep-time.Second))
		if x.len() != 2 {
			t.Fatalf("pruned before eventKeep: %d pods left, want 2", x.len())
		}
		x.prune(live, t0.Add(eventKeep))
		if x.of(b) != nil || x.of(a) == nil {
			t.Errorf("after prune: %s has %v, %s has %v; want only the live agent's", a, x.of(a), b, x.of(b))
		}
		x.forget(a)
		if x.len() != 0 {
			t.Errorf("after forget: %d pods, want 0", x.len())
		}
	})
}

// postEvent records an event the way virtual-kubelet (or kwok) would.
func postEvent(t *testing.T, kube kubernetes.Interface, e *corev1.Event) {
	t.Helper()
	if _, err := kube.CoreV1().Events(e.Namespace).Create(context.Background(), e, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create event %s: %v", e.Name, err)
	}
}

// recorded collects the fake recorder's events as they come.
type recorded struct {
	e   *env
	got []string
}

func (r *recorded) has(prefix string, contains string) bool {
	for {
		select {
		case s := <-r.e.rec.Events:
			r.got = append(r.got, s)
			continue
		default:
		}
		break
	}
	return slices.ContainsFunc(r.got, func(s string) bool { return strings.HasPrefix(s, prefix) && strings.Contains(s, contains) })
}

func podByName(pods []corev1.Pod, name string) (corev1.Pod, bool) {
	for _, p := range pods {
		if p.Name == name {
			return p, true
		}
	}
	return corev1.Pod{}, false
}

func TestSpotWarningEventReplacesAnIdleAgentOnDemand(t *testing.T) {
	e := newEnv(t, nil)
	e.addJob(jenkinsemu.JobSpec{Duration: jenkinsemu.Forever})
	// Pods run, but their agent never connects: the agent stays idle, and
	// only an event can tell that its instance is going.
	e.startKubelet(&kubelet{status: func(*corev1.Pod) *corev1.PodStatus { return runningStatus() }})
	tmpl := testTemplate(func(t *eci.Template) {
		t.ECI.SpotStrategy = eci.SpotAsPriceGo
		t.Fallbacks = []eci.Fallback{{OnDemand: true}}
	})
	p, _ := e.startP(e.config(func(c *Config) { c.Templates = tmpl }))
	q := e.trigger(1)
	first, second := eci.AgentName(q, 1), eci.AgentName(q, 2)
	waitFor(t, "the first agent's pod to run", func() bool {
		pod, ok := podByName(e.pods(), first)
		return ok && pod.Status.Phase == corev1.PodRunning
	})
	pod, _ := podByName(e.pods(), first)
	now := time.Now()

	// Events that must change nothing, then a harmless Warning about the
	// agent: the informer delivers in order, so once the last is indexed
	// the others have been seen and dropped.
	other := warning("web-1", "SpotToBeReleased", now)
	normal := warning(first, "SpotToBeReleased", now)
	normal.Name += ".normal"
	normal.Type = corev1.EventTypeNormal
	own := warning(first, "SpotToBeReleased", now)
	own.Name += ".own"
	own.Source.Component = eventComponent
	notPod := warning(first, "SpotToBeReleased", now)
	notPod.Name += ".node"
	notPod.InvolvedObject.Kind = "Node"
	harmless := warning(first, "FailedMount", now)
	for _, ev := range []*corev1.Event{other, normal, own, notPod, harmless} {
		postEvent(t, e.kube, ev)
	}
	waitFor(t, "the harmless event to be indexed", func() bool { return len(p.events.of(first)) == 1 })
	if got := p.events.of(first); got[0].Reason != "FailedMount" || p.events.len() != 1 {
		t.Fatalf("indexed %+v (%d pods), want only %s's FailedMount", got, p.events.len(), first)
	}
	if f := eci.Classify(&pod, p.events.of(first), eci.ClassifyOptions{Now: time.Now(), Connected: false}); f.Failed() {
		t.Fatalf("classification with the ignored events = %v, want none", f)
	}
	if pods := e.pods(); len(pods) != 1 || pods[0].Name != first {
		t.Fatalf("pods = %v, want only %s", podNames(pods), first)
	}

	// ECI's warning: the agent is replaced at the next fallback level,
	// on-demand, before it takes the build.
	reclaim := warning(first, "SpotToBeReleased", now)
	reclaim.InvolvedObject.UID = pod.UID
	reclaim.Message = "Spot ECI will be released in 3 minutes"
	postEvent(t, e.kube, reclaim)
	waitFor(t, "the second attempt's pod", func() bool { _, ok := podByName(e.pods(), second); return ok })
	next, _ := podByName(e.pods(), second)
	if got := next.Annotations[eci.AnnotationFallback]; got != "1" {
		t.Errorf("second attempt fallback = %q, want 1", got)
	}
	if got, ok := next.Annotations["k8s.aliyun.com/eci-spot-strategy"]; ok {
		t.Errorf("second attempt has spot strategy %q, want on-demand (none)", got)
	}
	waitFor(t, "the first agent to go", func() bool {
		_, ok := podByName(e.pods(), first)
		return !ok && !slices.ContainsFunc(e.agentNodes(), func(n jenkinsemu.Node) bool { return n.Name == first })
	})
	rec := &recorded{e: e}
	waitFor(t, "an AgentRetry event naming the reclaim", func() bool { return rec.has("Warning AgentRetry", string(eci.ReasonSpotReclaimed)) })
	if f := e.failuresSeen(); len(f) != 0 {
		t.Errorf("failures = %+v, want none (the item was retried)", f)
	}
	waitFor(t, "the first agent's events to be dropped with it", func() bool { return p.events.of(first) == nil })
}

func TestSpotWarningUnderARunningBuildIsReported(t *testing.T) {
	for _, end := range []string{"build finishes", "instance goes"} {
		t.Run(end, func(t *testing.T) {
			e := newEnv(t, nil)
			e.addJob(jenkinsemu.JobSpec{Duration: jenkinsemu.Forever, Pipeline: true})
			e.startKubelet(&kubelet{})
			p, stop := e.startP(e.config(nil))
			e.trigger(1)
			var pod corev1.Pod
			waitFor(t, "the build to run on an agent, offline for other builds", func() bool {
				b, ok := e.emu.Build(testJob, 1)
				if !ok || b.Node == "" {
					return false
				}
				pod, ok = podByName(e.pods(), b.Node)
				return ok && slices.ContainsFunc(e.agentNodes(), func(n jenkinsemu.Node) bool { return n.Name == b.Node && n.TemporarilyOffline })
			})

			reclaim := warning(pod.Name, "SpotToBeReleased", time.Now())
			reclaim.InvolvedObject.UID = pod.UID
			postEvent(t, e.kube, reclaim)
			waitFor(t, "the reclaim report", func() bool { return len(e.failuresSeen()) == 1 })
			f := e.failuresSeen()[0]
			if f.Reason != eci.ReasonSpotReclaimed || !f.Imminent || f.Cancelled || f.Agent != pod.Name || f.Build.Number != 1 ||
				!strings.Contains(f.Message, "SpotToBeReleased happened") {
				t.Errorf("failure = %+v, want an imminent SpotReclaimed for build 1 on %s quoting the event", f, pod.Name)
			}
			rec := &recorded{e: e}
			waitFor(t, "an AgentReclaiming event", func() bool { return rec.has("Warning "+ReclaimEventReason, "SpotReclaimed") })
			// The build goes on; its agent takes nothing else.
			if b, _ := e.emu.Build(testJob, 1); !b.Building {
				t.Errorf("build 1 ended at the warning, want it running")
			}
			if _, ok := podByName(e.pods(), pod.Name); !ok {
				t.Errorf("agent pod deleted at the warning, want it kept for the build")
			}

			switch end {
			case "build finishes":
				e.trigger(2)
				waitFor(t, "build 2 on another agent", func() bool {
					b, ok := e.emu.Build(testJob, 2)
					return ok && b.Node != ""
				})
				if b, _ := e.emu.Build(testJob, 2); b.Node == pod.Name {
					t.Fatalf("build 2 runs on the reclaimed agent %s", pod.Name)
				}
				if err := e.emu.FinishBuild(testJob, 1, jenkinsemu.Success); err != nil {
					t.Fatal(err)
				}
				if err := e.emu.FinishBuild(testJob, 2, jenkinsemu.Success); err != nil {
					t.Fatal(err)
				}
				waitFor(t, "every agent to go", func() bool { return len(e.pods()) == 0 && len(e.agentNodes()) == 0 })
			case "instance goes":
				cur, err := e.kube.CoreV1().Pods(testNS).Get(context.Background(), pod.Name, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				cur.Status.Phase, cur.Status.Reason, cur.Status.Message = corev1.PodFailed, "Expired", "Spot ECI was released"
				if _, err := e.kube.CoreV1().Pods(testNS).UpdateStatus(context.Background(), cur, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
				waitFor(t, "the agent to go and its build to end", func() bool {
					b, _ := e.emu.Build(testJob, 1)
					_, err := e.kube.CoreV1().Pods(testNS).Get(context.Background(), pod.Name, metav1.GetOptions{})
					return apierrors.IsNotFound(err) && len(e.agentNodes()) == 0 && !b.Building
				})
				waitFor(t, "an AgentLost event", func() bool { return rec.has("Warning AgentLost", "SpotReclaimed") })
			}
			waitFor(t, "the agents' events to go with them", func() bool { return p.events.len() == 0 })
			stop() // every action of the last cycle has run
			if f := e.failuresSeen(); len(f) != 1 {
				t.Errorf("failures = %+v, want only the reclaim report", f)
			}
		})
	}
}

// A pod of the same name as an earlier one does not inherit its events.
func TestEventsOfAnEarlierPodOfTheSameNameAreIgnored(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: eci.AgentName(3, 1), Namespace: testNS, UID: types.UID("new")},
		Status: *runningStatus()}
	old := warning(pod.Name, "SpotToBeReleased", time.Now())
	old.InvolvedObject.UID = "old"
	x := newEventIndex()
	x.add(old, time.Now())
	if f := eci.Classify(pod, x.of(pod.Name), eci.ClassifyOptions{Now: time.Now(), Connected: true}); f.Failed() {
		t.Errorf("classification = %v, want none", f)
	}
}
