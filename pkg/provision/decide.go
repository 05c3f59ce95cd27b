package provision

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/ferryci/ferry/pkg/eci"
)

// The decisions of a cycle are pure: a world, the agents' states and the
// provisioner's memory in; the acts to start, the memory to keep and what
// to record out. No context, no clock, no metrics, no I/O: reconcile does
// all of that with what decide returns.

// rules are what decisions read of the configuration.
type rules struct {
	templates map[string]eci.Template
	// templateNames are the templates' names, sorted.
	templateNames []string
	maxAgents     int
	gcGrace       time.Duration
	disableGC     bool
	// disableAnchors: no anchor nodes are made.
	disableAnchors bool
	// maxPending bounds the creations in flight.
	maxPending int
	// awaitBuild is how soon to look again while an agent is about to
	// take its build and other items of its template wait.
	awaitBuild time.Duration
	// rerun: builds lost to infrastructure are re-run (RequestRerun set).
	rerun bool
	// imageCheck: templates' images are checked before their pods.
	imageCheck bool
	// warm holds the templates' warm pool schedules (see warm.go).
	warm map[string]*eci.WarmSchedule
}

func newRules(cfg Config, warm map[string]*eci.WarmSchedule) *rules {
	names := slices.Sorted(maps.Keys(cfg.Templates))
	return &rules{
		warm:      warm,
		templates: cfg.Templates, templateNames: names, maxAgents: cfg.MaxAgents,
		gcGrace: cfg.GCGrace, disableGC: cfg.DisableGC, disableAnchors: cfg.DisableAnchors,
		maxPending: maxPendingCreates * cfg.Parallelism,
		awaitBuild: min(awaitBuildPoll, cfg.Resync),
		rerun:      cfg.RequestRerun != nil,
		imageCheck: cfg.ImageCheck,
	}
}

const (
	// settle is how long an idle agent whose queue item has left the queue
	// is kept before it is deleted, when ferry never saw it run a build:
	// Jenkins removes an item from the queue a moment before the executor
	// shows its build, and deleting the node then would abort that build.
	settle = time.Second
	// awaitBuildPoll is how soon the next cycle looks at Jenkins while an
	// agent is about to take its build (its pod runs, or it is connected
	// and idle) and other items of its template wait: a build that started
	// and ended between two looks would leave its agent online, free to
	// take one of them, so those looks come faster than the resync. With
	// no other item waiting there is nothing to take, and an item that
	// comes is a kick.
	awaitBuildPoll = 500 * time.Millisecond
)

// Agent states as the state attribute of ferry_provision_agents counts
// them.
const (
	countCreating    = "creating"
	countStarting    = "starting"
	countIdle        = "idle"
	countBuilding    = "building"
	countReclaiming  = "reclaiming"
	countSettling    = "settling"
	countRetrying    = "retrying"
	countTerminating = "terminating"
	countOrphan      = "orphan"
	// countLost: dead under its build, kept until its re-run is asked.
	countLost = "lost"
)

// decision is what one cycle decided.
type decision struct {
	acts []act
	// next asks for another cycle after this delay (0: none needed
	// earlier than the resync).
	next time.Duration
	// memory is what the provisioner remembers after the cycle.
	memory memory
	// agents counts the agents that will exist after the cycle, by
	// template and state; waiting the items that wait for one, by
	// template and why.
	agents  tally
	waiting tally
	// failures and steps are to be counted and measured.
	failures []failureNote
	steps    []stepTime
	// warm counts the warm agents by template and state; warmDesired is
	// each pool's size; warmBuilds counts the builds that started on a
	// warm agent (hit) or another (miss), by template; warmIdle measures
	// the idle time of warm agents that took a build or went.
	warm        tally
	warmDesired map[string]int
	warmSource  map[string]string // what set warmDesired (desiredOf)
	warmBuilds  tally
	warmIdle    []warmIdle
}

// tally counts by template and one more attribute.
type tally map[tallyKey]int64

type tallyKey struct{ template, of string }

// failureNote is an agent failure to count (ferry_provision_failures) and
// tell.
type failureNote struct {
	agent   *agentView
	failure eci.Failure
	// outcome is the outcome attribute; "" counts nothing.
	outcome string
	// log: logged as an agent that failed before its build.
	log bool
	// retry, when set, is told as an Event on the agent's pod.
	retry *retryNote
}

