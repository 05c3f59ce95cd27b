package jenkins_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/ferryci/ferry/pkg/jenkins"
)

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     jenkins.Config
		wantErr string // substring; "" means success
	}{
		{"ok", jenkins.Config{URL: "https://jenkins.example.com/"}, ""},
		{"context path", jenkins.Config{URL: "http://host:8080/jenkins/"}, ""},
		{"empty", jenkins.Config{}, "URL is required"},
		{"no scheme", jenkins.Config{URL: "jenkins.example.com"}, "scheme"},
		{"ftp", jenkins.Config{URL: "ftp://jenkins.example.com"}, "scheme"},
		{"no host", jenkins.Config{URL: "http:///x"}, "no host"},
		{"query", jenkins.Config{URL: "http://h/?a=b"}, "query"},
		{"bad port with token", jenkins.Config{URL: "http://u:" + testToken + "@host:port/"}, "invalid URL"},
		{"token and password", jenkins.Config{URL: "http://h", User: "u", APIToken: "t", Password: "p"}, "not both"},
		{"token without user", jenkins.Config{URL: "http://h", APIToken: "t"}, "needs a User"},
		{"userinfo credentials", jenkins.Config{URL: "http://u:" + testToken + "@host/"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := jenkins.New(tt.cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if strings.Contains(c.URL(), testToken) || strings.Contains(c.URL(), "@") {
					t.Errorf("URL() = %q keeps credentials", c.URL())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want it to contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), testToken) {
				t.Errorf("error %q leaks the token", err)
			}
		})
	}
}

func TestUserinfoCredentialsAreUsedAndStripped(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.on("GET /queue/api/json", jsonAnswer(200, `{"items":[]}`))
	u := strings.Replace(f.srv.URL, "http://", "http://"+testUser+":"+testToken+"@", 1)
	c, err := jenkins.New(jenkins.Config{URL: u})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if _, err := c.Queue(context.Background()); err != nil {
		t.Fatalf("Queue: %v", err)
	}
	reqs := f.requests()
	user, pass, ok := (&http.Request{Header: reqs[0].Header}).BasicAuth()
	if !ok || user != testUser || pass != testToken {
		t.Errorf("basic auth = %q/%q/%v, want the userinfo credentials", user, pass, ok)
	}
}

func TestErrorClassification(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status        int
		wantKind      error // nil: none of the sentinels
		wantRetryable bool
	}{
		{http.StatusNotFound, jenkins.ErrNotFound, false},
		{http.StatusUnauthorized, jenkins.ErrAuth, false},
		{http.StatusForbidden, jenkins.ErrAuth, false},
		{http.StatusInternalServerError, jenkins.ErrUnavailable, true},
		{http.StatusBadGateway, jenkins.ErrUnavailable, true},
		{http.StatusServiceUnavailable, jenkins.ErrUnavailable, true},
		{http.StatusTooManyRequests, jenkins.ErrUnavailable, true},
		{http.StatusBadRequest, nil, false},
		{http.StatusConflict, nil, false},
	}
	sentinels := []error{jenkins.ErrNotFound, jenkins.ErrUnavailable, jenkins.ErrAuth, jenkins.ErrExists, jenkins.ErrRefused}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			f.on("GET /queue/item/7/api/json", status(tt.status, "<html><body><h1>Oops</h1><p>something "+fmt.Sprint(tt.status)+"</p></body></html>"))
			_, err := f.client(t, nil).QueueItem(context.Background(), 7)
			if err == nil {
				t.Fatal("QueueItem: no error")
			}
			for _, s := range sentinels {
				if got, want := errors.Is(err, s), errors.Is(s, tt.wantKind); got != want {
					t.Errorf("errors.Is(err, %v) = %v, want %v (err: %v)", s, got, want, err)
				}
			}
			if got := jenkins.IsRetryable(err); got != tt.wantRetryable {
				t.Errorf("IsRetryable = %v, want %v", got, tt.wantRetryable)
			}
			var he *jenkins.HTTPError
			if !errors.As(err, &he) {
				t.Fatalf("error %v is not an *HTTPError", err)
			}
			if he.Method != "GET" || he.Path != "/queue/item/7/api/json" || he.Status != tt.status {
				t.Errorf("HTTPError = %s %s %d, want GET /queue/item/7/api/json %d", he.Method, he.Path, he.Status, tt.status)
			}
			if want := fmt.Sprintf("Oops something %d", tt.status); he.Body != want {
				t.Errorf("Body = %q, want %q", he.Body, want)
			}
		})
	}
}

