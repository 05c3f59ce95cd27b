package provision

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	corev1 "k8s.io/api/core/v1"

	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/pkg/jenkins"
)

// track is what the provisioner remembers of one agent between cycles.
// Losing it (a restart) only makes ferry more careful, never wrong.
type track struct {
	firstSeen time.Time
	// fresh: seen idle while its own item still waited, and never seen
	// running: it has not run a build and may serve another item of its
	// template (Jenkins gives any waiting item of the label to the first
	// agent that connects).
	fresh     bool
	ranSince  time.Time
	build     jenkins.Executable
	goneSince time.Time
	// offlineSince: the agent disconnected while running a build.
	offlineSince time.Time
	queuedAt     time.Time
	steps        map[string]bool
	seen         bool
	// reclaimReported: the build running on this agent was reported as
	// losing its spot instance (see the running case of plan).
	reclaimReported bool
}

// itemTrack is what the provisioner remembers of one queue item.
type itemTrack struct {
	nextAttempt int
	fallback    int
	notBefore   time.Time
	gaveUp      bool
	// maxSeen is the highest attempt of the item's agents seen: a new
	// attempt is never given an earlier one's name, even once that agent
	// is gone (its pod may still be terminating).
	maxSeen int
	// swapped counts the attempts that replaced an agent Jenkins gave
	// another item's build, not a failure: they do not count against
	// Retry.MaxAttempts. swapAttempt is the last one counted.
	swapped     int
	swapAttempt int
}

// agentView is one agent name as Jenkins and Kubernetes show it now.
type agentView struct {
	name     string
	queueID  int64
	attempt  int
	template string
	node     *jenkins.Computer
	pod      *corev1.Pod
}

// waitingItem is a buildable queue item a template serves.
type waitingItem struct {
	item     jenkins.QueueItem
	template string
}

// action is one create or delete. The cycle that decided it does not
// wait for it (see dispatch).
type action func(ctx context.Context) error

// lane is a pool actions run in; each has its own concurrency bound, so
// that what keeps the one-build-per-agent promise (taking an agent offline
// as its build starts, deleting it once the build is over) never waits
// behind a backlog of slow creations.
type lane int

const (
	// laneOffline marks agents offline: one Jenkins call, the most urgent.
	laneOffline lane = iota
	// laneDelete deletes agents and runs the other short actions (anchors,
	// reports, give-ups, the next attempt's node).
	laneDelete
	// laneCreate creates agents: nodes, Secrets and pods, slow under API
	// throttling.
	laneCreate
	numLanes
)

// task is an action with the key that makes it unique while it runs: a
// cycle skips a task whose key is still in flight. Creations also say
// which item they serve, so that later cycles count them before their
// node shows.
type task struct {
	key  string
	lane lane
	run  action
	// then, when set, runs once run succeeded, outside the lanes (what it
	// waits for bounds it), with the key still in flight.
	then     action
	queueID  int64
	template string
}

// Task keys.
func offlineKey(name string) string { return "offline/" + name }
func deleteKey(name string) string  { return "delete/" + name }
func createKey(name string) string  { return "create/" + name }

// plan is what one cycle decided.
type plan struct {
	acts []task
	// next asks for another cycle after this delay (0: none needed
	// earlier than the resync).
	next time.Duration
	// live counts agents that will exist after the cycle, in total and
	// per template.
	live    int
	perTmpl map[string]int
	states  map[[2]string]int64
	waiting map[[2]string]int64
}

func (pl *plan) add(l lane, key string, run action) {
	pl.acts = append(pl.acts, task{key: key, lane: l, run: run})
}

func (pl *plan) after(d time.Duration) {
	if d <= 0 {
		d = time.Millisecond
	}
	if pl.next == 0 || d < pl.next {
		pl.next = d
	}
}

func (pl *plan) keep(a *agentView, state string) {
	pl.live++
	pl.perTmpl[a.template]++
	pl.states[[2]string{a.template, state}]++
}

