package scm_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/event"
	"github.com/ferryci/ferry/pkg/scm"
)

const (
	testSHA  = "0123456789abcdef0123456789abcdef01234567"
	ghRepo   = "ferryci/demo"
	glPath   = "group/sub/demo"
	glID     = int64(42)
	ctxName  = "ferry/build"
	buildURL = "https://jenkins.example.com/job/demo/7/"
)

func ghEvent() event.Event {
	return event.Event{ID: "ev-1", Provider: event.GitHub, Kind: event.Push,
		Repo: ghRepo, Ref: "refs/heads/main", SHA: testSHA}
}

func glEvent() event.Event {
	return event.Event{ID: "ev-2", Provider: event.GitLab, Kind: event.Push,
		Repo: glPath, ProjectID: glID, Ref: "refs/heads/main", SHA: testSHA}
}

// rewriteTransport sends every request to target while keeping the Host
// the client meant, so that a client configured for the public services
// (api.github.com, gitlab.com) can be pointed at a fake.
type rewriteTransport struct {
	target *url.URL
}

func (rt rewriteTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Host = r.URL.Host
	r.URL.Scheme, r.URL.Host = rt.target.Scheme, rt.target.Host
	return http.DefaultTransport.RoundTrip(r)
}

func rewriteClient(t *testing.T, target string) *http.Client {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatalf("parse %q: %v", target, err)
	}
	return &http.Client{Transport: rewriteTransport{target: u}}
}

// hangingServer accepts requests and never answers before the client gives up.
func hangingServer(t *testing.T) string {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // lets the server notice the client leaving
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: unblocks handlers so Close returns
	return srv.URL
}

// closedServerURL is the URL of a server that no longer listens.
func closedServerURL(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	return u
}

// echoServer answers every request with code and a body that quotes the
// request's credentials back, as a careless proxy might.
func echoServer(t *testing.T, code int) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leak := r.Header.Get("Authorization") + " " + r.Header.Get("PRIVATE-TOKEN")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(`{"message":"rejected credentials ` + strings.TrimSpace(leak) + `"}`))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

type wantErr struct {
	code      int // 0: no HTTP answer
	retryable bool
	after     time.Duration // expected RetryAfter; 0: none
	is        error         // errors.Is target, optional
}

// checkErr asserts the classification of err and that token is absent.
func checkErr(t *testing.T, err error, want wantErr, token string) {
	t.Helper()
	if err == nil {
		t.Fatalf("SetStatus: got nil error, want one (code %d)", want.code)
	}
	if got := scm.IsRetryable(err); got != want.retryable {
		t.Errorf("IsRetryable(%v) = %v, want %v", err, got, want.retryable)
	}
	var se *scm.Error
	if want.is == nil && !errors.As(err, &se) {
		t.Fatalf("error %v (%T) is not an *scm.Error", err, err)
	}
	if se != nil && se.StatusCode != want.code {
		t.Errorf("StatusCode = %d, want %d (%v)", se.StatusCode, want.code, err)
	}
	if want.is != nil && !errors.Is(err, want.is) {
		t.Errorf("errors.Is(%v, %v) = false", err, want.is)
	}
	after, ok := scm.RetryAfter(err)
	if want.after > 0 {
		// A reset in the future is computed from the clock: allow drift.
		if !ok || after <= 0 || after > want.after {
			t.Errorf("RetryAfter = %v, %v; want (0, %v]", after, ok, want.after)
		}
	} else if ok {
		t.Errorf("RetryAfter = %v, want none", after)
	}
	if token != "" && strings.Contains(err.Error(), token) {
		t.Errorf("error leaks the token: %q", err.Error())
	}
}

func bg(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
