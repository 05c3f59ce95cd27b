package provision

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/pkg/jenkins"
)

var (
	attrAgent    = attribute.Key("ferry.agent")
	attrQueueID  = attribute.Key("jenkins.queue_id")
	attrTemplate = attribute.Key("ferry.template")
	attrCause    = attribute.Key("ferry.cause")
)

// traceParentParam is the build parameter the dispatcher passes the
// webhook's trace context in.
const traceParentParam = "TRACEPARENT"

// startSpan starts a span, as a child of the build's trace when the item
// carries one.
func (p *Provisioner) startSpan(ctx context.Context, name string, it jenkins.QueueItem, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if tp := it.Params[traceParentParam]; tp != "" {
		ctx = propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": tp})
	}
	return p.tracer.Start(ctx, name, trace.WithAttributes(attrs...))
}

func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// nodeSpec is an agent's Jenkins node: exclusive, one executor, the
// template's labels, WebSocket JNLP.
func (p *Provisioner) nodeSpec(name, template, what string) jenkins.NodeSpec {
	return jenkins.NodeSpec{
		Name:         name,
		Description:  "ferry " + what + " (template " + template + "); managed by ferry, do not edit",
		Labels:       p.cfg.Templates[template].Labels,
		NumExecutors: 1,
		Mode:         jenkins.ModeExclusive,
		WebSocket:    true,
	}
}

func (p *Provisioner) createAnchor(template string) action {
	return func(ctx context.Context) error {
		name := anchorName(template)
		err := p.cfg.Jenkins.CreateNode(ctx, p.nodeSpec(name, template, "anchor: never connects; keeps the labels known to Jenkins"))
		if err != nil && !errors.Is(err, jenkins.ErrExists) {
			return fmt.Errorf("create anchor node: %w", err)
		}
		return nil
	}
}

func (p *Provisioner) deleteNodeOnly(name, kind string) action {
	return func(ctx context.Context) error {
		err := p.cfg.Jenkins.DeleteNode(ctx, name)
		if err != nil && !errors.Is(err, jenkins.ErrNotFound) {
			return err
		}
		p.m.gc.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", kind)))
		return nil
	}
}

// nodeWhat describes an agent's node. The fallback level and the end of
// the retry's backoff it names let a restarted provisioner make the
// agent's pod at the same level and not before that time.
func nodeWhat(queueID int64, attempt, fallback int, notBefore time.Time) string {
	w := fmt.Sprintf("agent for queue item %d, attempt %d, fallback level %d", queueID, attempt, fallback)
	if !notBefore.IsZero() {
		w += ", pod not before " + notBefore.UTC().Format(time.RFC3339)
	}
	return w
}

var (
	fallbackInDescription  = regexp.MustCompile(`, fallback level (\d+)[,( ]`)
	notBeforeInDescription = regexp.MustCompile(`, pod not before (\S+) \(`)
)

// descriptionFallback returns the fallback level a node's description
// names.
func descriptionFallback(desc string) (int, bool) {
	m := fallbackInDescription.FindStringSubmatch(desc)
	if m == nil {
		return 0, false
	}
	v, err := strconv.Atoi(m[1])
	return v, err == nil
}

// descriptionNotBefore returns the end of the backoff a node's
// description names, or the zero time.
func descriptionNotBefore(desc string) time.Time {
	m := notBeforeInDescription.FindStringSubmatch(desc)
	if m == nil {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, m[1])
	if err != nil {
		return time.Time{}
	}
	return t
}

// createAgent creates attempt attempt of an agent for item: its node and
// JNLP secret in the create lane (run), then its Secret and pod in a batch
// (then).
func (p *Provisioner) createAgent(it jenkins.QueueItem, template string, attempt, fallback int) (run, then action) {
	node := p.createNode(it, template, attempt, fallback, time.Time{})
	fetch, create := p.createPod(eci.AgentName(it.ID, attempt), it.ID, attempt, template, fallback, it)
	return p.nodeThenPod(node, fetch, create)
}

// nodeThenPod makes an agent: its node, then its JNLP secret (fetch) in
// the create lane (run), then its Secret and pod in a batch (then); the
// pod waits for a later cycle while creations are paused.
func (p *Provisioner) nodeThenPod(node, fetch, create action) (run, then action) {
	paused := false
	run = func(ctx context.Context) error {
		if err := node(ctx); err != nil {
			return err
		}
		if d := p.kubePaused(p.clock.Now()); d > 0 {
			paused = true
			return nil // the node waits; a later cycle creates the pod
		}
		return fetch(ctx)
	}
	then = func(ctx context.Context) error {
		if paused {
			return nil
		}
		return create(ctx)
	}
	return run, then
}