// reconcile runs one cycle: observe, plan, act. It returns when the next
// cycle is due at the latest (0: at the resync).
func (p *Provisioner) reconcile(ctx context.Context) (time.Duration, error) {
	// Computers first, then the queue: an item that has left the queue by
	// the time the queue is read and runs on an agent shows as running in
	// the next cycle at the latest (see settle).
	p.polledAt = p.clock.Now()
	comps, err := p.cfg.Jenkins.Computers(ctx)
	if err != nil {
		return 0, fmt.Errorf("reconcile: %w", err)
	}
	items, err := p.cfg.Jenkins.Queue(ctx)
	if err != nil {
		return 0, fmt.Errorf("reconcile: %w", err)
	}
	now := p.clock.Now()
	p.lastPoll = now.Sub(p.polledAt)
	pl := p.plan(ctx, now, comps, items, p.listPods(), p.listSecrets())
	p.dispatch(ctx, pl.acts)
	for k, v := range pl.states {
		p.m.agents.Record(ctx, v, metric.WithAttributes(attribute.String("template", k[0]), attribute.String("state", k[1])))
	}
	for k, v := range pl.waiting {
		p.m.waiting.Record(ctx, v, metric.WithAttributes(attribute.String("template", k[0]), attribute.String("why", k[1])))
	}
	return pl.next, nil
}

// dispatch starts the tasks whose key is not in flight, each in its lane,
// and returns without waiting: a cycle lasts as long as its two polls and
// the plan, however many creations are pending, so a build that starts is
// seen, and its agent taken offline, within a cycle. A task that succeeded
// after the cycle's polls began is not started again: its effect may not
// show in them yet. Failed actions are logged; a later cycle sees what is
// left to do.
func (p *Provisioner) dispatch(ctx context.Context, tasks []task) {
	for _, t := range tasks {
		p.mu.Lock()
		_, busy := p.inflight[t.key]
		if d, ok := p.done[t.key]; ok && !d.at.Before(p.polledAt) {
			busy = true
		}
		if busy {
			p.mu.Unlock()
			continue
		}
		p.inflight[t.key] = t
		p.mu.Unlock()
		p.tasks.Add(1)
		go func() {
			defer p.tasks.Done()
			defer func() {
				p.mu.Lock()
				delete(p.inflight, t.key)
				p.mu.Unlock()
			}()
			select {
			case p.lanes[t.lane] <- struct{}{}:
			case <-ctx.Done():
				return
			}
			err := t.run(ctx)
			<-p.lanes[t.lane]
			if err == nil && t.then != nil {
				err = t.then(ctx)
			}
			if err != nil && ctx.Err() == nil {
				p.log.Warn("provisioning action failed; the next cycle retries", "error", err)
			}
			if err == nil {
				p.mu.Lock()
				p.done[t.key] = doneTask{task: t, at: p.clock.Now()}
				p.mu.Unlock()
			}
		}()
	}
}

const (
	// maxPendingCreates times Parallelism bounds the creations in flight.
	maxPendingCreates = 8
	// podMadeWait is how long a pod ferry created may take to show in the
	// informer before a cycle creates it again.
	podMadeWait = 10 * time.Second
)

// doneTask is a task that succeeded, and when.
type doneTask struct {
	task
	at time.Time
}

// inFlight returns the tasks in flight, by key, with those that succeeded
// after the cycle's polls began (which may not show their effect yet), and
// a copy of the pods created recently.
func (p *Provisioner) inFlight(polledAt time.Time) (map[string]task, map[string]time.Time, map[string]time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	flight := maps.Clone(p.inflight)
	for k, d := range p.done {
		if d.at.Before(polledAt) {
			delete(p.done, k)
			continue
		}
		flight[k] = d.task
	}
	return flight, maps.Clone(p.podMade), maps.Clone(p.podDeleted)
}

// podMadeNow records that an agent's pod was just created.
func (p *Provisioner) podMadeNow(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.podMade[name] = p.clock.Now()
}

// podSeen forgets a created pod once the informer shows it.
func (p *Provisioner) podSeen(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.podMade, name)
}

// podDeletedNow records that an agent's pod was just deleted.
func (p *Provisioner) podDeletedNow(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.podDeleted[name] = p.clock.Now()
}

// podGoing forgets a deleted pod once the informer shows it terminating
// or gone.
func (p *Provisioner) podGoing(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.podDeleted, name)
}

