package provision

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/pkg/jenkins"
)

// Warm agents of the rows: made by earlier cycles.
var (
	w1 = warmName(t0.Add(-10*time.Minute), 0)
	w2 = warmName(t0.Add(-10*time.Minute), 1)
)

// pooled gives the template a warm pool.
func pooled(p eci.WarmPool) func(*Config) {
	return func(c *Config) {
		c.Templates = testTemplate(func(t *eci.Template) { t.WarmPool = &p })
	}
}

func warmNode(name string, opts ...func(*jenkins.Computer)) jenkins.Computer {
	c := jenkins.Computer{Name: name, Labels: []string{testLabel, name}, Offline: true, Idle: true, NumExecutors: 1,
		Description: "ferry warm agent: takes one build (template linux); managed by ferry, do not edit"}
	for _, o := range opts {
		o(&c)
	}
	return c
}

func warmPod(name string, opts ...func(*corev1.Pod)) *corev1.Pod {
	p := eci.Render(testTemplate(nil)["linux"], eci.Agent{Name: name, Namespace: testNS, JenkinsURL: "http://j/",
		SecretName: "ferry-agents-1", Labels: map[string]string{LabelWarmPool: "linux"}})
	p.UID = types.UID("uid-" + name)
	p.CreationTimestamp = metav1.NewTime(t0.Add(-10 * time.Minute))
	running(p)
	for _, o := range opts {
		o(p)
	}
	return p
}

func retired(c *jenkins.Computer) {
	c.Offline, c.TemporarilyOffline, c.OfflineReason = true, true, WarmRetireReason
}

func warmCreate(at time.Duration, i int) string {
	return "create warm " + warmName(t0.Add(at), i) + " of linux"
}

// warmOf counts the template's warm agents by state.
func warmOf(kv ...any) tally { return linux(kv...) }

func wantWarm(want tally, builds tally) func(*testing.T, *decision) {
	return func(t *testing.T, d *decision) {
		t.Helper()
		if want == nil {
			want = tally{}
		}
		if builds == nil {
			builds = tally{}
		}
		if !maps.Equal(d.warm, want) {
			t.Errorf("warm agents = %v, want %v", d.warm, want)
		}
		if !maps.Equal(d.warmBuilds, builds) {
			t.Errorf("warm builds = %v, want %v", d.warmBuilds, builds)
		}
	}
}