// retryNote is the attempt that replaces a failed agent.
type retryNote struct {
	attempt, maxAttempts, fallback int
	delay                          time.Duration
}

// stepTime is one step of an agent's life, measured from its item being
// queued (ferry_provision_step_seconds).
type stepTime struct {
	template, step string
	seconds        float64
}

// verdict is what decide says about one agent.
type verdict struct {
	acts []act
	// count is what the agent counts as among those that will exist after
	// the cycle; "" for one that goes.
	count string
	// after asks for a cycle after this delay (0: none).
	after  time.Duration
	memory agentMemory
	// item is the memory of the agent's item after the verdict, when it
	// changed.
	item *itemMemory
	// serves: the agent, or its next attempt, serves its waiting item.
	serves  bool
	failure *failureNote
	steps   []stepTime
}

// decider holds what one decide call has decided so far; only decide and
// its functions use it.
type decider struct {
	r *rules
	w *world
	d *decision
	// live counts the agents that will exist after the cycle, in total
	// and per template, against the caps.
	live        int
	perTemplate map[string]int
	// served holds the waiting items an agent serves.
	served         map[int64]bool
	pendingCreates int
	// maxAttempt and levels are the highest attempt and fallback level of
	// each item's agents.
	maxAttempt map[int64]int
	levels     map[int64]int
	spares     map[string][]agent
	needPod    []agent
	// checking holds the templates whose image check this cycle started.
	checking map[string]bool
	// warmFree holds each template's warm agents free to serve.
	warmFree map[string][]warmAgent
}

// decide decides a cycle: every agent by its state, then the waiting items
// (served by a spare agent, by a pod for an agent's node, or by a new
// agent within the caps), then anchors and Secrets.
func decide(r *rules, w *world, agents []agent, mem memory) *decision {
	x := &decider{r: r, w: w, perTemplate: map[string]int{}, served: map[int64]bool{},
		maxAttempt: map[int64]int{}, levels: map[int64]int{}, spares: map[string][]agent{}, warmFree: map[string][]warmAgent{}}
	x.d = &decision{agents: tally{}, waiting: tally{}, warm: tally{}, warmBuilds: tally{}, warmDesired: map[string]int{}, warmSource: map[string]string{},
		memory: memory{agents: map[string]agentMemory{}, items: maps.Clone(mem.items), warm: maps.Clone(mem.warm)}}
	if x.d.memory.items == nil {
		x.d.memory.items = map[int64]itemMemory{}
	}
	if x.d.memory.warm == nil {
		x.d.memory.warm = map[string]warmMemory{}
	}
	x.d.acts = decideAnchors(r, w)
	x.noteAttempts()
	x.countInFlight()
	for _, a := range agents {
		x.take(a, x.decideAgent(a, mem.recall(a.name, w.now)))
	}
	x.serveWithSpares()
	x.serveWithWarm()
	x.makePods()
	x.refreshImages()
	x.serveWaiting()
	x.fillWarm()
	acts, after, unread := decideSecrets(r, w, mem.unread)
	x.d.acts = append(x.d.acts, acts...)
	x.after(after)
	x.d.memory.unread = unread
	x.d.memory.waiting = map[string][]int64{}
	for _, wi := range w.waiting {
		x.d.memory.waiting[wi.template] = append(x.d.memory.waiting[wi.template], wi.item.ID)
	}
	for q := range x.d.memory.items {
		if _, ok := w.inQueue[q]; !ok {
			delete(x.d.memory.items, q)
		}
	}
	return x.d
}

// after asks for a cycle after d at the latest (0: none).
func (x *decider) after(d time.Duration) {
	if d > 0 && (x.d.next == 0 || d < x.d.next) {
		x.d.next = d
	}
}

// soon is a delay to ask a cycle after: at least a millisecond.
func soon(d time.Duration) time.Duration { return max(d, time.Millisecond) }

// count counts an agent that will exist after the cycle.
func (x *decider) count(template, state string) {
	x.live++
	x.perTemplate[template]++
	x.d.agents[tallyKey{template, state}]++
}