func TestConnectionRefusedIsRetryable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	c, err := jenkins.New(jenkins.Config{URL: "http://" + addr, User: testUser, APIToken: testToken})
	if err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func() error{
		"direct":    func() error { _, err := c.Queue(context.Background()); return err },
		"gojenkins": func() error { _, err := c.Job(context.Background(), "app"); return err },
		"post":      func() error { _, err := c.Trigger(context.Background(), "app", nil); return err },
	} {
		err := call()
		if !errors.Is(err, jenkins.ErrUnavailable) || !jenkins.IsRetryable(err) {
			t.Errorf("%s: err = %v, want ErrUnavailable", name, err)
		}
		var he *jenkins.HTTPError
		if !errors.As(err, &he) || he.Status != 0 || he.Err == nil {
			t.Errorf("%s: err = %#v, want an *HTTPError with Status 0 and Err", name, err)
		}
	}
}

// hang answers only when the request's context ends.
func hang(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }

func TestTimeoutAndCancellation(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.on("GET /queue/api/json", hang)
	f.on("GET /job/app/api/json", hang) // gojenkins path
	f.on("POST /job/app/buildWithParameters", hang)
	short := f.client(t, func(c *jenkins.Config) { c.Timeout = 50 * time.Millisecond })
	long := f.client(t, func(c *jenkins.Config) { c.Timeout = time.Hour })
	calls := map[string]func(*jenkins.Client, context.Context) error{
		"direct GET": func(c *jenkins.Client, ctx context.Context) error { _, err := c.Queue(ctx); return err },
		"gojenkins":  func(c *jenkins.Client, ctx context.Context) error { _, err := c.Job(ctx, "app"); return err },
		"POST":       func(c *jenkins.Client, ctx context.Context) error { _, err := c.Trigger(ctx, "app", nil); return err },
	}
	for name, call := range calls {
		t.Run(name+"/timeout", func(t *testing.T) {
			t.Parallel()
			err := call(short, context.Background())
			if !errors.Is(err, jenkins.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v, want ErrUnavailable wrapping DeadlineExceeded", err)
			}
		})
		t.Run(name+"/cancel", func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- call(long, ctx) }()
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) || jenkins.IsRetryable(err) {
					t.Errorf("err = %v, want context.Canceled, not retryable", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("call did not return after its context was cancelled")
			}
		})
	}
}

func TestSecretsNeverLeak(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	// A hostile or buggy server echoing the Authorization header.
	echo := func(w http.ResponseWriter, r *http.Request) {
		_, pass, _ := r.BasicAuth()
		w.Header().Set("X-Error", "bad token "+pass)
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = fmt.Fprintf(w, "<p>Authorization: %s token=%s</p>", r.Header.Get("Authorization"), pass)
	}
	f.on("POST /job/app/buildWithParameters", echo)
	f.on("GET /job/app/api/json", echo)
	f.on("GET /computer/n1/jenkins-agent.jnlp", echo)
	logs := &syncBuffer{}
	u := strings.Replace(f.srv.URL, "http://", "http://"+testUser+":"+testToken+"@", 1)
	c, err := jenkins.New(jenkins.Config{URL: u, Logger: debugLogger(logs)})
	if err != nil {
		t.Fatal(err)
	}
	var errs []error
	_, err = c.Trigger(context.Background(), "app", map[string]string{"A": "b"})
	errs = append(errs, err)
	_, err = c.Job(context.Background(), "app")
	errs = append(errs, err)
	_, err = c.NodeSecret(context.Background(), "n1")
	errs = append(errs, err)
	for _, err := range errs {
		if err == nil {
			t.Fatal("want an error")
		}
		if strings.Contains(err.Error(), testToken) {
			t.Errorf("error leaks the token: %v", err)
		}
		var he *jenkins.HTTPError
		if errors.As(err, &he) && strings.Contains(he.Body, testToken) {
			t.Errorf("HTTPError.Body leaks the token: %q", he.Body)
		}
	}
	if strings.Contains(logs.String(), testToken) {
		t.Errorf("logs leak the token:\n%s", logs)
	}
	if !strings.Contains(logs.String(), "component=jenkins") {
		t.Errorf("logs lack the component key:\n%s", logs)
	}
}