func (p *Provisioner) createNode(it jenkins.QueueItem, template string, attempt, fallback int, notBefore time.Time) action {
	name := eci.AgentName(it.ID, attempt)
	return func(ctx context.Context) (err error) {
		ctx, span := p.startSpan(ctx, "provision.create_node", it,
			attrAgent.String(name), attrQueueID.Int64(it.ID), attrTemplate.String(template))
		defer func() { endSpan(span, err) }()
		err = p.cfg.Jenkins.CreateNode(ctx, p.nodeSpec(name, template, nodeWhat(it.ID, attempt, fallback, notBefore)))
		if err != nil && !errors.Is(err, jenkins.ErrExists) {
			return fmt.Errorf("create agent node %s: %w", name, err)
		}
		if err == nil && !it.InQueueSince.IsZero() {
			p.m.step.Record(ctx, max(0, p.clock.Since(it.InQueueSince).Seconds()), metric.WithAttributes(
				attribute.String("template", template), attribute.String("step", stepNodeCreated)))
		}
		return nil
	}
}

// isQuota reports an API server answer that asks to back off: a quota
// exceeded (403 "exceeded quota") or throttling (429).
func isQuota(err error) bool {
	return apierrors.IsTooManyRequests(err) ||
		(apierrors.IsForbidden(err) && strings.Contains(err.Error(), "exceeded quota"))
}

// createPod returns the two steps of making an agent's pod once its node
// exists: fetch reads the node's JNLP secret from Jenkins (in the create
// lane); create hands the agent to the batcher, which creates the Secret
// holding the secret, then the pod reading it, and hands the Secret to the
// pod so that it goes with it (see secrets.go). create runs only after
// fetch succeeded.
func (p *Provisioner) createPod(name string, queueID int64, attempt int, template string, fallback int, it jenkins.QueueItem) (fetch, create action) {
	podLabels := p.cfg.PodLabels
	if isWarmName(name) {
		podLabels = maps.Clone(podLabels)
		if podLabels == nil {
			podLabels = map[string]string{}
		}
		podLabels[LabelWarmPool] = template
	}
	r := &podReq{
		agent: eci.Agent{
			Name:        name,
			Namespace:   p.cfg.Namespace,
			QueueID:     queueID,
			Attempt:     attempt,
			Fallback:    fallback,
			OnDemand:    isRerun(it),
			JenkinsURL:  p.cfg.JenkinsURL,
			TraceParent: it.Params[traceParentParam],
			Job:         it.TaskName,
			Labels:      podLabels,
		},
		template: template,
		item:     it,
	}
	attrs := []attribute.KeyValue{attrAgent.String(name), attrQueueID.Int64(queueID), attrTemplate.String(template)}
	fetch = func(ctx context.Context) (err error) {
		ctx, span := p.startSpan(ctx, "provision.read_node_secret", it, attrs...)
		defer func() { endSpan(span, err) }()
		if r.secret, err = p.cfg.Jenkins.NodeSecret(ctx, name); err != nil {
			return fmt.Errorf("create agent pod %s: %w", name, err)
		}
		return nil
	}
	create = func(ctx context.Context) (err error) {
		ctx, span := p.startSpan(ctx, "provision.create_pod", it, attrs...)
		defer func() { endSpan(span, err) }()
		return p.batch.submit(ctx, r)
	}
	return fetch, create
}

// createWarm creates a warm agent: its node and JNLP secret in the
// create lane (run), then its Secret and pod in a batch (then).
func (p *Provisioner) createWarm(name, template string) (run, then action) {
	fetch, create := p.createPod(name, 0, 0, template, 0, jenkins.QueueItem{})
	node := func(ctx context.Context) (err error) {
		ctx, span := p.tracer.Start(ctx, "provision.create_warm_node", trace.WithAttributes(attrAgent.String(name), attrTemplate.String(template)))
		defer func() { endSpan(span, err) }()
		err = p.cfg.Jenkins.CreateNode(ctx, p.nodeSpec(name, template, "warm agent: takes one build"))
		if err != nil && !errors.Is(err, jenkins.ErrExists) {
			return fmt.Errorf("create warm agent node %s: %w", name, err)
		}
		return nil
	}
	return p.nodeThenPod(node, fetch, create)
}

