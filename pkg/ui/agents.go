package ui

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/pkg/jenkins"
	"github.com/ferryci/ferry/pkg/provision"
	"github.com/ferryci/ferry/pkg/store"
)

// Agents is what the agents page reads.
type Agents interface {
	Snapshot(ctx context.Context) (AgentSnapshot, error)
}

// AgentState is what an agent is doing, as the page groups them.
type AgentState string

// Agent states, in the order of an agent's life.
const (
	AgentCreating AgentState = "creating" // pod made, not running yet
	AgentStarting AgentState = "starting" // pod runs, agent not connected to Jenkins
	AgentWaiting  AgentState = "waiting"  // connected, waiting for its build
	AgentBuilding AgentState = "building" // running its build
	AgentEnding   AgentState = "ending"   // build over or pod deleted, being removed
	AgentFailed   AgentState = "failed"   // the pod failed
	AgentOrphan   AgentState = "no-node"  // running pod without a Jenkins node
	agentStates              = 7
)

// AgentStates lists the states in page order.
var AgentStates = []AgentState{AgentCreating, AgentStarting, AgentWaiting, AgentBuilding, AgentEnding, AgentFailed, AgentOrphan}

// StateOf classifies one agent from its pod and its Jenkins node (nil:
// none): a pure function of the two.
func StateOf(pod *corev1.Pod, node *jenkins.Computer) AgentState {
	switch {
	case pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded:
		return AgentEnding
	case pod.Status.Phase == corev1.PodFailed:
		return AgentFailed
	case pod.Status.Phase != corev1.PodRunning:
		return AgentCreating
	case node == nil:
		return AgentOrphan
	case len(node.Running) > 0 || !node.Idle:
		return AgentBuilding
	case node.TemporarilyOffline:
		return AgentEnding
	case node.Offline:
		return AgentStarting
	}
	return AgentWaiting
}

// AgentRow is one agent on the page.
type AgentRow struct {
	Name, Template, Job, Specs, Spot, Zone string
	State                                  AgentState
	Attempt, Fallback                      string
	OnDemand                               bool
	// Warm: the pod is a warm agent's (its ferry.dev/warm-pool label).
	Warm    bool
	Created time.Time
	Build   string
}

// AgentFailure is a provisioner's Warning Event about an agent: a retry,
// a give-up, a build lost.
type AgentFailure struct {
	Agent, Reason, Message string
	Count                  int32
	Last                   time.Time
}

// TemplateUsage is what a template's agents cost against what they were
// used for today (UTC): pod-seconds (what ECI bills) and build-seconds of
// the agents that ended, from the store (durable, the same on every
// replica), and the pod-seconds live agents ran so far today.
type TemplateUsage struct {
	Template                 string
	PodSeconds, BuildSeconds float64
	Agents                   int64
	LivePodSeconds           float64
	Ratio                    string
}

// UsageSource is the store's per-day agent usage (store.Store has it).
type UsageSource interface {
	Usage(ctx context.Context, day string) ([]store.UsageCount, error)
}

// AgentSnapshot is the agents page's data.
type AgentSnapshot struct {
	At       time.Time
	Agents   []AgentRow
	ByState  []StateCount
	Failures []AgentFailure
	Usage    []TemplateUsage
	// UsageDay is the UTC day Usage covers (since its 00:00 UTC);
	// UsageError says why the store's figures could not be read.
	UsageDay   string
	UsageError string
	// Warm is each warm pool; WarmFromLeader says whether its sizes,
	// states and sums come from this replica's provisioner (it leads),
	// else only the pods' warm-pool labels are known here.
	Warm           []WarmRow
	WarmFromLeader bool
	WarmAt, Since  time.Time
}

// StateCount is the number of agents of a template in a state.
type StateCount struct {
	Template string
	Counts   [agentStates]int
}

// Annotations ECI reads on agent pods (rendered by package eci).
const (
	annotationSpecs = "k8s.aliyun.com/eci-use-specs"
	annotationSpot  = "k8s.aliyun.com/eci-spot-strategy"
)

// Provisioner reasons of Warning Events about agents (package provision).
var failureReasons = []string{"AgentRetry", "AgentFailed", "AgentLost", "AgentLostRerun"}

// KubeAgents reads agents from the cluster and Jenkins, on any replica:
// ferry's agent pods, its Jenkins nodes, the provisioner's Warning
// Events, and today's pod- and build-seconds from the store.
type KubeAgents struct {
	Kube      kubernetes.Interface
	Namespace string
	Jenkins   interface {
		Computers(ctx context.Context) ([]jenkins.Computer, error)
	}
	// Usage is the store's agent usage; nil: only live agents' seconds.
	Usage UsageSource
	// Warm is the provisioner's view of its warm pools
	// (*provision.Provisioner); nil: none.
	Warm WarmSource
	Now  func() time.Time
}