// observe joins Jenkins nodes and pods by agent name.
func (p *Provisioner) observe(comps []jenkins.Computer, pods []*corev1.Pod) (map[string]*agentView, map[string]string, map[string]bool) {
	agents := map[string]*agentView{}
	get := func(name string) *agentView {
		a := agents[name]
		if a == nil {
			q, att, ok := parseAgentName(name)
			if !ok {
				return nil
			}
			a = &agentView{name: name, queueID: q, attempt: att}
			agents[name] = a
		}
		return a
	}
	anchors := map[string]bool{}
	for i := range comps {
		c := &comps[i]
		if t, ok := anchorTemplate(c.Name); ok {
			anchors[t] = true
			continue
		}
		if a := get(c.Name); a != nil {
			a.node = c
		}
	}
	for _, pod := range pods {
		if a := get(pod.Name); a != nil {
			a.pod = pod
			a.template = pod.Labels[eci.LabelTemplate]
		}
	}
	// nodeTemplate maps ferry's node names to their template, for why
	// sentences that name a node instead of a label.
	nodeTemplate := map[string]string{}
	for t := range anchors {
		nodeTemplate[anchorName(t)] = t
	}
	for _, a := range agents {
		if a.template == "" && a.node != nil {
			a.template = p.templateOfLabels(a.node.Labels)
		}
		if a.node != nil && a.template != "" {
			nodeTemplate[a.name] = a.template
		}
	}
	return agents, nodeTemplate, anchors
}

// templateOfLabels finds the template serving any of a node's labels.
func (p *Provisioner) templateOfLabels(nodeLabels []string) string {
	for _, n := range p.templateNames() {
		for _, l := range p.cfg.Templates[n].Labels {
			if slices.Contains(nodeLabels, l) {
				return n
			}
		}
	}
	return ""
}

// templateFor returns the template serving a queue item, if any.
func (p *Provisioner) templateFor(it jenkins.QueueItem, nodeTemplate map[string]string) (string, bool) {
	l := it.WaitingLabel()
	if l == "" && p.cfg.Label != nil {
		l = p.cfg.Label(it)
	}
	if l == "" {
		return "", false
	}
	if t, ok := nodeTemplate[l]; ok {
		return t, true
	}
	expr, err := parseLabel(l)
	if err != nil {
		return "", false
	}
	for _, n := range p.templateNames() {
		t := p.cfg.Templates[n]
		atoms := map[string]bool{}
		for _, a := range t.Labels {
			atoms[a] = true
		}
		// A template must carry one of the expression's atoms: "!windows"
		// is satisfied by every template but asks for none of them.
		if expr.match(atoms) && mentionsAny(expr, atoms) {
			return n, true
		}
	}
	return "", false
}

func mentionsAny(x labelExpr, atoms map[string]bool) bool {
	switch x := x.(type) {
	case atomExpr:
		return atoms[string(x)]
	case notExpr:
		return false
	case binExpr:
		return mentionsAny(x.l, atoms) || mentionsAny(x.r, atoms)
	}
	return false
}

func (p *Provisioner) trackOf(name string, now time.Time) *track {
	tr := p.agents[name]
	if tr == nil {
		tr = &track{firstSeen: now, steps: map[string]bool{}}
		p.agents[name] = tr
	}
	tr.seen = true
	return tr
}

func (p *Provisioner) itemOf(q int64) *itemTrack {
	it := p.items[q]
	if it == nil {
		it = &itemTrack{}
		p.items[q] = it
	}
	return it
}

