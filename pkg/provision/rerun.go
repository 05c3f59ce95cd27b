package provision

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	corev1 "k8s.io/api/core/v1"

	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/pkg/jenkins"
)

// Re-runs after infrastructure loss.
//
// A build whose agent died while the build still ran on it was lost to
// infrastructure, not to its steps: a build whose steps fail ends on a
// live agent (stateBuildOver), so it is never re-run. Of the deaths under
// a build (stateLost), those the infrastructure caused are
// stateInfraLost: the spot instance was reclaimed, the pod was evicted or
// deleted by someone else (or is gone: an agent disconnected with its pod
// gone), ECI failed the instance, or the pod's state is Unknown (its node
// is gone). An agent container that exited or ran out of memory, a pod
// past its deadline, or an agent disconnected while its pod runs may be
// the build's own doing: those stay stateLost and are reported only.
//
// The provisioner does not trigger builds: it asks the dispatcher
// (Config.RequestRerun), which checks the pipeline's limit and makes the
// request durable before it returns (see package dispatch). Until that
// call succeeded the dead agent is kept, so the next cycle — or a
// restarted provisioner, or a new leader, which sees the same dead agent
// under the same running build — asks again; the dispatcher turns repeated
// asks into one re-run. Once it succeeded the agent is deleted, which
// aborts the lost build.

// rerunCause is why a build lost to infrastructure is re-run.
type rerunCause struct {
	// reason is stable (a metric attribute); words say it on the commit.
	reason, words string
}

// infraCause tells a death under a build that the infrastructure caused
// (see above) from one the build may have caused.
func infraCause(pod *corev1.Pod, f eci.Failure) (rerunCause, bool) {
	switch f.Reason {
	case eci.ReasonSpotReclaimed:
		return rerunCause{"spot_reclaimed", "spot instance reclaimed"}, true
	case eci.ReasonPodGone:
		return rerunCause{"pod_deleted", "agent pod deleted"}, true
	case eci.ReasonEvicted:
		return rerunCause{"evicted", "agent pod evicted"}, true
	case eci.ReasonProviderFailed, eci.ReasonScheduleFailed, eci.ReasonNoStock:
		return rerunCause{"eci_system_failure", "ECI system failure"}, true
	case eci.ReasonNodeLost:
		// The pod's state Unknown is the node's loss; a disconnect while
		// the pod runs may be the build's (a hung or killed agent).
		if pod != nil && pod.Status.Phase == corev1.PodUnknown {
			return rerunCause{"node_lost", "agent node lost"}, true
		}
	}
	return rerunCause{}, false
}

// infraLost asks for a re-run of a build lost to infrastructure, and once
// asked deletes its dead agent (which ends the lost build) and reports
// nothing more: the dispatcher put the re-run on the commit.
func (x *decider) infraLost(a agent, m agentMemory) verdict {
	if !x.r.rerun {
		return x.lost(a, m)
	}
	v := x.running(a, m)
	if !x.w.rerunAsked[a.name] {
		v.count = countLost
		v.acts = append(v.acts, act{kind: actRequestRerun, agent: a.agentView, item: x.w.inQueue[a.queueID],
			build: v.memory.build, failure: a.why, rerun: a.cause})
		return v
	}
	v.failure = &failureNote{agent: a.agentView, failure: a.why, outcome: "rerun"}
	v.acts = append(v.acts,
		act{kind: actDeleteAgent, agent: a.agentView, cause: "failed", ranSince: v.memory.ranSince},
		act{kind: actReportLost, agent: a.agentView, build: v.memory.build, failure: a.why})
	return v
}

// triggerIDParam is the build parameter holding the dispatcher's
// correlation id (config.ParamTriggerID).
const triggerIDParam = "FERRY_TRIGGER_ID"

// isRerun reports a queue item that re-runs a build lost to
// infrastructure: its correlation id ends in "#n", n ≥ 2. Its agent is
// made on-demand.
func isRerun(it jenkins.QueueItem) bool {
	id := it.Params[triggerIDParam]
	i := strings.LastIndexByte(id, '#')
	if i < 0 {
		return false
	}
	n, err := strconv.Atoi(id[i+1:])
	return err == nil && n >= 2
}

// requestRerun asks the dispatcher to re-run a build lost to
// infrastructure; on success the next cycle deletes the dead agent.
func (p *Provisioner) requestRerun(a *agentView, build jenkins.Executable, it jenkins.QueueItem, f eci.Failure, c rerunCause) action {
	return func(ctx context.Context) (err error) {
		ctx, span := p.startSpan(ctx, "provision.request_rerun", it,
			attrAgent.String(a.name), attrQueueID.Int64(a.queueID), attrTemplate.String(a.template))
		defer func() { endSpan(span, err) }()
		if err := p.cfg.RequestRerun(ctx, Failure{QueueID: a.queueID, TaskName: it.TaskName, TaskURL: taskURL(it, build),
			Params: it.Params, Template: a.template, Agent: a.name, Reason: f.Reason, Message: f.Message, Build: build,
			RerunReason: c.reason, RerunCause: c.words}); err != nil {
			return fmt.Errorf("request a re-run of build %s lost with agent %s: %w", build.URL, a.name, err)
		}
		p.m.reruns.Add(ctx, 1, metric.WithAttributes(attribute.String("template", a.template), attribute.String("reason", c.reason)))
		p.log.Warn("build lost to infrastructure; re-run requested", "agent", a.name, "build", build.URL, "reason", c.reason, "message", f.Message)
		if p.rec != nil && a.pod != nil {
			p.rec.Eventf(a.pod, corev1.EventTypeWarning, "AgentLostRerun", "build %s lost its agent (%s): re-run requested", build.URL, c.words)
		}
		p.mu.Lock()
		p.rerunAsked[a.name] = p.clock.Now()
		p.mu.Unlock()
		return nil
	}
}

// taskURL is what finds a build's record when its item carries no
// parameters (a Pipeline's node block): the run's URL.
func taskURL(it jenkins.QueueItem, build jenkins.Executable) string {
	if it.TaskURL != "" {
		return it.TaskURL
	}
	return build.URL
}

// rerunsAsked returns a copy of the agents whose re-run was asked, and
// forgets those no longer remembered an hour on.
func (p *Provisioner) rerunsAsked(now time.Time) map[string]bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]bool, len(p.rerunAsked))
	for name, at := range p.rerunAsked {
		if now.Sub(at) > time.Hour {
			delete(p.rerunAsked, name)
			continue
		}
		out[name] = true
	}
	return out
}
