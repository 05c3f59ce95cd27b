package provision

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/pkg/jenkins"
)

// The decisions of a cycle, driven by tables: a world and the memory of
// earlier cycles in; the agents' states, the acts and the memory to keep
// out. No emulator, no clientset, no clock: each row is a moment.

// t0 is the moment of every row (plus its scene's at).
var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// The agents of the rows, by queue item and attempt.
var (
	a51 = eci.AgentName(5, 1)
	a52 = eci.AgentName(5, 2)
	a53 = eci.AgentName(5, 3)
	a61 = eci.AgentName(6, 1)
)

// scene is the world of a row.
type scene struct {
	at       time.Duration
	comps    []jenkins.Computer
	queue    []jenkins.QueueItem
	pods     []*corev1.Pod
	secrets  []*corev1.Secret
	events   []*corev1.Event
	flight   []act
	made     map[string]time.Time
	deleted  map[string]time.Time
	making   map[string]bool
	paused   time.Time
	noAnchor bool
	// asked are the agents whose lost build's re-run was accepted.
	asked []string
	// images are the templates' image verdicts.
	images map[string]imageCheck
	// pool holds the AgentPools' replicas, by template; pools the
	// AgentPools; poolUnknown the templates whose pool is not known yet.
	pool        map[string]int
	pools       map[string]poolView
	poolUnknown map[string]bool
}

func (s scene) world(p *Provisioner) *world {
	comps := s.comps
	if !s.noAnchor {
		comps = append([]jenkins.Computer{{Name: anchorName("linux"), Labels: []string{testLabel}, Offline: true}}, comps...)
	}
	w := &world{now: t0.Add(s.at), computers: comps, queue: s.queue, pods: s.pods, secrets: s.secrets,
		flight: map[string]act{}, made: s.made, deleted: s.deleted, making: s.making, kubeBackoff: s.paused}
	for _, a := range s.flight {
		w.flight[a.key()] = a
	}
	p.join(w)
	w.rerunAsked, w.images, w.poolReplicas, w.pools, w.poolUnknown = map[string]bool{}, s.images, s.pool, s.pools, s.poolUnknown
	for _, name := range s.asked {
		w.rerunAsked[name] = true
	}
	w.events = map[string][]corev1.Event{}
	for _, e := range s.events {
		w.events[e.InvolvedObject.Name] = append(w.events[e.InvolvedObject.Name], *e)
	}
	return w
}

// deciding returns a provisioner whose decisions a test drives; it never
// runs.
func deciding(t testing.TB, mut func(*Config)) *Provisioner {
	t.Helper()
	cfg := Config{Jenkins: &jenkins.Client{}, Kube: fake.NewClientset(), Namespace: testNS, Templates: testTemplate(nil),
		JenkinsURL: "http://j/", Logger: testLogger()}
	if mut != nil {
		mut(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.queue.ShutDown)
	return p
}

// outcome is what a cycle classified and decided.
type outcome struct {
	states map[string]agentState
	acts   []string
	d      *decision
}

func cycle(p *Provisioner, s scene, mem memory) outcome {
	w := s.world(p)
	agents := classify(p.rules, w, mem)
	d := decide(p.rules, w, agents, mem)
	o := outcome{states: map[string]agentState{}, d: d}
	for _, a := range agents {
		o.states[a.name] = a.state
	}
	for _, a := range d.acts {
		o.acts = append(o.acts, a.String())
	}
	return o
}

// plan runs one cycle's decisions on a world made of these parts, and
// applies the memory they return, without acting.
func (p *Provisioner) plan(_ context.Context, now time.Time, comps []jenkins.Computer, items []jenkins.QueueItem, pods []*corev1.Pod, secrets []*corev1.Secret) *decision {
	w := &world{now: now, computers: comps, queue: items, pods: pods, secrets: secrets}
	p.join(w)
	agents := classify(p.rules, w, p.mem)
	d := decide(p.rules, w, agents, p.mem)
	p.remember(w, agents, d)
	return d
}

// Builders of scenes.

func item(q int64) jenkins.QueueItem {
	return jenkins.QueueItem{ID: q, TaskName: "app", Buildable: true, InQueueSince: t0.Add(-2 * time.Minute),
		Why: "Waiting for next available executor on ‘" + testLabel + "’"}
}

func node(q int64, attempt int, opts ...func(*jenkins.Computer)) jenkins.Computer {
	name := eci.AgentName(q, attempt)
	c := jenkins.Computer{Name: name, Labels: []string{testLabel, name}, Offline: true, Idle: true, NumExecutors: 1,
		Description: "ferry " + nodeWhat(q, attempt, 0, time.Time{}) + " (template linux); managed by ferry, do not edit"}
	for _, o := range opts {
		o(&c)
	}
	return c
}

func connected(c *jenkins.Computer) { c.Offline, c.RemotePath = false, "/home/jenkins/agent" }

// marked is the one-build mark ferry puts on an agent as its build starts.
func marked(c *jenkins.Computer) {
	c.Offline, c.TemporarilyOffline, c.OfflineReason = true, true, OneBuildReason
}

func runs(build int64) func(*jenkins.Computer) {
	return func(c *jenkins.Computer) {
		c.Idle = false
		c.Running = []jenkins.Executable{{Number: build, URL: fmt.Sprintf("http://j/job/app/%d/", build)}}
	}
}

// described gives a node the description of a retry's node.
func described(fallback int, notBefore time.Time) func(*jenkins.Computer) {
	return func(c *jenkins.Computer) {
		q, attempt, _ := parseAgentName(c.Name)
		c.Description = "ferry " + nodeWhat(q, attempt, fallback, notBefore) + " (template linux); managed by ferry, do not edit"
	}
}

func otherLabels(c *jenkins.Computer) { c.Labels = []string{"windows", c.Name} }

func pod(q int64, attempt int, opts ...func(*corev1.Pod)) *corev1.Pod {
	name := eci.AgentName(q, attempt)
	p := eci.Render(testTemplate(nil)["linux"], eci.Agent{Name: name, Namespace: testNS, QueueID: q, Attempt: attempt,
		JenkinsURL: "http://j/", SecretName: "ferry-agents-1"})
	p.UID = types.UID("uid-" + name)
	p.CreationTimestamp = metav1.NewTime(t0.Add(-time.Minute))
	p.Status.Phase = corev1.PodPending
	for _, o := range opts {
		o(p)
	}
	return p
}

func running(p *corev1.Pod) {
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning,
		Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(t0.Add(-50 * time.Second))}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: eci.ContainerName,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(t0.Add(-40 * time.Second))}}}}}
}