// plan decides the cycle's actions from one consistent look at the world.
// It updates the provisioner's memory; the actions do not.
func (p *Provisioner) plan(ctx context.Context, now time.Time, comps []jenkins.Computer, items []jenkins.QueueItem, pods []*corev1.Pod, secrets []*corev1.Secret) *plan {
	pl := &plan{perTmpl: map[string]int{}, states: map[[2]string]int64{}, waiting: map[[2]string]int64{}}
	agents, nodeTemplate, anchors := p.observe(comps, pods)

	inQueue := make(map[int64]jenkins.QueueItem, len(items))
	var waiting []waitingItem
	for _, it := range items {
		inQueue[it.ID] = it
		if it.Blocked || !it.Buildable {
			continue
		}
		if t, ok := p.templateFor(it, nodeTemplate); ok {
			waiting = append(waiting, waitingItem{item: it, template: t})
		}
	}
	sort.SliceStable(waiting, func(i, j int) bool { return waiting[i].item.ID < waiting[j].item.ID })
	waitingOf := map[string]int{}
	for _, w := range waiting {
		waitingOf[w.template]++
	}

	// Anchors keep every template's labels known to Jenkins.
	if !p.cfg.DisableAnchors {
		for _, n := range p.templateNames() {
			if !anchors[n] {
				pl.add(laneDelete, "anchor/"+n, p.createAnchor(n))
			}
		}
		for t := range anchors {
			if _, ok := p.cfg.Templates[t]; !ok && !p.cfg.DisableGC {
				pl.add(laneDelete, "anchor/"+t, p.deleteNodeOnly(anchorName(t), "anchor"))
			}
		}
	}

	for _, tr := range p.agents {
		tr.seen = false
	}
	served := map[int64]bool{}
	maxAttempt := map[int64]int{}
	spares := map[string][]*agentView{}
	var needPod []*agentView
	names := make([]string, 0, len(agents))
	levels := map[int64]int{}
	for n, a := range agents {
		names = append(names, n)
		maxAttempt[a.queueID] = max(maxAttempt[a.queueID], a.attempt)
		levels[a.queueID] = max(levels[a.queueID], p.fallbackOf(a))
		if _, ok := inQueue[a.queueID]; ok {
			itr := p.itemOf(a.queueID)
			itr.maxSeen = max(itr.maxSeen, a.attempt)
		}
	}
	sort.Strings(names)

	// Creations in flight serve their item and count against the caps
	// before their node shows.
	flight, made, deleted := p.inFlight(p.polledAt)
	pendingCreates := 0
	for _, t := range flight {
		if t.lane != laneCreate {
			continue
		}
		pendingCreates++
		if _, ok := agents[strings.TrimPrefix(t.key, "create/")]; !ok {
			served[t.queueID] = true
			pl.keep(&agentView{template: t.template}, "creating")
		}
	}

	for _, name := range names {
		a := agents[name]
		tr := p.trackOf(name, now)
		t, hasT := p.cfg.Templates[a.template]
		it, queued := inQueue[a.queueID]
		if queued && tr.queuedAt.IsZero() {
			tr.queuedAt = it.InQueueSince
		}
		p.observeSteps(ctx, a, tr)
		running := a.node != nil && len(a.node.Running) > 0
		var events []corev1.Event
		if a.pod != nil {
			events = p.events.of(a.name)
		}

		if _, ok := flight[deleteKey(name)]; ok {
			// Being deleted: nothing to decide until that is done.
			pl.keep(a, "terminating")
			continue
		}
		_, creating := flight[createKey(name)]
		if a.pod != nil {
			p.podSeen(name)
		}
		if a.pod != nil && a.pod.DeletionTimestamp != nil {
			p.podGoing(name)
		}
		if a.node == nil && a.pod != nil && (a.pod.DeletionTimestamp != nil ||
			(!deleted[name].IsZero() && now.Sub(deleted[name]) < podMadeWait)) {
			// Deleted already: the pod is terminating (or the informer has
			// not shown the delete yet). Nothing to do, and asking again
			// costs a call each cycle; it still holds an instance, so it
			// counts against the caps until it is gone.
			pl.keep(a, "terminating")
			continue
		}

		switch {
		case running:
			tr.fresh = false
			if tr.ranSince.IsZero() {
				tr.ranSince = now
				tr.build = a.node.Running[0]
				p.step(ctx, a, tr, stepBuildStarted, now)
			}
			if !a.node.TemporarilyOffline {
				// One build per agent: once this build ends, Jenkins would
				// hand the idle node any waiting item of the label before
				// the next cycle deletes it.
				pl.add(laneOffline, offlineKey(name), p.markOffline(a, tr.build))
			}
			if creating {
				// The pod's creation is finishing (its Secret being handed
				// over); the informer may not show the pod yet.
				pl.keep(a, "building")
				continue
			}
			dead, f := p.deadUnderBuild(a, t, tr, events, now)
			if dead {
				p.m.failures.Add(ctx, 1, metric.WithAttributes(attribute.String("template", a.template),
					attribute.String("reason", string(f.Reason)), attribute.String("outcome", "died_mid_build")))
				// The commit already says the spot instance was going: the
				// end it announced needs no second report.
				report := !tr.reclaimReported || f.Reason != eci.ReasonSpotReclaimed
				pl.add(laneDelete, deleteKey(name), p.deleteAgent(a, tr, "failed"))
				pl.add(laneDelete, "report/"+name, p.reportDied(a, tr, it, f, report))
				continue
			}
			// A spot instance about to be reclaimed (ECI's SpotToBeReleased,
			// 3-5 minutes ahead, often only as an Event) under a running
			// build. ferry reports it at once — Event, log, OnFailure with
			// the build — so the commit status says the instance is being
			// reclaimed instead of the build seeming to hang, but leaves the
			// build running: it may well finish in those minutes, and then
			// its own result replaces the report on the commit (OnFailure
			// does not cancel anything). Deleting the agent now would abort
			// a build that could have succeeded, and ferry cannot move a
			// running build. The agent gets no other work: it is offline
			// for Jenkins from the start of its build (markOffline above),
			// and once the build ends, or the instance goes (Failed,
			// Expired: deadUnderBuild), it is deleted like any other. The
			// mark lives in memory: a restarted provisioner reports again.
			if !tr.reclaimReported && a.pod != nil && a.pod.DeletionTimestamp == nil {
				if f := eci.Classify(a.pod, events, t.ClassifyOptions(now, a.node.Connected())); f.Reason == eci.ReasonSpotReclaimed {
					tr.reclaimReported = true
					p.m.failures.Add(ctx, 1, metric.WithAttributes(attribute.String("template", a.template),
						attribute.String("reason", string(f.Reason)), attribute.String("outcome", "reclaim_warned")))
					pl.add(laneDelete, "reclaim/"+name, p.reportReclaim(a, tr, it, f))
				}
			}
			if tr.reclaimReported {
				pl.keep(a, "reclaiming")
				continue
			}
			pl.keep(a, "building")

		case !tr.ranSince.IsZero() || ranBuild(a.node):
			// It ran a build and is idle now: the build is over. The
			// offline mark says so after a restart too.
			pl.add(laneDelete, deleteKey(name), p.deleteAgent(a, tr, "build_over"))
			if a.pod != nil {
				// Its pod terminates for a while yet: no replacement within
				// the caps until it is gone.
				pl.keep(a, "terminating")
			}

		case creating:
			// Its node, Secret or pod is being created: nothing to decide
			// until that is done.
			if queued {
				served[a.queueID] = true
			}
			pl.keep(a, "creating")

		case a.node == nil:
			// A pod or Secret without its node cannot serve anything: the
			// node is created first and deleted first, so this is what a
			// crash in between leaves, or someone deleted the node.
			created := now
			if a.pod != nil {
				created = a.pod.CreationTimestamp.Time
			}
			if created.IsZero() || created.After(tr.firstSeen) {
				created = tr.firstSeen
			}
			if !p.cfg.DisableGC && now.Sub(created) >= p.cfg.GCGrace {
				pl.add(laneDelete, deleteKey(name), p.collect(a, tr))
				continue
			}
			if !p.cfg.DisableGC {
				pl.after(p.cfg.GCGrace - now.Sub(created))
			}
			pl.keep(a, "orphan")

		case !hasT:
			// A node of ferry's whose template is unknown (removed from the
			// configuration): nothing will manage it.
			if !p.cfg.DisableGC && now.Sub(tr.firstSeen) >= p.cfg.GCGrace {
				pl.add(laneDelete, deleteKey(name), p.collect(a, tr))
				continue
			}
			pl.keep(a, "orphan")

		default:
			// An idle node that has not run a build (as far as ferry knows).
			if queued {
				tr.fresh = true
				tr.goneSince = time.Time{}
			} else if tr.firstSeen.Equal(now) {
				// First look at it (e.g. after a restart) and its own item
				// has left the queue: the running and ran-a-build cases
				// above exclude agents that run or ran a build (ferry marks
				// agents offline as their build starts), so it ran none and
				// may serve another waiting item of its template. Without
				// this a restarted provisioner created a second agent for
				// an item whose build Jenkins gave to another agent.
				tr.fresh = true
			}
			if a.pod != nil && a.pod.DeletionTimestamp == nil {
				// Events count here as the pod's status does. A spot
				// instance about to be reclaimed (SpotReclaimed is retryable
				// with fallback) is replaced before it takes a build: the
				// next attempt uses the template's next fallback level, e.g.
				// on-demand instead of spot.
				f := eci.Classify(a.pod, events, t.ClassifyOptions(now, a.node.Connected()))
				if f.Failed() {
					p.fail(ctx, pl, a, tr, t, it, queued, f, now, served)
					continue
				}
			}
			if queued {
				served[a.queueID] = true
				switch {
				case a.pod == nil:
					needPod = append(needPod, a)
					pl.keep(a, "creating")
				case !a.node.Connected():
					pl.keep(a, "starting")
					if a.pod.Status.Phase == corev1.PodRunning {
						p.awaitBuild(pl, waitingOf[a.template])
					}
				default:
					pl.keep(a, "idle")
					p.awaitBuild(pl, waitingOf[a.template])
				}
				continue
			}
			if tr.goneSince.IsZero() {
				tr.goneSince = now
			}
			if tr.fresh && a.pod != nil && a.pod.DeletionTimestamp == nil {
				spares[a.template] = append(spares[a.template], a)
				continue
			}
			if wait := settle - now.Sub(tr.goneSince); wait > 0 {
				pl.after(wait)
				pl.keep(a, "settling")
				continue
			}
			pl.add(laneDelete, deleteKey(a.name), p.deleteAgent(a, tr, "item_gone"))
		}
	}

	// Spares (fresh agents whose own item left the queue, typically given
	// to another item of the label) serve the items left without an agent.
	var orphans []waitingItem
	for _, w := range waiting {
		if !served[w.item.ID] {
			orphans = append(orphans, w)
		}
	}
	for tmpl, sp := range spares {
		for _, a := range sp {
			i := slices.IndexFunc(orphans, func(w waitingItem) bool { return w.template == tmpl && !served[w.item.ID] })
			if i >= 0 {
				served[orphans[i].item.ID] = true
				state := "idle"
				if !a.node.Connected() {
					state = "starting"
				}
				pl.keep(a, state)
				p.awaitBuild(pl, waitingOf[a.template])
				continue
			}
			tr := p.agents[a.name]
			if wait := settle - now.Sub(tr.goneSince); wait > 0 {
				pl.after(wait)
				pl.keep(a, "settling")
				continue
			}
			pl.add(laneDelete, deleteKey(a.name), p.deleteAgent(a, tr, "item_gone"))
		}
	}

	// Pods for nodes that have none yet (informer lag, a restart between
	// the node and the pod, or a retry waiting out its backoff).
	kubePaused := p.kubePaused(now)
	for _, a := range needPod {
		itr := p.itemOf(a.queueID)
		if itr.notBefore.IsZero() && itr.nextAttempt == 0 {
			// A retry whose backoff a restarted provisioner did not see
			// begin: its node says when it ends.
			itr.notBefore = descriptionNotBefore(a.node.Description)
		}
		switch {
		case !made[a.name].IsZero() && now.Sub(made[a.name]) < podMadeWait:
			// Created already; the informer has not shown it yet.
		case kubePaused > 0:
			pl.after(kubePaused)
		case now.Before(itr.notBefore):
			pl.after(itr.notBefore.Sub(now))
		default:
			fetch, create := p.createPod(a.name, a.queueID, a.attempt, a.template, p.fallbackOf(a), inQueue[a.queueID])
			pl.acts = append(pl.acts, task{key: createKey(a.name), lane: laneCreate, queueID: a.queueID, template: a.template,
				run: fetch, then: create})
		}
	}

	// New agents for the items still unserved, in queue order, within caps.
	for _, w := range waiting {
		q := w.item.ID
		if served[q] {
			continue
		}
		itr := p.itemOf(q)
		if itr.gaveUp {
			continue
		}
		t := p.cfg.Templates[w.template]
		base := max(itr.nextAttempt, maxAttempt[q]+1, 1)
		attempt := max(base, itr.maxSeen+1)
		if base-itr.swapped > t.Retry.MaxAttempts && maxAttempt[q] > 0 {
			// Earlier attempts are gone and the memory of why is lost (a
			// restart): the limit still holds.
			itr.gaveUp = true
			pl.add(laneDelete, fmt.Sprintf("giveup/%d", q), p.giveUp(nil, w.item, w.template, eci.AgentName(q, attempt-1),
				eci.Failure{Reason: eci.ReasonUnknown, Message: fmt.Sprintf("%d agent attempts did not start the build", attempt-1)}))
			continue
		}
		if now.Before(itr.notBefore) {
			pl.after(itr.notBefore.Sub(now))
			pl.waiting[[2]string{w.template, "backoff"}]++
			continue
		}
		if pl.live >= p.cfg.MaxAgents || (t.MaxAgents > 0 && pl.perTmpl[w.template] >= t.MaxAgents) {
			pl.waiting[[2]string{w.template, "cap"}]++
			continue
		}
		if d := p.kubePaused(now); d > 0 {
			pl.after(d)
			pl.waiting[[2]string{w.template, "quota"}]++
			continue
		}
		if pendingCreates >= maxPendingCreates*p.cfg.Parallelism {
			// Enough creations queued to keep the create lane busy until
			// the next cycle; more would only go stale there.
			pl.waiting[[2]string{w.template, "pacing"}]++
			continue
		}
		pendingCreates++
		if attempt > 1 && itr.nextAttempt != attempt && itr.swapAttempt != attempt {
			// Not a retry after a failure: the item's earlier agent ran
			// another item's build, or is going. Counted once, however
			// often making it has to be tried again.
			itr.swapped++
			itr.swapAttempt = attempt
		}
		// A retry after a failure ferry saw uses the level it chose then;
		// any other new attempt (its item's earlier agent served another
		// item, or a restart lost the memory) keeps the highest level the
		// item's agents have, since nothing new failed.
		fallback := levels[q]
		if itr.nextAttempt == attempt {
			fallback = itr.fallback
		}
		pl.live++
		pl.perTmpl[w.template]++
		pl.states[[2]string{w.template, "creating"}]++
		run, then := p.createAgent(w.item, w.template, attempt, fallback)
		pl.acts = append(pl.acts, task{key: createKey(eci.AgentName(q, attempt)), lane: laneCreate, queueID: q, template: w.template,
			run: run, then: then})
	}

	p.planSecrets(pl, now, pods, secrets)

	// Forget what no longer exists, with its events.
	for name, tr := range p.agents {
		if !tr.seen {
			delete(p.agents, name)
			p.events.forget(name)
			p.podSeen(name)
			p.podGoing(name)
		}
	}
	p.events.prune(func(name string) bool { return p.agents[name] != nil }, now)
	for q := range p.items {
		if _, ok := inQueue[q]; !ok {
			delete(p.items, q)
		}
	}
	return pl
}

