package eci

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Reason says why an agent pod cannot serve its build.
type Reason string

// Failure reasons. Their values are stable: they appear in metrics, Events
// and commit statuses.
const (
	// ReasonNone: nothing is wrong (yet), or the pod ended successfully.
	ReasonNone Reason = "None"
	// ReasonImagePull: the image cannot be pulled (ErrImagePull,
	// ImagePullBackOff, InvalidImageName, …).
	ReasonImagePull Reason = "ImagePull"
	// ReasonProviderFailed: ECI refused or failed to create the instance.
	ReasonProviderFailed Reason = "ProviderFailed"
	// ReasonNoStock: ECI has no stock of the specs in the pod's zones.
	ReasonNoStock Reason = "NoStock"
	// ReasonScheduleFailed: ECI could not place the instance
	// (ContainerInstanceScheduleFailed, FailedScheduling).
	ReasonScheduleFailed Reason = "ScheduleFailed"
	// ReasonUnschedulable: the Kubernetes scheduler found no node.
	ReasonUnschedulable Reason = "Unschedulable"
	// ReasonPendingTimeout: Pending beyond the template's pendingTimeout.
	ReasonPendingTimeout Reason = "PendingTimeout"
	// ReasonSpotReclaimed: the spot instance is being or was reclaimed.
	ReasonSpotReclaimed Reason = "SpotReclaimed"
	// ReasonAgentNeverConnected: running, but the agent did not connect
	// to Jenkins within the template's connectTimeout.
	ReasonAgentNeverConnected Reason = "AgentNeverConnected"
	// ReasonContainerConfig: the container could not be created from its
	// spec (CreateContainerConfigError, e.g. a missing Secret).
	ReasonContainerConfig Reason = "ContainerConfig"
	// ReasonContainerFailed: the agent container exited non-zero.
	ReasonContainerFailed Reason = "ContainerFailed"
	// ReasonOOMKilled: the agent container ran out of memory.
	ReasonOOMKilled Reason = "OOMKilled"
	// ReasonEvicted: the pod was evicted (e.g. ephemeral storage full).
	ReasonEvicted Reason = "Evicted"
	// ReasonDeadlineExceeded: the pod outlived its activeDeadline.
	ReasonDeadlineExceeded Reason = "DeadlineExceeded"
	// ReasonNodeLost: the pod's state is Unknown (its node is gone).
	ReasonNodeLost Reason = "NodeLost"
	// ReasonPodGone: the pod does not exist (anymore).
	ReasonPodGone Reason = "PodGone"
	// ReasonUnknown: the pod failed for a reason not known here.
	ReasonUnknown Reason = "Unknown"
)

// Reasons lists every reason, e.g. to initialise metrics.
var Reasons = []Reason{
	ReasonNone, ReasonImagePull, ReasonProviderFailed, ReasonNoStock, ReasonScheduleFailed,
	ReasonUnschedulable, ReasonPendingTimeout, ReasonSpotReclaimed, ReasonAgentNeverConnected,
	ReasonContainerConfig, ReasonContainerFailed, ReasonOOMKilled, ReasonEvicted,
	ReasonDeadlineExceeded, ReasonNodeLost, ReasonPodGone, ReasonUnknown,
}

// Failure is the verdict on an agent pod.
type Failure struct {
	Reason Reason
	// Retryable: another attempt (a new pod) may succeed.
	Retryable bool
	// Fallback: the next attempt should use the template's next fallback
	// level (another spec or zone, on-demand instead of spot).
	Fallback bool
	// Message explains the failure to people. It holds status messages
	// from Kubernetes and ECI, shortened and with anything that looks like
	// a JNLP secret removed; never the agent's environment.
	Message string
}

// Failed reports whether the pod cannot serve its build: any reason but
// None.
func (f Failure) Failed() bool { return f.Reason != ReasonNone && f.Reason != "" }

func (f Failure) String() string {
	if !f.Failed() {
		return string(ReasonNone)
	}
	return string(f.Reason) + ": " + f.Message
}

// ClassifyOptions are what Classify needs beyond the pod itself.
type ClassifyOptions struct {
	// Now is the time to measure timeouts against.
	Now time.Time
	// PendingTimeout and ConnectTimeout are the template's; zero turns a
	// check off.
	PendingTimeout time.Duration
	ConnectTimeout time.Duration
	// Connected reports whether Jenkins has seen the agent online.
	Connected bool
}

// DefaultUnschedulableGrace is how long a pod may stay unschedulable before
// it counts as failed (never longer than the pending timeout).
const DefaultUnschedulableGrace = time.Minute

func unschedulableGrace(o ClassifyOptions) time.Duration {
	g := DefaultUnschedulableGrace
	if o.PendingTimeout > 0 && o.PendingTimeout < g {
		g = o.PendingTimeout
	}
	return g
}