func podFailed(reason, msg string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Status = corev1.PodStatus{Phase: corev1.PodFailed, Reason: reason, Message: msg}
	}
}

func createdAgo(d time.Duration) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.CreationTimestamp = metav1.NewTime(t0.Add(-d)) }
}

func going(p *corev1.Pod) { ts := metav1.NewTime(t0); p.DeletionTimestamp = &ts }

func atLevel(level int) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Annotations[eci.AnnotationFallback] = fmt.Sprint(level) }
}

// unschedulableFor: the scheduler has found no node for the pod for d.
func unschedulableFor(d time.Duration) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
			Reason: corev1.PodReasonUnschedulable, Message: "0/3 nodes are available", LastTransitionTime: metav1.NewTime(t0.Add(-d))}}
	}
}

func spotWarning(agent string) *corev1.Event {
	return warning(agent, "SpotToBeReleased", t0.Add(-time.Second))
}

func secret(name string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS}}
}

func creation(q int64, attempt int) act {
	return act{kind: actCreateAgent, item: item(q),
		agent: &agentView{name: eci.AgentName(q, attempt), queueID: q, attempt: attempt, template: "linux"}}
}

// remembered is the memory of earlier cycles.
func remembered(agents map[string]agentMemory, items map[int64]itemMemory) memory {
	m := newMemory()
	maps.Copy(m.agents, agents)
	maps.Copy(m.items, items)
	return m
}

// seenBefore is the memory of an agent first seen a minute ago.
func seenBefore(mut func(*agentMemory)) agentMemory {
	m := agentMemory{firstSeen: t0.Add(-time.Minute), queuedAt: t0.Add(-2 * time.Minute)}
	if mut != nil {
		mut(&m)
	}
	return m
}

// linux counts agents or items of the template by state or why.
func linux(kv ...any) tally {
	t := tally{}
	for i := 0; i < len(kv); i += 2 {
		t[tallyKey{"linux", kv[i].(string)}] = int64(kv[i+1].(int))
	}
	return t
}

type decideCase struct {
	name  string
	cfg   func(*Config)
	mem   memory
	scene scene
	// want
	states  map[string]agentState
	acts    []string
	agents  tally
	waiting tally
	next    time.Duration
	then    func(t *testing.T, d *decision)
}

func runDecideCases(t *testing.T, cases []decideCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := deciding(t, tc.cfg)
			mem := tc.mem
			if mem.agents == nil {
				mem = newMemory()
			}
			o := cycle(p, tc.scene, mem)
			if tc.states == nil {
				tc.states = map[string]agentState{}
			}
			if !maps.Equal(o.states, tc.states) {
				t.Errorf("states = %v, want %v", o.states, tc.states)
			}
			if !slices.Equal(o.acts, tc.acts) {
				t.Errorf("acts =\n\t%q\nwant\n\t%q", o.acts, tc.acts)
			}
			for _, c := range []struct {
				what      string
				got, want tally
			}{{"agents", o.d.agents, tc.agents}, {"waiting items", o.d.waiting, tc.waiting}} {
				if c.want == nil {
					c.want = tally{}
				}
				if !maps.Equal(c.got, c.want) {
					t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
				}
			}
			if o.d.next != tc.next {
				t.Errorf("next cycle after %s, want %s", o.d.next, tc.next)
			}
			if tc.then != nil {
				tc.then(t, o.d)
			}
		})
	}
}

// outcomes returns the failures' outcomes.
func outcomes(d *decision) []string {
	var out []string
	for _, f := range d.failures {
		out = append(out, fmt.Sprintf("%s %s %s", f.agent.name, f.failure.Reason, f.outcome))
	}
	return out
}

func wantOutcomes(t *testing.T, d *decision, want ...string) {
	t.Helper()
	if got := outcomes(d); !slices.Equal(got, want) {
		t.Errorf("failures = %q, want %q", got, want)
	}
}

func wantItem(t *testing.T, d *decision, q int64, want itemMemory) {
	t.Helper()
	got := d.memory.items[q]
	sameTime := got.notBefore.Equal(want.notBefore)
	got.notBefore, want.notBefore = time.Time{}, time.Time{}
	if got != want || !sameTime {
		t.Errorf("memory of item %d = %+v, want %+v", q, d.memory.items[q], want)
	}
}

