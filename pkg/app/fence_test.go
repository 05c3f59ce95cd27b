package app

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/ferryci/ferry/pkg/config"
)

// fencedServer counts the requests that reached it, by method.
func fencedServer(t *testing.T) (*httptest.Server, *atomic.Int32, *atomic.Int32) {
	var reads, writes atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isMutating(r.Method) {
			writes.Add(1)
		} else {
			reads.Add(1)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &reads, &writes
}

func do(t *testing.T, c *http.Client, method, url string) error {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// Reads always pass; writes pass only while the window is open, and a
// refused write never reaches the server.
func TestFencedTransportSendsWritesOnlyInTheWindow(t *testing.T) {
	srv, reads, writes := fencedServer(t)
	var open atomic.Bool
	window := func() (time.Duration, error) {
		if !open.Load() {
			return 0, errNotLeading
		}
		return time.Minute, nil
	}
	c := &http.Client{Transport: newFencedTransport(http.DefaultTransport, window)}
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		if err := do(t, c, m, srv.URL); err != nil {
			t.Errorf("%s outside the window: %v, want it sent", m, err)
		}
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if err := do(t, c, m, srv.URL); !errors.Is(err, errNotLeading) {
			t.Errorf("%s outside the window: %v, want errNotLeading", m, err)
		}
	}
	if writes.Load() != 0 || reads.Load() != 2 {
		t.Fatalf("server saw %d writes and %d reads, want 0 and 2", writes.Load(), reads.Load())
	}
	open.Store(true)
	if err := do(t, c, http.MethodPut, srv.URL); err != nil {
		t.Fatalf("PUT in the window: %v", err)
	}
	if writes.Load() != 1 {
		t.Fatalf("server saw %d writes, want 1", writes.Load())
	}
}

// freezer holds a request between the fence's check and the real
// transport, as a process frozen there would.
type freezer struct {
	next http.RoundTripper
	hold time.Duration
}

func (f freezer) RoundTrip(req *http.Request) (*http.Response, error) {
	time.Sleep(f.hold)
	return f.next.RoundTrip(req)
}

// A write checked in the window but held past its end (the process froze
// between the check and the send) is abandoned, not sent: its deadline is
// the window's end.
func TestFencedTransportDropsAWriteHeldPastTheWindow(t *testing.T) {
	srv, _, writes := fencedServer(t)
	window := func() (time.Duration, error) { return 5 * time.Millisecond, nil }
	c := &http.Client{Transport: newFencedTransport(freezer{next: http.DefaultTransport, hold: 50 * time.Millisecond}, window)}
	if err := do(t, c, http.MethodPost, srv.URL); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("POST held past its window: %v, want the deadline exceeded", err)
	}
	if writes.Load() != 0 {
		t.Fatalf("the server received %d writes sent after the window closed", writes.Load())
	}
}

// fakeLock is a Lease lock whose writes succeed or fail on demand.
type fakeLock struct {
	resourcelock.Interface
	id   string
	fail bool
}

func (l *fakeLock) Identity() string { return l.id }
func (l *fakeLock) Update(context.Context, resourcelock.LeaderElectionRecord) error {
	if l.fail {
		return errors.New("conflict")
	}
	return nil
}

// The window starts when the last successful renewal of this replica was
// sent, not when its answer came, and failed or foreign writes do not
// move it.
func TestRenewalClockKeepsTheLastSuccessfulSend(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := base
	lock := &fakeLock{id: "me"}
	c := &renewalClock{Interface: lock, now: func() time.Time { return now }}
	ctx := context.Background()
	if err := c.Update(ctx, resourcelock.LeaderElectionRecord{HolderIdentity: "me"}); err != nil {
		t.Fatal(err)
	}
	now = base.Add(time.Second)
	lock.fail = true
	_ = c.Update(ctx, resourcelock.LeaderElectionRecord{HolderIdentity: "me"})
	lock.fail = false
	_ = c.Update(ctx, resourcelock.LeaderElectionRecord{HolderIdentity: "other"})
	if got := c.lastSent(); !got.Equal(base) {
		t.Fatalf("lastSent = %s, want %s (the failed and the foreign write must not count)", got, base)
	}
}

// Without a term, the window is closed.
func TestLeaderWindowClosedWithoutATerm(t *testing.T) {
	le := config.LeaderElection{Enabled: true, LeaseName: "x",
		LeaseDuration: config.Duration{Duration: 4 * time.Second}, RenewDeadline: config.Duration{Duration: 3 * time.Second},
		RetryPeriod: config.Duration{Duration: time.Second}}
	l := newLeader(leaseClientset(), "ns", "me", "promoter", le, nil)
	if _, err := l.window(); !errors.Is(err, errNotLeading) {
		t.Fatalf("window without a term: %v, want errNotLeading", err)
	}
}
