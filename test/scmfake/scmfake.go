// Package scmfake provides httptest servers that stand in for the GitHub
// REST API and the GitLab REST API in ferry's tests. They answer the
// commit-status and deployment endpoints ferry uses the way the real
// services do (status codes, error bodies, GitLab's state machines), check
// the token, know only the repositories a test registers, can be told to
// fail the next calls, and record every call so that tests can assert what
// ferry published, for example "pending, then success", or a deployment's
// "in_progress, then success" (Deployments).
//
// Every method is safe for concurrent use.
package scmfake

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Status is one commit status a fake accepted (answered 2xx).
type Status struct {
	// Provider is "github" or "gitlab".
	Provider string
	// Repo is the repository: "owner/name" on GitHub, the project's full
	// path on GitLab (also when the call addressed the project by id).
	Repo string
	// ProjectID is GitLab's project id (0 on GitHub).
	ProjectID int64
	// SHA is the commit, as addressed in the URL.
	SHA string
	// State is the state as sent, in the provider's vocabulary (GitHub:
	// pending/success/failure/error; GitLab: pending/running/success/
	// failed/canceled/skipped).
	State string
	// Context is the status name (GitHub context, GitLab name/context);
	// "default" when the call sent none, as both providers do.
	Context string
	// Description and TargetURL as sent.
	Description string
	TargetURL   string
	// Ref as sent (GitLab only; empty when none was sent).
	Ref string
}

// Call is one request a fake received, whatever it answered.
type Call struct {
	// Method and Path (escaped, as sent) of the request; Host is the Host
	// header, which tells which base URL a client used.
	Method string
	Path   string
	Host   string
	// Authorized says whether the request carried the right token.
	Authorized bool
	// Code is the HTTP status the fake answered.
	Code int
	// Status is the status the request asked for (nil when the request
	// was not a well-formed status call).
	Status *Status
}

// Failure describes an injected error answer.
type Failure struct {
	// Code is the HTTP status to answer (500, 502, 429, ...).
	Code int
	// RetryAfter sets the Retry-After header (whole seconds) when > 0.
	// A 429 without it gets Retry-After: 1, as both providers send one.
	RetryAfter time.Duration
	// Body replaces the provider-like default body when not empty.
	Body string
}

// recorder is the state shared by both fakes.
type recorder struct {
	srv *httptest.Server

	mu       sync.Mutex
	token    string
	calls    []Call
	statuses []Status
	failures []Failure

	deployments    []*Deployment
	nextDeployment int64
}

// Cleaner is what a fake needs from its owner: a way to be closed when the
// owner is done. A test's *testing.T is one; a program (test/cmd/demo)
// passes its own list of things to undo.
type Cleaner interface{ Cleanup(func()) }

func newRecorder(t Cleaner, token string, h http.Handler) *recorder {
	r := &recorder{token: token}
	r.srv = httptest.NewServer(h)
	t.Cleanup(r.srv.Close)
	return r
}

// URL is the root of the server, e.g. http://127.0.0.1:41234.
func (r *recorder) URL() string { return r.srv.URL }

// Client returns an HTTP client for the server.
func (r *recorder) Client() *http.Client { return r.srv.Client() }

// SetToken changes the token the fake accepts.
func (r *recorder) SetToken(token string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.token = token
}

// Token is the token the fake accepts.
func (r *recorder) Token() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.token
}

// FailNext makes the next n requests answer code with the provider's usual
// body for it (see InjectFailures).
func (r *recorder) FailNext(n, code int) {
	r.InjectFailures(n, Failure{Code: code})
}

// InjectFailures makes the next n requests, whatever they are, answer f
// before any other check (as a failing load balancer or an overloaded
// backend would).
func (r *recorder) InjectFailures(n int, f Failure) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for range n {
		r.failures = append(r.failures, f)
	}
}

// nextFailure pops the next injected failure, if any.
func (r *recorder) nextFailure() (Failure, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.failures) == 0 {
		return Failure{}, false
	}
	f := r.failures[0]
	r.failures = r.failures[1:]
	return f, true
}

func (r *recorder) record(c Call) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, c)
	if c.Status != nil && c.Code >= 200 && c.Code < 300 {
		r.statuses = append(r.statuses, *c.Status)
	}
}

// Calls returns a copy of every request received so far, in order.
func (r *recorder) Calls() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Call, len(r.calls))
	for i, c := range r.calls {
		if c.Status != nil {
			s := *c.Status
			c.Status = &s
		}
		out[i] = c
	}
	return out
}

// Statuses returns a copy of the statuses accepted so far, in order.
func (r *recorder) Statuses() []Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Status(nil), r.statuses...)
}

// Reset forgets recorded calls, statuses, deployments and pending failures
// (not the registered repositories or the token).
func (r *recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls, r.statuses, r.failures, r.deployments = nil, nil, nil, nil
}

// WaitFor polls the accepted statuses until pred returns true and returns
// them; after timeout it fails the test with what was recorded. It must be
// called from the test's goroutine. Pick a generous timeout: it is a bound,
// not an expectation of speed.
func (r *recorder) WaitFor(t testing.TB, pred func([]Status) bool, timeout time.Duration) []Status {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		got := r.Statuses()
		if pred(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("scmfake: condition not met within %s; statuses recorded:\n%s", timeout, Format(got))
			return got
		}
		<-tick.C
	}
}

// StatesOf returns the states recorded for sha and context, in order.
func StatesOf(statuses []Status, sha, context string) []string {
	var out []string
	for _, s := range statuses {
		if s.SHA == sha && s.Context == context {
			out = append(out, s.State)
		}
	}
	return out
}

// HasStates returns a WaitFor predicate that holds once the states recorded
// for sha and context contain want in order (other states may come in
// between: "pending, pending, success" has "pending, success").
func HasStates(sha, context string, want ...string) func([]Status) bool {
	return func(statuses []Status) bool {
		got := StatesOf(statuses, sha, context)
		i := 0
		for _, s := range got {
			if i < len(want) && s == want[i] {
				i++
			}
		}
		return i == len(want)
	}
}

// Format renders statuses one per line, for failure messages.
func Format(statuses []Status) string {
	if len(statuses) == 0 {
		return "  (none)"
	}
	var b strings.Builder
	for i, s := range statuses {
		fmt.Fprintf(&b, "  %d. %s %s@%s %s=%s %q ref=%q url=%q\n", i+1, s.Provider, s.Repo,
			shortSHA(s.SHA), s.Context, s.State, s.Description, s.Ref, s.TargetURL)
	}
	return b.String()
}

func shortSHA(sha string) string {
	if len(sha) > 8 {
		return sha[:8]
	}
	return sha
}

// isHexSHA accepts what both providers resolve as a commit id here: 7 to 40
// hex digits (the fakes have no repository contents, so any such id is a
// known commit).
func isHexSHA(s string) bool {
	if len(s) < 7 || len(s) > 40 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return true
}

// retryAfterSeconds renders a Retry-After value, rounding up.
func retryAfterSeconds(d time.Duration) string {
	secs := int64((d + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	return fmt.Sprint(secs)
}
