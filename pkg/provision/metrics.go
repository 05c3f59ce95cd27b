package provision

import (
	"go.opentelemetry.io/otel/metric"
)

// Steps of an agent's life measured from the moment its item was queued
// (the step attribute of ferry_provision_step_seconds).
const (
	stepNodeCreated  = "node_created"
	stepPodCreated   = "pod_created"
	stepScheduled    = "scheduled"
	stepRunning      = "running"
	stepConnected    = "connected"
	stepBuildStarted = "build_started"
)

type metrics struct {
	agents      metric.Int64Gauge
	step        metric.Float64Histogram
	failures    metric.Int64Counter
	gc          metric.Int64Counter
	created     metric.Int64Counter
	deleted     metric.Int64Counter
	lifetime    metric.Float64Histogram
	busy        metric.Float64Histogram
	cycleErrors metric.Int64Counter
	reruns      metric.Int64Counter
	imageChecks metric.Int64Counter
	waiting     metric.Int64Gauge
	warm        metric.Int64Gauge
	warmDesired metric.Int64Gauge
	warmBuilds  metric.Int64Counter
	warmIdle    metric.Float64Counter
}

func newMetrics(m metric.Meter) (*metrics, error) {
	var (
		out metrics
		err error
	)
	buckets := metric.WithExplicitBucketBoundaries(.1, .25, .5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600)
	long := metric.WithExplicitBucketBoundaries(1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
	if out.agents, err = m.Int64Gauge("ferry_provision_agents",
		metric.WithDescription("Agents in flight at the end of a cycle, by template and state (creating, starting, idle, building, reclaiming, settling, retrying, terminating, orphan, lost, retiring: a warm agent being retired).")); err != nil {
		return nil, err
	}
	if out.waiting, err = m.Int64Gauge("ferry_provision_waiting_items",
		metric.WithDescription("Queue items served by a template that wait for an agent, by template and why (cap, backoff).")); err != nil {
		return nil, err
	}
	if out.step, err = m.Float64Histogram("ferry_provision_step_seconds",
		metric.WithDescription("Time from a build being queued to each step of its agent: node_created, pod_created, scheduled, running, connected, build_started."),
		metric.WithUnit("s"), buckets); err != nil {
		return nil, err
	}
	if out.failures, err = m.Int64Counter("ferry_provision_failures",
		metric.WithDescription("Failed agents by template, reason and outcome (retried, gave_up, item_gone, died_mid_build, reclaim_warned, warm_replaced).")); err != nil {
		return nil, err
	}
	if out.gc, err = m.Int64Counter("ferry_provision_gc_deletions",
		metric.WithDescription("Orphans collected, by kind (pod, node, secret).")); err != nil {
		return nil, err
	}
	if out.created, err = m.Int64Counter("ferry_provision_agents_created",
		metric.WithDescription("Agents created, by template.")); err != nil {
		return nil, err
	}
	if out.deleted, err = m.Int64Counter("ferry_provision_agents_deleted",
		metric.WithDescription("Agents deleted, by template and cause (build_over, item_gone, failed, orphan, warm_retired).")); err != nil {
		return nil, err
	}
	if out.lifetime, err = m.Float64Histogram("ferry_provision_agent_pod_seconds",
		metric.WithDescription("Life of an agent pod from creation to deletion: what ECI bills."),
		metric.WithUnit("s"), long); err != nil {
		return nil, err
	}
	if out.busy, err = m.Float64Histogram("ferry_provision_agent_build_seconds",
		metric.WithDescription("Time an agent was seen running its build; compare with ferry_provision_agent_pod_seconds."),
		metric.WithUnit("s"), long); err != nil {
		return nil, err
	}
	if out.reruns, err = m.Int64Counter("ferry_provision_reruns",
		metric.WithDescription("Builds lost to infrastructure whose re-run the dispatcher accepted, by template and reason (spot_reclaimed, pod_deleted, evicted, node_lost, eci_system_failure).")); err != nil {
		return nil, err
	}
	if out.imageChecks, err = m.Int64Counter("ferry_provision_image_checks",
		metric.WithDescription("Checks of a template's agent image before its pods, by template and result (found, missing, denied, unreachable).")); err != nil {
		return nil, err
	}
	if out.warm, err = m.Int64Gauge("ferry_provision_warm_agents",
		metric.WithDescription("Warm agents at the end of a cycle, by template and state (creating, starting, ready, serving: counted on to take a waiting item's build, retiring).")); err != nil {
		return nil, err
	}
	if out.warmDesired, err = m.Int64Gauge("ferry_provision_warm_desired",
		metric.WithDescription("The size each template's warm pool is brought to: its AgentPool's spec.replicas, else its schedule.")); err != nil {
		return nil, err
	}
	if out.warmBuilds, err = m.Int64Counter("ferry_provision_warm_builds",
		metric.WithDescription("Builds of templates with a warm pool, by template and result: hit (started on a warm agent) or miss (on an agent made for it).")); err != nil {
		return nil, err
	}
	if out.warmIdle, err = m.Float64Counter("ferry_provision_warm_idle_seconds",
		metric.WithDescription("Pod-seconds warm agents spent from their pod's creation to their build's start, or to their retirement: what a warm pool costs beyond its builds."),
		metric.WithUnit("s")); err != nil {
		return nil, err
	}
	if out.cycleErrors, err = m.Int64Counter("ferry_provision_cycle_errors",
		metric.WithDescription("Reconcile cycles that failed to read Jenkins and were retried.")); err != nil {
		return nil, err
	}
	return &out, nil
}
