package ui

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/pkg/jenkins"
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
	Created                                time.Time
	Build                                  string
}

// AgentFailure is a provisioner's Warning Event about an agent: a retry,
// a give-up, a build lost.
type AgentFailure struct {
	Agent, Reason, Message string
	Count                  int32
	Last                   time.Time
}

// TemplateUsage is what a template's agents cost against what they were
// used for: pod-seconds (what ECI bills) and build-seconds.
type TemplateUsage struct {
	Template                 string
	PodSeconds, BuildSeconds float64
	Agents                   uint64
	LivePodSeconds           float64
	Ratio                    string
}

// AgentSnapshot is the agents page's data.
type AgentSnapshot struct {
	At       time.Time
	Agents   []AgentRow
	ByState  []StateCount
	Failures []AgentFailure
	Usage    []TemplateUsage
	// UsageFromMetrics is false when this replica has no provisioner
	// metrics (it is not the provisioner's leader, or nothing ended yet).
	UsageFromMetrics bool
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
// Events, and (on the provisioner's leader) its pod and build seconds.
type KubeAgents struct {
	Kube      kubernetes.Interface
	Namespace string
	Jenkins   interface {
		Computers(ctx context.Context) ([]jenkins.Computer, error)
	}
	// Metrics is the registry behind /metrics; nil: no usage figures.
	Metrics prometheus.Gatherer
	Now     func() time.Time
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
	if k.Metrics != nil {
		mfs, err := k.Metrics.Gather()
		if err == nil {
			snap.Usage, snap.UsageFromMetrics = usage(mfs, snap.Agents, now)
		}
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
			OnDemand: p.Annotations[eci.AnnotationOnDemand] != "", Created: p.CreationTimestamp.Time, Zone: p.Spec.NodeName}
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

// Metric families of the provisioner's pod and build seconds.
const (
	podSecondsMetric   = "ferry_provision_agent_pod_seconds"
	buildSecondsMetric = "ferry_provision_agent_build_seconds"
)

// usage sums the provisioner's histograms by template and adds the
// seconds live agents have run so far today.
func usage(mfs []*dto.MetricFamily, agents []AgentRow, now time.Time) ([]TemplateUsage, bool) {
	by := map[string]*TemplateUsage{}
	get := func(t string) *TemplateUsage {
		if by[t] == nil {
			by[t] = &TemplateUsage{Template: t}
		}
		return by[t]
	}
	found := false
	for _, mf := range mfs {
		name := mf.GetName()
		if name != podSecondsMetric && name != buildSecondsMetric {
			continue
		}
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			if h == nil {
				continue
			}
			tmpl := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "template" {
					tmpl = l.GetValue()
				}
			}
			u := get(tmpl)
			found = true
			if name == podSecondsMetric {
				u.PodSeconds += h.GetSampleSum()
				u.Agents += h.GetSampleCount()
			} else {
				u.BuildSeconds += h.GetSampleSum()
			}
		}
	}
	midnight := now.UTC().Truncate(24 * time.Hour)
	for _, a := range agents {
		start := a.Created
		if start.Before(midnight) {
			start = midnight
		}
		if !start.IsZero() && now.After(start) {
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
	return out, found
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