// retireWarm takes a warm agent offline so that Jenkins gives it no build;
// a later cycle deletes it (see WarmRetireReason).
func (p *Provisioner) retireWarm(a *agentView) action {
	return func(ctx context.Context) (err error) {
		ctx, span := p.tracer.Start(ctx, "provision.retire_warm", trace.WithAttributes(attrAgent.String(a.name), attrTemplate.String(a.template)))
		defer func() { endSpan(span, err) }()
		if err := p.cfg.Jenkins.MarkOffline(ctx, a.name, WarmRetireReason); err != nil && !errors.Is(err, jenkins.ErrNotFound) {
			return fmt.Errorf("retire warm agent %s: %w", a.name, err)
		}
		return nil
	}
}

// markOffline takes an agent's node temporarily offline as its build
// runs (see OneBuildReason).
func (p *Provisioner) markOffline(a *agentView, build jenkins.Executable) action {
	return func(ctx context.Context) (err error) {
		ctx, span := p.tracer.Start(ctx, "provision.mark_offline", trace.WithAttributes(
			attrAgent.String(a.name), attrQueueID.Int64(a.queueID), attrTemplate.String(a.template)))
		defer func() { endSpan(span, err) }()
		if err := p.cfg.Jenkins.MarkOffline(ctx, a.name, OneBuildReason); err != nil && !errors.Is(err, jenkins.ErrNotFound) {
			return err
		}
		p.log.Debug("agent marked offline for the rest of its build", "agent", a.name, "build", build.URL)
		return nil
	}
}

// AgentGone is an agent the provisioner deletes: its pod's life (what ECI
// bills) and since when it ran its build (zero: it ran none that was
// seen), for Config.OnAgentGone.
type AgentGone struct {
	Name, Template, Cause string
	Created, RanSince     time.Time
	Ended                 time.Time
}

// deleteAgent deletes an agent's node, then its pod (its Secret goes with
// the last pod of its batch, or is collected once no pod reads it; see
// decideSecrets). ranSince is since when it ran its build, if it did.
func (p *Provisioner) deleteAgent(a *agentView, ranSince time.Time, cause string) action {
	return func(ctx context.Context) (err error) {
		ctx, span := p.tracer.Start(ctx, "provision.delete_agent", trace.WithAttributes(
			attrAgent.String(a.name), attrQueueID.Int64(a.queueID), attrTemplate.String(a.template), attrCause.String(cause)))
		defer func() { endSpan(span, err) }()
		now := p.clock.Now()
		if p.cfg.OnAgentGone != nil && a.pod != nil && !a.pod.CreationTimestamp.IsZero() {
			p.cfg.OnAgentGone(ctx, AgentGone{Name: a.name, Template: a.template, Cause: cause,
				Created: a.pod.CreationTimestamp.Time, RanSince: ranSince, Ended: now})
		}
		if err := p.deleteObjects(ctx, a); err != nil {
			return err
		}
		attrs := metric.WithAttributes(attribute.String("template", a.template), attribute.String("cause", cause))
		p.m.deleted.Add(ctx, 1, attrs)
		if a.pod != nil && !a.pod.CreationTimestamp.IsZero() {
			p.m.lifetime.Record(ctx, now.Sub(a.pod.CreationTimestamp.Time).Seconds(), metric.WithAttributes(attribute.String("template", a.template)))
		}
		if !ranSince.IsZero() {
			p.m.busy.Record(ctx, now.Sub(ranSince).Seconds(), metric.WithAttributes(attribute.String("template", a.template)))
		}
		p.log.Debug("agent deleted", "agent", a.name, "cause", cause)
		return nil
	}
}

func (p *Provisioner) deleteObjects(ctx context.Context, a *agentView) error {
	var errs []error
	if a.node != nil {
		if err := p.cfg.Jenkins.DeleteNode(ctx, a.name); err != nil && !errors.Is(err, jenkins.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	// A pod terminating already needs no second delete.
	if a.pod != nil && a.pod.DeletionTimestamp == nil {
		uid := a.pod.UID
		opts := metav1.DeleteOptions{}
		if uid != "" {
			opts.Preconditions = &metav1.Preconditions{UID: &uid}
		}
		err := p.cfg.Kube.CoreV1().Pods(p.cfg.Namespace).Delete(ctx, a.name, opts)
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, fmt.Errorf("delete agent pod %s: %w", a.name, err))
		} else if len(errs) == 0 {
			p.podDeletedNow(a.name)
		}
	}
	return errors.Join(errs...)
}