// awaitBuildPoll is how soon the next cycle looks at Jenkins while an agent
// is about to take its build (its pod runs, or it is connected and idle)
// and other items of its template wait: a build that started and ended
// between two looks would leave its agent online, free to take one of
// them, so those looks come faster than the resync. With no other item
// waiting there is nothing to take, and an item that comes is a kick.
const awaitBuildPoll = 500 * time.Millisecond

func (p *Provisioner) awaitBuild(pl *plan, waiting int) {
	if waiting > 1 {
		pl.after(min(awaitBuildPoll, p.cfg.Resync))
	}
}

// ranBuild reports an idle node ferry took offline as its build started:
// that build is over.
func ranBuild(n *jenkins.Computer) bool {
	return n != nil && n.OfflineWith(OneBuildReason) && len(n.Running) == 0
}

// fallbackOf returns the fallback level of an existing agent: what its pod
// says, else what its node's description says, else what ferry remembers
// of its item, else 0.
func (p *Provisioner) fallbackOf(a *agentView) int {
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
	if it := p.items[a.queueID]; it != nil && it.nextAttempt == a.attempt {
		return it.fallback
	}
	return 0
}

// deadUnderBuild reports whether a running build has lost its agent: the
// pod is gone, ended or going, or the node has been offline for longer
// than the template's connect timeout.
func (p *Provisioner) deadUnderBuild(a *agentView, t eci.Template, tr *track, events []corev1.Event, now time.Time) (bool, eci.Failure) {
	// Offline is not enough: ferry takes agents offline itself as their
	// build starts; what matters is whether the agent is connected.
	if !a.node.Connected() {
		if tr.offlineSince.IsZero() {
			tr.offlineSince = now
		}
	} else {
		tr.offlineSince = time.Time{}
	}
	switch {
	case a.pod == nil:
		return true, eci.Classify(nil, nil, eci.ClassifyOptions{Now: now})
	case a.pod.DeletionTimestamp != nil:
		return true, eci.Failure{Reason: eci.ReasonPodGone, Message: "the agent pod was deleted during the build"}
	case a.pod.Status.Phase == corev1.PodFailed || a.pod.Status.Phase == corev1.PodSucceeded:
		f := eci.Classify(a.pod, events, t.ClassifyOptions(now, true))
		if !f.Failed() {
			f = eci.Failure{Reason: eci.ReasonContainerFailed, Message: "the agent container exited during the build"}
		}
		return true, f
	case !tr.offlineSince.IsZero() && now.Sub(tr.offlineSince) > t.WithDefaults().ConnectTimeout.Duration:
		return true, eci.Failure{Reason: eci.ReasonNodeLost, Message: fmt.Sprintf("the agent has been disconnected from Jenkins for %s during the build", now.Sub(tr.offlineSince).Round(time.Second))}
	}
	return false, eci.Failure{}
}