func TestDecideWarm(t *testing.T) {
	t.Parallel()
	two := pooled(eci.WarmPool{Size: 2})
	ready := func(name string) jenkins.Computer { return warmNode(name, connected) }
	runDecideCases(t, []decideCase{
		{
			name: "an empty pool is filled to its size", cfg: two,
			acts:   []string{warmCreate(0, 0), warmCreate(0, 1)},
			agents: linux(countCreating, 2),
			then:   wantWarm(warmOf(warmCreating, 2), nil),
		},
		{
			name: "a full pool of ready agents waits", cfg: two,
			scene:  scene{comps: []jenkins.Computer{ready(w1), ready(w2)}, pods: []*corev1.Pod{warmPod(w1), warmPod(w2)}},
			states: map[string]agentState{w1: stateWarmReady, w2: stateWarmReady},
			agents: linux(countIdle, 2),
			then:   wantWarm(warmOf(warmReady, 2), nil),
		},
		{
			name: "a waiting item takes a ready warm agent instead of a new pod; the pool refills", cfg: two,
			scene: scene{comps: []jenkins.Computer{ready(w1), ready(w2)}, pods: []*corev1.Pod{warmPod(w1), warmPod(w2)},
				queue: []jenkins.QueueItem{item(5)}},
			states: map[string]agentState{w1: stateWarmReady, w2: stateWarmReady},
			acts:   []string{warmCreate(0, 1)},
			agents: linux(countIdle, 2, countCreating, 1),
			next:   awaitBuildPoll,
			then:   wantWarm(warmOf(warmServing, 1, warmReady, 1, warmCreating, 1), nil),
		},
		{
			name: "ready agents serve before starting ones, and items beyond the pool get pods of their own", cfg: two,
			scene: scene{comps: []jenkins.Computer{warmNode(w1), ready(w2)}, pods: []*corev1.Pod{warmPod(w1, createdAgo(30*time.Second), func(p *corev1.Pod) { p.Status = corev1.PodStatus{Phase: corev1.PodPending} }), warmPod(w2)},
				queue: []jenkins.QueueItem{item(5), item(6), item(7)}},
			states: map[string]agentState{w1: stateWarmStarting, w2: stateWarmReady},
			acts:   []string{"create ferry-agent-7-1 fallback 0", warmCreate(0, 0), warmCreate(0, 1)},
			agents: linux(countIdle, 1, countStarting, 1, countCreating, 3),
			next:   awaitBuildPoll,
			then:   wantWarm(warmOf(warmServing, 2, warmCreating, 2), nil),
		},
		{
			name: "caps hold: warm agents count against them, and waiting items come before refills",
			cfg: func(c *Config) {
				two(c)
				c.MaxAgents = 3
			},
			scene: scene{comps: []jenkins.Computer{ready(w1), ready(w2)}, pods: []*corev1.Pod{warmPod(w1), warmPod(w2)},
				queue: []jenkins.QueueItem{item(5), item(6), item(7), item(8)}},
			states:  map[string]agentState{w1: stateWarmReady, w2: stateWarmReady},
			acts:    []string{"create ferry-agent-7-1 fallback 0"},
			agents:  linux(countIdle, 2, countCreating, 1),
			waiting: linux("cap", 1),
			next:    awaitBuildPoll,
			then:    wantWarm(warmOf(warmServing, 2), nil),
		},
		{
			name:   "a warm agent idle longer than maxIdle is retired and replaced",
			cfg:    pooled(eci.WarmPool{Size: 1, MaxIdle: eci.Duration{Duration: 5 * time.Minute}}),
			scene:  scene{comps: []jenkins.Computer{ready(w1)}, pods: []*corev1.Pod{warmPod(w1)}},
			states: map[string]agentState{w1: stateWarmStale},
			acts:   []string{"retire warm " + w1, warmCreate(0, 0)},
			agents: linux(countRetiring, 1, countCreating, 1),
			then:   wantWarm(warmOf(warmRetiring, 1, warmCreating, 1), nil),
		},
		{
			name:   "a retired warm agent with no build is deleted and its idle time measured",
			cfg:    pooled(eci.WarmPool{}),
			scene:  scene{comps: []jenkins.Computer{warmNode(w1, connected, retired)}, pods: []*corev1.Pod{warmPod(w1)}},
			states: map[string]agentState{w1: stateWarmRetired},
			acts:   []string{"delete " + w1 + " (warm_retired)"},
			agents: linux(countTerminating, 1),
			then: func(t *testing.T, d *decision) {
				if want := []warmIdle{{"linux", 600}}; !slices.Equal(d.warmIdle, want) {
					t.Errorf("idle = %v, want %v", d.warmIdle, want)
				}
			},
		},
		{
			name:   "a retired warm agent that took a build before the mark runs it: a hit, and its idle time ends",
			cfg:    pooled(eci.WarmPool{}),
			scene:  scene{comps: []jenkins.Computer{warmNode(w1, connected, retired, runs(9))}, pods: []*corev1.Pod{warmPod(w1)}},
			states: map[string]agentState{w1: stateBuilding},
			agents: linux(countBuilding, 1),
			then: func(t *testing.T, d *decision) {
				wantWarm(nil, warmOf("hit", 1))(t, d)
				if len(d.warmIdle) != 1 || !d.memory.agents[w1].idleCounted {
					t.Errorf("idle %v, memory %+v: want one measure, remembered", d.warmIdle, d.memory.agents[w1])
				}
			},
		},
		{
			name: "a warm agent whose build starts is taken offline like any agent (one build) and replaced", cfg: two,
			scene:  scene{comps: []jenkins.Computer{warmNode(w1, connected, runs(9)), ready(w2)}, pods: []*corev1.Pod{warmPod(w1), warmPod(w2)}},
			states: map[string]agentState{w1: stateBuilding, w2: stateWarmReady},
			acts:   []string{"mark offline " + w1, warmCreate(0, 1)},
			agents: linux(countBuilding, 1, countIdle, 1, countCreating, 1),
			then:   wantWarm(warmOf(warmReady, 1, warmCreating, 1), warmOf("hit", 1)),
		},
		{
			name: "a ready warm agent remembers the items it could take",
			cfg:  pooled(eci.WarmPool{Size: 1}),
			scene: scene{comps: []jenkins.Computer{ready(w1)}, pods: []*corev1.Pod{warmPod(w1)},
				queue: []jenkins.QueueItem{item(5), item(6)}},
			states: map[string]agentState{w1: stateWarmReady},
			acts:   []string{"create ferry-agent-6-1 fallback 0", warmCreate(0, 0)},
			agents: linux(countIdle, 1, countCreating, 2),
			next:   awaitBuildPoll,
			then: func(t *testing.T, d *decision) {
				if got := d.memory.agents[w1].exposed; !slices.Equal(got, []int64{5, 6}) {
					t.Errorf("exposed = %v, want [5 6]", got)
				}
			},
		},
		{
			// Jenkins gave item 5 to it, and the build ended between two
			// looks; or to another agent: ferry cannot tell, so the agent
			// never gets a second chance.
			name:   "a warm agent idle again after an item it could take left the queue is retired",
			cfg:    pooled(eci.WarmPool{Size: 1}),
			mem:    remembered(map[string]agentMemory{w1: seenBefore(func(m *agentMemory) { m.exposed = []int64{5} })}, nil),
			scene:  scene{comps: []jenkins.Computer{ready(w1)}, pods: []*corev1.Pod{warmPod(w1)}},
			states: map[string]agentState{w1: stateWarmUsed},
			acts:   []string{"retire warm " + w1, warmCreate(0, 0)},
			agents: linux(countRetiring, 1, countCreating, 1),
			then:   wantWarm(warmOf(warmRetiring, 1, warmCreating, 1), nil),
		},
		{
			name: "a warm agent first seen connected after an item of its template left the queue is retired",
			cfg:  pooled(eci.WarmPool{Size: 1}),
			mem: func() memory {
				m := newMemory()
				m.waiting = map[string][]int64{"linux": {5}}
				return m
			}(),
			scene:  scene{comps: []jenkins.Computer{ready(w1)}, pods: []*corev1.Pod{warmPod(w1)}},
			states: map[string]agentState{w1: stateWarmUsed},
			acts:   []string{"retire warm " + w1, warmCreate(0, 0)},
			agents: linux(countRetiring, 1, countCreating, 1),
			then:   wantWarm(warmOf(warmRetiring, 1, warmCreating, 1), nil),
		},
		{
			name: "a warm agent's build over: deleted like any agent", cfg: pooled(eci.WarmPool{}),
			scene:  scene{comps: []jenkins.Computer{warmNode(w1, connected, marked)}, pods: []*corev1.Pod{warmPod(w1)}},
			states: map[string]agentState{w1: stateBuildOver},
			acts:   []string{"delete " + w1 + " (build_over)"},
			agents: linux(countTerminating, 1),
		},
		{
			name: "a build on a cold agent of a pooled template is a miss", cfg: pooled(eci.WarmPool{}),
			scene:  scene{comps: []jenkins.Computer{node(5, 1, connected, runs(9))}, pods: []*corev1.Pod{pod(5, 1, running)}},
			states: map[string]agentState{a51: stateBuilding},
			acts:   []string{"mark offline " + a51},
			agents: linux(countBuilding, 1),
			then:   wantWarm(nil, warmOf("miss", 1)),
		},
		{
			name: "a surplus is retired, the agent furthest from ready first", cfg: pooled(eci.WarmPool{Size: 1}),
			scene:  scene{comps: []jenkins.Computer{ready(w1), warmNode(w2)}, pods: []*corev1.Pod{warmPod(w1), warmPod(w2)}},
			states: map[string]agentState{w1: stateWarmReady, w2: stateWarmStarting},
			acts:   []string{"retire warm " + w2},
			agents: linux(countIdle, 1, countStarting, 1),
			then:   wantWarm(warmOf(warmReady, 1, warmRetiring, 1), nil),
		},
		{
			name: "a failed warm agent is deleted and its pool backs off before the next", cfg: pooled(eci.WarmPool{Size: 1}),
			scene:  scene{comps: []jenkins.Computer{warmNode(w1)}, pods: []*corev1.Pod{warmPod(w1, podFailed("ProviderFailed", "no stock"))}},
			states: map[string]agentState{w1: stateWarmFailed},
			acts:   []string{"delete " + w1 + " (failed)"},
			next:   10 * time.Millisecond,
			then: func(t *testing.T, d *decision) {
				wantOutcomes(t, d, w1+" ProviderFailed warm_replaced")
				if m := d.memory.warm["linux"]; m.failures != 1 || !m.notBefore.Equal(t0.Add(10*time.Millisecond)) {
					t.Errorf("pool memory %+v, want 1 failure, back off 10ms", m)
				}
			},
		},
		{
			name: "a warm node without its pod gets one", cfg: pooled(eci.WarmPool{Size: 1}),
			scene:  scene{comps: []jenkins.Computer{warmNode(w1)}},
			states: map[string]agentState{w1: stateWarmNeedsPod},
			acts:   []string{"create pod " + w1 + " fallback 0"},
			agents: linux(countCreating, 1),
			then:   wantWarm(warmOf(warmCreating, 1), nil),
		},
		{
			name: "a warm creation in flight fills the pool: no second one", cfg: pooled(eci.WarmPool{Size: 1}),
			scene:  scene{flight: []act{{kind: actCreateWarm, agent: &agentView{name: w1, template: "linux", warm: true}}}},
			agents: linux(countCreating, 1),
			then:   wantWarm(warmOf(warmCreating, 1), nil),
		},
		{
			name: "the AgentPool's replicas win over the schedule", cfg: two,
			scene: scene{comps: []jenkins.Computer{ready(w1), ready(w2)}, pods: []*corev1.Pod{warmPod(w1), warmPod(w2)},
				pool: map[string]int{"linux": 0}},
			states: map[string]agentState{w1: stateWarmReady, w2: stateWarmReady},
			acts:   []string{"retire warm " + w2, "retire warm " + w1},
			agents: linux(countIdle, 2),
			then:   wantWarm(warmOf(warmRetiring, 2), nil),
		},
		{
			name: "an AgentPool's status says the free warm agents and their selector",
			cfg:  pooled(eci.WarmPool{PoolRef: "linux-pool"}),
			scene: scene{comps: []jenkins.Computer{ready(w1)}, pods: []*corev1.Pod{warmPod(w1)},
				pool: map[string]int{"linux": 3}, pools: map[string]poolView{"linux": {replicas: 3, set: true, statusReplicas: 1}}},
			states: map[string]agentState{w1: stateWarmReady},
			acts:   []string{warmCreate(0, 1), warmCreate(0, 2), "pool status linux: 3"},
			agents: linux(countIdle, 1, countCreating, 2),
			then:   wantWarm(warmOf(warmReady, 1, warmCreating, 2), nil),
		},
		{
			name: "an AgentPool's status already right is not written again",
			cfg:  pooled(eci.WarmPool{PoolRef: "linux-pool"}),
			scene: scene{comps: []jenkins.Computer{ready(w1)}, pods: []*corev1.Pod{warmPod(w1)},
				pool: map[string]int{"linux": 1}, pools: map[string]poolView{"linux": {replicas: 1, set: true, statusReplicas: 1, selector: poolSelector("linux")}}},
			states: map[string]agentState{w1: stateWarmReady},
			agents: linux(countIdle, 1),
			then:   wantWarm(warmOf(warmReady, 1), nil),
		},
		{
			name: "while the AgentPool is not known yet the pool is left as it is",
			cfg:  pooled(eci.WarmPool{Size: 3, PoolRef: "linux-pool"}),
			scene: scene{comps: []jenkins.Computer{ready(w1)}, pods: []*corev1.Pod{warmPod(w1)},
				poolUnknown: map[string]bool{"linux": true}},
			states: map[string]agentState{w1: stateWarmReady},
			agents: linux(countIdle, 1),
		},
		{
			// t0 is Sunday 1 June 2025, 12:00 UTC.
			name:   "a schedule window sets the size",
			cfg:    pooled(eci.WarmPool{Schedule: []eci.WarmWindow{{Start: "0 9 * * *", Duration: eci.Duration{Duration: 8 * time.Hour}, Size: 1}}}),
			acts:   []string{warmCreate(0, 0)},
			agents: linux(countCreating, 1),
			then: func(t *testing.T, d *decision) {
				wantWarm(warmOf(warmCreating, 1), nil)(t, d)
				if src := d.warmSource["linux"]; !strings.HasPrefix(src, "window ") || d.warmDesired["linux"] != 1 {
					t.Errorf("warm pool size %d set by %q, want 1 by its window", d.warmDesired["linux"], src)
				}
			},
		},
		{
			name: "no window opens on an excluded date",
			cfg: pooled(eci.WarmPool{Schedule: []eci.WarmWindow{{Start: "0 9 * * *", Duration: eci.Duration{Duration: 8 * time.Hour}, Size: 1}},
				ExcludeDates: []string{"* * * * * 0"}}),
			then: wantWarm(nil, nil),
		},
		{
			name:   "after the window closes the pool is retired",
			cfg:    pooled(eci.WarmPool{Schedule: []eci.WarmWindow{{Start: "0 9 * * *", Duration: eci.Duration{Duration: 8 * time.Hour}, Size: 1}}}),
			scene:  scene{at: 5 * time.Hour, comps: []jenkins.Computer{ready(w1)}, pods: []*corev1.Pod{warmPod(w1, createdAgo(-5*time.Hour+time.Minute))}},
			states: map[string]agentState{w1: stateWarmReady},
			acts:   []string{"retire warm " + w1},
			agents: linux(countIdle, 1),
			then:   wantWarm(warmOf(warmRetiring, 1), nil),
		},
		{
			name: "a template with a missing image gets no warm agents",
			cfg: func(c *Config) {
				pooled(eci.WarmPool{Size: 1})(c)
				c.ImageCheck = true
			},
			scene: scene{images: map[string]imageCheck{"linux": {result: imageMissing, at: t0}}},
		},
	})
}

