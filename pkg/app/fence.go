package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/ferryci/ferry/pkg/scm"
)

// Fencing at the request.
//
// A leader's work checks its Lease (leader.fence) before an act, but an
// act is several requests, and a process can be frozen (SIGSTOP, a GC
// pause, a suspended VM) between the check and any of them. So every
// request that changes something — to the API server, the registry or the
// Git host's deployments API — made on behalf of leader-only work goes
// through a fenced transport: right before it is sent the Lease is checked
// again, and the request gets a deadline no later than the end of the
// window in which no other replica can have taken the Lease (the last
// renewal this replica sent plus renewDeadline). A request of a process
// frozen after the check finds its deadline passed when it is thawed and
// is abandoned instead of sent, as far as net/http looks at its context
// before writing. What no client can take back is a request whose bytes
// were already on the wire when the process froze: the server applies it
// whenever it arrives. Closing that needs a precondition the server checks
// (a fencing token), which the API server offers per object
// (resourceVersion), not across objects.

// leaseWindow is a fence that also says how long its answer holds.
type leaseWindow func() (time.Duration, error)

// isMutating reports whether a request method changes something.
func isMutating(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, "":
		return false
	}
	return true
}

// fencedTransport sends reads as they are and a write only inside the
// Lease's window, with the window's end as its deadline.
type fencedTransport struct {
	next   http.RoundTripper
	window leaseWindow
	// now is the clock (tests inject one).
	now func() time.Time
}

func newFencedTransport(next http.RoundTripper, window leaseWindow) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &fencedTransport{next: next, window: window, now: time.Now}
}

func (t *fencedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !isMutating(req.Method) {
		return t.next.RoundTrip(req)
	}
	left, err := t.window()
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, fmt.Errorf("not sending %s %s: %w", req.Method, req.URL.Path, err)
	}
	ctx, cancel := context.WithDeadline(req.Context(), t.now().Add(left))
	resp, err := t.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	// The deadline holds until the answer is read: cancel when it is.
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	once   sync.Once
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.once.Do(c.cancel)
	return err
}

// fencedDeployer reports deployments to the Git host only inside the
// Lease's window: a deposed promoter must not mark a deployment its
// successor owns.
type fencedDeployer struct {
	next   scm.Deployer
	window leaseWindow
}

func (d fencedDeployer) check(ctx context.Context) (context.Context, context.CancelFunc, error) {
	left, err := d.window()
	if err != nil {
		return nil, nil, fmt.Errorf("not reporting the deployment: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, left)
	return ctx, cancel, nil
}

func (d fencedDeployer) CreateDeployment(ctx context.Context, ref scm.DeploymentRef) (int64, error) {
	ctx, cancel, err := d.check(ctx)
	if err != nil {
		return 0, err
	}
	defer cancel()
	return d.next.CreateDeployment(ctx, ref)
}

func (d fencedDeployer) SetDeploymentStatus(ctx context.Context, ref scm.DeploymentRef, id int64, st scm.DeploymentStatus) error {
	ctx, cancel, err := d.check(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	return d.next.SetDeploymentStatus(ctx, ref, id, st)
}

// renewalClock wraps the Lease lock and remembers when this replica last
// sent a write of the Lease that succeeded (an acquisition or a renewal):
// the other replicas saw that write no earlier than it was sent, and wait
// a whole leaseDuration from when they saw it, so the send time is a safe
// start for this replica's window.
type renewalClock struct {
	resourcelock.Interface
	now func() time.Time

	mu   sync.Mutex
	sent time.Time
}

func (c *renewalClock) Create(ctx context.Context, rec resourcelock.LeaderElectionRecord) error {
	sent := c.now()
	err := c.Interface.Create(ctx, rec)
	c.record(sent, rec, err)
	return err
}

func (c *renewalClock) Update(ctx context.Context, rec resourcelock.LeaderElectionRecord) error {
	sent := c.now()
	err := c.Interface.Update(ctx, rec)
	c.record(sent, rec, err)
	return err
}

func (c *renewalClock) record(sent time.Time, rec resourcelock.LeaderElectionRecord, err error) {
	if err != nil || rec.HolderIdentity != c.Identity() {
		return
	}
	c.mu.Lock()
	if sent.After(c.sent) {
		c.sent = sent
	}
	c.mu.Unlock()
}

// lastSent is when the last successful write of the Lease was sent (zero
// before any).
func (c *renewalClock) lastSent() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sent
}
