package provision

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	corev1 "k8s.io/api/core/v1"
)

// reconcile runs one cycle (see the package comment) and returns when the
// next cycle is due at the latest (0: at the resync).
func (p *Provisioner) reconcile(ctx context.Context) (time.Duration, error) {
	comps, items, err := p.poll(ctx)
	if err != nil {
		return 0, err
	}
	w := p.observe(comps, items)
	if err := p.confirmGone(ctx, w); err != nil {
		return 0, err
	}
	agents := classify(p.rules, w, p.mem)
	d := decide(p.rules, w, agents, p.mem)
	p.record(ctx, d)
	p.remember(w, agents, d)
	p.start(ctx, d.acts)
	return d.next, nil
}

// record records what a cycle decided: its metrics, and the logs and
// Events of the agents that failed.
func (p *Provisioner) record(ctx context.Context, d *decision) {
	recordTally(ctx, p.m.agents, "state", d.agents, p.gauged[0])
	recordTally(ctx, p.m.waiting, "why", d.waiting, p.gauged[1])
	recordTally(ctx, p.m.warm, "state", d.warm, p.gauged[2])
	p.gauged = [3]tally{d.agents, d.waiting, d.warm}
	p.warmView.note(p.clock.Now(), d)
	for t, n := range d.warmDesired {
		p.m.warmDesired.Record(ctx, int64(n), metric.WithAttributes(attribute.String("template", t)))
	}
	for k, n := range d.warmBuilds {
		p.m.warmBuilds.Add(ctx, n, metric.WithAttributes(attribute.String("template", k.template), attribute.String("result", k.of)))
	}
	for _, i := range d.warmIdle {
		p.m.warmIdle.Add(ctx, i.seconds, metric.WithAttributes(attribute.String("template", i.template)))
	}
	for _, s := range d.steps {
		p.m.step.Record(ctx, s.seconds, metric.WithAttributes(attribute.String("template", s.template), attribute.String("step", s.step)))
	}
	for _, n := range d.failures {
		a, f := n.agent, n.failure
		if n.log {
			p.log.Info("agent failed", "agent", a.name, "queue_id", a.queueID, "template", a.template, "reason", f.Reason, "message", f.Message)
		}
		if n.outcome != "" {
			p.m.failures.Add(ctx, 1, metric.WithAttributes(attribute.String("template", a.template),
				attribute.String("reason", string(f.Reason)), attribute.String("outcome", n.outcome)))
		}
		if r := n.retry; r != nil && p.rec != nil && a.pod != nil {
			p.rec.Eventf(a.pod, corev1.EventTypeWarning, "AgentRetry", "%s; retrying as attempt %d of %d (fallback level %d) in %s",
				f.String(), r.attempt, r.maxAttempts, r.fallback, r.delay)
		}
	}
}

// recordTally records a gauge for each key of t, and zero for those of
// the last cycle's that t lacks: a gauge keeps its last value otherwise.
func recordTally(ctx context.Context, g metric.Int64Gauge, of string, t, last tally) {
	for k := range last {
		if _, ok := t[k]; !ok {
			g.Record(ctx, 0, metric.WithAttributes(attribute.String("template", k.template), attribute.String(of, k.of)))
		}
	}
	for k, v := range t {
		g.Record(ctx, v, metric.WithAttributes(attribute.String("template", k.template), attribute.String(of, k.of)))
	}
}

// remember applies the memory a cycle decided: what is no longer seen is
// forgotten, with its events; and the pods the informer shows now are no
// longer waited for.
func (p *Provisioner) remember(w *world, agents []agent, d *decision) {
	for name := range p.mem.agents {
		if _, ok := d.memory.agents[name]; !ok {
			p.events.forget(name)
			p.forgetMadePod(name)
			p.forgetDeletedPod(name)
			p.mu.Lock()
			delete(p.rerunAsked, name)
			p.mu.Unlock()
		}
	}
	p.mem = d.memory
	p.events.prune(func(name string) bool { _, ok := p.mem.agents[name]; return ok }, w.now)
	for _, a := range agents {
		if a.state == stateDeleting || a.pod == nil {
			continue
		}
		p.forgetMadePod(a.name)
		if a.pod.DeletionTimestamp != nil {
			p.forgetDeletedPod(a.name)
		}
	}
}