// fail handles an agent whose pod cannot serve: delete it, then retry with
// the template's fallback and backoff, or give up on the item.
func (p *Provisioner) fail(ctx context.Context, pl *plan, a *agentView, tr *track, t eci.Template, it jenkins.QueueItem, queued bool, f eci.Failure, now time.Time, served map[int64]bool) {
	pl.add(laneDelete, deleteKey(a.name), p.deleteAgent(a, tr, "failed"))
	attrs := func(outcome string) metric.MeasurementOption {
		return metric.WithAttributes(attribute.String("template", a.template),
			attribute.String("reason", string(f.Reason)), attribute.String("outcome", outcome))
	}
	p.log.Info("agent failed", "agent", a.name, "queue_id", a.queueID, "template", a.template, "reason", f.Reason, "message", f.Message)
	if !queued {
		p.m.failures.Add(ctx, 1, attrs("item_gone"))
		return
	}
	itr := p.itemOf(a.queueID)
	served[a.queueID] = true
	if itr.gaveUp {
		return
	}
	t = t.WithDefaults()
	if !f.Retryable || a.attempt-itr.swapped >= t.Retry.MaxAttempts {
		itr.gaveUp = true
		p.m.failures.Add(ctx, 1, attrs("gave_up"))
		pl.add(laneDelete, fmt.Sprintf("giveup/%d", a.queueID), p.giveUp(a.pod, it, a.template, a.name, f))
		return
	}
	p.m.failures.Add(ctx, 1, attrs("retried"))
	next := a.attempt + 1
	level := p.fallbackOf(a)
	if f.Fallback {
		level++
	}
	itr.nextAttempt, itr.fallback = next, level
	delay := t.Retry.Delay(next)
	itr.notBefore = now.Add(delay)
	pl.after(delay)
	pl.keep(&agentView{template: a.template}, "retrying")
	if p.rec != nil && a.pod != nil {
		p.rec.Eventf(a.pod, corev1.EventTypeWarning, "AgentRetry", "%s; retrying as attempt %d of %d (fallback level %d) in %s",
			f.String(), next, t.Retry.MaxAttempts, level, delay)
	}
	// The next attempt's node is created now: it records the attempt in
	// Jenkins, so a restarted provisioner continues the count. Its pod
	// follows after the backoff.
	pl.acts = append(pl.acts, task{key: createKey(eci.AgentName(a.queueID, next)), lane: laneCreate, queueID: a.queueID,
		template: a.template, run: p.createNode(it, a.template, next, level, itr.notBefore)})
}