func TestDecideCreatesAgentsForWaitingItems(t *testing.T) {
	runDecideCases(t, []decideCase{{
		name:   "a waiting item gets an agent",
		scene:  scene{queue: []jenkins.QueueItem{item(5)}},
		acts:   []string{"create " + a51 + " fallback 0"},
		agents: linux("creating", 1),
		then:   func(t *testing.T, d *decision) { wantItem(t, d, 5, itemMemory{}) },
	}, {
		name: "items of other labels, blocked or not buildable are left alone",
		scene: scene{queue: []jenkins.QueueItem{
			{ID: 7, Buildable: true, Why: "Waiting for next available executor on ‘windows’"},
			{ID: 8, Blocked: true, Why: item(8).Why},
			{ID: 9, Why: "In the quiet period. Expires in 4.9 sec"},
		}},
	}, {
		name:   "a creation in flight serves its item before its node shows",
		scene:  scene{queue: []jenkins.QueueItem{item(5)}, flight: []act{creation(5, 1)}},
		agents: linux("creating", 1),
	}, {
		name:   "the node shows while its creation is in flight",
		scene:  scene{queue: []jenkins.QueueItem{item(5)}, comps: []jenkins.Computer{node(5, 1)}, flight: []act{creation(5, 1)}},
		states: map[string]agentState{a51: stateCreating},
		agents: linux("creating", 1),
	}, {
		name:   "the global cap is reached: the item waits",
		cfg:    func(c *Config) { c.MaxAgents = 1 },
		scene:  scene{queue: []jenkins.QueueItem{item(5), item(6)}, flight: []act{creation(5, 1)}},
		agents: linux("creating", 1), waiting: linux("cap", 1),
	}, {
		name:   "below the global cap: the item gets its agent",
		cfg:    func(c *Config) { c.MaxAgents = 2 },
		scene:  scene{queue: []jenkins.QueueItem{item(5), item(6)}, flight: []act{creation(5, 1)}},
		acts:   []string{"create " + a61 + " fallback 0"},
		agents: linux("creating", 2),
	}, {
		name: "the template's cap is reached: the item waits",
		cfg:  func(c *Config) { c.Templates = testTemplate(func(t *eci.Template) { t.MaxAgents = 1 }) },
		scene: scene{queue: []jenkins.QueueItem{item(6)},
			comps: []jenkins.Computer{node(5, 1, connected, runs(1), marked)}, pods: []*corev1.Pod{pod(5, 1, running)}},
		states: map[string]agentState{a51: stateBuilding},
		agents: linux("building", 1), waiting: linux("cap", 1),
	}, {
		name:    "a retry waits out its backoff",
		mem:     remembered(nil, map[int64]itemMemory{6: {nextAttempt: 2, fallback: 1, notBefore: t0.Add(5 * time.Second), maxSeen: 1}}),
		scene:   scene{queue: []jenkins.QueueItem{item(6)}},
		waiting: linux("backoff", 1), next: 5 * time.Second,
	}, {
		name:   "a retry whose node could not be made is made at the level chosen, not counted as a swap",
		mem:    remembered(nil, map[int64]itemMemory{6: {nextAttempt: 2, fallback: 1, notBefore: t0.Add(-time.Second), maxSeen: 1}}),
		scene:  scene{queue: []jenkins.QueueItem{item(6)}},
		acts:   []string{"create " + eci.AgentName(6, 2) + " fallback 1"},
		agents: linux("creating", 1),
		then: func(t *testing.T, d *decision) {
			wantItem(t, d, 6, itemMemory{nextAttempt: 2, fallback: 1, notBefore: t0.Add(-time.Second), maxSeen: 1})
		},
	}, {
		name:    "the API server refused for quota: creations back off",
		scene:   scene{queue: []jenkins.QueueItem{item(5)}, paused: t0.Add(3 * time.Second)},
		waiting: linux("quota", 1), next: 3 * time.Second,
	}, {
		name: "enough creations queued: the item waits for the create lane",
		cfg:  func(c *Config) { c.Parallelism = 1 },
		scene: scene{queue: []jenkins.QueueItem{item(6)}, flight: []act{creation(100, 1), creation(101, 1), creation(102, 1),
			creation(103, 1), creation(104, 1), creation(105, 1), creation(106, 1), creation(107, 1)}},
		agents: linux("creating", 8), waiting: linux("pacing", 1),
	}})
}

func TestDecideAgentsWaitingForTheirBuild(t *testing.T) {
	runDecideCases(t, []decideCase{{
		name:   "a node without its pod gets it",
		scene:  scene{queue: []jenkins.QueueItem{item(5)}, comps: []jenkins.Computer{node(5, 1)}},
		states: map[string]agentState{a51: stateNeedsPod},
		acts:   []string{"create pod " + a51 + " fallback 0"},
		agents: linux("creating", 1),
		then: func(t *testing.T, d *decision) {
			if m := d.memory.agents[a51]; !m.fresh || !m.queuedAt.Equal(item(5).InQueueSince) || !m.firstSeen.Equal(t0) {
				t.Errorf("memory of %s = %+v, want fresh, queued when its item was, first seen now", a51, m)
			}
		},
	}, {
		name:   "a pod made a moment ago is not made again before the informer shows it",
		scene:  scene{queue: []jenkins.QueueItem{item(5)}, comps: []jenkins.Computer{node(5, 1)}, made: map[string]time.Time{a51: t0.Add(-time.Second)}},
		states: map[string]agentState{a51: stateNeedsPod},
		agents: linux("creating", 1),
	}, {
		name: "a node's pod waits while the API server refuses for quota",
		scene: scene{queue: []jenkins.QueueItem{item(5), item(6)}, comps: []jenkins.Computer{node(5, 1)},
			paused: t0.Add(3 * time.Second)},
		states:  map[string]agentState{a51: stateNeedsPod},
		agents:  linux("creating", 1),
		waiting: linux("quota", 1), next: 3 * time.Second,
	}, {
		name:   "restart: a retry's node says its backoff has not ended",
		scene:  scene{queue: []jenkins.QueueItem{item(5)}, comps: []jenkins.Computer{node(5, 2, described(1, t0.Add(time.Hour)))}},
		states: map[string]agentState{a52: stateNeedsPod},
		agents: linux("creating", 1), next: time.Hour,
		then: func(t *testing.T, d *decision) {
			wantItem(t, d, 5, itemMemory{maxSeen: 2, notBefore: t0.Add(time.Hour)})
		},
	}, {
		name:   "restart: a retry's node gets its pod at the level it names once its backoff ended",
		scene:  scene{queue: []jenkins.QueueItem{item(5)}, comps: []jenkins.Computer{node(5, 2, described(1, t0.Add(-time.Second)))}},
		states: map[string]agentState{a52: stateNeedsPod},
		acts:   []string{"create pod " + a52 + " fallback 1"},
		agents: linux("creating", 1),
	}, {
		name:   "starting: the agent has not connected yet",
		scene:  scene{queue: []jenkins.QueueItem{item(5)}, comps: []jenkins.Computer{node(5, 1)}, pods: []*corev1.Pod{pod(5, 1)}},
		states: map[string]agentState{a51: stateStarting},
		agents: linux("starting", 1),
	}, {
		name: "starting with its pod running while other items wait: the next look comes soon",
		scene: scene{queue: []jenkins.QueueItem{item(5), item(6)}, comps: []jenkins.Computer{node(5, 1)},
			pods: []*corev1.Pod{pod(5, 1, running)}},
		states: map[string]agentState{a51: stateStarting},
		acts:   []string{"create " + a61 + " fallback 0"},
		agents: linux("starting", 1, "creating", 1), next: awaitBuildPoll,
	}, {
		name:   "connected and idle: it awaits its build",
		scene:  scene{queue: []jenkins.QueueItem{item(5)}, comps: []jenkins.Computer{node(5, 1, connected)}, pods: []*corev1.Pod{pod(5, 1, running)}},
		states: map[string]agentState{a51: stateAwaitingBuild},
		agents: linux("idle", 1),
		then: func(t *testing.T, d *decision) {
			var steps []string
			for _, s := range d.steps {
				steps = append(steps, fmt.Sprintf("%s %s", s.step, time.Duration(s.seconds*float64(time.Second))))
			}
			if want := []string{"scheduled 1m10s", "running 1m20s", "connected 2m0s"}; !slices.Equal(steps, want) {
				t.Errorf("steps = %q, want %q", steps, want)
			}
		},
	}, {
		name:   "unschedulable for less than a minute: still starting",
		scene:  scene{queue: []jenkins.QueueItem{item(5)}, comps: []jenkins.Computer{node(5, 1)}, pods: []*corev1.Pod{pod(5, 1, unschedulableFor(59*time.Second))}},
		states: map[string]agentState{a51: stateStarting},
		agents: linux("starting", 1),
	}})
}

