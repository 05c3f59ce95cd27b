package chaos

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// Proxy stands between ferry and the Jenkins emulator. It forwards every
// request at once; the answer to a trigger (POST …/buildWithParameters) it
// holds for the configured delay before passing it on. While an answer is
// held, Jenkins has queued the build but ferry does not know it: the window
// in which a crash used to build an event twice.
type Proxy struct {
	srv *http.Server
	url string

	delay atomic.Int64 // nanoseconds

	held     atomic.Int64 // answers being held now
	triggers atomic.Int64 // triggers forwarded to Jenkins
	dropped  atomic.Int64 // answers whose caller left before they were given
}

// newProxy starts a proxy to target on a free loopback port.
func newProxy(target string, delay time.Duration) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	p := &Proxy{}
	p.delay.Store(int64(delay))
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &holdingTransport{p: p, next: &http.Transport{
		Proxy:               nil,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     30 * time.Second,
	}}
	// A caller that went away (ferry was killed) is what the tests do on
	// purpose; it is counted, not logged.
	rp.ErrorLog = log.New(io.Discard, "", 0)
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		if errors.Is(err, context.Canceled) || r.Context().Err() != nil {
			return
		}
		w.WriteHeader(http.StatusBadGateway)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p.url = "http://" + ln.Addr().String()
	p.srv = &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// URL is the proxy's root URL, without a trailing slash.
func (p *Proxy) URL() string { return p.url }

// SetDelay changes how long trigger answers are held, from the next one.
func (p *Proxy) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

// Delay is how long trigger answers are held.
func (p *Proxy) Delay() time.Duration { return time.Duration(p.delay.Load()) }

// Held is the number of trigger answers held right now: builds Jenkins has
// queued that ferry has not heard of yet.
func (p *Proxy) Held() int { return int(p.held.Load()) }

// Triggers is the number of triggers forwarded to Jenkins.
func (p *Proxy) Triggers() int { return int(p.triggers.Load()) }

// Dropped is the number of trigger answers never given because the caller
// went away while they were held (the process was killed).
func (p *Proxy) Dropped() int { return int(p.dropped.Load()) }

// WaitHeld waits until at least n answers are held at once, and reports
// whether that happened before ctx ended.
func (p *Proxy) WaitHeld(ctx context.Context, n int) bool {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for p.Held() < n {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

func (p *Proxy) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := p.srv.Shutdown(ctx); err != nil {
		_ = p.srv.Close()
	}
}

type holdingTransport struct {
	p    *Proxy
	next http.RoundTripper
}

func isTrigger(r *http.Request) bool {
	return r.Method == http.MethodPost && strings.HasSuffix(strings.TrimSuffix(r.URL.Path, "/"), "/buildWithParameters")
}

func (t *holdingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if !isTrigger(r) {
		return t.next.RoundTrip(r)
	}
	// Jenkins must queue the build whatever happens to the caller, so the
	// request is not tied to the caller's connection.
	resp, err := t.next.RoundTrip(r.Clone(context.WithoutCancel(r.Context())))
	if err != nil {
		return nil, err
	}
	t.p.triggers.Add(1)
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	d := t.p.Delay()
	if d <= 0 {
		return resp, nil
	}
	t.p.held.Add(1)
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		t.p.held.Add(-1)
		return resp, nil
	case <-r.Context().Done():
		t.p.held.Add(-1)
		t.p.dropped.Add(1)
		return nil, r.Context().Err()
	}
}