// Snapshot reads the agents now.
func (k KubeAgents) Snapshot(ctx context.Context) (AgentSnapshot, error) {
	now := time.Now()
	if k.Now != nil {
		now = k.Now()
	}
	pods, err := k.Kube.CoreV1().Pods(k.Namespace).List(ctx, metav1.ListOptions{LabelSelector: eci.ManagedSelector + "," + eci.LabelAgent})
	if err != nil {
		return AgentSnapshot{}, fmt.Errorf("list agent pods in %s: %w", k.Namespace, err)
	}
	comps, err := k.Jenkins.Computers(ctx)
	if err != nil {
		return AgentSnapshot{}, fmt.Errorf("list Jenkins nodes: %w", err)
	}
	events, err := k.Kube.CoreV1().Events(k.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "type=Warning,involvedObject.kind=Pod"})
	if err != nil {
		return AgentSnapshot{}, fmt.Errorf("list agent events in %s: %w", k.Namespace, err)
	}
	snap := Build(now, pods.Items, comps, events.Items)
	snap.UsageDay = store.UsageDay(now)
	var ended []store.UsageCount
	if k.Usage != nil {
		if ended, err = k.Usage.Usage(ctx, snap.UsageDay); err != nil {
			// The rest of the page is still worth showing.
			snap.UsageError = "today's pod- and build-seconds could not be read from the store"
			ended = nil
		}
	}
	snap.Usage = Usage(ended, snap.Agents, now)
	var view provision.WarmView
	ok := false
	if k.Warm != nil {
		view, ok = k.Warm.WarmPools()
	}
	snap.Warm, snap.WarmFromLeader = WarmRows(view, ok, snap.Agents, now)
	if snap.WarmFromLeader {
		snap.WarmAt, snap.Since = view.At, view.Since
	}
	return snap, nil
}

// Build makes the snapshot from what was read; pure.
func Build(now time.Time, pods []corev1.Pod, comps []jenkins.Computer, events []corev1.Event) AgentSnapshot {
	nodes := map[string]*jenkins.Computer{}
	for i := range comps {
		nodes[comps[i].Name] = &comps[i]
	}
	snap := AgentSnapshot{At: now}
	counts := map[string]*StateCount{}
	for i := range pods {
		p := &pods[i]
		st := StateOf(p, nodes[p.Name])
		r := AgentRow{Name: p.Name, Template: p.Labels[eci.LabelTemplate], Job: p.Annotations[eci.AnnotationJob],
			Specs: p.Annotations[annotationSpecs], Spot: p.Annotations[annotationSpot], State: st,
			Attempt: p.Labels[eci.LabelAttempt], Fallback: p.Annotations[eci.AnnotationFallback],
			OnDemand: p.Annotations[eci.AnnotationOnDemand] != "", Created: p.CreationTimestamp.Time, Zone: p.Spec.NodeName,
			Warm: p.Labels[provision.LabelWarmPool] != ""}
		if r.Spot == "" || r.OnDemand {
			r.Spot = "on-demand"
		}
		if n := nodes[p.Name]; n != nil && len(n.Running) > 0 {
			r.Build = n.Running[0].URL
		}
		snap.Agents = append(snap.Agents, r)
		sc := counts[r.Template]
		if sc == nil {
			sc = &StateCount{Template: r.Template}
			counts[r.Template] = sc
		}
		sc.Counts[slices.Index(AgentStates, st)]++
	}
	slices.SortFunc(snap.Agents, func(a, b AgentRow) int {
		if c := strings.Compare(a.Template, b.Template); c != 0 {
			return c
		}
		return a.Created.Compare(b.Created)
	})
	for _, sc := range counts {
		snap.ByState = append(snap.ByState, *sc)
	}
	slices.SortFunc(snap.ByState, func(a, b StateCount) int { return strings.Compare(a.Template, b.Template) })
	for _, e := range events {
		if !slices.Contains(failureReasons, e.Reason) || !strings.HasPrefix(e.InvolvedObject.Name, "ferry-agent-") {
			continue
		}
		last := e.LastTimestamp.Time
		if last.IsZero() {
			last = e.EventTime.Time
		}
		if last.IsZero() {
			last = e.CreationTimestamp.Time
		}
		snap.Failures = append(snap.Failures, AgentFailure{Agent: e.InvolvedObject.Name, Reason: e.Reason, Message: e.Message, Count: max(e.Count, 1), Last: last})
	}
	slices.SortFunc(snap.Failures, func(a, b AgentFailure) int { return b.Last.Compare(a.Last) })
	if len(snap.Failures) > 50 {
		snap.Failures = snap.Failures[:50]
	}
	return snap
}