// collect deletes an orphan and counts it as garbage collected.
func (p *Provisioner) collect(a *agentView, ranSince time.Time) action {
	del := p.deleteAgent(a, ranSince, "orphan")
	return func(ctx context.Context) error {
		if err := del(ctx); err != nil {
			return err
		}
		for kind, present := range map[string]bool{"node": a.node != nil, "pod": a.pod != nil} {
			if present {
				p.m.gc.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", kind)))
			}
		}
		p.log.Info("collected orphan agent", "agent", a.name, "node", a.node != nil, "pod", a.pod != nil)
		return nil
	}
}

// giveUp cancels a queue item whose agents kept failing, and says why:
// an Event on the last pod, a log line and OnFailure.
func (p *Provisioner) giveUp(pod *corev1.Pod, it jenkins.QueueItem, template, agent string, f eci.Failure) action {
	return func(ctx context.Context) (err error) {
		ctx, span := p.startSpan(ctx, "provision.give_up", it,
			attrAgent.String(agent), attrQueueID.Int64(it.ID), attrTemplate.String(template))
		defer func() { endSpan(span, err) }()
		cancelled := true
		if err := p.cfg.Jenkins.CancelQueueItem(ctx, it.ID); err != nil {
			if !errors.Is(err, jenkins.ErrNotFound) && !errors.Is(err, jenkins.ErrNotCancellable) {
				return err
			}
			cancelled = false
		}
		msg := fmt.Sprintf("gave up on queue item %d (%s) after agent %s: %s", it.ID, it.TaskName, agent, f.String())
		p.log.Warn("gave up on queue item", "queue_id", it.ID, "task", it.TaskName, "agent", agent,
			"template", template, "reason", f.Reason, "message", f.Message, "cancelled", cancelled)
		if p.rec != nil && pod != nil {
			p.rec.Event(pod, corev1.EventTypeWarning, "AgentFailed", msg)
		}
		if p.cfg.OnFailure != nil {
			p.cfg.OnFailure(ctx, Failure{QueueID: it.ID, TaskName: it.TaskName, TaskURL: it.TaskURL, Params: it.Params,
				Template: template, Agent: agent, Reason: f.Reason, Message: f.Message, Cancelled: cancelled})
		}
		return nil
	}
}

// reportDied reports a build whose agent died under it; OnFailure is
// told when report is set.
func (p *Provisioner) reportDied(a *agentView, build jenkins.Executable, it jenkins.QueueItem, f eci.Failure, report bool) action {
	return func(ctx context.Context) error {
		p.log.Warn("agent died during a build; its node is deleted, which aborts the build",
			"agent", a.name, "build", build.URL, "reason", f.Reason, "message", f.Message)
		if p.rec != nil && a.pod != nil {
			p.rec.Eventf(a.pod, corev1.EventTypeWarning, "AgentLost", "agent died during build %s: %s", build.URL, f.String())
		}
		if report && p.cfg.OnFailure != nil {
			p.cfg.OnFailure(ctx, Failure{QueueID: a.queueID, TaskName: it.TaskName, TaskURL: it.TaskURL, Params: it.Params,
				Template: a.template, Agent: a.name, Reason: f.Reason, Message: f.Message, Build: build})
		}
		return nil
	}
}

// ReclaimEventReason is the reason of the Warning Event ferry records on
// an agent pod whose spot instance is about to be reclaimed under a
// running build.
const ReclaimEventReason = "AgentReclaiming"

// reportReclaim reports a running build whose spot instance is about to be
// reclaimed: the build goes on, but may lose its agent in minutes.
func (p *Provisioner) reportReclaim(a *agentView, build jenkins.Executable, it jenkins.QueueItem, f eci.Failure) action {
	f.Message += "; the build keeps running until the instance goes, on an agent that takes no other build"
	return func(ctx context.Context) error {
		p.log.Warn("the spot instance under a running build is about to be reclaimed",
			"agent", a.name, "build", build.URL, "reason", f.Reason, "message", f.Message)
		if p.rec != nil && a.pod != nil {
			p.rec.Eventf(a.pod, corev1.EventTypeWarning, ReclaimEventReason, "build %s: %s", build.URL, f.String())
		}
		if p.cfg.OnFailure != nil {
			p.cfg.OnFailure(ctx, Failure{QueueID: a.queueID, TaskName: it.TaskName, TaskURL: it.TaskURL, Params: it.Params,
				Template: a.template, Agent: a.name, Reason: f.Reason, Message: f.Message, Build: build, Imminent: true})
		}
		return nil
	}
}
