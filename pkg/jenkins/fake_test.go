package jenkins_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/jenkins"
)

// Credentials used against the fakes; tests assert they never leak.
const (
	testUser  = "ferry-bot"
	testToken = "11aa22bb33cc44dd55ee66ff77889900aa"
)

// recorded is one request the fake received.
type recorded struct {
	Method string
	Path   string // escaped
	Query  url.Values
	Form   url.Values
	Header http.Header
}

// fakeJenkins is an httptest server routing "METHOD /escaped/path" to
// handlers and recording every request. Unknown routes answer like
// Jenkins: 404 with an HTML page.
type fakeJenkins struct {
	mu     sync.Mutex
	routes map[string]http.HandlerFunc
	reqs   []recorded
	srv    *httptest.Server
}

func newFake(t *testing.T) *fakeJenkins {
	t.Helper()
	f := &fakeJenkins{routes: map[string]http.HandlerFunc{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeJenkins) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, _ := url.ParseQuery(string(body))
	key := r.Method + " " + r.URL.EscapedPath()
	f.mu.Lock()
	f.reqs = append(f.reqs, recorded{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.Query(), Form: form, Header: r.Header.Clone()})
	h := f.routes[key]
	f.mu.Unlock()
	w.Header().Set("X-Jenkins", "2.462.3")
	if h == nil {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, "<html><head><title>Not Found</title><script>var x=1;</script></head><body><h1>Not Found</h1></body></html>")
		return
	}
	h(w, r)
}

// on registers h for "METHOD /escaped/path".
func (f *fakeJenkins) on(route string, h http.HandlerFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes[route] = h
}

func (f *fakeJenkins) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

// count returns how many requests matched "METHOD /escaped/path".
func (f *fakeJenkins) count(route string) int {
	n := 0
	for _, r := range f.requests() {
		if r.Method+" "+r.Path == route {
			n++
		}
	}
	return n
}

// client returns a Client for the fake with token auth, adjusted by mutate.
func (f *fakeJenkins) client(t *testing.T, mutate func(*jenkins.Config)) *jenkins.Client {
	t.Helper()
	cfg := jenkins.Config{URL: f.srv.URL, User: testUser, APIToken: testToken, Timeout: 5 * time.Second}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := jenkins.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func jsonAnswer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json;charset=utf-8")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

func redirect(status int, location string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Location", location)
		w.WriteHeader(status)
	}
}

func status(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
	}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func debugLogger(buf *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
