package provision

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/pkg/jenkins"
)

// agentState is where an agent is in its life, as one cycle sees it: from
// the world and what the provisioner remembers of the agent. Each state
// has its decision (see decideAgent).
type agentState int

const (
	// stateDeleting: ferry is deleting it.
	stateDeleting agentState = iota
	// stateTerminating: its node is gone and its pod terminating (or
	// deleted so recently that the informer does not show it yet).
	stateTerminating
	// stateBuilding: it runs its build.
	stateBuilding
	// stateReclaiming: it runs its build on a spot instance about to be
	// reclaimed.
	stateReclaiming
	// stateLost: its build runs, but the agent is dead: pod gone, ended
	// or going, or disconnected for longer than the connect timeout.
	stateLost
	// stateInfraLost: lost, and the infrastructure killed it, not the
	// build (see infraCause): the build is re-run.
	stateInfraLost
	// stateBuildOver: it ran its build and is idle: the build is over.
	stateBuildOver
	// stateCreating: its node, Secret or pod is being created.
	stateCreating
	// stateOrphan: a pod without a node, which cannot serve anything.
	stateOrphan
	// stateUnknownTemplate: a node of a template no longer configured.
	stateUnknownTemplate
	// stateFailed: it has not run a build and its pod cannot serve.
	stateFailed
	// stateNeedsPod: its item waits and its node has no pod yet.
	stateNeedsPod
	// stateStarting: its item waits and its agent has not connected yet.
	stateStarting
	// stateAwaitingBuild: its item waits and the agent is connected and
	// idle.
	stateAwaitingBuild
	// stateSpare: its item has left the queue but it has run no build: it
	// may serve another item of its template.
	stateSpare
	// stateSettling: its item has left the queue a moment ago; its build
	// may not show on the executor yet (see settle).
	stateSettling
	// stateItemGone: its item has left the queue and it serves nothing.
	stateItemGone
	// stateWarmNeedsPod: a warm agent whose node has no pod yet.
	stateWarmNeedsPod
	// stateWarmStarting: a warm agent that has not connected yet.
	stateWarmStarting
	// stateWarmReady: a warm agent connected and idle: the next waiting
	// item of its template takes it.
	stateWarmReady
	// stateWarmStale: a warm agent idle for longer than its pool's
	// maxIdle: it is retired and replaced.
	stateWarmStale
	// stateWarmRetired: a warm agent ferry took offline to retire it,
	// with no build: it is deleted.
	stateWarmRetired
	// stateWarmFailed: a warm agent whose pod cannot serve.
	stateWarmFailed
	// stateWarmUsed: a warm agent connected and idle after items it could
	// have taken (it was starting, or idle, while they waited) left the
	// queue: it may have run a build too short for ferry to see, so it is
	// retired, never given a second build.
	stateWarmUsed
	numStates
)

var stateNames = [numStates]string{
	stateDeleting: "deleting", stateTerminating: "terminating", stateBuilding: "building",
	stateReclaiming: "reclaiming", stateLost: "lost", stateInfraLost: "lost to infrastructure", stateBuildOver: "build over",
	stateCreating: "creating", stateOrphan: "orphan", stateUnknownTemplate: "unknown template",
	stateFailed: "failed", stateNeedsPod: "needs pod", stateStarting: "starting",
	stateAwaitingBuild: "awaiting build", stateSpare: "spare", stateSettling: "settling",
	stateItemGone: "item gone", stateWarmNeedsPod: "warm, needs pod", stateWarmStarting: "warm, starting",
	stateWarmReady: "warm, ready", stateWarmStale: "warm, stale", stateWarmRetired: "warm, retired",
	stateWarmFailed: "warm, failed", stateWarmUsed: "warm, maybe used",
}

func (s agentState) String() string {
	if s < 0 || s >= numStates {
		return fmt.Sprintf("agentState(%d)", int(s))
	}
	return stateNames[s]
}

// agent is an agent with its state.
type agent struct {
	*agentView
	state agentState
	// why is what eci.Classify found, for stateFailed, stateLost and a
	// newly seen stateReclaiming.
	why eci.Failure
	// creating: its creation is still in flight.
	creating bool
	// cause is why the infrastructure lost it (stateInfraLost).
	cause rerunCause
}