// take applies an agent's verdict to the decision.
func (x *decider) take(a agent, v verdict) {
	x.d.acts = append(x.d.acts, v.acts...)
	if v.count != "" {
		x.count(a.template, v.count)
	}
	x.after(v.after)
	x.d.memory.agents[a.name] = v.memory
	if v.item != nil {
		x.d.memory.items[a.queueID] = *v.item
	}
	if v.serves {
		x.served[a.queueID] = true
	}
	if v.failure != nil {
		x.d.failures = append(x.d.failures, *v.failure)
	}
	x.d.steps = append(x.d.steps, v.steps...)
	switch a.state {
	case stateSpare:
		x.spares[a.template] = append(x.spares[a.template], a)
	case stateNeedsPod:
		x.needPod = append(x.needPod, a)
	case stateWarmNeedsPod:
		x.needPod = append(x.needPod, a)
		x.warmFree[a.template] = append(x.warmFree[a.template], warmAgent{agent: a})
	case stateWarmStarting, stateWarmReady:
		x.warmFree[a.template] = append(x.warmFree[a.template], warmAgent{agent: a})
	case stateCreating:
		if a.warm {
			x.warmFree[a.template] = append(x.warmFree[a.template], warmAgent{agent: a})
		}
	}
}

// noteAttempts notes, for each item, the highest attempt and fallback level
// of its agents.
func (x *decider) noteAttempts() {
	for _, name := range x.w.names {
		a := x.w.agents[name]
		q := a.queueID
		x.maxAttempt[q] = max(x.maxAttempt[q], a.attempt)
		x.levels[q] = max(x.levels[q], fallbackOf(a, x.d.memory.items[q]))
		if _, ok := x.w.inQueue[q]; ok {
			m := x.d.memory.items[q]
			m.maxSeen = max(m.maxSeen, a.attempt)
			x.d.memory.items[q] = m
		}
	}
}

// countInFlight counts the creations in flight: they serve their item and
// count against the caps before their node shows.
func (x *decider) countInFlight() {
	for _, a := range x.w.flight {
		if a.lane() != laneCreate {
			continue
		}
		x.pendingCreates++
		if _, ok := x.w.agents[a.agent.name]; !ok {
			x.count(a.agent.template, countCreating)
			if a.agent.warm {
				x.warmFree[a.agent.template] = append(x.warmFree[a.agent.template], warmAgent{agent: agent{agentView: a.agent}, pending: true})
				continue
			}
			x.served[a.agent.queueID] = true
		}
	}
}

// decideAgent decides what to do with an agent in its state.
func (x *decider) decideAgent(a agent, m agentMemory) verdict {
	m, steps := measureSteps(x.w, a.agentView, m)
	var v verdict
	switch a.state {
	case stateDeleting, stateTerminating:
		// Nothing to do until it is gone; it still holds an instance, so
		// it counts against the caps.
		v = verdict{memory: m, count: countTerminating}
	case stateBuilding:
		v = x.running(a, m)
		v.count = countBuilding
	case stateReclaiming:
		v = x.reclaiming(a, m)
	case stateLost:
		v = x.lost(a, m)
	case stateInfraLost:
		v = x.infraLost(a, m)
	case stateBuildOver:
		v = buildOver(a, m)
	case stateCreating:
		_, queued := x.w.inQueue[a.queueID]
		v = verdict{memory: m, count: countCreating, serves: queued}
		if a.warm {
			v.memory.exposed = x.exposure(a.template)
		}
	case stateOrphan:
		v = x.orphan(a, m)
	case stateUnknownTemplate:
		v = x.unknownTemplate(a, m)
	case stateFailed:
		v = x.failed(a, m)
	case stateNeedsPod, stateStarting, stateAwaitingBuild:
		v = x.awaiting(a, m)
	case stateSpare, stateSettling, stateItemGone:
		v = x.itemGone(a, m)
	case stateWarmNeedsPod, stateWarmStarting, stateWarmReady, stateWarmStale, stateWarmRetired, stateWarmFailed, stateWarmUsed:
		v = x.warmVerdict(a, m)
	}
	v.steps = append(steps, v.steps...)
	return v
}

// running is the part of the verdict on an agent running its build that
// its state does not change: the build remembered, and the node taken
// offline (one build per agent: once the build ends, Jenkins would hand
// the idle node any waiting item of the label before the next cycle
// deletes it).
func (x *decider) running(a agent, m agentMemory) verdict {
	var v verdict
	m.fresh = false
	if m.ranSince.IsZero() {
		m.ranSince = x.w.now
		m.build = a.node.Running[0]
		m, v.steps = markStep(a.agentView, m, stepBuildStarted, x.w.now)
		x.noteWarmBuild(a)
		m = x.idleOver(a, m)
	}
	if !a.node.TemporarilyOffline {
		v.acts = append(v.acts, act{kind: actMarkOffline, agent: a.agentView, build: m.build})
	}
	if !a.creating {
		m.offlineSince = disconnectedSince(a.agentView, m, x.w.now)
	}
	v.memory = m
	return v
}