// crumbServer issues crumbs tied to a session cookie, like Jenkins'
// DefaultCrumbIssuer, and rejects POSTs whose crumb does not match the
// session.
type crumbServer struct {
	mu       sync.Mutex
	session  int
	fetches  int
	rejected int
}

func (s *crumbServer) crumbFor(session string) string { return "crumb-for-" + session }

func (s *crumbServer) issue(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.session++
	s.fetches++
	sess := fmt.Sprintf("s%d", s.session)
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: "JSESSIONID.abc", Value: sess, Path: "/"})
	jsonAnswer(200, `{"_class":"hudson.security.csrf.DefaultCrumbIssuer","crumb":"`+s.crumbFor(sess)+`","crumbRequestField":"Jenkins-Crumb"}`)(w, r)
}

// check reports whether r carries the crumb of a current session.
func (s *crumbServer) check(w http.ResponseWriter, r *http.Request) bool {
	ck, err := r.Cookie("JSESSIONID.abc")
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil || r.Header.Get("Jenkins-Crumb") != s.crumbFor(ck.Value) || ck.Value != fmt.Sprintf("s%d", s.session) {
		s.rejected++
		status(http.StatusForbidden, "<html><body><h2>HTTP ERROR 403 No valid crumb was included in the request</h2></body></html>")(w, r)
		return false
	}
	return true
}

func (s *crumbServer) stats() (fetches, rejected int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches, s.rejected
}

// expire drops every session, as a Jenkins restart does.
func (s *crumbServer) expire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.session += 100
}

func TestCrumbWithPassword(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	cs := &crumbServer{}
	f.on("GET /crumbIssuer/api/json", cs.issue)
	var triggers atomic.Int64
	f.on("POST /job/app/buildWithParameters", func(w http.ResponseWriter, r *http.Request) {
		if cs.check(w, r) {
			n := triggers.Add(1)
			redirect(http.StatusCreated, fmt.Sprintf("%s/queue/item/%d/", f.srv.URL, n))(w, r)
		}
	})
	c := f.client(t, func(c *jenkins.Config) { c.APIToken, c.Password = "", "hunter2" })
	ctx := context.Background()

	// Concurrent first POSTs share one crumb fetch.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Trigger(ctx, "app", map[string]string{"X": "1"}); err != nil {
				t.Errorf("Trigger: %v", err)
			}
		}()
	}
	wg.Wait()
	if fetches, rejected := cs.stats(); fetches != 1 || rejected != 0 {
		t.Fatalf("crumb fetches = %d, rejected = %d; want 1 fetch (cached with its session cookie), 0 rejected", fetches, rejected)
	}

	// The session expires: one 403 "No valid crumb", one refetch, success.
	cs.expire()
	if _, err := c.Trigger(ctx, "app", nil); err != nil {
		t.Fatalf("Trigger after session expiry: %v", err)
	}
	if fetches, rejected := cs.stats(); fetches != 2 || rejected != 1 {
		t.Errorf("crumb fetches = %d, rejected = %d; want 2 and 1", fetches, rejected)
	}
	// The crumb and cookie were fetched with the password.
	for _, r := range f.requests() {
		if _, pass, ok := (&http.Request{Header: r.Header}).BasicAuth(); !ok || pass != "hunter2" {
			t.Errorf("%s %s without the password", r.Method, r.Path)
		}
	}
}

func TestCrumbRefetchOnlyOnce(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	cs := &crumbServer{}
	f.on("GET /crumbIssuer/api/json", cs.issue)
	f.on("POST /job/app/buildWithParameters", status(http.StatusForbidden, "No valid crumb was included in the request"))
	c := f.client(t, func(c *jenkins.Config) { c.APIToken, c.Password = "", "hunter2" })
	_, err := c.Trigger(context.Background(), "app", nil)
	if !errors.Is(err, jenkins.ErrAuth) {
		t.Fatalf("err = %v, want ErrAuth", err)
	}
	if got := f.count("POST /job/app/buildWithParameters"); got != 2 {
		t.Errorf("POSTs = %d, want 2 (one retry with a fresh crumb)", got)
	}
	if fetches, _ := cs.stats(); fetches != 2 {
		t.Errorf("crumb fetches = %d, want 2", fetches)
	}
}