// ClassifyOptions returns the options for an agent of this template.
func (t Template) ClassifyOptions(now time.Time, connected bool) ClassifyOptions {
	t = t.WithDefaults()
	return ClassifyOptions{Now: now, PendingTimeout: t.PendingTimeout.Duration, ConnectTimeout: t.ConnectTimeout.Duration, Connected: connected}
}

// ECI's pod condition and the reasons it carries.
const (
	ConditionContainerInstanceCreated corev1.PodConditionType = "ContainerInstanceCreated"

	eciNoStock          = "NoStock"
	eciStockExhaust     = "StockExhaust"
	eciFailedScheduling = "FailedScheduling"
	eciUnknownError     = "UnknownError"
	eciSpotToBeReleased = "SpotToBeReleased"
	eciSpotReleased     = "SpotReleased"
	eciExpired          = "Expired"
	eciProviderFailed   = "ProviderFailed"
	eciScheduleFailed   = "ContainerInstanceScheduleFailed"
	eciProviderCreate   = "ProviderCreateFailed"
)

// Classify says whether an agent pod can still serve its build and, if
// not, why, from the pod's phase, status reason, conditions and container
// states and from its events (events of other objects are ignored). A nil
// pod is one that is gone.
//
// The first matching rule wins:
//
//	pod gone                                        PodGone
//	phase Succeeded                                 None
//	spot reclaim (status.reason Expired, condition
//	  or Warning event SpotToBeReleased)            SpotReclaimed
//	phase Failed                                    by status.reason: NoStock,
//	                                                ScheduleFailed, ProviderFailed,
//	                                                Evicted, DeadlineExceeded; else by
//	                                                the container: OOMKilled,
//	                                                ContainerFailed; else Unknown
//	phase Unknown                                   NodeLost
//	condition ContainerInstanceCreated=False        NoStock, ScheduleFailed,
//	                                                ProviderFailed
//	container waiting on an image                   ImagePull
//	container waiting on its config                 ContainerConfig
//	container terminated non-zero                   OOMKilled, ContainerFailed
//	Warning event ProviderCreateFailed (Pending)    NoStock, ProviderFailed
//	condition PodScheduled=False Unschedulable      Unschedulable
//	  for longer than DefaultUnschedulableGrace
//	Pending for longer than PendingTimeout          PendingTimeout
//	Running, not connected after ConnectTimeout     AgentNeverConnected
func Classify(pod *corev1.Pod, events []corev1.Event, o ClassifyOptions) Failure {
	if pod == nil {
		return fail(ReasonPodGone, true, false, "the agent pod is gone")
	}
	events = eventsOf(pod, events)
	st := pod.Status
	if st.Phase == corev1.PodSucceeded {
		return Failure{Reason: ReasonNone}
	}
	eciCond := condition(pod, ConditionContainerInstanceCreated)

	if f, ok := spotReclaimed(pod, eciCond, events); ok {
		return f
	}
	switch st.Phase {
	case corev1.PodFailed:
		return failed(pod, eciCond, events)
	case corev1.PodUnknown:
		return fail(ReasonNodeLost, true, false, join("the pod's state is unknown; its node may be gone", st.Message))
	}
	if eciCond != nil && eciCond.Status == corev1.ConditionFalse {
		if f, ok := fromECIReason(eciCond.Reason, eciCond.Message); ok {
			return f
		}
	}
	if f, ok := fromContainers(pod); ok {
		return f
	}
	if st.Phase == corev1.PodPending {
		if e := lastEvent(events, eciProviderCreate); e != nil {
			if stock(e.Message) {
				return fail(ReasonNoStock, true, true, join("ECI has no stock for the requested specs", e.Message))
			}
			return fail(ReasonProviderFailed, true, true, join("ECI could not create the container instance", e.Message))
		}
	}
	if c := condition(pod, corev1.PodScheduled); c != nil && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
		// The scheduler keeps trying an unschedulable pod, and many causes
		// pass by themselves (a node not ready yet, capacity freed by a
		// finishing pod): only an unschedulable state that lasts is a
		// failure. Replacing the pod at once would only churn.
		since := c.LastTransitionTime.Time
		if since.IsZero() {
			since = pod.CreationTimestamp.Time
		}
		if grace := unschedulableGrace(o); !since.IsZero() && o.Now.Sub(since) > grace {
			return fail(ReasonUnschedulable, true, false, join(fmt.Sprintf("no node could take the pod for %s", round(o.Now.Sub(since))), c.Message))
		}
	}
	created := pod.CreationTimestamp.Time
	if st.Phase == corev1.PodPending && o.PendingTimeout > 0 && !created.IsZero() && o.Now.Sub(created) > o.PendingTimeout {
		return fail(ReasonPendingTimeout, true, true, join(fmt.Sprintf("pending for %s, longer than the template's pendingTimeout of %s", round(o.Now.Sub(created)), o.PendingTimeout), pendingHint(pod)))
	}
	if st.Phase == corev1.PodRunning && !o.Connected && o.ConnectTimeout > 0 {
		if started := agentStarted(pod); !started.IsZero() && o.Now.Sub(started) > o.ConnectTimeout {
			return fail(ReasonAgentNeverConnected, true, false, fmt.Sprintf("the agent has run for %s without connecting to Jenkins (connectTimeout %s); check JENKINS_URL and that the agent can reach it", round(o.Now.Sub(started)), o.ConnectTimeout))
		}
	}
	return Failure{Reason: ReasonNone}
}