func TestDecideRunningAgents(t *testing.T) {
	queuedLongAgo := seenBefore(func(m *agentMemory) { m.fresh = true })
	runDecideCases(t, []decideCase{{
		name:   "its build started: the agent is taken offline (one build per agent)",
		mem:    remembered(map[string]agentMemory{a51: queuedLongAgo}, nil),
		scene:  scene{comps: []jenkins.Computer{node(5, 1, connected, runs(1))}, pods: []*corev1.Pod{pod(5, 1, running)}},
		states: map[string]agentState{a51: stateBuilding},
		acts:   []string{"mark offline " + a51},
		agents: linux("building", 1),
		then: func(t *testing.T, d *decision) {
			m := d.memory.agents[a51]
			if m.fresh || !m.ranSince.Equal(t0) || m.build.Number != 1 || !m.steps.has(stepBuildStarted) {
				t.Errorf("memory of %s = %+v, want not fresh, running build 1 since now, its start measured", a51, m)
			}
			if i := slices.IndexFunc(d.steps, func(s stepTime) bool { return s.step == stepBuildStarted }); i < 0 || d.steps[i].seconds != 120 {
				t.Errorf("steps = %+v, want build_started 120s after the item was queued", d.steps)
			}
		},
	}, {
		name:   "already offline for its build: nothing to do",
		scene:  scene{comps: []jenkins.Computer{node(5, 1, connected, runs(1), marked)}, pods: []*corev1.Pod{pod(5, 1, running)}},
		states: map[string]agentState{a51: stateBuilding},
		agents: linux("building", 1),
	}, {
		name: "its creation is finishing under its build: building, nothing else looked at",
		scene: scene{comps: []jenkins.Computer{node(5, 1, runs(1), marked)},
			flight: []act{creation(5, 1)}},
		states: map[string]agentState{a51: stateBuilding},
		agents: linux("building", 1),
		then: func(t *testing.T, d *decision) {
			if m := d.memory.agents[a51]; !m.offlineSince.IsZero() {
				t.Errorf("offlineSince = %s, want none while its creation finishes", m.offlineSince)
			}
		},
	}, {
		name:   "disconnected under its build: remembered, not yet lost",
		scene:  scene{comps: []jenkins.Computer{node(5, 1, runs(1), marked)}, pods: []*corev1.Pod{pod(5, 1, running)}},
		states: map[string]agentState{a51: stateBuilding},
		agents: linux("building", 1),
		then: func(t *testing.T, d *decision) {
			if m := d.memory.agents[a51]; !m.offlineSince.Equal(t0) {
				t.Errorf("offlineSince = %s, want now", m.offlineSince)
			}
		},
	}, {
		name:   "reconnected under its build: forgiven",
		mem:    remembered(map[string]agentMemory{a51: seenBefore(func(m *agentMemory) { m.offlineSince = t0.Add(-time.Minute) })}, nil),
		scene:  scene{comps: []jenkins.Computer{node(5, 1, connected, runs(1), marked)}, pods: []*corev1.Pod{pod(5, 1, running)}},
		states: map[string]agentState{a51: stateBuilding},
		agents: linux("building", 1),
		then: func(t *testing.T, d *decision) {
			if m := d.memory.agents[a51]; !m.offlineSince.IsZero() {
				t.Errorf("offlineSince = %s, want none", m.offlineSince)
			}
		},
	}, {
		name:   "disconnected longer than the connect timeout: the build lost its agent",
		mem:    remembered(map[string]agentMemory{a51: seenBefore(func(m *agentMemory) { m.offlineSince = t0.Add(-3 * time.Minute) })}, nil),
		scene:  scene{comps: []jenkins.Computer{node(5, 1, runs(1), marked)}, pods: []*corev1.Pod{pod(5, 1, running)}},
		states: map[string]agentState{a51: stateLost},
		acts:   []string{"delete " + a51 + " (failed)", "report lost " + a51 + ": NodeLost (tell true)"},
		then:   func(t *testing.T, d *decision) { wantOutcomes(t, d, a51+" NodeLost died_mid_build") },
	}, {
		name:   "its pod is gone under its build, re-runs off: deleted and reported",
		scene:  scene{comps: []jenkins.Computer{node(5, 1, connected, runs(1), marked)}},
		states: map[string]agentState{a51: stateInfraLost},
		acts:   []string{"delete " + a51 + " (failed)", "report lost " + a51 + ": PodGone (tell true)"},
		then:   func(t *testing.T, d *decision) { wantOutcomes(t, d, a51+" PodGone died_mid_build") },
	}, {
		name:   "its pod is being deleted under its build, re-runs off",
		scene:  scene{comps: []jenkins.Computer{node(5, 1, connected, runs(1), marked)}, pods: []*corev1.Pod{pod(5, 1, running, going)}},
		states: map[string]agentState{a51: stateInfraLost},
		acts:   []string{"delete " + a51 + " (failed)", "report lost " + a51 + ": PodGone (tell true)"},
		then:   func(t *testing.T, d *decision) { wantOutcomes(t, d, a51+" PodGone died_mid_build") },
	}, {
		name: "a spot warning under a running build: reported at once, the build keeps running",
		scene: scene{comps: []jenkins.Computer{node(5, 1, connected, runs(1), marked)}, pods: []*corev1.Pod{pod(5, 1, running)},
			events: []*corev1.Event{spotWarning(a51)}},
		states: map[string]agentState{a51: stateReclaiming},
		acts:   []string{"report reclaim " + a51 + ": SpotReclaimed"},
		agents: linux("reclaiming", 1),
		then: func(t *testing.T, d *decision) {
			wantOutcomes(t, d, a51+" SpotReclaimed reclaim_warned")
			if !d.memory.agents[a51].reclaimReported {
				t.Errorf("the report is not remembered")
			}
		},
	}, {
		name: "a spot warning reported before: not again",
		mem:  remembered(map[string]agentMemory{a51: seenBefore(func(m *agentMemory) { m.reclaimReported = true; m.ranSince = t0.Add(-time.Minute) })}, nil),
		scene: scene{comps: []jenkins.Computer{node(5, 1, connected, runs(1), marked)}, pods: []*corev1.Pod{pod(5, 1, running)},
			events: []*corev1.Event{spotWarning(a51)}},
		states: map[string]agentState{a51: stateReclaiming},
		agents: linux("reclaiming", 1),
	}, {
		name: "the reclaimed instance goes under the build: the end it announced is not told again",
		mem:  remembered(map[string]agentMemory{a51: seenBefore(func(m *agentMemory) { m.reclaimReported = true; m.ranSince = t0.Add(-time.Minute) })}, nil),
		scene: scene{comps: []jenkins.Computer{node(5, 1, connected, runs(1), marked)},
			pods: []*corev1.Pod{pod(5, 1, podFailed("Expired", "Spot ECI was released"))}},
		states: map[string]agentState{a51: stateInfraLost},
		acts:   []string{"delete " + a51 + " (failed)", "report lost " + a51 + ": SpotReclaimed (tell false)"},
		then:   func(t *testing.T, d *decision) { wantOutcomes(t, d, a51+" SpotReclaimed died_mid_build") },
	}})
}