// classify gives each agent of the world its state, in name order.
func classify(r *rules, w *world, mem memory) []agent {
	out := make([]agent, 0, len(w.names))
	for _, name := range w.names {
		a, m := w.agents[name], mem.recall(name, w.now)
		if a.warm && m.firstSeen.Equal(w.now) {
			m.exposed = mem.waiting[a.template]
		}
		out = append(out, classifyAgent(r, w, a, m))
	}
	return out
}

func classifyAgent(r *rules, w *world, a *agentView, m agentMemory) agent {
	c := agent{agentView: a, creating: w.inFlight(createKey(a.name))}
	_, known := r.templates[a.template]
	switch {
	case w.inFlight(deleteKey(a.name)):
		c.state = stateDeleting
	case a.node == nil && a.pod != nil && (a.pod.DeletionTimestamp != nil || w.deletedRecently(a.name)):
		c.state = stateTerminating
	case a.node != nil && len(a.node.Running) > 0:
		c.state, c.why = classifyRunning(r, w, c, m)
		if c.state == stateLost {
			if cause, infra := infraCause(a.pod, c.why); infra {
				c.state, c.cause = stateInfraLost, cause
			}
		}
	case !m.ranSince.IsZero() || ranBuild(a.node):
		// The offline mark says so after a restart too.
		c.state = stateBuildOver
	case a.warm && a.node != nil && a.node.TemporarilyOffline && a.node.OfflineWith(WarmRetireReason):
		c.state = stateWarmRetired
	case c.creating:
		c.state = stateCreating
	case a.node == nil:
		c.state = stateOrphan
	case !known:
		c.state = stateUnknownTemplate
	case a.warm:
		c.state, c.why = classifyWarm(r, w, a, m)
	default:
		c.state, c.why = classifyIdle(r, w, a, m)
	}
	return c
}

// classifyRunning tells building, lost and reclaiming apart.
func classifyRunning(r *rules, w *world, a agent, m agentMemory) (agentState, eci.Failure) {
	if a.creating {
		// The pod's creation is finishing (its Secret being handed over);
		// the informer may not show the pod yet.
		return stateBuilding, eci.Failure{}
	}
	t := r.templates[a.template]
	if f, dead := deadUnderBuild(a.agentView, t, disconnectedSince(a.agentView, m, w.now), w.events[a.name], w.now); dead {
		return stateLost, f
	}
	if m.reclaimReported {
		return stateReclaiming, eci.Failure{}
	}
	if a.pod != nil && a.pod.DeletionTimestamp == nil {
		f := eci.Classify(a.pod, w.events[a.name], t.ClassifyOptions(w.now, a.node.Connected()))
		if f.Reason == eci.ReasonSpotReclaimed {
			return stateReclaiming, f
		}
	}
	return stateBuilding, eci.Failure{}
}

// classifyIdle classifies an idle node that has not run a build (as far as
// ferry knows).
func classifyIdle(r *rules, w *world, a *agentView, m agentMemory) (agentState, eci.Failure) {
	if a.pod != nil && a.pod.DeletionTimestamp == nil {
		// Events count as the pod's status does: a spot instance about to
		// be reclaimed is replaced before it takes a build.
		t := r.templates[a.template]
		if f := eci.Classify(a.pod, w.events[a.name], t.ClassifyOptions(w.now, a.node.Connected())); f.Failed() {
			return stateFailed, f
		}
	}
	if _, queued := w.inQueue[a.queueID]; queued {
		switch {
		case a.pod == nil:
			return stateNeedsPod, eci.Failure{}
		case !a.node.Connected():
			return stateStarting, eci.Failure{}
		}
		return stateAwaitingBuild, eci.Failure{}
	}
	m = goneMemory(idleMemory(m, false, w.now), w.now)
	if m.fresh && a.pod != nil && a.pod.DeletionTimestamp == nil {
		return stateSpare, eci.Failure{}
	}
	if settle-w.now.Sub(m.goneSince) > 0 {
		return stateSettling, eci.Failure{}
	}
	return stateItemGone, eci.Failure{}
}