func TestTokenSkipsCrumbUntilRejected(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	cs := &crumbServer{}
	f.on("GET /crumbIssuer/api/json", cs.issue)
	f.on("POST /job/app/buildWithParameters", redirect(http.StatusCreated, "/queue/item/5/"))
	c := f.client(t, nil)
	if _, err := c.Trigger(context.Background(), "app", nil); err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	if fetches, _ := cs.stats(); fetches != 0 {
		t.Fatalf("crumb fetched %d times with an API token, want 0 (tokens are crumb-exempt)", fetches)
	}
	// A Jenkins that wants a crumb anyway gets one on the retry.
	f.on("POST /job/app/buildWithParameters", func(w http.ResponseWriter, r *http.Request) {
		if cs.check(w, r) {
			redirect(http.StatusCreated, "/queue/item/6/")(w, r)
		}
	})
	res, err := c.Trigger(context.Background(), "app", nil)
	if err != nil || res.QueueID != 6 {
		t.Fatalf("Trigger = %+v, %v; want queue id 6", res, err)
	}
	if fetches, rejected := cs.stats(); fetches != 1 || rejected != 1 {
		t.Errorf("crumb fetches = %d, rejected = %d; want 1 and 1", fetches, rejected)
	}
	// From now on POSTs carry the crumb without being rejected first.
	if _, err := c.Trigger(context.Background(), "app", nil); err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	if fetches, rejected := cs.stats(); fetches != 1 || rejected != 1 {
		t.Errorf("after another trigger: crumb fetches = %d, rejected = %d; want still 1 and 1", fetches, rejected)
	}
}

func TestCrumbFetchFailure(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.on("GET /crumbIssuer/api/json", status(http.StatusServiceUnavailable, "starting"))
	c := f.client(t, func(c *jenkins.Config) { c.APIToken, c.Password = "", "hunter2" })
	_, err := c.Trigger(context.Background(), "app", nil)
	if !errors.Is(err, jenkins.ErrUnavailable) || !strings.Contains(err.Error(), "crumb") {
		t.Fatalf("err = %v, want ErrUnavailable about the crumb", err)
	}
	if n := f.count("POST /job/app/buildWithParameters"); n != 0 {
		t.Errorf("POSTed %d times without a crumb", n)
	}
}

func TestNoCrumbIssuer(t *testing.T) {
	t.Parallel()
	f := newFake(t) // /crumbIssuer/api/json is 404
	f.on("POST /job/app/buildWithParameters", redirect(http.StatusCreated, "/queue/item/9/"))
	c := f.client(t, func(c *jenkins.Config) { c.APIToken, c.Password = "", "hunter2" })
	for range 2 {
		if res, err := c.Trigger(context.Background(), "app", nil); err != nil || res.QueueID != 9 {
			t.Fatalf("Trigger = %+v, %v", res, err)
		}
	}
	if n := f.count("GET /crumbIssuer/api/json"); n != 1 {
		t.Errorf("crumb issuer asked %d times, want 1 (absence cached)", n)
	}
}