// kubePaused returns how long creations still wait after a quota or
// throttling answer from the API server.
func (p *Provisioner) kubePaused(now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Before(p.kubeBackoff) {
		return p.kubeBackoff.Sub(now)
	}
	return 0
}

// pauseKube backs creations off after a quota or throttling answer,
// doubling up to the resync period times 30.
func (p *Provisioner) pauseKube(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock.Now()
	if now.Before(p.kubeBackoff) {
		return
	}
	d := p.kubeBackoffDelay * 2
	if d == 0 {
		d = time.Second
	}
	d = min(d, 30*p.cfg.Resync)
	p.kubeBackoffDelay = d
	p.kubeBackoff = now.Add(d)
	p.log.Warn("the API server refused an agent pod for quota or throttling; pausing creations", "pause", d, "error", err)
}

func (p *Provisioner) kubeOK() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.kubeBackoffDelay = 0
}

// observeSteps records the step latencies of an agent's pod and node once
// each.
func (p *Provisioner) observeSteps(ctx context.Context, a *agentView, tr *track) {
	if a.pod != nil {
		if c := podCondition(a.pod, corev1.PodScheduled); c != nil && c.Status == corev1.ConditionTrue {
			p.step(ctx, a, tr, stepScheduled, c.LastTransitionTime.Time)
		}
		if a.pod.Status.Phase == corev1.PodRunning {
			at := p.clock.Now()
			for _, cs := range a.pod.Status.ContainerStatuses {
				if cs.State.Running != nil {
					at = cs.State.Running.StartedAt.Time
				}
			}
			p.step(ctx, a, tr, stepRunning, at)
		}
	}
	if a.node != nil && a.node.Connected() {
		p.step(ctx, a, tr, stepConnected, p.clock.Now())
	}
}

func (p *Provisioner) step(ctx context.Context, a *agentView, tr *track, step string, at time.Time) {
	if tr.steps[step] || tr.queuedAt.IsZero() || at.IsZero() {
		return
	}
	tr.steps[step] = true
	p.m.step.Record(ctx, max(0, at.Sub(tr.queuedAt).Seconds()), metric.WithAttributes(
		attribute.String("template", a.template), attribute.String("step", step)))
}

func podCondition(pod *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == t {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}
