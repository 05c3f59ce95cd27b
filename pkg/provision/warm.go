package provision

import (
	"maps"
	"slices"
	"time"

	"github.com/ferryci/ferry/pkg/eci"
)

// Warm pools.
//
// A template's warm pool keeps ready agents waiting for builds: real
// agents (a node with the template's labels, a pod, connected) made
// before any item waits, named warmName instead of after a queue item.
// Jenkins gives a waiting item of the label to an idle connected node at
// once, so a warm agent takes the next build without a pod to start; the
// provisioner counts a free warm agent as serving a waiting item instead
// of making it an agent of its own (serveWithWarm). Once its build runs
// the warm agent is an agent like any other: taken offline (one build per
// agent), deleted when the build is over. The pool is refilled to its
// size (fillWarm): the AgentPool's spec.replicas when the template names
// one that exists and sets it, else its schedule (desiredWarm). Warm
// agents count against the caps, after the items waiting: a waiting item
// gets an agent before the pool is refilled.
//
// A warm agent is never deleted while Jenkins may hand it a build: to
// retire one (surplus, or idle for longer than maxIdle) ferry takes it
// offline with WarmRetireReason first, and deletes it in a later cycle if
// no build started on it in between (stateWarmRetired); one that did
// runs its build and goes like any agent.

// WarmRetireReason is the offline message of a warm agent ferry retires:
// Jenkins gives it no build, and a restarted provisioner knows to delete
// it.
const WarmRetireReason = "ferry: warm agent retired"

// LabelWarmPool is on the pods of a template's warm agents, with the
// template's name as its value: the AgentPool's status.selector.
const LabelWarmPool = "ferry.dev/warm-pool"

// Warm agents as the state attribute of ferry_provision_warm_agents
// counts them.
const (
	warmCreating = "creating"
	warmStarting = "starting"
	warmReady    = "ready"
	// warmServing: counted on to take a waiting item's build.
	warmServing = "serving"
	// warmRetiring: taken offline to be deleted.
	warmRetiring = "retiring"
)

// countRetiring counts, in ferry_provision_agents, a warm agent being
// retired.
const countRetiring = "retiring"

// warmMemory is what the provisioner remembers of a template's pool.
type warmMemory struct {
	// failures counts the warm agents that failed in a row; notBefore
	// holds back the next one (the template's retry backoff).
	failures  int
	notBefore time.Time
}

// warmIdle is the idle time of a warm agent: from its pod's creation to
// its build's start, or to its retirement (ferry_provision_warm_idle_seconds).
type warmIdle struct {
	template string
	seconds  float64
}

// warmAgent is a warm agent free to serve, with its state.
type warmAgent struct {
	agent
	// pending: its creation is in flight and its node not seen yet.
	pending bool
}

// warmRank orders free warm agents for serving: ready first, then by how
// far they are.
func warmRank(a warmAgent) int {
	switch {
	case a.pending:
		return 4
	case a.state == stateWarmReady:
		return 0
	case a.state == stateWarmStarting:
		return 1
	case a.state == stateWarmNeedsPod:
		return 2
	}
	return 3
}

// warmVerdict decides on an idle warm agent: a free one waits for
// serveWithWarm and fillWarm; a stale one is retired; a retired one is
// deleted; a failed one is deleted and its pool backs off.
func (x *decider) warmVerdict(a agent, m agentMemory) verdict {
	v := verdict{memory: m}
	switch a.state {
	case stateWarmNeedsPod:
		v.count = countCreating
		v.memory.exposed = x.exposure(a.template)
	case stateWarmStarting:
		v.count = countStarting
		v.memory.exposed = x.exposure(a.template)
	case stateWarmReady:
		v.count = countIdle
		if wm := x.d.memory.warm[a.template]; wm.failures > 0 {
			x.d.memory.warm[a.template] = warmMemory{}
		}
		v.memory.exposed = x.exposure(a.template)
	case stateWarmStale, stateWarmUsed:
		v.count = countRetiring
		v.acts = []act{{kind: actRetireWarm, agent: a.agentView}}
		x.d.warm[tallyKey{a.template, warmRetiring}]++
	case stateWarmRetired:
		v.acts = []act{{kind: actDeleteAgent, agent: a.agentView, cause: "warm_retired"}}
		if a.pod != nil {
			v.count = countTerminating
		}
		v.memory = x.idleOver(a, m)
	case stateWarmFailed:
		v.acts = []act{{kind: actDeleteAgent, agent: a.agentView, cause: "failed"}}
		v.failure = &failureNote{agent: a.agentView, failure: a.why, outcome: "warm_replaced", log: true}
		v.memory = x.idleOver(a, m)
		wm := x.d.memory.warm[a.template]
		wm.failures++
		wm.notBefore = x.w.now.Add(x.r.templates[a.template].WithDefaults().Retry.Delay(wm.failures + 1))
		x.d.memory.warm[a.template] = wm
	}
	return v
}

// exposure lists the items of a template waiting now: a warm agent
// connected by the next look may have taken any of them (Jenkins hands a
// waiting item to a node the moment it connects idle).
func (x *decider) exposure(template string) []int64 {
	var out []int64
	for _, wi := range x.w.waiting {
		if wi.template == template {
			out = append(out, wi.item.ID)
		}
	}
	return out
}

