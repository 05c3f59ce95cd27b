package jenkinsemu

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock; the emulator computes every timed
// transition from it, so tests advance time instead of sleeping.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

var quietLogger = slog.New(slog.DiscardHandler)

// newTestServer starts an emulator with a fake clock and closes it at the
// end of the test.
func newTestServer(t *testing.T, opts Options) (*Server, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	if opts.Clock == nil {
		opts.Clock = clk
	}
	if opts.Logger == nil {
		opts.Logger = quietLogger
	}
	s := New(opts)
	t.Cleanup(s.Close)
	return s, clk
}

// client speaks to the emulator as a plain HTTP client would.
type client struct {
	t    *testing.T
	base string
	user string
	pass string
	hc   *http.Client
	hdr  http.Header
}

func newClient(t *testing.T, s *Server, user, pass string) *client {
	return &client{t: t, base: s.URL(), user: user, pass: pass, hdr: http.Header{}, hc: &http.Client{
		Timeout: 10 * time.Second,
		// Keep redirects visible to the tests.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func tokenClient(t *testing.T, s *Server) *client {
	return newClient(t, s, DefaultUser.Name, DefaultUser.Token)
}

type response struct {
	status int
	header http.Header
	body   string
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
	return m
}

func (c *client) do(method, path string, form url.Values) response {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatalf("new request: %v", err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	for k, v := range c.hdr {
		req.Header[k] = v
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("read %s %s: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (c *client) get(path string) response {
	c.t.Helper()
	return c.do(http.MethodGet, path, nil)
}

func (c *client) post(path string, form url.Values) response {
	c.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	return c.do(http.MethodPost, path, form)
}

// getJSON fetches path and fails the test unless it answers 200 JSON.
func (c *client) getJSON(path string) map[string]any {
	c.t.Helper()
	r := c.get(path)
	if r.status != http.StatusOK {
		c.t.Fatalf("GET %s: status %d, body %s", path, r.status, r.body)
	}
	return r.json(c.t)
}

// trigger posts buildWithParameters and returns the queue id from Location.
func (c *client) trigger(job string, params url.Values) int64 {
	c.t.Helper()
	r := c.post(jobPath(job)+"buildWithParameters", params)
	if r.status != http.StatusCreated {
		c.t.Fatalf("trigger %s: status %d, body %s", job, r.status, r.body)
	}
	return queueIDFromLocation(c.t, r.header.Get("Location"))
}

func jobPath(full string) string {
	var b strings.Builder
	b.WriteString("/")
	for _, seg := range strings.Split(full, "/") {
		b.WriteString("job/" + url.PathEscape(seg) + "/")
	}
	return b.String()
}

func queueIDFromLocation(t *testing.T, loc string) int64 {
	t.Helper()
	u, err := url.Parse(loc)
	if err != nil || !u.IsAbs() {
		t.Fatalf("Location %q is not an absolute URL", loc)
	}
	var id int64
	if _, err := fmt.Sscanf(u.Path, "/queue/item/%d/", &id); err != nil {
		t.Fatalf("Location %q is not …/queue/item/ID/: %v", loc, err)
	}
	return id
}

// createNode creates an inbound agent the way ferry's provisioner does.
func (c *client) createNode(name, labels, mode string, executors int) response {
	c.t.Helper()
	js, _ := json.Marshal(map[string]any{
		"name":              name,
		"nodeDescription":   "ferry agent",
		"numExecutors":      executors,
		"remoteFS":          "/home/jenkins/agent",
		"labelString":       labels,
		"mode":              mode,
		"type":              "hudson.slaves.DumbSlave",
		"retentionStrategy": map[string]any{"stapler-class": "hudson.slaves.RetentionStrategy$Always"},
		"nodeProperties":    map[string]any{"stapler-class-bag": "true"},
		"launcher":          map[string]any{"stapler-class": "hudson.slaves.JNLPLauncher", "webSocket": true},
	})
	return c.post("/computer/doCreateItem", url.Values{
		"name": {name},
		"type": {"hudson.slaves.DumbSlave"},
		"json": {string(js)},
	})
}

// mustCreateAgent creates and connects an agent.
func mustCreateAgent(t *testing.T, s *Server, c *client, name, labels, mode string, executors int) {
	t.Helper()
	if r := c.createNode(name, labels, mode, executors); r.status != http.StatusFound {
		t.Fatalf("create node %s: status %d, body %s", name, r.status, r.body)
	}
	if err := s.ConnectAgent(name, s.AgentSecret(name)); err != nil {
		t.Fatalf("connect %s: %v", name, err)
	}
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// path walks a decoded JSON value: keys for objects, ints for arrays.
func path(t *testing.T, v any, keys ...any) any {
	t.Helper()
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("path %v: %T is not an object", keys, v)
			}
			v = m[k]
		case int:
			a, ok := v.([]any)
			if !ok || k >= len(a) {
				t.Fatalf("path %v: %v has no index %d", keys, v, k)
			}
			v = a[k]
		}
	}
	return v
}
