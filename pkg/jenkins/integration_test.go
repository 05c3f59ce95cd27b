package jenkins_test

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/jenkins"
	"github.com/ferryci/ferry/test/jenkinsemu"
)

// Integration tests: the client against the Jenkins emulator of
// test/jenkinsemu (in process, on loopback).

// emuClock is a settable clock for the emulator.
type emuClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *emuClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *emuClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

var readOnly = jenkinsemu.User{Name: "viewer", Password: "viewer-password", Token: "0123456789viewer0123456789", ReadOnly: true}

func newEmulator(t *testing.T) (*jenkinsemu.Server, *emuClock) {
	t.Helper()
	clk := &emuClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	srv := jenkinsemu.New(jenkinsemu.Options{
		Users:  []jenkinsemu.User{jenkinsemu.DefaultUser, readOnly},
		Clock:  clk,
		Logger: slog.New(slog.DiscardHandler),
	})
	t.Cleanup(srv.Close)
	return srv, clk
}

func emuClient(t *testing.T, srv *jenkinsemu.Server, mutate func(*jenkins.Config)) *jenkins.Client {
	t.Helper()
	cfg := jenkins.Config{URL: srv.URL(), User: jenkinsemu.DefaultUser.Name, APIToken: jenkinsemu.DefaultUser.Token, Timeout: 10 * time.Second}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := jenkins.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const emuLabel = "ferryeci"

var ferryParams = []jenkinsemu.Param{{Name: "SHA"}, {Name: "FERRY_ID"}, {Name: "DEPLOY", Type: jenkinsemu.BooleanParam, Default: "false"}}

// TestEmulatorLifecycle walks one build the way the dispatcher and the
// provisioner will: trigger, find it again, create an agent node for its
// label, connect it with the secret, watch the build, clean up.
func TestEmulatorLifecycle(t *testing.T) {
	srv, clk := newEmulator(t)
	since := clk.Now()
	ctx := context.Background()
	// The label has no '-': the emulator quotes such atoms in why
	// (‘"ferry-eci"’), real Jenkins does not (LabelAtom.needsEscape).
	if err := srv.AddJob("team/app", jenkinsemu.JobSpec{Label: emuLabel, Duration: jenkinsemu.Forever, Params: ferryParams}); err != nil {
		t.Fatal(err)
	}
	c := emuClient(t, srv, nil)

	version, err := c.Ping(ctx)
	if err != nil || version != "2.462.3" {
		t.Fatalf("Ping = %q, %v", version, err)
	}
	job, err := c.Job(ctx, "team/app")
	if err != nil {
		t.Fatalf("Job: %v", err)
	}
	if job.FullName != "team/app" || !job.HasParam("FERRY_ID") || !job.HasParam("DEPLOY") || job.HasParam("NOPE") {
		t.Fatalf("Job = %+v", job)
	}

	// Trigger, then the same request again: Jenkins merges it and answers
	// 303 with the existing item (see TestEmulatorMergeOnOldCore for the 201
	// of cores before 2.308).
	params := map[string]string{"SHA": "abc123", "FERRY_ID": "ev-1", "UNDECLARED": "dropped"}
	first, err := c.Trigger(ctx, "team/app", params)
	if err != nil || first.QueueID == 0 || first.Merged {
		t.Fatalf("Trigger = %+v, %v; want a new queue item", first, err)
	}
	again, err := c.Trigger(ctx, "team/app", params)
	if err != nil || again != (jenkins.TriggerResult{QueueID: first.QueueID, Merged: true}) {
		t.Fatalf("second Trigger = %+v, %v; want merged into %d", again, err, first.QueueID)
	}
	// A client that never saw the first trigger (another replica, a
	// restarted process) learns of the merge from the 303 alone.
	fresh, err := emuClient(t, srv, nil).Trigger(ctx, "team/app", params)
	if err != nil || fresh != (jenkins.TriggerResult{QueueID: first.QueueID, Merged: true}) {
		t.Fatalf("Trigger by another client = %+v, %v; want merged into %d (303)", fresh, err, first.QueueID)
	}
	if n := len(srv.QueueItems()); n != 1 {
		t.Fatalf("emulator queue has %d items, want 1", n)
	}

	found, err := c.FindByParam(ctx, "team/app", "FERRY_ID", "ev-1", since)
	if err != nil || found != (jenkins.Found{QueueID: first.QueueID, Queued: true}) {
		t.Fatalf("FindByParam = %+v, %v; want queued item %d", found, err, first.QueueID)
	}
	if f, err := c.FindByParam(ctx, "team/app", "FERRY_ID", "ev-2", since); err != nil || f.Exists() {
		t.Fatalf("FindByParam(ev-2) = %+v, %v; want nothing", f, err)
	}

	items, err := c.Queue(ctx)
	if err != nil || len(items) != 1 {
		t.Fatalf("Queue = %+v, %v", items, err)
	}
	it := items[0]
	wantParams := map[string]string{"SHA": "abc123", "FERRY_ID": "ev-1", "DEPLOY": "false"}
	if it.ID != first.QueueID || it.TaskName != "app" || !maps.Equal(it.Params, wantParams) || !it.Buildable {
		t.Errorf("queue item = %+v", it)
	}
	// No agent exists at all: Jenkins names no label.
	if got := it.WaitingLabel(); got != "" {
		t.Errorf("WaitingLabel with no agents = %q (why %q), want \"\"", got, it.Why)
	}

	// An unrelated agent makes Jenkins say which label is missing.
	if err := c.CreateNode(ctx, jenkins.NodeSpec{Name: "other", Labels: []string{"other"}}); err != nil {
		t.Fatalf("CreateNode other: %v", err)
	}
	if got := waitingLabel(t, c, first.QueueID); got != emuLabel {
		t.Errorf("WaitingLabel = %q, want %s", got, emuLabel)
	}

	// The provisioner's agent for this item.
	agent := "ferry-q" + strconv.FormatInt(first.QueueID, 10)
	spec := jenkins.NodeSpec{Name: agent, Description: "ferry agent", Labels: []string{emuLabel}, WebSocket: true}
	if err := c.CreateNode(ctx, spec); err != nil {
		t.Fatalf("CreateNode: %v", err)
	}
	if err := c.CreateNode(ctx, spec); !errors.Is(err, jenkins.ErrExists) {
		t.Fatalf("CreateNode twice: err = %v, want ErrExists", err)
	}
	node, ok := srv.Node(agent)
	if !ok {
		t.Fatalf("node %s missing in the emulator", agent)
	}
	if node.Mode != "EXCLUSIVE" || !node.WebSocket || node.Launcher != "hudson.slaves.JNLPLauncher" ||
		node.RetentionStrategy != "hudson.slaves.RetentionStrategy$Always" || node.NumExecutors != 1 ||
		node.RemoteFS != jenkins.DefaultRemoteFS || node.LabelString != emuLabel {
		t.Errorf("created node = %+v", node)
	}
	// One offline node carries the label: Jenkins names the node.
	if got := waitingLabel(t, c, first.QueueID); got != agent {
		t.Errorf("WaitingLabel = %q, want the node name %s", got, agent)
	}

	secret, err := c.NodeSecret(ctx, agent)
	if err != nil || secret != srv.AgentSecret(agent) {
		t.Fatalf("NodeSecret = %q, %v; want the emulator's secret", secret, err)
	}
	if err := srv.ConnectAgent(agent, secret); err != nil {
		t.Fatalf("ConnectAgent: %v", err)
	}

	item, err := c.QueueItem(ctx, first.QueueID)
	if err != nil || !item.Started() || item.Executable.Number != 1 {
		t.Fatalf("QueueItem after connect = %+v, %v; want started as build 1", item, err)
	}
	b, err := c.Build(ctx, "team/app", 1)
	if err != nil || !b.Building || b.Result != "" || b.QueueID != first.QueueID || !maps.Equal(b.Params, wantParams) {
		t.Fatalf("Build = %+v, %v", b, err)
	}

	comps, err := c.Computers(ctx)
	if err != nil {
		t.Fatalf("Computers: %v", err)
	}
	i := slices.IndexFunc(comps, func(cp jenkins.Computer) bool { return cp.Name == agent })
	if i < 0 || comps[i].Offline || comps[i].Idle || len(comps[i].Running) != 1 || comps[i].Running[0].Number != 1 ||
		!slices.Contains(comps[i].Labels, emuLabel) {
		t.Fatalf("Computers = %+v", comps)
	}

	if err := srv.FinishBuild("team/app", 1, jenkinsemu.Unstable); err != nil {
		t.Fatal(err)
	}
	if b, err := c.Build(ctx, "team/app", 1); err != nil || b.Building || b.Result != jenkins.ResultUnstable {
		t.Fatalf("Build after finish = %+v, %v", b, err)
	}

	if err := c.DeleteNode(ctx, agent); err != nil {
		t.Fatalf("DeleteNode: %v", err)
	}
	if err := c.DeleteNode(ctx, agent); !errors.Is(err, jenkins.ErrNotFound) {
		t.Fatalf("DeleteNode twice: err = %v, want ErrNotFound", err)
	}
	if _, err := c.NodeSecret(ctx, agent); !errors.Is(err, jenkins.ErrNotFound) {
		t.Fatalf("NodeSecret of a deleted node: err = %v, want ErrNotFound", err)
	}
}

func waitingLabel(t *testing.T, c *jenkins.Client, id int64) string {
	t.Helper()
	it, err := c.QueueItem(context.Background(), id)
	if err != nil {
		t.Fatalf("QueueItem: %v", err)
	}
	return it.WaitingLabel()
}

// skipIfBuildsPruned skips when the emulator renders a job's builds[] as
// {number,url} references whatever the tree asks for. Real Jenkins exports
// every field a tree names for the builds of a job (they are Run objects);
// the build listing of RecentBuilds and FindByParam depends on it.
func requireFullBuilds(t *testing.T, c *jenkins.Client, job string) {
	t.Helper()
	builds, err := c.RecentBuilds(context.Background(), job, 1)
	if err != nil {
		t.Fatalf("RecentBuilds: %v", err)
	}
	if len(builds) == 1 && builds[0].Timestamp.IsZero() && builds[0].QueueID == 0 {
		t.Fatal("job builds[] came back as {number,url} only, ignoring the fields the tree names; real Jenkins returns them")
	}
}

func TestEmulatorBuildHistory(t *testing.T) {
	srv, clk := newEmulator(t)
	since := clk.Now()
	ctx := context.Background()
	if err := srv.AddJob("app", jenkinsemu.JobSpec{Label: emuLabel, Pipeline: true, Duration: jenkinsemu.Forever, Params: ferryParams}); err != nil {
		t.Fatal(err)
	}
	c := emuClient(t, srv, nil)
	res, err := c.Trigger(ctx, "app", map[string]string{"FERRY_ID": "ev-7", "DEPLOY": "true"})
	if err != nil {
		t.Fatal(err)
	}
	// A Pipeline run starts at once on a flyweight executor; its node block
	// waits in a second, parameterless queue item.
	items, err := c.Queue(ctx)
	if err != nil || len(items) != 1 || len(items[0].Params) != 0 || items[0].ID == res.QueueID {
		t.Fatalf("Queue = %+v, %v; want only the node-block item", items, err)
	}
	requireFullBuilds(t, c, "app")

	f, err := c.FindByParam(ctx, "app", "FERRY_ID", "ev-7", since)
	if err != nil || f != (jenkins.Found{QueueID: res.QueueID, BuildNumber: 1}) {
		t.Fatalf("FindByParam = %+v, %v; want build 1 from item %d", f, err, res.QueueID)
	}
	if err := srv.FinishBuild("app", 1, jenkinsemu.Failure); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := c.Trigger(ctx, "app", map[string]string{"FERRY_ID": "later-" + strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	recent, err := c.RecentBuilds(ctx, "app", 2)
	if err != nil || len(recent) != 2 || recent[0].Number != 4 || recent[1].Number != 3 || !recent[0].Building {
		t.Fatalf("RecentBuilds(2) = %+v, %v; want builds 4 and 3, running", recent, err)
	}
	all, err := c.RecentBuilds(ctx, "app", 10)
	if err != nil || len(all) != 4 {
		t.Fatalf("RecentBuilds(10) = %+v, %v", all, err)
	}
	first := all[3]
	if first.Number != 1 || first.Result != jenkins.ResultFailure || first.Params["DEPLOY"] != "true" || first.QueueID != res.QueueID {
		t.Errorf("build 1 = %+v", first)
	}
	f, err = c.FindByParam(ctx, "app", "FERRY_ID", "ev-7", since)
	if err != nil || f != (jenkins.Found{QueueID: res.QueueID, BuildNumber: 1}) {
		t.Fatalf("FindByParam of a finished build = %+v, %v", f, err)
	}
}

func TestEmulatorCancelAndLeftItems(t *testing.T) {
	srv, clk := newEmulator(t)
	ctx := context.Background()
	if err := srv.AddJob("app", jenkinsemu.JobSpec{Label: emuLabel, Params: ferryParams}); err != nil {
		t.Fatal(err)
	}
	c := emuClient(t, srv, nil)
	res, err := c.Trigger(ctx, "app", map[string]string{"FERRY_ID": "ev-1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CancelQueueItem(ctx, res.QueueID); err != nil {
		t.Fatalf("CancelQueueItem: %v", err)
	}
	it, err := c.QueueItem(ctx, res.QueueID)
	if err != nil || !it.Cancelled || it.Started() {
		t.Fatalf("QueueItem after cancel = %+v, %v; want cancelled", it, err)
	}
	// Cancelling again: real Jenkins answers 500 "Could not cancel" for a
	// left item (ErrNotCancellable); the emulator answers 404.
	err = c.CancelQueueItem(ctx, res.QueueID)
	if !errors.Is(err, jenkins.ErrNotFound) && !errors.Is(err, jenkins.ErrNotCancellable) {
		t.Fatalf("second CancelQueueItem: err = %v, want ErrNotFound or ErrNotCancellable", err)
	}
	clk.Advance(6 * time.Minute)
	if _, err := c.QueueItem(ctx, res.QueueID); !errors.Is(err, jenkins.ErrNotFound) {
		t.Fatalf("QueueItem after the left-item TTL: err = %v, want ErrNotFound", err)
	}
}

func TestEmulatorAuth(t *testing.T) {
	srv, _ := newEmulator(t)
	ctx := context.Background()
	if err := srv.AddJob("app", jenkinsemu.JobSpec{Params: ferryParams}); err != nil {
		t.Fatal(err)
	}

	t.Run("password with crumb and session", func(t *testing.T) {
		c := emuClient(t, srv, func(c *jenkins.Config) { c.APIToken, c.Password = "", jenkinsemu.DefaultUser.Password })
		for i := range 3 {
			if _, err := c.Trigger(ctx, "app", map[string]string{"FERRY_ID": "pw-" + strconv.Itoa(i)}); err != nil {
				t.Fatalf("Trigger %d: %v", i, err)
			}
		}
		if n := srv.Calls()[jenkinsemu.RouteCrumb]; n != 1 {
			t.Errorf("crumb fetched %d times, want 1", n)
		}
	})
	t.Run("token needs no crumb", func(t *testing.T) {
		srv.ResetCalls()
		c := emuClient(t, srv, nil)
		if _, err := c.Trigger(ctx, "app", map[string]string{"FERRY_ID": "tok"}); err != nil {
			t.Fatal(err)
		}
		if n := srv.Calls()[jenkinsemu.RouteCrumb]; n != 0 {
			t.Errorf("crumb fetched %d times with a token", n)
		}
	})
	t.Run("wrong token", func(t *testing.T) {
		c := emuClient(t, srv, func(c *jenkins.Config) { c.APIToken = "wrong-token-123456" })
		_, err := c.Ping(ctx)
		if !errors.Is(err, jenkins.ErrAuth) {
			t.Fatalf("err = %v, want ErrAuth", err)
		}
	})
	t.Run("read-only user", func(t *testing.T) {
		c := emuClient(t, srv, func(c *jenkins.Config) { c.User, c.APIToken = readOnly.Name, readOnly.Token })
		if _, err := c.Queue(ctx); err != nil {
			t.Fatalf("Queue: %v", err)
		}
		if _, err := c.Trigger(ctx, "app", nil); !errors.Is(err, jenkins.ErrAuth) {
			t.Errorf("Trigger: err = %v, want ErrAuth", err)
		}
		if err := c.CreateNode(ctx, jenkins.NodeSpec{Name: "x"}); !errors.Is(err, jenkins.ErrAuth) {
			t.Errorf("CreateNode: err = %v, want ErrAuth", err)
		}
	})
	t.Run("anonymous", func(t *testing.T) {
		c := emuClient(t, srv, func(c *jenkins.Config) { c.User, c.APIToken = "", "" })
		if _, err := c.Queue(ctx); !errors.Is(err, jenkins.ErrAuth) {
			t.Errorf("Queue: err = %v, want ErrAuth", err)
		}
	})
}

func TestEmulatorDown(t *testing.T) {
	srv, _ := newEmulator(t)
	ctx := context.Background()
	c := emuClient(t, srv, nil)
	for _, mode := range []jenkinsemu.DownMode{jenkinsemu.Unavailable, jenkinsemu.Refuse} {
		if err := srv.SetDown(mode); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Queue(ctx); !jenkins.IsRetryable(err) {
			t.Errorf("mode %d: Queue err = %v, want retryable", mode, err)
		}
		if _, err := c.Ping(ctx); !jenkins.IsRetryable(err) {
			t.Errorf("mode %d: Ping err = %v, want retryable", mode, err)
		}
		if err := srv.SetDown(jenkinsemu.Up); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Queue(ctx); err != nil {
			t.Errorf("after mode %d: Queue: %v", mode, err)
		}
	}
	srv.SetLatency(time.Second)
	slow := emuClient(t, srv, func(c *jenkins.Config) { c.Timeout = 20 * time.Millisecond })
	if _, err := slow.Queue(ctx); !jenkins.IsRetryable(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("slow Queue err = %v, want a retryable timeout", err)
	}
}

// TestEmulatorMarkOffline: an agent marked offline while its build runs
// finishes that build and is given no other, however often it is marked;
// Computers tells it is still connected.
func TestEmulatorMarkOffline(t *testing.T) {
	srv, clk := newEmulator(t)
	ctx := context.Background()
	if err := srv.AddJob("app", jenkinsemu.JobSpec{Label: emuLabel, Duration: time.Minute, Params: ferryParams}); err != nil {
		t.Fatal(err)
	}
	c := emuClient(t, srv, nil)
	const agent = "ferry-q1-a1"
	if err := c.CreateNode(ctx, jenkins.NodeSpec{Name: agent, Labels: []string{emuLabel}, WebSocket: true}); err != nil {
		t.Fatal(err)
	}
	secret, err := c.NodeSecret(ctx, agent)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.ConnectAgent(agent, secret); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Trigger(ctx, "app", map[string]string{"SHA": "a"}); err != nil {
		t.Fatal(err)
	}
	const reason = "ferry: one build per agent"
	for i := range 2 {
		if err := c.MarkOffline(ctx, agent, reason); err != nil {
			t.Fatalf("MarkOffline #%d: %v", i+1, err)
		}
	}
	comps, err := c.Computers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(comps, func(cp jenkins.Computer) bool { return cp.Name == agent })
	if i < 0 {
		t.Fatalf("Computers = %+v, want %s", comps, agent)
	}
	if cp := comps[i]; !cp.Offline || !cp.TemporarilyOffline || !cp.Connected() || cp.OfflineReason != reason || len(cp.Running) != 1 {
		t.Fatalf("computer = %+v, want temporarily offline (%q), connected, running build 1", cp, reason)
	}

	second, err := c.Trigger(ctx, "app", map[string]string{"SHA": "b"})
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Minute)
	if b, err := c.Build(ctx, "app", 1); err != nil || b.Building || b.Result != jenkins.ResultSuccess {
		t.Fatalf("build 1 = %+v, %v; want it to finish on the offline agent", b, err)
	}
	item, err := c.QueueItem(ctx, second.QueueID)
	if err != nil || item.Started() {
		t.Fatalf("second item = %+v, %v; want it still waiting", item, err)
	}
	if n, _ := srv.Node(agent); n.Online || !n.TemporarilyOffline {
		t.Errorf("node = %+v, want still offline after two marks", n)
	}

	if err := srv.DisconnectAgent(agent); err != nil {
		t.Fatal(err)
	}
	comps, err = c.Computers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(comps, func(cp jenkins.Computer) bool { return cp.Name == agent }); i < 0 || comps[i].Connected() {
		t.Errorf("computer after the agent left = %+v, want not connected", comps)
	}
	if err := c.MarkOffline(ctx, "ferry-nope", reason); !errors.Is(err, jenkins.ErrNotFound) {
		t.Errorf("MarkOffline of an unknown node: %v, want ErrNotFound", err)
	}
	viewer := emuClient(t, srv, func(cfg *jenkins.Config) { cfg.User, cfg.APIToken = readOnly.Name, readOnly.Token })
	if err := viewer.MarkOffline(ctx, agent, reason); !errors.Is(err, jenkins.ErrAuth) {
		t.Errorf("MarkOffline without Computer.DISCONNECT: %v, want ErrAuth", err)
	}
}

// TestEmulatorStopBuild: StopBuild aborts a running build, is a no-op on
// one that ended, and says ErrNotFound for a build that does not exist.
func TestEmulatorStopBuild(t *testing.T) {
	srv := jenkinsemu.New(jenkinsemu.Options{BuiltInExecutors: 1, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(srv.Close)
	ctx := context.Background()
	if err := srv.AddJob("team/app", jenkinsemu.JobSpec{Duration: jenkinsemu.Forever, Params: ferryParams}); err != nil {
		t.Fatal(err)
	}
	c := emuClient(t, srv, nil)
	if _, err := c.Trigger(ctx, "team/app", map[string]string{"SHA": "a"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for b, ok := srv.Build("team/app", 1); !ok || !b.Building; b, ok = srv.Build("team/app", 1) {
		if time.Now().After(deadline) {
			t.Fatal("build #1 never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for range 2 {
		if err := c.StopBuild(ctx, "team/app", 1); err != nil {
			t.Fatalf("StopBuild: %v", err)
		}
	}
	if b, _ := srv.Build("team/app", 1); b.Building || b.Result != jenkinsemu.Aborted {
		t.Errorf("build after StopBuild = %+v, want ABORTED", b)
	}
	if err := c.StopBuild(ctx, "team/app", 9); !errors.Is(err, jenkins.ErrNotFound) {
		t.Errorf("StopBuild of a missing build: %v, want ErrNotFound", err)
	}
}
