package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/ferryci/ferry/pkg/config"
)

// kubeSource says where a Kubernetes client's configuration comes from.
type kubeSource struct {
	// Kubeconfig is a kubeconfig file; empty means the in-cluster service
	// account.
	Kubeconfig string
	// Context is a context of Kubeconfig; empty means its current one.
	Context string
	// Setting names the configuration key of Kubeconfig, for errors.
	Setting   string
	UserAgent string
	// QPS and Burst limit the client; zero keeps client-go's defaults.
	QPS   float32
	Burst int
}

// newKube builds a Kubernetes client.
func newKube(s kubeSource) (kubernetes.Interface, error) {
	rc, err := kubeConfig(s)
	if err != nil {
		return nil, err
	}
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return c, nil
}

// kubeConfig is the client config a kubeSource names.
func kubeConfig(s kubeSource) (*rest.Config, error) {
	var (
		rc  *rest.Config
		err error
	)
	switch {
	case s.Kubeconfig != "":
		rc, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: s.Kubeconfig},
			&clientcmd.ConfigOverrides{CurrentContext: s.Context}).ClientConfig()
	case s.Context != "":
		return nil, fmt.Errorf("context %q needs %s", s.Context, s.Setting)
	default:
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client config (%s, context %q): %w", s.Setting, s.Context, err)
	}
	if s.QPS > 0 {
		rc.QPS, rc.Burst = s.QPS, s.Burst
	}
	rc.UserAgent = s.UserAgent
	return rc, nil
}

// leader runs work on one replica at a time: the one holding a Kubernetes
// Lease. A term ends when the Lease is lost or the work returns; the
// replica then stands again.
type leader struct {
	lock     resourcelock.Interface
	election config.LeaderElection
	identity string
	// work names what the leader runs, for logs.
	work string
	log  *slog.Logger
	// elector is the current term's elector, nil between terms.
	elector atomic.Pointer[leaderelection.LeaderElector]
}

// errNotLeading says that this replica may not act: it does not hold the
// Lease, or its last renewal is too old to be sure it still does.
var errNotLeading = errors.New("this replica does not hold the lease")

// fence returns nil only while this replica holds the Lease and renewed it
// recently enough, by its own clock, that no other replica can have taken
// it over: less than leaseDuration - (leaseDuration - renewDeadline) =
// renewDeadline ago. The other replicas wait a whole leaseDuration from
// when they saw the last renewal, so the margin covers the time the
// renewal took to come back. A process that was frozen (SIGSTOP, a long GC
// pause, a suspended VM) past its lease finds its last renewal too old and
// acts on nothing until client-go has noticed and ended the term. Call it
// before each act that changes the world.
func (l *leader) fence() error {
	el := l.elector.Load()
	if el == nil || !el.IsLeader() {
		return fmt.Errorf("%s: %w %s", l.work, errNotLeading, l.election.LeaseName)
	}
	margin := l.election.LeaseDuration.Duration - l.election.RenewDeadline.Duration
	if err := el.Check(-margin); err != nil {
		return fmt.Errorf("%s: %w %s: last renewed over %s ago (%w)", l.work, errNotLeading, l.election.LeaseName,
			l.election.RenewDeadline.Duration, err)
	}
	return nil
}

func newLeader(kube kubernetes.Interface, namespace, identity, work string, le config.LeaderElection, log *slog.Logger) *leader {
	return &leader{
		lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Name: le.LeaseName, Namespace: namespace},
			Client:     kube.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
		},
		election: le, identity: identity, work: work, log: log,
	}
}

// run calls work whenever this replica holds the Lease, until ctx ends.
func (l *leader) run(ctx context.Context, work func(context.Context) error) {
	for ctx.Err() == nil {
		l.term(ctx, work)
		select {
		case <-ctx.Done():
		case <-time.After(l.election.RetryPeriod.Duration):
		}
	}
}

// term stands for the Lease and, once it holds it, runs work until the
// Lease is lost or ctx ends. The Lease is released only after work has
// returned: client-go releases it as soon as its context ends, while the
// work may still be stopping.
func (l *leader) term(ctx context.Context, work func(context.Context) error) {
	elect, stopElecting := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElecting()
	started, done := make(chan struct{}), make(chan struct{})
	stopStanding := context.AfterFunc(ctx, func() {
		select {
		case <-started: // the work sees ctx end; its return ends the term
		default:
			stopElecting()
		}
	})
	defer stopStanding()
	le := l.election
	el, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: l.lock, LeaseDuration: le.LeaseDuration.Duration, RenewDeadline: le.RenewDeadline.Duration,
		RetryPeriod: le.RetryPeriod.Duration, ReleaseOnCancel: true, Name: le.LeaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(termCtx context.Context) {
				close(started)
				defer close(done)
				defer stopElecting()
				wctx, cancel := context.WithCancel(termCtx)
				defer cancel()
				defer context.AfterFunc(ctx, cancel)()
				if wctx.Err() != nil {
					return
				}
				l.log.Info("leading", "work", l.work, "identity", l.identity, "lease", le.LeaseName)
				if err := work(wctx); err != nil && wctx.Err() == nil {
					l.log.Error("stopped with an error; standing for the lease again", "work", l.work, "error", err)
				}
			},
			OnStoppedLeading: func() {
				l.elector.Store(nil)
				l.log.Info("not leading", "work", l.work, "identity", l.identity, "lease", le.LeaseName)
			},
			OnNewLeader: func(id string) {
				if id != l.identity {
					l.log.Info("another replica leads", "work", l.work, "leader", id, "lease", le.LeaseName)
				}
			},
		},
	})
	if err != nil {
		// Only an invalid configuration, which config.Validate refuses.
		l.log.Error("cannot stand for the lease", "work", l.work, "lease", le.LeaseName, "error", err)
		return
	}
	l.elector.Store(el)
	el.Run(elect)
	l.elector.Store(nil)
	select {
	case <-started:
		<-done
	default:
	}
}

func identity() string {
	h, _ := os.Hostname()
	if h == "" {
		h = "ferry"
	}
	return fmt.Sprintf("%s-%d", h, os.Getpid())
}