func TestDecideAgentsWhoseBuildIsOver(t *testing.T) {
	ran := seenBefore(func(m *agentMemory) { m.ranSince = t0.Add(-time.Minute) })
	runDecideCases(t, []decideCase{{
		name:   "it ran its build and is idle: deleted; its pod counts until gone",
		mem:    remembered(map[string]agentMemory{a51: ran}, nil),
		scene:  scene{comps: []jenkins.Computer{node(5, 1, connected, marked)}, pods: []*corev1.Pod{pod(5, 1, running)}},
		states: map[string]agentState{a51: stateBuildOver},
		acts:   []string{"delete " + a51 + " (build_over)"},
		agents: linux("terminating", 1),
	}, {
		name:   "restart: the one-build mark says its build is over",
		scene:  scene{comps: []jenkins.Computer{node(5, 1, connected, marked)}},
		states: map[string]agentState{a51: stateBuildOver},
		acts:   []string{"delete " + a51 + " (build_over)"},
	}, {
		name: "its item still waits: Jenkins gave the agent another item's build, the item gets a new attempt",
		scene: scene{queue: []jenkins.QueueItem{item(5)},
			comps: []jenkins.Computer{node(5, 1, connected, marked, described(1, time.Time{}))}},
		states: map[string]agentState{a51: stateBuildOver},
		acts:   []string{"delete " + a51 + " (build_over)", "create " + a52 + " fallback 1"},
		agents: linux("creating", 1),
		then: func(t *testing.T, d *decision) {
			wantItem(t, d, 5, itemMemory{maxSeen: 1, swapped: 1, swapAttempt: 2})
		},
	}, {
		name:   "restart: an item's attempts are spent though why was forgotten: given up",
		scene:  scene{queue: []jenkins.QueueItem{item(5)}, comps: []jenkins.Computer{node(5, 3, connected, marked)}},
		states: map[string]agentState{a53: stateBuildOver},
		acts:   []string{"delete " + a53 + " (build_over)", "give up 5 after " + eci.AgentName(5, 3) + ": Unknown"},
		then:   func(t *testing.T, d *decision) { wantItem(t, d, 5, itemMemory{maxSeen: 3, gaveUp: true}) },
	}, {
		name:   "being deleted: nothing to decide until that is done",
		mem:    remembered(map[string]agentMemory{a51: ran}, nil),
		scene:  scene{comps: []jenkins.Computer{node(5, 1, connected, marked)}, pods: []*corev1.Pod{pod(5, 1, running)}, flight: []act{{kind: actDeleteAgent, agent: &agentView{name: a51}}}},
		states: map[string]agentState{a51: stateDeleting},
		agents: linux("terminating", 1),
	}, {
		name:   "its node is gone and its pod terminating: it counts until gone",
		scene:  scene{pods: []*corev1.Pod{pod(5, 1, running, going)}},
		states: map[string]agentState{a51: stateTerminating},
		agents: linux("terminating", 1),
	}, {
		name:   "its pod was deleted a moment ago: not deleted again before the informer shows it",
		scene:  scene{pods: []*corev1.Pod{pod(5, 1, running)}, deleted: map[string]time.Time{a51: t0.Add(-time.Second)}},
		states: map[string]agentState{a51: stateTerminating},
		agents: linux("terminating", 1),
	}})
}