// reclaiming reports a spot instance about to be reclaimed under a
// running build once, and leaves the build running: it may finish in the
// minutes ECI gives, and then its own result stands.
func (x *decider) reclaiming(a agent, m agentMemory) verdict {
	v := x.running(a, m)
	v.count = countReclaiming
	if v.memory.reclaimReported {
		return v
	}
	v.memory.reclaimReported = true
	v.failure = &failureNote{agent: a.agentView, failure: a.why, outcome: "reclaim_warned"}
	v.acts = append(v.acts, act{kind: actReportReclaim, agent: a.agentView, item: x.w.inQueue[a.queueID],
		build: v.memory.build, failure: a.why})
	return v
}

// lost deletes an agent that died under its build and reports the build.
func (x *decider) lost(a agent, m agentMemory) verdict {
	v := x.running(a, m)
	v.failure = &failureNote{agent: a.agentView, failure: a.why, outcome: "died_mid_build"}
	// A reclaim already reported needs no second report when it happens.
	report := !v.memory.reclaimReported || a.why.Reason != eci.ReasonSpotReclaimed
	v.acts = append(v.acts,
		act{kind: actDeleteAgent, agent: a.agentView, cause: "failed", ranSince: v.memory.ranSince},
		act{kind: actReportLost, agent: a.agentView, item: x.w.inQueue[a.queueID], build: v.memory.build,
			failure: a.why, report: report})
	return v
}

// buildOver deletes an agent whose build is over.
func buildOver(a agent, m agentMemory) verdict {
	v := verdict{memory: m, acts: []act{{kind: actDeleteAgent, agent: a.agentView, cause: "build_over", ranSince: m.ranSince}}}
	if a.pod != nil {
		// Its pod terminates for a while yet: no replacement within the
		// caps until it is gone.
		v.count = countTerminating
	}
	return v
}

// orphan collects a pod without its node once GCGrace has passed: the node
// is created first and deleted first, so this is what a crash in between
// leaves, or someone deleted the node.
func (x *decider) orphan(a agent, m agentMemory) verdict {
	now := x.w.now
	created := now
	if a.pod != nil {
		created = a.pod.CreationTimestamp.Time
	}
	if created.IsZero() || created.After(m.firstSeen) {
		created = m.firstSeen
	}
	if x.r.disableGC {
		return verdict{memory: m, count: countOrphan}
	}
	if age := now.Sub(created); age < x.r.gcGrace {
		return verdict{memory: m, count: countOrphan, after: soon(x.r.gcGrace - age)}
	}
	return verdict{memory: m, acts: []act{{kind: actCollect, agent: a.agentView, ranSince: m.ranSince}}}
}

// unknownTemplate collects a node of a template no longer configured:
// nothing will manage it.
func (x *decider) unknownTemplate(a agent, m agentMemory) verdict {
	if !x.r.disableGC && x.w.now.Sub(m.firstSeen) >= x.r.gcGrace {
		return verdict{memory: m, acts: []act{{kind: actCollect, agent: a.agentView, ranSince: m.ranSince}}}
	}
	return verdict{memory: m, count: countOrphan}
}

// failed deletes an agent whose pod cannot serve, then retries with the
// template's fallback and backoff, or gives up on the item.
func (x *decider) failed(a agent, m agentMemory) verdict {
	it, queued := x.w.inQueue[a.queueID]
	v := verdict{memory: idleMemory(m, queued, x.w.now), serves: queued,
		acts:    []act{{kind: actDeleteAgent, agent: a.agentView, cause: "failed", ranSince: m.ranSince}},
		failure: &failureNote{agent: a.agentView, failure: a.why, log: true}}
	if !queued {
		v.failure.outcome = "item_gone"
		return v
	}
	im := x.d.memory.items[a.queueID]
	if im.gaveUp {
		return v
	}
	t := x.r.templates[a.template].WithDefaults()
	if !a.why.Retryable || a.attempt-im.swapped >= t.Retry.MaxAttempts {
		im.gaveUp = true
		v.item = &im
		v.failure.outcome = "gave_up"
		v.acts = append(v.acts, act{kind: actGiveUp, agent: a.agentView, item: it, failure: a.why})
		return v
	}
	next := a.attempt + 1
	level := fallbackOf(a.agentView, im)
	if a.why.Fallback {
		level++
	}
	delay := t.Retry.Delay(next)
	im.nextAttempt, im.fallback, im.notBefore = next, level, x.w.now.Add(delay)
	v.item = &im
	v.count, v.after = countRetrying, soon(delay)
	v.failure.outcome = "retried"
	v.failure.retry = &retryNote{attempt: next, maxAttempts: t.Retry.MaxAttempts, fallback: level, delay: delay}
	// The next attempt's node is created now: it records the attempt in
	// Jenkins, so a restarted provisioner continues the count. Its pod
	// follows after the backoff.
	v.acts = append(v.acts, act{kind: actCreateNode, item: it, fallback: level, notBefore: im.notBefore,
		agent: &agentView{name: eci.AgentName(a.queueID, next), queueID: a.queueID, attempt: next, template: a.template}})
	return v
}

