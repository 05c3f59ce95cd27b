package dispatch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/event"
	"github.com/ferryci/ferry/pkg/jenkins"
	"github.com/ferryci/ferry/pkg/scm"
	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/pkg/store/memstore"
	"github.com/ferryci/ferry/pkg/store/redisstore"
	"github.com/ferryci/ferry/test/jenkinsemu"
	"github.com/ferryci/ferry/test/redisserver"
	"github.com/ferryci/ferry/test/scmfake"
)

// bed is one dispatcher's world: an emulated Jenkins, a store, and a
// recording GitHub.
type bed struct {
	jenkins *jenkinsemu.Server
	client  *jenkins.Client
	store   store.Store
	github  *scmfake.GitHub
	matcher config.Config
}

func ferryParams() []jenkinsemu.Param {
	var out []jenkinsemu.Param
	for _, name := range config.ReservedParams {
		out = append(out, jenkinsemu.Param{Name: name, Type: jenkinsemu.StringParam})
	}
	return out
}

func newBed(t *testing.T, jobs ...string) *bed {
	t.Helper()
	st, err := memstore.New(memstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return newBedWith(t, st, jobs...)
}

// stores runs f against the memory store and a real Redis.
func stores(t *testing.T, f func(t *testing.T, st store.Store)) {
	t.Run("memory", func(t *testing.T) {
		st, err := memstore.New(memstore.Config{})
		if err != nil {
			t.Fatal(err)
		}
		f(t, st)
	})
	t.Run("redis", func(t *testing.T) {
		srv := redisserver.Run(t, redisserver.Options{})
		st, err := redisstore.New(context.Background(), redisstore.Config{Addr: srv.Addr()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		f(t, st)
	})
}

func newBedWith(t *testing.T, st store.Store, jobs ...string) *bed {
	t.Helper()
	emu := jenkinsemu.New(jenkinsemu.Options{BuiltInExecutors: 8})
	t.Cleanup(emu.Close)
	for _, j := range jobs {
		if err := emu.AddJob(j, jenkinsemu.JobSpec{Duration: jenkinsemu.Forever, Params: ferryParams()}); err != nil {
			t.Fatal(err)
		}
	}
	cl, err := jenkins.New(jenkins.Config{URL: emu.URL(), User: jenkinsemu.DefaultUser.Name,
		APIToken: jenkinsemu.DefaultUser.Token, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	gh := scmfake.NewGitHub(t)
	gh.AddRepo("acme/app")
	m, err := config.Parse([]byte(`
jenkins: {url: "http://jenkins/"}
pipelines:
  - name: app
    repo: acme/app
    job: app
  - name: lint
    repo: acme/app
    job: ci/lint
`))
	if err != nil {
		t.Fatal(err)
	}
	return &bed{jenkins: emu, client: cl, store: st, github: gh, matcher: m}
}

func (b *bed) dispatcher(t *testing.T, name string, j Jenkins) *Dispatcher {
	t.Helper()
	if j == nil {
		j = b.client
	}
	gh, err := scm.NewGitHub(scm.GitHubConfig{Token: scmfake.GitHubToken, BaseURL: b.github.EnterpriseURL()})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{
		Store: b.store, Jenkins: j, Matcher: b.matcher, JenkinsURL: b.jenkins.URL(),
		Reporter:     scm.NewMulti(scm.MultiConfig{Reporters: map[event.Provider]scm.Reporter{event.GitHub: gh}}),
		Consumer:     name,
		ReclaimAfter: 300 * time.Millisecond, RetryInitial: 10 * time.Millisecond, RetryMax: 80 * time.Millisecond,
		PermanentAttempts: 3, StatusInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func run(t *testing.T, d *Dispatcher) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = d.Run(ctx)
	}()
	stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return stop
}

func pushEvent(id, sha string) event.Event {
	return event.Event{ID: id, Provider: event.GitHub, DeliveryID: id, Kind: event.Push, Repo: "acme/app",
		RepoURL: "https://github.com/acme/app.git", Ref: "refs/heads/main", SHA: sha, ReceivedAt: time.Now()}
}

func enqueue(t *testing.T, st store.Store, ev event.Event) {
	t.Helper()
	ok, err := st.Enqueue(context.Background(), "github:"+ev.ID, ev)
	if err != nil || !ok {
		t.Fatalf("enqueue %s: %v %v", ev.ID, ok, err)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// buildsFor returns the emulator's builds of job carrying trigger id key.
func buildsFor(emu *jenkinsemu.Server, job, key string) []jenkinsemu.Build {
	var out []jenkinsemu.Build
	for _, b := range emu.Builds(job) {
		if b.Params[config.ParamTriggerID] == key {
			out = append(out, b)
		}
	}
	return out
}

func pending(t *testing.T, st store.Store) int64 {
	t.Helper()
	n, err := st.Pending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPushBuildsEachPipelineOnceAndReportsStatus(t *testing.T) {
	b := newBed(t, "app", "ci/lint")
	run(t, b.dispatcher(t, "d1", nil))
	sha := strings.Repeat("a", 40)
	ev := pushEvent("gh-e1", sha)
	ev.TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	enqueue(t, b.store, ev)

	for _, job := range []string{"app", "ci/lint"} {
		pipeline := map[string]string{"app": "app", "ci/lint": "lint"}[job]
		key := "gh-e1/" + pipeline
		eventually(t, "a build of "+job, func() bool { return len(buildsFor(b.jenkins, job, key)) == 1 })
		p := buildsFor(b.jenkins, job, key)[0].Params
		if p[config.ParamSHA] != sha || p[config.ParamRef] != "refs/heads/main" ||
			p[config.ParamRepoURL] != "https://github.com/acme/app.git" || p[config.ParamEventID] != "gh-e1" {
			t.Errorf("%s params = %v", job, p)
		}
		if tp := p[config.ParamTraceParent]; !strings.HasPrefix(tp, "00-0af7651916cd43dd8448eb211c80319c-") {
			t.Errorf("%s traceparent = %q, want the webhook's trace", job, tp)
		}
	}
	eventually(t, "the entry acknowledged", func() bool { return pending(t, b.store) == 0 })
	if err := b.jenkins.FinishBuild("app", 1, jenkinsemu.Success); err != nil {
		t.Fatal(err)
	}
	if err := b.jenkins.FinishBuild("ci/lint", 1, jenkinsemu.Failure); err != nil {
		t.Fatal(err)
	}
	b.github.WaitFor(t, func(s []scmfake.Status) bool {
		return scmfake.HasStates(sha, "ferry/app", "pending", "success")(s) &&
			scmfake.HasStates(sha, "ferry/lint", "pending", "failure")(s)
	}, 15*time.Second)
	for _, st := range b.github.Statuses() {
		if st.Context == "ferry/app" && st.State == "success" && !strings.Contains(st.TargetURL, "/job/app/1/") {
			t.Errorf("success status links to %q, want the build", st.TargetURL)
		}
	}
	eventually(t, "build records forgotten", func() bool {
		l, _ := b.store.ListBuilds(context.Background())
		return len(l) == 0
	})
	if n := len(b.jenkins.Builds("app")); n != 1 {
		t.Fatalf("app has %d builds, want 1", n)
	}
}

func TestJenkinsDownThenBack(t *testing.T) {
	b := newBed(t, "app", "ci/lint")
	b.jenkins.SetDown(jenkinsemu.Refuse)
	var calls atomic.Int64
	j := &countingJenkins{Jenkins: b.client, triggers: &calls}
	run(t, b.dispatcher(t, "d1", j))
	enqueue(t, b.store, pushEvent("gh-down", "b"+strings.Repeat("0", 39)))
	eventually(t, "several failed attempts", func() bool { return calls.Load() >= 3 })
	if pending(t, b.store) != 1 {
		t.Fatal("the event must stay pending while Jenkins is down")
	}
	b.jenkins.SetDown(jenkinsemu.Unavailable) // 503 while starting up
	time.Sleep(50 * time.Millisecond)
	b.jenkins.SetDown(jenkinsemu.Up)
	eventually(t, "the build once Jenkins is back", func() bool { return len(buildsFor(b.jenkins, "app", "gh-down/app")) == 1 })
	eventually(t, "the entry acknowledged", func() bool { return pending(t, b.store) == 0 })
	time.Sleep(100 * time.Millisecond)
	if n := len(buildsFor(b.jenkins, "app", "gh-down/app")); n != 1 {
		t.Fatalf("%d builds, want exactly 1", n)
	}
}

// killingJenkins triggers for real and then "crashes" the dispatcher:
// the trigger reached Jenkins but the dispatcher never records or acks it.
type killingJenkins struct {
	Jenkins
	kill func()
	once sync.Once
}

func (k *killingJenkins) Trigger(ctx context.Context, job string, params map[string]string) (jenkins.TriggerResult, error) {
	res, err := k.Jenkins.Trigger(ctx, job, params)
	k.once.Do(k.kill)
	return res, errors.Join(err, context.Canceled)
}

func TestCrashBetweenTriggerAndAckDoesNotBuildTwice(t *testing.T) {
	stores(t, testCrashBetweenTriggerAndAck)
}

func testCrashBetweenTriggerAndAck(t *testing.T, st store.Store) {
	b := newBedWith(t, st, "app", "ci/lint")
	// Only the app pipeline, so the crash happens on its one trigger.
	b.matcher.Pipelines = b.matcher.Pipelines[:1]
	ctx, cancel := context.WithCancel(context.Background())
	first := b.dispatcher(t, "doomed", &killingJenkins{Jenkins: b.client, kill: cancel})
	done := make(chan struct{})
	go func() { defer close(done); _ = first.Run(ctx) }()
	enqueue(t, b.store, pushEvent("gh-crash", "c"+strings.Repeat("0", 39)))
	<-done
	if n := len(b.jenkins.QueueItems()) + len(b.jenkins.Builds("app")); n != 1 {
		t.Fatalf("after the crash Jenkins has %d items+builds, want 1", n)
	}
	if pending(t, b.store) != 1 {
		t.Fatal("the crashed dispatcher's entry must still be pending")
	}
	run(t, b.dispatcher(t, "survivor", nil))
	eventually(t, "the survivor to take over and ack", func() bool { return pending(t, b.store) == 0 })
	if n := len(buildsFor(b.jenkins, "app", "gh-crash/app")); n != 1 {
		t.Fatalf("%d builds for the event, want exactly 1", n)
	}
	if _, err := b.store.GetBuild(context.Background(), "gh-crash/app"); err != nil {
		t.Fatalf("survivor did not record the build it found: %v", err)
	}
}

func TestUnknownJobGivesUpWithErrorStatus(t *testing.T) {
	b := newBed(t, "ci/lint") // no "app" job
	b.matcher.Pipelines = b.matcher.Pipelines[:1]
	var calls atomic.Int64
	run(t, b.dispatcher(t, "d1", &countingJenkins{Jenkins: b.client, triggers: &calls}))
	sha := "d" + strings.Repeat("0", 39)
	enqueue(t, b.store, pushEvent("gh-nojob", sha))
	b.github.WaitFor(t, scmfake.HasStates(sha, "ferry/app", "error"), 15*time.Second)
	eventually(t, "the entry acknowledged", func() bool { return pending(t, b.store) == 0 })
	if got := calls.Load(); got != 3 {
		t.Errorf("attempts = %d, want PermanentAttempts (3)", got)
	}
	for _, s := range b.github.Statuses() {
		if s.State == "error" && !strings.Contains(s.Description, "does not exist") {
			t.Errorf("error status says %q; want the reason", s.Description)
		}
	}
}

func TestCancelledQueueItemIsReported(t *testing.T) {
	b := newBed(t, "app", "ci/lint")
	b.matcher.Pipelines = b.matcher.Pipelines[:1]
	if err := b.jenkins.UpdateJob("app", func(s *jenkinsemu.JobSpec) { s.Label = "nowhere" }); err != nil {
		t.Fatal(err)
	}
	run(t, b.dispatcher(t, "d1", nil))
	sha := "e" + strings.Repeat("0", 39)
	enqueue(t, b.store, pushEvent("gh-cancel", sha))
	eventually(t, "a queue item", func() bool { return len(b.jenkins.QueueItems()) == 1 })
	if err := b.client.CancelQueueItem(context.Background(), b.jenkins.QueueItems()[0].ID); err != nil {
		t.Fatal(err)
	}
	b.github.WaitFor(t, scmfake.HasStates(sha, "ferry/app", "pending", "error"), 15*time.Second)
}

func TestManyEventsTwoDispatchersEachBuiltOnce(t *testing.T) {
	stores(t, testManyEventsTwoDispatchers)
}

func testManyEventsTwoDispatchers(t *testing.T, st store.Store) {
	b := newBedWith(t, st, "app", "ci/lint")
	b.matcher.Pipelines = b.matcher.Pipelines[:1]
	if err := b.jenkins.UpdateJob("app", func(s *jenkinsemu.JobSpec) { s.Duration = 0 }); err != nil {
		t.Fatal(err)
	}
	run(t, b.dispatcher(t, "d1", nil))
	run(t, b.dispatcher(t, "d2", nil))
	const n = 40
	for i := range n {
		enqueue(t, b.store, pushEvent(fmt.Sprintf("gh-many-%d", i), fmt.Sprintf("%040x", i+1)))
	}
	eventually(t, "all entries acknowledged", func() bool { return pending(t, b.store) == 0 && len(b.jenkins.Builds("app")) >= n })
	seen := map[string]int{}
	for _, bl := range b.jenkins.Builds("app") {
		seen[bl.Params[config.ParamTriggerID]]++
	}
	if len(seen) != n {
		t.Errorf("%d distinct events built, want %d", len(seen), n)
	}
	for k, c := range seen {
		if c != 1 {
			t.Errorf("%s built %d times", k, c)
		}
	}
}

// countingJenkins counts the calls that may create a build or look for
// one: every attempt makes one of them.
type countingJenkins struct {
	Jenkins
	triggers *atomic.Int64
}

func (c *countingJenkins) FindByParam(ctx context.Context, job, name, value string, since time.Time) (jenkins.Found, error) {
	c.triggers.Add(1)
	return c.Jenkins.FindByParam(ctx, job, name, value, since)
}

func (c *countingJenkins) Trigger(ctx context.Context, job string, params map[string]string) (jenkins.TriggerResult, error) {
	c.triggers.Add(1)
	return c.Jenkins.Trigger(ctx, job, params)
}

func TestAgentFailureReachesTheCommit(t *testing.T) {
	b := newBed(t, "app", "ci/lint")
	b.matcher.Pipelines = b.matcher.Pipelines[:1]
	if err := b.jenkins.UpdateJob("app", func(s *jenkinsemu.JobSpec) { s.Label = "ferry-agent" }); err != nil {
		t.Fatal(err)
	}
	d := b.dispatcher(t, "d1", nil)
	run(t, d)
	sha := "f" + strings.Repeat("0", 39)
	enqueue(t, b.store, pushEvent("gh-agent", sha))
	eventually(t, "the build recorded", func() bool {
		rec, err := b.store.GetBuild(context.Background(), "gh-agent/app")
		return err == nil && !rec.Pending()
	})
	rec, _ := b.store.GetBuild(context.Background(), "gh-agent/app")
	b.github.WaitFor(t, scmfake.HasStates(sha, "ferry/app", "pending"), 15*time.Second)
	// Reported by queue id only, as for an item without parameters.
	d.ReportAgentFailure(context.Background(), AgentFailure{QueueID: rec.QueueID, Message: "NoStock: no ECI stock in any zone", Cancelled: true})
	b.github.WaitFor(t, scmfake.HasStates(sha, "ferry/app", "pending", "error"), 15*time.Second)
	found := false
	for _, s := range b.github.Statuses() {
		found = found || (s.State == "error" && strings.Contains(s.Description, "NoStock"))
	}
	if !found {
		t.Error("the error status does not carry the reason")
	}
	if _, err := b.store.GetBuild(context.Background(), "gh-agent/app"); err == nil {
		t.Error("a cancelled build's record must be finished")
	}
	// Builds ferry did not trigger are none of its business.
	d.ReportAgentFailure(context.Background(), AgentFailure{QueueID: 999999, Message: "x", Cancelled: true})
}

// With several replicas, one tracks builds: a finished build's outcome is
// reported once, not once per replica.
func TestOneTrackerAcrossReplicas(t *testing.T) {
	b := newBed(t, "app", "ci/lint")
	b.matcher.Pipelines = b.matcher.Pipelines[:1]
	for _, name := range []string{"r1", "r2", "r3"} {
		run(t, b.dispatcher(t, name, nil))
	}
	sha := "9" + strings.Repeat("0", 39)
	enqueue(t, b.store, pushEvent("gh-replicas", sha))
	eventually(t, "the build", func() bool { return len(buildsFor(b.jenkins, "app", "gh-replicas/app")) == 1 })
	b.github.WaitFor(t, func(s []scmfake.Status) bool {
		for _, st := range s {
			if st.SHA == sha && strings.Contains(st.Description, "running") {
				return true
			}
		}
		return false
	}, 15*time.Second)
	if err := b.jenkins.FinishBuild("app", 1, jenkinsemu.Success); err != nil {
		t.Fatal(err)
	}
	b.github.WaitFor(t, scmfake.HasStates(sha, "ferry/app", "success"), 15*time.Second)
	time.Sleep(300 * time.Millisecond) // time for a duplicate report to show up
	counts := map[string]int{}
	for _, s := range b.github.Statuses() {
		if s.SHA == sha {
			counts[s.Description]++
		}
	}
	for desc, n := range counts {
		if n != 1 {
			t.Errorf("status %q reported %d times, want once", desc, n)
		}
	}
}