// idleOver measures, once, the idle time of a warm agent that took a
// build or goes without one.
func (x *decider) idleOver(a agent, m agentMemory) agentMemory {
	if m.idleCounted || !a.warm || a.pod == nil || a.pod.CreationTimestamp.IsZero() {
		return m
	}
	m.idleCounted = true
	x.d.warmIdle = append(x.d.warmIdle, warmIdle{a.template, max(0, x.w.now.Sub(a.pod.CreationTimestamp.Time).Seconds())})
	return m
}

// noteWarmBuild counts a build that started on an agent of a template
// with a warm pool: a hit on a warm agent, else a miss.
func (x *decider) noteWarmBuild(a agent) {
	if x.r.warm[a.template] == nil {
		return
	}
	of := "miss"
	if a.warm {
		of = "hit"
	}
	x.d.warmBuilds[tallyKey{a.template, of}]++
}

// serveWithWarm gives the free warm agents of each template to its waiting
// items without an agent, in queue order, ready agents first.
func (x *decider) serveWithWarm() {
	for _, t := range slices.Sorted(maps.Keys(x.warmFree)) {
		slices.SortStableFunc(x.warmFree[t], func(a, b warmAgent) int { return warmRank(a) - warmRank(b) })
	}
	for _, wi := range x.w.waiting {
		free := x.warmFree[wi.template]
		if x.served[wi.item.ID] || len(free) == 0 {
			continue
		}
		x.served[wi.item.ID] = true
		x.warmFree[wi.template] = free[1:]
		x.d.warm[tallyKey{wi.template, warmServing}]++
		// A build shorter than a cycle would leave the agent idle and
		// online again: look soon, to take it offline as its build runs.
		x.after(x.r.awaitBuild)
	}
}

// desiredOf is the size a template's pool should have now, and what sets
// it: the AgentPool's spec.replicas when it exists and sets it, else the
// schedule.
func (x *decider) desiredOf(template string) (int, string) {
	if n, ok := x.w.poolReplicas[template]; ok {
		return n, "agentpool"
	}
	at := x.w.scheduleNow
	if at.IsZero() {
		at = x.w.now
	}
	n, window := desiredWarm(at, x.r.warm[template])
	if window == "" {
		return n, "size"
	}
	return n, "window " + window
}

// fillWarm brings each template's pool to its size, after the waiting
// items took their agents: it retires the free warm agents beyond it
// (those furthest from ready first) and makes the missing ones within
// the caps.
func (x *decider) fillWarm() {
	names := slices.Clone(x.r.templateNames)
	for t := range x.warmFree {
		if !slices.Contains(names, t) {
			names = append(names, t)
		}
	}
	for _, t := range names {
		free := x.warmFree[t]
		if x.w.poolUnknown[t] {
			// Its AgentPool is not known yet: the pool stays as it is.
			continue
		}
		want := 0
		if x.r.warm[t] != nil {
			want, x.d.warmSource[t] = x.desiredOf(t)
		}
		if x.r.warm[t] != nil || len(free) > 0 {
			x.d.warmDesired[t] = want
		}
		for i := len(free) - 1; i >= 0 && len(free) > want; i-- {
			if a := free[i]; !a.pending && a.state != stateCreating {
				x.d.acts = append(x.d.acts, act{kind: actRetireWarm, agent: a.agentView})
				x.d.warm[tallyKey{t, warmRetiring}]++
				free = slices.Delete(free, i, i+1)
			}
		}
		for _, a := range free {
			switch a.state {
			case stateWarmReady:
				x.d.warm[tallyKey{t, warmReady}]++
			case stateWarmStarting:
				x.d.warm[tallyKey{t, warmStarting}]++
			default:
				x.d.warm[tallyKey{t, warmCreating}]++
			}
		}
		made := 0
		for i := len(free); i < want && x.mayWarm(t); i++ {
			x.d.acts = append(x.d.acts, act{kind: actCreateWarm,
				agent: &agentView{name: warmName(x.w.now, i), template: t, warm: true}})
			x.pendingCreates++
			x.count(t, countCreating)
			x.d.warm[tallyKey{t, warmCreating}]++
			made++
		}
		x.poolStatus(t, len(free)+made)
	}
}

// mayWarm reports whether a warm agent of the template may be made now:
// its image is known good, its pool is not backing off after a failure,
// and the caps, the API server and the create lane have room.
func (x *decider) mayWarm(t string) bool {
	tmpl := x.r.templates[t]
	switch {
	case x.imageBlocks(t):
		return false
	case x.imageUnchecked(t):
		x.d.acts = append(x.d.acts, x.checkImage(t)...)
		return false
	case x.w.now.Before(x.d.memory.warm[t].notBefore):
		x.after(x.d.memory.warm[t].notBefore.Sub(x.w.now))
		return false
	case x.live >= x.r.maxAgents || (tmpl.MaxAgents > 0 && x.perTemplate[t] >= tmpl.MaxAgents):
		return false
	case x.w.kubePaused() > 0:
		x.after(x.w.kubePaused())
		return false
	}
	return x.pendingCreates < x.r.maxPending
}

// compileWarm parses the templates' warm pools (validated by eci.Resolve).
func compileWarm(templates map[string]eci.Template) (map[string]*eci.WarmSchedule, error) {
	out := map[string]*eci.WarmSchedule{}
	for name, t := range templates {
		if t.WarmPool == nil {
			continue
		}
		s, err := t.WarmPool.Compile()
		if err != nil {
			return nil, err
		}
		out[name] = s
	}
	return out, nil
}