// awaiting keeps an agent whose item waits for it: it serves the item, and
// the next cycle comes soon if it is about to take its build while other
// items of its template wait.
func (x *decider) awaiting(a agent, m agentMemory) verdict {
	v := verdict{memory: idleMemory(m, true, x.w.now), serves: true}
	switch a.state {
	case stateNeedsPod:
		v.count = countCreating
	case stateStarting:
		v.count = countStarting
		if a.pod.Status.Phase == corev1.PodRunning {
			v.after = x.awaitBuild(a.template)
		}
	default:
		v.count = countIdle
		v.after = x.awaitBuild(a.template)
	}
	return v
}

// awaitBuild returns how soon to look again while an agent of the template
// is about to take its build (see awaitBuildPoll).
func (x *decider) awaitBuild(template string) time.Duration {
	if x.w.waitingOf[template] > 1 {
		return x.r.awaitBuild
	}
	return 0
}

// itemGone keeps an agent whose item has left the queue while it settles
// and deletes it after; a spare waits for serveWithSpares.
func (x *decider) itemGone(a agent, m agentMemory) verdict {
	v := verdict{memory: goneMemory(idleMemory(m, false, x.w.now), x.w.now)}
	switch a.state {
	case stateSettling:
		v.count = countSettling
		v.after = soon(settle - x.w.now.Sub(v.memory.goneSince))
	case stateItemGone:
		v.acts = []act{{kind: actDeleteAgent, agent: a.agentView, cause: "item_gone", ranSince: m.ranSince}}
	}
	return v
}

// serveWithSpares gives the spares (fresh agents whose own item left the
// queue, typically given to another item of the label) to the items of
// their template left without an agent; the other spares settle, then go.
func (x *decider) serveWithSpares() {
	for _, tmpl := range slices.Sorted(maps.Keys(x.spares)) {
		for _, a := range x.spares[tmpl] {
			i := slices.IndexFunc(x.w.waiting, func(wi waitingItem) bool { return wi.template == tmpl && !x.served[wi.item.ID] })
			if i >= 0 {
				x.served[x.w.waiting[i].item.ID] = true
				state := countIdle
				if !a.node.Connected() {
					state = countStarting
				}
				x.count(a.template, state)
				x.after(x.awaitBuild(a.template))
				continue
			}
			m := x.d.memory.agents[a.name]
			if wait := settle - x.w.now.Sub(m.goneSince); wait > 0 {
				x.after(wait)
				x.count(a.template, countSettling)
				continue
			}
			x.d.acts = append(x.d.acts, act{kind: actDeleteAgent, agent: a.agentView, cause: "item_gone", ranSince: m.ranSince})
		}
	}
}

// makePods makes the pods of nodes that have none yet (informer lag, a
// restart between the node and the pod, or a retry waiting out its
// backoff).
func (x *decider) makePods() {
	paused := x.w.kubePaused()
	for _, a := range x.needPod {
		if a.warm {
			if !x.w.madeRecently(a.name) && paused == 0 {
				x.d.acts = append(x.d.acts, act{kind: actCreatePod, agent: a.agentView})
			}
			continue
		}
		im := x.d.memory.items[a.queueID]
		if im.notBefore.IsZero() && im.nextAttempt == 0 {
			// A retry whose backoff a restarted provisioner did not see
			// begin: its node says when it ends.
			im.notBefore = descriptionNotBefore(a.node.Description)
			x.d.memory.items[a.queueID] = im
		}
		switch {
		case x.w.madeRecently(a.name):
			// Created already; the informer has not shown it yet.
		case paused > 0:
			x.after(paused)
		case x.w.now.Before(im.notBefore):
			x.after(im.notBefore.Sub(x.w.now))
		default:
			x.d.acts = append(x.d.acts, act{kind: actCreatePod, agent: a.agentView, item: x.w.inQueue[a.queueID],
				fallback: fallbackOf(a.agentView, im)})
		}
	}
}