// Usage adds to the store's figures of the agents that ended today (UTC)
// the seconds the live agents ran since 00:00 UTC, by template; pure.
func Usage(ended []store.UsageCount, agents []AgentRow, now time.Time) []TemplateUsage {
	by := map[string]*TemplateUsage{}
	get := func(t string) *TemplateUsage {
		if by[t] == nil {
			by[t] = &TemplateUsage{Template: t}
		}
		return by[t]
	}
	for _, c := range ended {
		u := get(c.Template)
		u.PodSeconds, u.BuildSeconds, u.Agents = c.PodSeconds, c.BuildSeconds, c.Agents
	}
	midnight := now.UTC().Truncate(24 * time.Hour)
	for _, a := range agents {
		start := a.Created
		if start.Before(midnight) {
			start = midnight
		}
		if !a.Created.IsZero() && now.After(start) {
			get(a.Template).LivePodSeconds += now.Sub(start).Seconds()
		}
	}
	out := make([]TemplateUsage, 0, len(by))
	for _, u := range by {
		if u.PodSeconds > 0 {
			u.Ratio = fmt.Sprintf("%.0f%%", 100*u.BuildSeconds/u.PodSeconds)
		}
		out = append(out, *u)
	}
	slices.SortFunc(out, func(a, b TemplateUsage) int { return strings.Compare(a.Template, b.Template) })
	return out
}

// WarmSource is the provisioner's view of its warm pools.
type WarmSource interface {
	WarmPools() (provision.WarmView, bool)
}

// WarmRow is a template's warm pool on the page.
type WarmRow struct {
	Template string
	// Desired and Source: the size it is brought to and what set it;
	// States counts its free warm agents in provision.WarmStates order.
	// Known only on the provisioner's leader.
	Desired int
	Source  string
	States  []int64
	// Pods counts the live pods labelled as warm agents (any replica).
	Pods         int
	Hits, Misses int64
	HitRate      string
	IdleSeconds  float64
}

// warmFresh is how old the provisioner's last cycle may be for its view
// to count as current: a replica that stopped leading keeps its last.
const warmFresh = 2 * time.Minute

// WarmRows makes the warm pools' rows: from the provisioner's view when
// this replica leads it (ok and fresh), else from the pods' labels alone;
// pure. It reports whether the view was used.
func WarmRows(view provision.WarmView, ok bool, agents []AgentRow, now time.Time) ([]WarmRow, bool) {
	lead := ok && now.Sub(view.At) <= warmFresh
	by := map[string]*WarmRow{}
	get := func(t string) *WarmRow {
		if by[t] == nil {
			by[t] = &WarmRow{Template: t}
		}
		return by[t]
	}
	if lead {
		for _, p := range view.Pools {
			r := get(p.Template)
			r.Desired, r.Source, r.Hits, r.Misses, r.IdleSeconds = p.Desired, p.Source, p.Hits, p.Misses, p.IdleSeconds
			for _, st := range provision.WarmStates {
				r.States = append(r.States, p.Agents[st])
			}
			if n := p.Hits + p.Misses; n > 0 {
				r.HitRate = fmt.Sprintf("%.0f%%", 100*float64(p.Hits)/float64(n))
			}
		}
	}
	for _, a := range agents {
		if a.Warm {
			get(a.Template).Pods++
		}
	}
	out := make([]WarmRow, 0, len(by))
	for _, r := range by {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b WarmRow) int { return strings.Compare(a.Template, b.Template) })
	return out, lead
}

// agentHistory keeps the agent count sampled by this replica, in memory.
type agentHistory struct {
	mu     sync.Mutex
	keep   time.Duration
	points []point
}

type point struct {
	At    time.Time
	Value float64
}

func newAgentHistory(keep time.Duration) *agentHistory { return &agentHistory{keep: keep} }

// minSpacing keeps page refreshes from piling up samples: a sample
// closer than this to the last one replaces it.
const minSpacing = 10 * time.Second

func (h *agentHistory) add(at time.Time, n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := point{At: at, Value: float64(n)}
	if l := len(h.points); l > 1 && at.Sub(h.points[l-2].At) < minSpacing {
		h.points[l-1] = p
	} else {
		h.points = append(h.points, p)
	}
	cut := 0
	for cut < len(h.points) && at.Sub(h.points[cut].At) > h.keep {
		cut++
	}
	h.points = h.points[cut:]
}

func (h *agentHistory) snapshot() []point {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.points)
}