func TestDecideFailedAgents(t *testing.T) {
	fallbacks := func(c *Config) {
		c.Templates = testTemplate(func(t *eci.Template) {
			t.ECI.Specs = []string{"2-4Gi", "4-8Gi"}
			t.ECI.SpotStrategy = eci.SpotAsPriceGo
			t.Fallbacks = []eci.Fallback{{OnDemand: true}, {DropSpecs: 1}}
		})
	}
	providerFailed := podFailed("ProviderFailed", "the ECI instance could not be created: InternalError")
	runDecideCases(t, []decideCase{{
		name:   "its pod failed: deleted, retried at the next fallback level after the backoff",
		cfg:    fallbacks,
		scene:  scene{queue: []jenkins.QueueItem{item(5)}, comps: []jenkins.Computer{node(5, 1)}, pods: []*corev1.Pod{pod(5, 1, providerFailed)}},
		states: map[string]agentState{a51: stateFailed},
		acts:   []string{"delete " + a51 + " (failed)", "create node " + a52 + " fallback 1"},
		agents: linux("retrying", 1), next: 10 * time.Millisecond,
		then: func(t *testing.T, d *decision) {
			wantItem(t, d, 5, itemMemory{nextAttempt: 2, fallback: 1, notBefore: t0.Add(10 * time.Millisecond), maxSeen: 1})
			wantOutcomes(t, d, a51+" ProviderFailed retried")
			if r := d.failures[0].retry; r == nil || *r != (retryNote{attempt: 2, maxAttempts: 3, fallback: 1, delay: 10 * time.Millisecond}) {
				t.Errorf("retry = %+v, want attempt 2 of 3 at level 1 in 10ms", r)
			}
		},
	}, {
		name: "the retry fails too: one level up, a longer backoff",
		cfg:  fallbacks,
		mem:  remembered(nil, map[int64]itemMemory{5: {nextAttempt: 2, fallback: 1, notBefore: t0.Add(-time.Second), maxSeen: 2}}),
		scene: scene{queue: []jenkins.QueueItem{item(5)}, comps: []jenkins.Computer{node(5, 2, described(1, t0.Add(-time.Second)))},
			pods: []*corev1.Pod{pod(5, 2, atLevel(1), providerFailed)}},
		states: map[string]agentState{a52: stateFailed},
		acts:   []string{"delete " + a52 + " (failed)", "create node " + a53 + " fallback 2"},
		agents: linux("retrying", 1), next: 20 * time.Millisecond,
		then: func(t *testing.T, d *decision) {
			wantItem(t, d, 5, itemMemory{nextAttempt: 3, fallback: 2, notBefore: t0.Add(20 * time.Millisecond), maxSeen: 2})
		},
	}, {
		name: "the last attempt fails: the item is given up",
		mem:  remembered(nil, map[int64]itemMemory{5: {nextAttempt: 3, fallback: 2, maxSeen: 3}}),
		scene: scene{queue: []jenkins.QueueItem{item(5)}, comps: []jenkins.Computer{node(5, 3)},
			pods: []*corev1.Pod{pod(5, 3, providerFailed)}},
		states: map[string]agentState{a53: stateFailed},
		acts:   []string{"delete " + a53 + " (failed)", "give up 5 after " + a53 + ": ProviderFailed"},
		then: func(t *testing.T, d *decision) {
			wantItem(t, d, 5, itemMemory{nextAttempt: 3, fallback: 2, maxSeen: 3, gaveUp: true})
			wantOutcomes(t, d, a53+" ProviderFailed gave_up")
		},
	}, {
		name: "an attempt that replaced a swapped agent does not count against the attempts",
		mem:  remembered(nil, map[int64]itemMemory{5: {maxSeen: 3, swapped: 1, swapAttempt: 3}}),
		scene: scene{queue: []jenkins.QueueItem{item(5)}, comps: []jenkins.Computer{node(5, 3)},
			pods: []*corev1.Pod{pod(5, 3, providerFailed)}},
		states: map[string]agentState{a53: stateFailed},
		acts:   []string{"delete " + a53 + " (failed)", "create node " + eci.AgentName(5, 4) + " fallback 1"},
		agents: linux("retrying", 1), next: 40 * time.Millisecond,
	}, {
		name: "a failure another attempt cannot fix: given up at once",
		scene: scene{queue: []jenkins.QueueItem{item(5)}, comps: []jenkins.Computer{node(5, 1)},
			pods: []*corev1.Pod{pod(5, 1, podFailed("DeadlineExceeded", "Pod was active on the node longer than the specified deadline"))}},
		states: map[string]agentState{a51: stateFailed},
		acts:   []string{"delete " + a51 + " (failed)", "give up 5 after " + a51 + ": DeadlineExceeded"},
		then:   func(t *testing.T, d *decision) { wantOutcomes(t, d, a51+" DeadlineExceeded gave_up") },
	}, {
		name:   "its item has left the queue: deleted, nothing retried",
		scene:  scene{comps: []jenkins.Computer{node(5, 1)}, pods: []*corev1.Pod{pod(5, 1, providerFailed)}},
		states: map[string]agentState{a51: stateFailed},
		acts:   []string{"delete " + a51 + " (failed)"},
		then:   func(t *testing.T, d *decision) { wantOutcomes(t, d, a51+" ProviderFailed item_gone") },
	}, {
		name: "its item was given up: it goes, and the item gets nothing more",
		mem:  remembered(nil, map[int64]itemMemory{5: {gaveUp: true, maxSeen: 1}}),
		scene: scene{queue: []jenkins.QueueItem{item(5)}, comps: []jenkins.Computer{node(5, 1)},
			pods: []*corev1.Pod{pod(5, 1, providerFailed)}},
		states: map[string]agentState{a51: stateFailed},
		acts:   []string{"delete " + a51 + " (failed)"},
		then:   func(t *testing.T, d *decision) { wantOutcomes(t, d, a51+" ProviderFailed ") },
	}, {
		name: "unschedulable for more than a minute: failed, retried at the same level",
		cfg:  fallbacks,
		scene: scene{queue: []jenkins.QueueItem{item(5)}, comps: []jenkins.Computer{node(5, 1)},
			pods: []*corev1.Pod{pod(5, 1, unschedulableFor(61*time.Second))}},
		states: map[string]agentState{a51: stateFailed},
		acts:   []string{"delete " + a51 + " (failed)", "create node " + a52 + " fallback 0"},
		agents: linux("retrying", 1), next: 10 * time.Millisecond,
		then: func(t *testing.T, d *decision) { wantOutcomes(t, d, a51+" Unschedulable retried") },
	}, {
		name: "a spot warning before its build: replaced at the next fallback level",
		cfg:  fallbacks,
		scene: scene{queue: []jenkins.QueueItem{item(5)}, comps: []jenkins.Computer{node(5, 1, connected)},
			pods: []*corev1.Pod{pod(5, 1, running)}, events: []*corev1.Event{spotWarning(a51)}},
		states: map[string]agentState{a51: stateFailed},
		acts:   []string{"delete " + a51 + " (failed)", "create node " + a52 + " fallback 1"},
		agents: linux("retrying", 1), next: 10 * time.Millisecond,
		then: func(t *testing.T, d *decision) { wantOutcomes(t, d, a51+" SpotReclaimed retried") },
	}})
}

