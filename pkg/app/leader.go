package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
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
	// Window, when set, fences the client's writes (fencedTransport): it
	// is for the work of a leader, never for the Lease's own client.
	Window leaseWindow
}

// newKube builds a Kubernetes client.
func newKube(s kubeSource) (kubernetes.Interface, error) {
	rc, err := restConfig(s)
	if err != nil {
		return nil, err
	}
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return c, nil
}

// newDynamic returns a dynamic client (for custom resources such as
// Knative Services) of a kubeconfig context or the in-cluster config.
func newDynamic(s kubeSource) (dynamic.Interface, error) {
	rc, err := restConfig(s)
	if err != nil {
		return nil, err
	}
	c, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes dynamic client: %w", err)
	}
	return c, nil
}

func restConfig(s kubeSource) (*rest.Config, error) {
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
	if s.Window != nil {
		rc.Wrap(func(rt http.RoundTripper) http.RoundTripper { return newFencedTransport(rt, s.Window) })
	}
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
	// clock is lock, remembering when this replica last renewed.
	clock *renewalClock
}

// errNotLeading says that this replica may not act: it does not hold the
// Lease, or its last renewal is too old to be sure it still does.
var errNotLeading = errors.New("this replica does not hold the lease")

// fence returns nil only while this replica holds the Lease and renewed it
// recently enough, by its own clock, that no other replica can have taken
// it over: its last successful renewal was *sent* less than renewDeadline
// ago. The other replicas wait a whole leaseDuration from when they saw
// that renewal, which is after it was sent, so the margin
// (leaseDuration - renewDeadline) covers clock rate differences. The send
// time matters: client-go stamps a renewal when its answer arrives, so a
// process frozen (SIGSTOP, a long GC pause, a suspended VM) with a renewal
// in flight finds, on thawing, a fresh answer to a request sent before
// the freeze — and another replica may hold the Lease by then. A process
// frozen past its lease acts on nothing until a renewal sent after the
// thaw succeeds or client-go ends the term. Call it before each act that
// changes the world.
func (l *leader) fence() error {
	_, err := l.window()
	return err
}

// window is fence for a request about to be sent: nil and how long the
// answer holds — until renewDeadline after the last renewal this replica
// sent, by its own monotonic clock — or why it may not act. A request
// sent in the window ends by then (fencedTransport).
func (l *leader) window() (time.Duration, error) {
	el := l.elector.Load()
	if el == nil || !el.IsLeader() {
		return 0, fmt.Errorf("%s: %w %s", l.work, errNotLeading, l.election.LeaseName)
	}
	rd := l.election.RenewDeadline.Duration
	margin := l.election.LeaseDuration.Duration - rd
	if err := el.Check(-margin); err != nil {
		return 0, fmt.Errorf("%s: %w %s: last renewed over %s ago (%w)", l.work, errNotLeading, l.election.LeaseName, rd, err)
	}
	left := l.clock.lastSent().Add(rd).Sub(l.clock.now())
	if left <= 0 {
		return 0, fmt.Errorf("%s: %w %s: its last renewal was sent over %s ago", l.work, errNotLeading, l.election.LeaseName, rd)
	}
	return left, nil
}

func newLeader(kube kubernetes.Interface, namespace, identity, work string, le config.LeaderElection, log *slog.Logger) *leader {
	clock := &renewalClock{Interface: &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: le.LeaseName, Namespace: namespace},
		Client:     kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
	}, now: time.Now}
	return &leader{lock: clock, clock: clock, election: le, identity: identity, work: work, log: log}
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
