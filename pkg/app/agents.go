package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/dispatch"
	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/pkg/jenkins"
	"github.com/ferryci/ferry/pkg/provision"
	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/pkg/telemetry"
)

// agents is the provisioner with what it needs to run: the Kubernetes
// client and, when enabled, the Lease that makes one replica provision.
type agents struct {
	cfg         config.Agents
	kube        kubernetes.Interface
	provisioner *provision.Provisioner
	// leader is the Lease's election, nil without leader election; its
	// fence guards every act of the provisioner.
	leader   *leader
	identity string
	log      *slog.Logger
}

func newAgents(cfg config.Config, jc *jenkins.Client, d *dispatch.Dispatcher, st store.Store, tel *telemetry.Telemetry, identity string) (*agents, error) {
	a := cfg.Agents
	// client-go logs through klog; send it to ferry's logger.
	routeKubeLogs(tel.Logger)
	src := kubeSource{Kubeconfig: a.Kubeconfig, Setting: "agents.kubeconfig", UserAgent: "ferry", QPS: a.QPS, Burst: a.Burst}
	kube, err := newKube(src)
	if err != nil {
		return nil, err
	}
	templates, err := eci.Resolve(a.Templates)
	if err != nil {
		return nil, fmt.Errorf("agents.templates: %w", err)
	}
	jenkinsURL := a.JenkinsURL
	if jenkinsURL == "" {
		jenkinsURL = cfg.Jenkins.URL
	}
	pc := provision.Config{
		Jenkins: jc, Kube: kube, Namespace: a.Namespace, Templates: templates, JenkinsURL: jenkinsURL,
		MaxAgents: a.MaxAgents, Resync: a.Resync.Duration, GCGrace: a.GCGrace.Duration, DisableGC: a.DisableGC,
		Logger: tel.Logger, TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider,
	}
	pc.ImageCheck = !a.DisableImageCheck
	if d != nil {
		pc.OnFailure = func(ctx context.Context, f provision.Failure) {
			d.ReportAgentFailure(ctx, dispatch.AgentFailure{
				TriggerID: f.Params[config.ParamTriggerID], QueueID: f.QueueID, RunURL: f.TaskURL,
				Message: f.String(), Cancelled: f.Cancelled, Imminent: f.Imminent,
			})
		}
	}
	if d != nil {
		pc.RequestRerun = func(ctx context.Context, f provision.Failure) error {
			return d.RequestRerun(ctx, dispatch.RerunRequest{
				TriggerID: f.Params[config.ParamTriggerID], QueueID: f.QueueID, RunURL: f.TaskURL,
				Reason: f.RerunReason, Cause: f.RerunCause,
			})
		}
	}
	pc.OnAgentGone = countUsage(st, tel.Logger.With("component", "usage"))
	log := tel.Logger.With("component", "app")
	var lead *leader
	if a.LeaderElection.Enabled {
		lead = newLeader(kube, a.Namespace, identity, "provisioner", a.LeaderElection, log)
		pc.Fence = lead.fence
		// The provisioner's own client checks the Lease again right before
		// each write it sends; the Lease keeps the plain one.
		if pc.Kube, err = newKube(kubeSource{Kubeconfig: a.Kubeconfig, Setting: "agents.kubeconfig", UserAgent: "ferry",
			QPS: a.QPS, Burst: a.Burst, Window: lead.window}); err != nil {
			return nil, err
		}
	}
	// The AgentPools' status is written by the leader: fenced like its pods.
	if lead != nil {
		src.Window = lead.window
	}
	if pc.Dynamic, err = poolClient(src, templates); err != nil {
		return nil, err
	}
	p, err := provision.New(pc)
	if err != nil {
		return nil, err
	}
	return &agents{cfg: a, kube: kube, provisioner: p, leader: lead, identity: identity, log: log}, nil
}

// usageTimeout bounds the store write that counts an agent's usage.
const usageTimeout = 2 * time.Second

// countUsage adds each agent the provisioner deletes to the store's
// per-day, per-template usage, once per agent (the store's mark), for the
// agents page. A failure loses that agent's figures, never holds the pod.
func countUsage(st store.Store, log *slog.Logger) func(context.Context, provision.AgentGone) {
	return func(ctx context.Context, g provision.AgentGone) {
		u := store.AgentUsage{Agent: g.Name, Template: g.Template, Created: g.Created, RanSince: g.RanSince, Ended: g.Ended}
		// A slow store must not hold the delete (ECI bills the pod).
		ctx, cancel := context.WithTimeout(ctx, usageTimeout)
		defer cancel()
		if _, err := st.AddAgentUsage(ctx, u); err != nil {
			log.Warn("agent usage not counted", "agent", g.Name, "template", g.Template, "err", err)
		}
	}
}

// poolClient returns the client that reads AgentPools, when a template's
// warm pool names one; nil otherwise.
func poolClient(src kubeSource, templates map[string]eci.Template) (dynamic.Interface, error) {
	for _, t := range templates {
		if t.WarmPool == nil || t.WarmPool.PoolRef == "" {
			continue
		}
		dyn, err := newDynamic(src)
		if err != nil {
			return nil, fmt.Errorf("AgentPools: %w", err)
		}
		return dyn, nil
	}
	return nil, nil
}

// run runs the provisioner until ctx ends: directly, or whenever this
// replica holds the Lease.
func (a *agents) run(ctx context.Context) error {
	if !a.cfg.LeaderElection.Enabled {
		return a.provisioner.Run(ctx)
	}
	a.leader.run(ctx, a.provisioner.Run)
	return nil
}