// classifyWarm classifies an idle warm agent that has run no build.
func classifyWarm(r *rules, w *world, a *agentView, m agentMemory) (agentState, eci.Failure) {
	if a.pod == nil {
		return stateWarmNeedsPod, eci.Failure{}
	}
	t := r.templates[a.template]
	if f := eci.Classify(a.pod, w.events[a.name], t.ClassifyOptions(w.now, a.node.Connected())); f.Failed() {
		return stateWarmFailed, f
	}
	if !a.node.Connected() {
		return stateWarmStarting, eci.Failure{}
	}
	for _, q := range m.exposed {
		if _, queued := w.inQueue[q]; !queued {
			return stateWarmUsed, eci.Failure{}
		}
	}
	if s := r.warm[a.template]; s != nil && w.now.Sub(a.pod.CreationTimestamp.Time) > s.MaxIdle {
		return stateWarmStale, eci.Failure{}
	}
	return stateWarmReady, eci.Failure{}
}

// ranBuild reports an idle node ferry took offline as its build started:
// that build is over.
func ranBuild(n *jenkins.Computer) bool {
	return n != nil && n.TemporarilyOffline && markedOneBuild(n) && len(n.Running) == 0
}

// markedOneBuild reports a node ferry took offline as its build started
// (see OneBuildReason), in whatever language Jenkins words the cause.
func markedOneBuild(n *jenkins.Computer) bool {
	return n.OfflineWith(OneBuildReason)
}

// disconnectedSince returns since when an agent running a build has been
// disconnected, zero while it is connected. Offline is not enough: ferry
// takes agents offline itself as their build starts.
func disconnectedSince(a *agentView, m agentMemory, now time.Time) time.Time {
	switch {
	case a.node.Connected():
		return time.Time{}
	case m.offlineSince.IsZero():
		return now
	}
	return m.offlineSince
}

// deadUnderBuild reports whether a running build has lost its agent: the
// pod is gone, ended or going, or the node has been disconnected for
// longer than the template's connect timeout.
func deadUnderBuild(a *agentView, t eci.Template, offlineSince time.Time, events []corev1.Event, now time.Time) (eci.Failure, bool) {
	switch {
	case a.pod == nil:
		return eci.Classify(nil, nil, eci.ClassifyOptions{Now: now}), true
	case a.pod.DeletionTimestamp != nil:
		return eci.Failure{Reason: eci.ReasonPodGone, Message: "the agent pod was deleted during the build"}, true
	case a.pod.Status.Phase == corev1.PodFailed || a.pod.Status.Phase == corev1.PodSucceeded:
		f := eci.Classify(a.pod, events, t.ClassifyOptions(now, true))
		if !f.Failed() {
			f = eci.Failure{Reason: eci.ReasonContainerFailed, Message: "the agent container exited during the build"}
		}
		return f, true
	case !offlineSince.IsZero() && now.Sub(offlineSince) > t.WithDefaults().ConnectTimeout.Duration:
		return eci.Failure{Reason: eci.ReasonNodeLost, Message: fmt.Sprintf("the agent has been disconnected from Jenkins for %s during the build", now.Sub(offlineSince).Round(time.Second))}, true
	}
	return eci.Failure{}, false
}

// idleMemory is what an idle agent that has not run a build leaves in
// memory: whether it is fresh.
func idleMemory(m agentMemory, queued bool, now time.Time) agentMemory {
	switch {
	case queued:
		m.fresh = true
		m.goneSince = time.Time{}
	case m.firstSeen.Equal(now):
		// First look at it (e.g. after a restart) and its own item has
		// left the queue: it ran no build (ferry marks agents offline as
		// their build starts), so it may serve another waiting item.
		m.fresh = true
	}
	return m
}

// goneMemory remembers since when an idle agent's item is gone.
func goneMemory(m agentMemory, now time.Time) agentMemory {
	if m.goneSince.IsZero() {
		m.goneSince = now
	}
	return m
}
