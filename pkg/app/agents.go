package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/dispatch"
	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/pkg/jenkins"
	"github.com/ferryci/ferry/pkg/provision"
	"github.com/ferryci/ferry/pkg/telemetry"
)

// agents is the provisioner with what it needs to run: the Kubernetes
// client and, when enabled, the Lease that makes one replica provision.
type agents struct {
	cfg         config.Agents
	kube        kubernetes.Interface
	provisioner *provision.Provisioner
	identity    string
	log         *slog.Logger
}

// kubeConfig returns the REST config from a kubeconfig file, or the
// in-cluster service account when the file is empty.
func kubeConfig(a config.Agents) (*rest.Config, error) {
	var (
		rc  *rest.Config
		err error
	)
	if a.Kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", a.Kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client config (agents.kubeconfig): %w", err)
	}
	rc.QPS, rc.Burst = a.QPS, a.Burst
	rc.UserAgent = "ferry"
	return rc, nil
}

func newAgents(cfg config.Config, jc *jenkins.Client, d *dispatch.Dispatcher, tel *telemetry.Telemetry, identity string) (*agents, error) {
	a := cfg.Agents
	// client-go logs through klog; send it to ferry's logger.
	klog.SetSlogLogger(tel.Logger.With("component", "kube"))
	rc, err := kubeConfig(a)
	if err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
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
	if d != nil {
		pc.OnFailure = func(ctx context.Context, f provision.Failure) {
			d.ReportAgentFailure(ctx, dispatch.AgentFailure{
				TriggerID: f.Params[config.ParamTriggerID], QueueID: f.QueueID, RunURL: f.TaskURL,
				Message: f.String(), Cancelled: f.Cancelled, Imminent: f.Imminent,
			})
		}
	}
	p, err := provision.New(pc)
	if err != nil {
		return nil, err
	}
	return &agents{cfg: a, kube: kube, provisioner: p, identity: identity, log: tel.Logger.With("component", "app")}, nil
}

// run runs the provisioner until ctx ends: directly, or whenever this
// replica holds the Lease.
func (a *agents) run(ctx context.Context) error {
	le := a.cfg.LeaderElection
	if !le.Enabled {
		return a.provisioner.Run(ctx)
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metaFor(le.LeaseName, a.cfg.Namespace),
		Client:     a.kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: a.identity},
	}
	for ctx.Err() == nil {
		leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   le.LeaseDuration.Duration,
			RenewDeadline:   le.RenewDeadline.Duration,
			RetryPeriod:     le.RetryPeriod.Duration,
			ReleaseOnCancel: true,
			Name:            le.LeaseName,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					a.log.Info("leading: provisioning agents", "identity", a.identity)
					if err := a.provisioner.Run(ctx); err != nil && ctx.Err() == nil {
						a.log.Error("provisioner stopped", "error", err)
					}
				},
				OnStoppedLeading: func() { a.log.Info("no longer leading: provisioner stopped", "identity", a.identity) },
				OnNewLeader: func(id string) {
					if id != a.identity {
						a.log.Info("another replica provisions agents", "leader", id)
					}
				},
			},
		})
		// Lost the lease: wait a little and stand again.
		select {
		case <-ctx.Done():
		case <-time.After(le.RetryPeriod.Duration):
		}
	}
	return nil
}

func identity() string {
	h, _ := os.Hostname()
	if h == "" {
		h = "ferry"
	}
	return fmt.Sprintf("%s-%d", h, os.Getpid())
}

func metaFor(name, namespace string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: namespace}
}