func TestDecideAgentsWhoseItemLeft(t *testing.T) {
	notFresh := seenBefore(nil)
	runDecideCases(t, []decideCase{{
		name: "restart: an idle agent first seen without its item serves another waiting item",
		scene: scene{queue: []jenkins.QueueItem{item(6)}, comps: []jenkins.Computer{node(5, 1, connected)},
			pods: []*corev1.Pod{pod(5, 1, running)}},
		states: map[string]agentState{a51: stateSpare},
		agents: linux("idle", 1),
		then: func(t *testing.T, d *decision) {
			if m := d.memory.agents[a51]; !m.fresh || !m.goneSince.Equal(t0) {
				t.Errorf("memory of %s = %+v, want fresh, its item gone since now", a51, m)
			}
		},
	}, {
		name:   "a spare with nothing to serve settles",
		mem:    remembered(map[string]agentMemory{a51: seenBefore(func(m *agentMemory) { m.fresh = true })}, nil),
		scene:  scene{comps: []jenkins.Computer{node(5, 1, connected)}, pods: []*corev1.Pod{pod(5, 1, running)}},
		states: map[string]agentState{a51: stateSpare},
		agents: linux("settling", 1), next: settle,
	}, {
		name: "a spare settled and serves nothing: deleted",
		mem: remembered(map[string]agentMemory{a51: seenBefore(func(m *agentMemory) {
			m.fresh, m.goneSince = true, t0.Add(-2*time.Second)
		})}, nil),
		scene:  scene{comps: []jenkins.Computer{node(5, 1, connected)}, pods: []*corev1.Pod{pod(5, 1, running)}},
		states: map[string]agentState{a51: stateSpare},
		acts:   []string{"delete " + a51 + " (item_gone)"},
	}, {
		name:   "not fresh: it settles, its build may not show yet",
		mem:    remembered(map[string]agentMemory{a51: notFresh}, nil),
		scene:  scene{queue: []jenkins.QueueItem{item(6)}, comps: []jenkins.Computer{node(5, 1, connected)}, pods: []*corev1.Pod{pod(5, 1, running)}},
		states: map[string]agentState{a51: stateSettling},
		acts:   []string{"create " + a61 + " fallback 0"},
		agents: linux("settling", 1, "creating", 1), next: settle,
	}, {
		name:   "not fresh, settled: deleted",
		mem:    remembered(map[string]agentMemory{a51: seenBefore(func(m *agentMemory) { m.goneSince = t0.Add(-2 * time.Second) })}, nil),
		scene:  scene{comps: []jenkins.Computer{node(5, 1, connected)}, pods: []*corev1.Pod{pod(5, 1, running)}},
		states: map[string]agentState{a51: stateItemGone},
		acts:   []string{"delete " + a51 + " (item_gone)"},
	}, {
		name:   "its item was cancelled before it had a pod: it settles, then goes",
		mem:    remembered(map[string]agentMemory{a51: seenBefore(func(m *agentMemory) { m.fresh = true })}, nil),
		scene:  scene{comps: []jenkins.Computer{node(5, 1)}},
		states: map[string]agentState{a51: stateSettling},
		agents: linux("settling", 1), next: settle,
	}})
}