// serveWaiting decides, in queue order, for each item still without an
// agent.
func (x *decider) serveWaiting() {
	for _, wi := range x.w.waiting {
		q := wi.item.ID
		if x.served[q] {
			continue
		}
		v := x.decideItem(wi, x.d.memory.items[q])
		x.d.memory.items[q] = v.memory
		x.d.acts = append(x.d.acts, v.acts...)
		x.after(v.after)
		if v.waits != "" {
			x.d.waiting[tallyKey{wi.template, v.waits}]++
		}
		if v.create {
			x.pendingCreates++
			x.count(wi.template, countCreating)
		}
	}
}

// itemVerdict is what decide says about a waiting item no agent serves.
type itemVerdict struct {
	acts []act
	// waits says why it waits (the why attribute of
	// ferry_provision_waiting_items); "" if it does not.
	waits  string
	after  time.Duration
	memory itemMemory
	// create: a new agent is made for it.
	create bool
}

// decideItem gives a waiting item a new agent, within the caps, or says
// why it waits; it gives up on an item whose attempts are spent.
func (x *decider) decideItem(wi waitingItem, m itemMemory) itemVerdict {
	v := itemVerdict{memory: m}
	if m.gaveUp {
		return v
	}
	q, t := wi.item.ID, x.r.templates[wi.template]
	base := max(m.nextAttempt, x.maxAttempt[q]+1, 1)
	attempt := max(base, m.maxSeen+1)
	switch {
	case base-m.swapped > t.Retry.MaxAttempts && x.maxAttempt[q] > 0:
		// Earlier attempts are gone and the memory of why is lost (a
		// restart): the limit still holds.
		v.memory.gaveUp = true
		v.acts = []act{{kind: actGiveUp, item: wi.item,
			agent:   &agentView{name: eci.AgentName(q, attempt-1), queueID: q, attempt: attempt - 1, template: wi.template},
			failure: eci.Failure{Reason: eci.ReasonUnknown, Message: fmt.Sprintf("%d agent attempts did not start the build", attempt-1)}}}
	case x.imageBlocks(wi.template):
		c := x.w.images[wi.template]
		v.memory.gaveUp = true
		v.acts = []act{{kind: actGiveUp, item: wi.item,
			agent:   &agentView{name: eci.AgentName(q, attempt), queueID: q, attempt: attempt, template: wi.template},
			failure: imageFailure(t.WithDefaults().Image, c)}}
	case x.imageUnchecked(wi.template):
		v.waits, v.acts = "image_check", x.checkImage(wi.template)
	case x.w.now.Before(m.notBefore):
		v.waits, v.after = "backoff", m.notBefore.Sub(x.w.now)
	case x.live >= x.r.maxAgents || (t.MaxAgents > 0 && x.perTemplate[wi.template] >= t.MaxAgents):
		v.waits = "cap"
	case x.w.kubePaused() > 0:
		v.waits, v.after = "quota", x.w.kubePaused()
	case x.pendingCreates >= x.r.maxPending:
		// Enough creations queued to keep the create lane busy until the
		// next cycle; more would only go stale there.
		v.waits = "pacing"
	default:
		v.create = true
		v.memory = newAttempt(m, attempt)
		fallback := x.levels[q]
		if m.nextAttempt == attempt {
			// A retry after a failure ferry saw uses the level it chose
			// then; any other new attempt keeps the highest level the
			// item's agents have, since nothing new failed.
			fallback = m.fallback
		}
		v.acts = []act{{kind: actCreateAgent, item: wi.item, fallback: fallback,
			agent: &agentView{name: eci.AgentName(q, attempt), queueID: q, attempt: attempt, template: wi.template}}}
	}
	return v
}