func TestWarmNames(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		warmName(t0, 3): true, "ferry-warm-x": false, "ferry-warm-zz-a": false, a51: false, "ferry-warm--1": false,
	} {
		if got := isWarmName(name); got != want {
			t.Errorf("isWarmName(%q) = %v, want %v", name, got, want)
		}
	}
	if _, _, ok := parseAgentName(warmName(t0, 0)); ok {
		t.Errorf("a warm name parses as a queue item's agent")
	}
}

// TestWarmActsAreFenced: a replica that cannot be sure it leads makes no
// warm agent (Config.Fence guards warm acts like any other); once it can,
// the pool fills, with agents played by the fake kubelet.
func TestWarmActsAreFenced(t *testing.T) {
	e := newEnv(t, nil)
	e.startKubelet(&kubelet{})
	var fenced atomic.Bool
	var asked atomic.Int64
	fenced.Store(true)
	cfg := e.config(func(c *Config) {
		c.Templates = testTemplate(func(t *eci.Template) { t.WarmPool = &eci.WarmPool{Size: 2} })
		c.Fence = func() error {
			asked.Add(1)
			if fenced.Load() {
				return errors.New("lease not held")
			}
			return nil
		}
	})
	e.start(cfg)
	waitFor(t, "fenced acts to be refused", func() bool { return asked.Load() >= 10 })
	for _, n := range e.emu.Nodes() {
		if isWarmName(n.Name) {
			t.Fatalf("warm node %s made while fenced", n.Name)
		}
	}
	if pods := e.pods(); len(pods) != 0 {
		t.Fatalf("%d pods made while fenced", len(pods))
	}
	fenced.Store(false)
	waitFor(t, "the pool to fill once the fence allows", func() bool {
		ready := 0
		for _, n := range e.emu.Nodes() {
			if isWarmName(n.Name) && n.Connected && n.Online {
				ready++
			}
		}
		return ready == 2
	})
}
