package provision

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/pkg/jenkins"
)

// world is one consistent look at everything a cycle decides on, taken
// once per cycle by observe. Nothing in it changes while the cycle
// classifies and decides.
type world struct {
	now time.Time

	// What Jenkins answered to the cycle's two polls.
	computers []jenkins.Computer
	queue     []jenkins.QueueItem
	// What the informer caches hold: ferry's pods and Secrets, and the
	// recent Warning events of each agent pod, by pod name.
	pods    []*corev1.Pod
	secrets []*corev1.Secret
	events  map[string][]corev1.Event

	// flight holds the actions in flight, by key, with those that
	// succeeded after the polls began (their effect may not show yet).
	flight map[string]act
	// made and deleted hold when pods were created or deleted recently,
	// until the informer shows them (see podMadeWait).
	made, deleted map[string]time.Time
	// making holds the Secrets whose batch is still making its pods.
	making map[string]bool
	// kubeBackoff is when creations may resume after a quota or
	// throttling answer from the API server.
	kubeBackoff time.Time
	// rerunAsked holds the agents whose lost build's re-run the
	// dispatcher accepted (see infraLost).
	rerunAsked map[string]bool
	// images holds the templates' image verdicts (see image.go).
	images map[string]imageCheck
	// poolReplicas holds the spec.replicas of each template's AgentPool,
	// for those whose object exists and sets it (see warm.go); pools
	// each template's AgentPool that exists; poolUnknown the templates
	// whose AgentPool is not known yet (the informer has not synced).
	poolReplicas map[string]int
	// scheduleNow is the time warm pool schedules are read at (see
	// Config.ScheduleClock); zero: now.
	scheduleNow time.Time
	pools       map[string]poolView
	poolUnknown map[string]bool

	// The join of the above (see join).
	agents map[string]*agentView
	// names are the agents' names, sorted.
	names []string
	// anchors holds the templates whose anchor node exists.
	anchors map[string]bool
	inQueue map[int64]jenkins.QueueItem
	// waiting are the buildable items a template serves, by queue id.
	waiting []waitingItem
	// waitingOf counts the waiting items of each template.
	waitingOf map[string]int
}

// agentView is one agent name as Jenkins and Kubernetes show it now.
type agentView struct {
	name     string
	queueID  int64
	attempt  int
	template string
	node     *jenkins.Computer
	pod      *corev1.Pod
	// warm: a warm agent (see warm.go), made before any item waited.
	warm bool
}

// waitingItem is a buildable queue item a template serves.
type waitingItem struct {
	item     jenkins.QueueItem
	template string
}

// inFlight reports whether the action with the key is in flight.
func (w *world) inFlight(key string) bool {
	_, ok := w.flight[key]
	return ok
}

// deletedRecently reports a pod ferry deleted so recently that the informer
// may not show it terminating yet.
func (w *world) deletedRecently(name string) bool {
	at := w.deleted[name]
	return !at.IsZero() && w.now.Sub(at) < podMadeWait
}

// madeRecently reports a pod ferry created so recently that the informer
// may not show it yet.
func (w *world) madeRecently(name string) bool {
	at := w.made[name]
	return !at.IsZero() && w.now.Sub(at) < podMadeWait
}

// kubePaused returns how long creations still wait after a quota or
// throttling answer.
func (w *world) kubePaused() time.Duration {
	if w.now.Before(w.kubeBackoff) {
		return w.kubeBackoff.Sub(w.now)
	}
	return 0
}

// poll reads Jenkins: computers first, then the queue, so that an item
// that has left the queue by the time the queue is read and runs on an
// agent shows as running in the next cycle at the latest (see settle).
func (p *Provisioner) poll(ctx context.Context) ([]jenkins.Computer, []jenkins.QueueItem, error) {
	p.polledAt = p.clock.Now()
	comps, err := p.cfg.Jenkins.Computers(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("reconcile: %w", err)
	}
	items, err := p.cfg.Jenkins.Queue(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("reconcile: %w", err)
	}
	return comps, items, nil
}

// observe takes the cycle's look at the world: the polls' answers, the
// informer caches, the events and what the lanes are doing.
func (p *Provisioner) observe(comps []jenkins.Computer, items []jenkins.QueueItem) *world {
	now := p.clock.Now()
	p.lastPoll = now.Sub(p.polledAt)
	w := &world{now: now, computers: comps, queue: items, pods: p.listPods(), secrets: p.listSecrets()}
	w.flight, w.made, w.deleted, w.kubeBackoff = p.inFlight(p.polledAt)
	w.making = p.batch.makingNow()
	w.rerunAsked = p.rerunsAsked(now)
	w.images = p.imagesNow()
	if len(p.rules.warm) > 0 {
		w.scheduleNow = p.cfg.ScheduleClock.Now()
	}
	w.pools, w.poolUnknown = p.poolsNow()
	w.poolReplicas = map[string]int{}
	for t, v := range w.pools {
		if v.set {
			w.poolReplicas[t] = v.replicas
		}
	}
	p.join(w)
	w.events = map[string][]corev1.Event{}
	for _, name := range w.names {
		if w.agents[name].pod != nil {
			w.events[name] = p.events.of(name)
		}
	}
	return w
}

// join joins Jenkins nodes and pods by agent name and finds the queue
// items ferry serves.
func (p *Provisioner) join(w *world) {
	w.agents, w.anchors = joinAgents(w.computers, w.pods)
	// nodeTemplate maps ferry's node names to their template, for why
	// sentences that name a node instead of a label.
	nodeTemplate := map[string]string{}
	for t := range w.anchors {
		nodeTemplate[anchorName(t)] = t
	}
	w.names = make([]string, 0, len(w.agents))
	for name, a := range w.agents {
		w.names = append(w.names, name)
		if a.template == "" && a.node != nil {
			a.template = p.templateOfLabels(a.node.Labels)
		}
		if a.node != nil && a.template != "" {
			nodeTemplate[a.name] = a.template
		}
	}
	sort.Strings(w.names)

	w.inQueue = make(map[int64]jenkins.QueueItem, len(w.queue))
	w.waiting = nil
	for _, it := range w.queue {
		w.inQueue[it.ID] = it
		if it.Blocked || !it.Buildable {
			continue
		}
		if t, ok := p.templateFor(it, nodeTemplate); ok {
			w.waiting = append(w.waiting, waitingItem{item: it, template: t})
		}
	}
	sort.SliceStable(w.waiting, func(i, j int) bool { return w.waiting[i].item.ID < w.waiting[j].item.ID })
	w.waitingOf = map[string]int{}
	for _, wi := range w.waiting {
		w.waitingOf[wi.template]++
	}
}

// joinAgents joins Jenkins nodes and pods by agent name, and lists the
// templates whose anchor exists.
func joinAgents(comps []jenkins.Computer, pods []*corev1.Pod) (map[string]*agentView, map[string]bool) {
	agents := map[string]*agentView{}
	get := func(name string) *agentView {
		a := agents[name]
		if a == nil {
			q, att, ok := parseAgentName(name)
			warm := !ok && isWarmName(name)
			if !ok && !warm {
				return nil
			}
			a = &agentView{name: name, queueID: q, attempt: att, warm: warm}
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
	return agents, anchors
}

// templateNames returns the template names in a stable order.
func (p *Provisioner) templateNames() []string {
	names := make([]string, 0, len(p.cfg.Templates))
	for n := range p.cfg.Templates {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
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