func TestUserAgent(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.on("GET /api/json", jsonAnswer(200, `{"mode":"NORMAL"}`))
	f.on("GET /queue/api/json", jsonAnswer(200, `{"items":[]}`))
	c := f.client(t, func(c *jenkins.Config) { c.UserAgent = "ferry-test/1" })
	if _, err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Queue(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, r := range f.requests() {
		if got := r.Header.Get("User-Agent"); got != "ferry-test/1" {
			t.Errorf("%s %s: User-Agent %q", r.Method, r.Path, got)
		}
	}
}

// Jenkins words queue reasons, offline causes and errors in the language
// of the request (Accept-Language, else the controller's default locale),
// and ferry reads some of them: every request asks for English, those
// through gojenkins and the crumb fetch included.
func TestAcceptLanguageEnglish(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.on("GET /api/json", jsonAnswer(200, `{"mode":"NORMAL"}`))
	f.on("GET /queue/api/json", jsonAnswer(200, `{"items":[]}`))
	f.on("GET /job/app/api/json", jsonAnswer(200, `{"name":"app","fullName":"app","url":"http://j/job/app/"}`))
	f.on("GET /crumbIssuer/api/json", jsonAnswer(200, `{"crumb":"c1","crumbRequestField":"Jenkins-Crumb"}`))
	f.on("POST /computer/n1/changeOfflineCause", redirect(http.StatusFound, "http://j/computer/n1/"))
	c := f.client(t, func(c *jenkins.Config) { c.APIToken, c.Password = "", testToken })
	ctx := context.Background()
	if _, err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Queue(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Job(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if err := c.MarkOffline(ctx, "n1", "why"); err != nil {
		t.Fatal(err)
	}
	reqs := f.requests()
	if len(reqs) != 5 {
		t.Fatalf("%d requests, want 5 (ping, queue, job, crumb, POST)", len(reqs))
	}
	for _, r := range reqs {
		if got := r.Header.Get("Accept-Language"); got != "en" {
			t.Errorf("%s %s: Accept-Language %q, want en", r.Method, r.Path, got)
		}
	}
}

func TestPing(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.on("GET /api/json", jsonAnswer(200, `{"_class":"hudson.model.Hudson","mode":"NORMAL"}`))
	version, err := f.client(t, nil).Ping(context.Background())
	if err != nil || version != "2.462.3" {
		t.Fatalf("Ping = %q, %v; want 2.462.3", version, err)
	}
	if q := f.requests()[0].Query.Get("tree"); q != "mode" {
		t.Errorf("tree = %q, want mode", q)
	}

	notJenkins := httptest.NewServer(jsonAnswer(200, `{}`))
	defer notJenkins.Close()
	c, _ := jenkins.New(jenkins.Config{URL: notJenkins.URL})
	if _, err := c.Ping(context.Background()); err == nil || !strings.Contains(err.Error(), "X-Jenkins") {
		t.Errorf("Ping of a non-Jenkins server: err = %v, want one about X-Jenkins", err)
	}

	f.on("GET /api/json", status(http.StatusUnauthorized, "Invalid password/token"))
	if _, err := f.client(t, nil).Ping(context.Background()); !errors.Is(err, jenkins.ErrAuth) {
		t.Errorf("Ping with bad credentials: err = %v, want ErrAuth", err)
	}
}

func TestSpans(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.on("POST /job/team/job/app/buildWithParameters", redirect(http.StatusCreated, "/queue/item/42/"))
	f.on("POST /computer/agent-42/doDelete", status(http.StatusNotFound, "no"))
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	c := f.client(t, func(c *jenkins.Config) { c.TracerProvider = tp })
	if _, err := c.Trigger(context.Background(), "team/app", map[string]string{"SHA": "abc"}); err != nil {
		t.Fatal(err)
	}
	_ = c.DeleteNode(context.Background(), "agent-42")
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("got %d spans, want 2", len(spans))
	}
	attrs := func(s sdktrace.ReadOnlySpan) map[attribute.Key]string {
		m := map[attribute.Key]string{}
		for _, kv := range s.Attributes() {
			m[kv.Key] = kv.Value.String()
		}
		return m
	}
	trig, del := spans[0], spans[1]
	if trig.Name() != "jenkins.trigger" || del.Name() != "jenkins.delete_node" {
		t.Errorf("span names = %q, %q", trig.Name(), del.Name())
	}
	ta := attrs(trig)
	if ta["jenkins.job"] != "team/app" || ta["jenkins.queue_id"] != "42" || ta["http.response.status_code"] != "201" {
		t.Errorf("trigger span attributes = %v", ta)
	}
	if da := attrs(del); da["jenkins.node"] != "agent-42" || del.Status().Code.String() != "Error" {
		t.Errorf("delete span attributes = %v, status %v", da, del.Status())
	}
	for _, s := range spans {
		for k, v := range attrs(s) {
			if strings.Contains(v, testToken) {
				t.Errorf("span %s attribute %s leaks the token", s.Name(), k)
			}
		}
	}
}