func TestDecideOrphans(t *testing.T) {
	runDecideCases(t, []decideCase{{
		name:   "a pod without its node is left alone for GCGrace",
		scene:  scene{pods: []*corev1.Pod{pod(900, 1, createdAgo(10*time.Second))}},
		states: map[string]agentState{eci.AgentName(900, 1): stateOrphan},
		agents: linux("orphan", 1), next: 20 * time.Second,
	}, {
		name:   "then collected",
		scene:  scene{pods: []*corev1.Pod{pod(900, 1, createdAgo(31*time.Second))}},
		states: map[string]agentState{eci.AgentName(900, 1): stateOrphan},
		acts:   []string{"collect " + eci.AgentName(900, 1)},
	}, {
		name:   "never with DisableGC",
		cfg:    func(c *Config) { c.DisableGC = true },
		scene:  scene{pods: []*corev1.Pod{pod(900, 1, createdAgo(time.Hour))}},
		states: map[string]agentState{eci.AgentName(900, 1): stateOrphan},
		agents: linux("orphan", 1),
	}, {
		name:   "a node of a template no longer configured is left alone for GCGrace",
		scene:  scene{comps: []jenkins.Computer{node(902, 1, otherLabels)}},
		states: map[string]agentState{eci.AgentName(902, 1): stateUnknownTemplate},
		agents: tally{{"", "orphan"}: 1},
	}, {
		name:   "then collected",
		mem:    remembered(map[string]agentMemory{eci.AgentName(902, 1): {firstSeen: t0.Add(-31 * time.Second)}}, nil),
		scene:  scene{comps: []jenkins.Computer{node(902, 1, otherLabels)}},
		states: map[string]agentState{eci.AgentName(902, 1): stateUnknownTemplate},
		acts:   []string{"collect " + eci.AgentName(902, 1)},
	}, {
		name:  "an anchor is made for each template, and one of a template no longer configured collected",
		scene: scene{noAnchor: true, comps: []jenkins.Computer{{Name: anchorName("gone"), Offline: true}}},
		acts:  []string{"create anchor linux", "delete anchor gone"},
	}, {
		name:  "no anchors with DisableAnchors",
		cfg:   func(c *Config) { c.DisableAnchors = true },
		scene: scene{noAnchor: true, comps: []jenkins.Computer{{Name: anchorName("gone"), Offline: true}}},
	}, {
		name: "an agent Secret no pod reads is left alone for GCGrace",
		scene: scene{pods: []*corev1.Pod{pod(5, 1, going)},
			secrets: []*corev1.Secret{secret("ferry-agents-1"), secret("ferry-agents-2"), secret("ferry-agents-3")},
			making:  map[string]bool{"ferry-agents-3": true}},
		states: map[string]agentState{a51: stateTerminating},
		agents: linux("terminating", 1), next: 30 * time.Second,
		then: func(t *testing.T, d *decision) {
			if want := map[string]time.Time{"ferry-agents-2": t0}; !maps.Equal(d.memory.unread, want) {
				t.Errorf("unread = %v, want %v (read and being made ones are not)", d.memory.unread, want)
			}
		},
	}, {
		name:  "then collected",
		mem:   memory{agents: map[string]agentMemory{}, unread: map[string]time.Time{"ferry-agents-2": t0.Add(-31 * time.Second), "gone": t0}},
		scene: scene{secrets: []*corev1.Secret{secret("ferry-agents-2")}},
		acts:  []string{"delete secret ferry-agents-2"},
		then: func(t *testing.T, d *decision) {
			if _, ok := d.memory.unread["gone"]; ok {
				t.Errorf("unread = %v, want a Secret no longer listed forgotten", d.memory.unread)
			}
		},
	}})
}

// TestDecideForgetsWhatIsGone: the memory decide returns holds the agents
// of the world and the items still queued, nothing else.
func TestDecideForgetsWhatIsGone(t *testing.T) {
	p := deciding(t, nil)
	mem := remembered(map[string]agentMemory{a51: seenBefore(nil), a61: seenBefore(nil)},
		map[int64]itemMemory{5: {maxSeen: 1}, 6: {maxSeen: 1}})
	o := cycle(p, scene{queue: []jenkins.QueueItem{item(5)}, comps: []jenkins.Computer{node(5, 1, connected)},
		pods: []*corev1.Pod{pod(5, 1, running)}}, mem)
	if got := slices.Sorted(maps.Keys(o.d.memory.agents)); !slices.Equal(got, []string{a51}) {
		t.Errorf("agents remembered = %v, want only %s", got, a51)
	}
	if got := slices.Sorted(maps.Keys(o.d.memory.items)); !slices.Equal(got, []int64{5}) {
		t.Errorf("items remembered = %v, want only 5", got)
	}
}

// TestDecideIsPure: the same world and memory give the same decision, and
// the memory passed in is left as it was.
func TestDecideIsPure(t *testing.T) {
	p := deciding(t, nil)
	mem := remembered(map[string]agentMemory{a51: seenBefore(nil)}, map[int64]itemMemory{5: {nextAttempt: 2, fallback: 1}})
	before := mem.clone()
	s := scene{queue: []jenkins.QueueItem{item(5), item(6)}, comps: []jenkins.Computer{node(5, 1, connected, runs(1))},
		pods: []*corev1.Pod{pod(5, 1, running)}, secrets: []*corev1.Secret{secret("x")}}
	w := s.world(p)
	agents := classify(p.rules, w, mem)
	first := decide(p.rules, w, agents, mem)
	second := decide(p.rules, w, classify(p.rules, w, mem), mem)
	if !reflect.DeepEqual(first, second) {
		t.Errorf("two decisions on the same world differ:\n%+v\n%+v", first, second)
	}
	if !reflect.DeepEqual(mem, before) {
		t.Errorf("decide changed the memory it was given:\n%+v\nwas\n%+v", mem, before)
	}
}

// TestDecideSettleThenDelete follows a spare through the cycles: it
// settles for a second after its item left, then goes.
func TestDecideSettleThenDelete(t *testing.T) {
	p := deciding(t, nil)
	s := scene{comps: []jenkins.Computer{node(5, 1, connected)}, pods: []*corev1.Pod{pod(5, 1, running)}}
	mem := remembered(map[string]agentMemory{a51: seenBefore(func(m *agentMemory) { m.fresh = true })}, nil)
	var got []string
	for _, at := range []time.Duration{0, settle / 2, settle} {
		s.at = at
		o := cycle(p, s, mem)
		got = append(got, fmt.Sprintf("%s: %s %q", at, o.states[a51], o.acts))
		mem = o.d.memory
	}
	want := []string{`0s: spare []`, `500ms: spare []`, `1s: spare ["delete ` + a51 + ` (item_gone)"]`}
	if !slices.Equal(got, want) {
		t.Errorf("cycles =\n\t%q\nwant\n\t%q", got, want)
	}
}

// TestStateNames: every state has a name, used in test failures and logs.
func TestStateNames(t *testing.T) {
	for s := range numStates {
		if stateNames[s] == "" {
			t.Errorf("state %d has no name", s)
		}
	}
}