func spotReclaimed(pod *corev1.Pod, eciCond *corev1.PodCondition, events []corev1.Event) (Failure, bool) {
	if pod.Status.Reason == eciExpired {
		return fail(ReasonSpotReclaimed, true, true, join("the spot instance was reclaimed", pod.Status.Message)), true
	}
	if eciCond != nil && eciCond.Reason == eciSpotToBeReleased {
		return fail(ReasonSpotReclaimed, true, true, join("the spot instance is about to be reclaimed", eciCond.Message)), true
	}
	for _, r := range []string{eciSpotReleased, eciSpotToBeReleased} {
		if e := lastEvent(events, r); e != nil {
			return fail(ReasonSpotReclaimed, true, true, join("the spot instance is being reclaimed", e.Message)), true
		}
	}
	return Failure{}, false
}

func failed(pod *corev1.Pod, eciCond *corev1.PodCondition, events []corev1.Event) Failure {
	st := pod.Status
	// A stock-out is more precise than the ProviderFailed or
	// ScheduleFailed it causes.
	if eciCond != nil && eciCond.Status == corev1.ConditionFalse {
		if f, ok := fromECIReason(eciCond.Reason, eciCond.Message); ok && f.Reason == ReasonNoStock {
			return f
		}
	}
	switch st.Reason {
	case eciProviderFailed, eciScheduleFailed:
		if stock(st.Message) {
			return fail(ReasonNoStock, true, true, join("ECI has no stock for the requested specs", st.Message))
		}
		if e := lastEvent(events, eciProviderCreate); e != nil && stock(e.Message) {
			return fail(ReasonNoStock, true, true, join("ECI has no stock for the requested specs", e.Message))
		}
		if st.Reason == eciScheduleFailed {
			return fail(ReasonScheduleFailed, true, true, join("ECI could not place the container instance", st.Message))
		}
		return fail(ReasonProviderFailed, true, true, join("ECI could not create the container instance", st.Message))
	case "Evicted":
		return fail(ReasonEvicted, true, false, join("the pod was evicted", st.Message))
	case "DeadlineExceeded":
		return fail(ReasonDeadlineExceeded, false, false, join("the agent outlived the template's activeDeadline", st.Message))
	}
	if f, ok := fromContainers(pod); ok {
		return f
	}
	what := "the pod failed"
	if st.Reason != "" {
		what += " (" + st.Reason + ")"
	}
	return fail(ReasonUnknown, true, false, join(what, st.Message))
}

// fromECIReason maps a reason of the ContainerInstanceCreated condition.
func fromECIReason(reason, msg string) (Failure, bool) {
	switch reason {
	case eciNoStock, eciStockExhaust:
		return fail(ReasonNoStock, true, true, join("ECI has no stock for the requested specs ("+reason+")", msg)), true
	case eciFailedScheduling:
		return fail(ReasonScheduleFailed, true, true, join("ECI could not place the container instance", msg)), true
	case eciUnknownError:
		return fail(ReasonProviderFailed, true, true, join("ECI failed to create the container instance", msg)), true
	}
	return Failure{}, false
}

// Image pull errors that another attempt cannot fix.
var permanentPull = []string{"not found", "manifest unknown", "unauthorized", "denied", "forbidden", "invalid reference"}

