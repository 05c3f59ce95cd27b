package provision

import (
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/ferryci/ferry/pkg/eci"
)

// Some failure signals reach Kubernetes only as Events on the agent pod:
// ECI's Warning SpotToBeReleased comes 3-5 minutes before a spot instance
// is reclaimed, and virtual-kubelet records ProviderCreateFailed while the
// pod is still Pending. The provisioner watches the Warning events about
// pods in its namespace, keeps the few most recent of each of its agents,
// and hands them to eci.Classify.

const (
	// eventFieldSelector narrows the watch on the server: Warning events
	// about pods. The API server cannot select by name prefix, so events
	// of other pods in the namespace are dropped by isAgentEvent.
	eventFieldSelector = "involvedObject.kind=Pod,type=Warning"
	// eventComponent is the source of the provisioner's own Events, which
	// need no reaction.
	eventComponent = "ferry-provisioner"
	// maxEventsPerAgent bounds what is kept per agent: Classify wants the
	// latest event of a reason, and an agent sees a handful of reasons.
	maxEventsPerAgent = 8
	// maxEventMessage bounds a kept message (Classify shortens it further).
	maxEventMessage = 1024
	// eventKeep is how long events of a name that is no agent ferry tracks
	// are kept: long enough for the agent's pod or node to show up in a
	// cycle (events may arrive before the pod's informer sees the pod),
	// short enough that late events of a deleted agent do not accumulate.
	eventKeep = time.Minute
)

// eventIndex holds the recent Warning events of ferry's agent pods, by pod
// name. The informer's handlers fill it; the reconcile worker reads and
// prunes it.
type eventIndex struct {
	mu    sync.Mutex
	byPod map[string]*podEvents
}

type podEvents struct {
	// events are ordered oldest first and hold at most maxEventsPerAgent.
	events []corev1.Event
	added  time.Time
}

func newEventIndex() *eventIndex { return &eventIndex{byPod: map[string]*podEvents{}} }

// isAgentEvent reports whether an event concerns one of ferry's agent pods
// in the namespace and may say something about it: a Warning not recorded
// by the provisioner itself.
func isAgentEvent(e *corev1.Event, namespace string) bool {
	io := e.InvolvedObject
	if io.Kind != "Pod" || e.Type != corev1.EventTypeWarning ||
		(io.Namespace != "" && io.Namespace != namespace) ||
		e.Source.Component == eventComponent || e.ReportingController == eventComponent {
		return false
	}
	_, _, ok := parseAgentName(io.Name)
	return ok
}

// add records or updates an event (a repeated event keeps its name and
// counts up).
func (x *eventIndex) add(e *corev1.Event, now time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	pe := x.byPod[e.InvolvedObject.Name]
	if pe == nil {
		pe = &podEvents{}
		x.byPod[e.InvolvedObject.Name] = pe
	}
	pe.added = now
	pe.events = slices.DeleteFunc(pe.events, func(o corev1.Event) bool { return o.Name == e.Name })
	pe.events = append(pe.events, *e)
	slices.SortStableFunc(pe.events, func(a, b corev1.Event) int { return eci.EventTime(&a).Compare(eci.EventTime(&b)) })
	if n := len(pe.events); n > maxEventsPerAgent {
		pe.events = slices.Delete(pe.events, 0, n-maxEventsPerAgent)
	}
}

// remove drops an event the API server deleted (events expire after an
// hour).
func (x *eventIndex) remove(e *corev1.Event) {
	x.mu.Lock()
	defer x.mu.Unlock()
	pe := x.byPod[e.InvolvedObject.Name]
	if pe == nil {
		return
	}
	pe.events = slices.DeleteFunc(pe.events, func(o corev1.Event) bool { return o.Name == e.Name })
	if len(pe.events) == 0 {
		delete(x.byPod, e.InvolvedObject.Name)
	}
}

// of returns a copy of a pod's events.
func (x *eventIndex) of(pod string) []corev1.Event {
	x.mu.Lock()
	defer x.mu.Unlock()
	if pe := x.byPod[pod]; pe != nil {
		return slices.Clone(pe.events)
	}
	return nil
}

// prune drops the events of every name that is not a live agent and was
// last added to before now-eventKeep.
func (x *eventIndex) prune(live func(name string) bool, now time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for name, pe := range x.byPod {
		if !live(name) && now.Sub(pe.added) >= eventKeep {
			delete(x.byPod, name)
		}
	}
}

// forget drops an agent's events as the agent goes.
func (x *eventIndex) forget(pod string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.byPod, pod)
}

func (x *eventIndex) len() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.byPod)
}

// watchEvents adds the Events informer to the provisioner's factory, so
// it starts, syncs and stops with the pod and Secret informers, and feeds
// the index: an event about an agent kicks a cycle, as a pod change does.
func (p *Provisioner) watchEvents(factory informers.SharedInformerFactory) error {
	inf := factory.InformerFor(&corev1.Event{}, func(c kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		return coreinformers.NewFilteredEventInformer(c, p.cfg.Namespace, resync, cache.Indexers{},
			func(o *metav1.ListOptions) { o.FieldSelector = eventFieldSelector })
	})
	// The informer's own cache holds every Warning event about a pod in
	// the namespace, not only agents' (the server cannot filter by name
	// prefix): keep only what Classify reads of agents' events and only
	// the key of the others.
	if err := inf.SetTransform(func(obj any) (any, error) {
		e, ok := obj.(*corev1.Event)
		if !ok {
			return obj, nil
		}
		return trimEvent(e, isAgentEvent(e, p.cfg.Namespace)), nil
	}); err != nil {
		return err
	}
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { p.onEvent(obj, false) },
		UpdateFunc: func(_, obj any) { p.onEvent(obj, false) },
		DeleteFunc: func(obj any) { p.onEvent(obj, true) },
	})
	return err
}

func (p *Provisioner) onEvent(obj any, deleted bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	e, ok := obj.(*corev1.Event)
	if !ok || !isAgentEvent(e, p.cfg.Namespace) {
		return
	}
	if deleted {
		p.events.remove(e)
		return
	}
	p.events.add(e, p.clock.Now())
	p.Kick()
}

// trimEvent returns the part of an event the provisioner uses; of an
// event it ignores, only what the cache needs to key it.
func trimEvent(e *corev1.Event, keep bool) *corev1.Event {
	out := &corev1.Event{ObjectMeta: metav1.ObjectMeta{
		Name: e.Name, Namespace: e.Namespace, UID: e.UID, ResourceVersion: e.ResourceVersion,
	}}
	if !keep {
		return out
	}
	out.InvolvedObject = e.InvolvedObject
	out.Reason = e.Reason
	out.Type = e.Type
	out.Message = e.Message
	if len(out.Message) > maxEventMessage {
		out.Message = strings.ToValidUTF8(out.Message[:maxEventMessage], "")
	}
	out.Source = e.Source
	out.ReportingController = e.ReportingController
	out.FirstTimestamp, out.LastTimestamp, out.EventTime = e.FirstTimestamp, e.LastTimestamp, e.EventTime
	out.Count = e.Count
	return out
}