// newAttempt counts an attempt that is not a retry after a failure (the
// item's earlier agent ran another item's build, or is going) as swapped,
// once however often making it has to be tried again.
func newAttempt(m itemMemory, attempt int) itemMemory {
	if attempt > 1 && m.nextAttempt != attempt && m.swapAttempt != attempt {
		m.swapped++
		m.swapAttempt = attempt
	}
	return m
}

// decideAnchors keeps one anchor node per template (see the package
// comment) and collects those of templates no longer configured.
func decideAnchors(r *rules, w *world) []act {
	if r.disableAnchors {
		return nil
	}
	var acts []act
	for _, n := range r.templateNames {
		if !w.anchors[n] {
			acts = append(acts, act{kind: actCreateAnchor, agent: &agentView{name: anchorName(n), template: n}})
		}
	}
	for _, t := range slices.Sorted(maps.Keys(w.anchors)) {
		if _, ok := r.templates[t]; !ok && !r.disableGC {
			acts = append(acts, act{kind: actDeleteAnchor, agent: &agentView{name: anchorName(t), template: t}})
		}
	}
	return acts
}

// decideSecrets collects agent Secrets no pod reads from: the garbage
// collector deletes a Secret with the last pod that owns it, so ferry
// deletes only one that has been unread for GCGrace and is not being made
// (a crash between a Secret and its pods, a batch whose pods all failed, a
// cluster without the collector). It returns the acts, when to look again,
// and since when each unread Secret has been unread.
func decideSecrets(r *rules, w *world, unread map[string]time.Time) ([]act, time.Duration, map[string]time.Time) {
	read := map[string]bool{}
	for _, pod := range w.pods {
		if n := eci.SecretNameOf(pod); n != "" {
			read[n] = true
		}
	}
	var acts []act
	var next time.Duration
	out := map[string]time.Time{}
	for _, s := range w.secrets {
		if read[s.Name] || w.making[s.Name] {
			continue
		}
		since, ok := unread[s.Name]
		if !ok {
			since = w.now
		}
		out[s.Name] = since
		if r.disableGC {
			continue
		}
		if wait := r.gcGrace - w.now.Sub(since); wait > 0 {
			if next == 0 || wait < next {
				next = wait
			}
			continue
		}
		acts = append(acts, act{kind: actDeleteSecret, secret: s.Name})
	}
	return acts, next, out
}

// fallbackOf returns the fallback level of an existing agent: what its pod
// says, else what its node's description says, else what ferry remembers
// of its item, else 0.
func fallbackOf(a *agentView, item itemMemory) int {
	if a.pod != nil {
		if v, err := strconv.Atoi(a.pod.Annotations[eci.AnnotationFallback]); err == nil {
			return v
		}
		return 0
	}
	if a.node != nil {
		if v, ok := descriptionFallback(a.node.Description); ok {
			return v
		}
	}
	if item.nextAttempt == a.attempt {
		return item.fallback
	}
	return 0
}

// measureSteps remembers when an agent's item was queued and measures the
// steps of its pod and node, each once.
func measureSteps(w *world, a *agentView, m agentMemory) (agentMemory, []stepTime) {
	if it, queued := w.inQueue[a.queueID]; queued && m.queuedAt.IsZero() {
		m.queuedAt = it.InQueueSince
	}
	var steps, s []stepTime
	if a.pod != nil {
		if c := podCondition(a.pod, corev1.PodScheduled); c != nil && c.Status == corev1.ConditionTrue {
			m, s = markStep(a, m, stepScheduled, c.LastTransitionTime.Time)
			steps = append(steps, s...)
		}
		if a.pod.Status.Phase == corev1.PodRunning {
			at := w.now
			for _, cs := range a.pod.Status.ContainerStatuses {
				if cs.State.Running != nil {
					at = cs.State.Running.StartedAt.Time
				}
			}
			m, s = markStep(a, m, stepRunning, at)
			steps = append(steps, s...)
		}
	}
	if a.node != nil && a.node.Connected() {
		m, s = markStep(a, m, stepConnected, w.now)
		steps = append(steps, s...)
	}
	return m, steps
}

// markStep measures a step of an agent's life once.
func markStep(a *agentView, m agentMemory, step string, at time.Time) (agentMemory, []stepTime) {
	if m.steps.has(step) || m.queuedAt.IsZero() || at.IsZero() {
		return m, nil
	}
	m.steps = m.steps.with(step)
	return m, []stepTime{{template: a.template, step: step, seconds: max(0, at.Sub(m.queuedAt).Seconds())}}
}

func podCondition(pod *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == t {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}