func fromContainers(pod *corev1.Pod) (Failure, bool) {
	all := slices.Concat(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses)
	for _, cs := range all {
		w := cs.State.Waiting
		if w == nil {
			continue
		}
		switch w.Reason {
		case "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName", "RegistryUnavailable":
			retry := w.Reason != "InvalidImageName" && w.Reason != "ErrImageNeverPull"
			lower := strings.ToLower(w.Message)
			for _, p := range permanentPull {
				retry = retry && !strings.Contains(lower, p)
			}
			return fail(ReasonImagePull, retry, false, join(fmt.Sprintf("image %s of container %s cannot be pulled (%s)", cs.Image, cs.Name, w.Reason), w.Message)), true
		case "CreateContainerConfigError", "CreateContainerError", "RunContainerError":
			return fail(ReasonContainerConfig, true, false, join(fmt.Sprintf("container %s cannot be created (%s)", cs.Name, w.Reason), w.Message)), true
		}
	}
	for _, cs := range all {
		t := cs.State.Terminated
		if t == nil || t.ExitCode == 0 {
			continue
		}
		if t.Reason == "OOMKilled" {
			return fail(ReasonOOMKilled, true, true, join(fmt.Sprintf("container %s ran out of memory", cs.Name), t.Message)), true
		}
		what := fmt.Sprintf("container %s exited with code %d", cs.Name, t.ExitCode)
		if t.Reason != "" && t.Reason != "Error" {
			what += " (" + t.Reason + ")"
		}
		return fail(ReasonContainerFailed, true, false, join(what, t.Message)), true
	}
	return Failure{}, false
}

// pendingHint says what a pending pod is waiting for, if anything says so.
func pendingHint(pod *corev1.Pod) string {
	for _, cs := range pod.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			return join("container "+cs.Name+" waits: "+w.Reason, w.Message)
		}
	}
	for _, c := range pod.Status.Conditions {
		if c.Status == corev1.ConditionFalse && (c.Reason != "" || c.Message != "") {
			return join(string(c.Type)+" "+c.Reason, c.Message)
		}
	}
	if pod.Spec.NodeName == "" {
		return "not scheduled yet"
	}
	return ""
}

// agentStarted is when the agent container started running.
func agentStarted(pod *corev1.Pod) time.Time {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == ContainerName && cs.State.Running != nil {
			return cs.State.Running.StartedAt.Time
		}
	}
	if pod.Status.StartTime != nil {
		return pod.Status.StartTime.Time
	}
	return time.Time{}
}

func condition(pod *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == t {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// eventsOf keeps the Warning events about this pod (this very pod when
// the event records the UID: a pod of the same name may have existed).
func eventsOf(pod *corev1.Pod, events []corev1.Event) []corev1.Event {
	var out []corev1.Event
	for _, e := range events {
		io := e.InvolvedObject
		if e.Type != corev1.EventTypeWarning || (io.Kind != "" && io.Kind != "Pod") || io.Name != pod.Name ||
			(io.Namespace != "" && pod.Namespace != "" && io.Namespace != pod.Namespace) ||
			(io.UID != "" && pod.UID != "" && io.UID != pod.UID) {
			continue
		}
		out = append(out, e)
	}
	return out
}

// lastEvent returns the most recent event with the reason.
func lastEvent(events []corev1.Event, reason string) *corev1.Event {
	var last *corev1.Event
	for i := range events {
		e := &events[i]
		if e.Reason == reason && (last == nil || !EventTime(e).Before(EventTime(last))) {
			last = e
		}
	}
	return last
}

// EventTime is when an event last happened: its EventTime, else its
// LastTimestamp, else its FirstTimestamp.
func EventTime(e *corev1.Event) time.Time {
	switch {
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	}
	return e.FirstTimestamp.Time
}

func stock(msg string) bool {
	return strings.Contains(msg, eciNoStock) || strings.Contains(msg, eciStockExhaust) ||
		strings.Contains(strings.ToLower(msg), "sold out") || strings.Contains(strings.ToLower(msg), "out of stock")
}

func fail(r Reason, retry, fallback bool, msg string) Failure {
	return Failure{Reason: r, Retryable: retry, Fallback: fallback, Message: clean(msg)}
}

func join(what, detail string) string {
	detail = strings.TrimSpace(detail)
	if detail == "" {
		return what
	}
	return what + ": " + detail
}

func round(d time.Duration) time.Duration { return d.Round(time.Second) }

// MaxMessage bounds Failure.Message: it ends up in commit statuses and
// Kubernetes Events.
const MaxMessage = 400

// hex64 looks like a JNLP secret (an HMAC-SHA256 in hex).
var hex64 = regexp.MustCompile(`[0-9a-fA-F]{64}`)

// clean shortens a message and drops anything shaped like a JNLP secret,
// except image digests.
func clean(msg string) string {
	msg = strings.Join(strings.Fields(msg), " ")
	var b strings.Builder
	last := 0
	for _, m := range hex64.FindAllStringIndex(msg, -1) {
		b.WriteString(msg[last:m[0]])
		if strings.HasSuffix(msg[:m[0]], "sha256:") {
			b.WriteString(msg[m[0]:m[1]])
		} else {
			b.WriteString("[redacted]")
		}
		last = m[1]
	}
	b.WriteString(msg[last:])
	msg = b.String()
	if r := []rune(msg); len(r) > MaxMessage {
		msg = string(r[:MaxMessage-1]) + "…"
	}
	return msg
}
