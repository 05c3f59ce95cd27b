package jenkinsemu

import (
	"errors"
	"net/url"
	"testing"
	"time"
)

// TestSchedulingMatch pins Node.canTake: labels must match; EXCLUSIVE nodes
// take only items whose label matches them; NORMAL nodes also take items
// without a label — but not items whose label they lack.
func TestSchedulingMatch(t *testing.T) {
	tests := []struct {
		name      string
		jobLabel  string
		labels    string
		mode      string
		connect   bool
		wantStart bool
	}{
		{"exclusive node, matching label", "ferry", "ferry", "EXCLUSIVE", true, true},
		{"exclusive node, no label", "", "ferry", "EXCLUSIVE", true, false},
		{"normal node, no label", "", "ferry", "NORMAL", true, true},
		{"normal node, other label", "docker", "ferry", "NORMAL", true, false},
		{"node name is a label", "agent-1", "", "EXCLUSIVE", true, true},
		{"and expression", "linux && amd64", "linux amd64", "EXCLUSIVE", true, true},
		{"and expression, one missing", "linux && amd64", "linux", "EXCLUSIVE", true, false},
		{"or expression", "arm64 || amd64", "amd64", "EXCLUSIVE", true, true},
		{"negation", "linux && !gpu", "linux gpu", "NORMAL", true, false},
		{"offline node", "ferry", "ferry", "EXCLUSIVE", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestServer(t, Options{})
			mustAdd(t, s, "app", JobSpec{Label: tt.jobLabel, Duration: Forever})
			c := tokenClient(t, s)
			if r := c.createNode("agent-1", tt.labels, tt.mode, 1); r.status != 302 {
				t.Fatalf("create: %d", r.status)
			}
			if tt.connect {
				if err := s.ConnectAgent("agent-1", s.AgentSecret("agent-1")); err != nil {
					t.Fatal(err)
				}
			}
			c.post("/job/app/build", nil)
			started := len(s.Builds("app")) == 1
			if started != tt.wantStart {
				t.Fatalf("started = %v, want %v (queue %+v)", started, tt.wantStart, s.QueueItems())
			}
			if started {
				if b, _ := s.Build("app", 1); b.Node != "agent-1" || !b.Building {
					t.Errorf("build = %+v", b)
				}
			}
		})
	}
}

// TestProvisioningFlow is the flow ferry's provisioner relies on: the item
// waits, a node is created offline, the agent connects with the secret from
// the JNLP file, the build starts on it, ends with its result, and the
// executor is idle again.
func TestProvisioningFlow(t *testing.T) {
	s, clk := newTestServer(t, Options{})
	mustAdd(t, s, "app", JobSpec{Label: "ferry", Duration: 90 * time.Second, Result: Failure, Params: []Param{{Name: "SHA"}}})
	c := tokenClient(t, s)
	id := c.trigger("app", url.Values{"SHA": {"abc"}})
	if r := c.createNode("ferry-"+itoa(int(id)), "ferry", "EXCLUSIVE", 1); r.status != 302 {
		t.Fatalf("create: %d", r.status)
	}
	items := s.QueueItems()
	if len(items) != 1 || items[0].Why != "ferry-1 is offline" || !items[0].Stuck {
		t.Fatalf("queue before connecting = %+v", items)
	}
	clk.Advance(3 * time.Second)
	if err := s.ConnectAgent("ferry-1", s.AgentSecret("ferry-1")); err != nil {
		t.Fatal(err)
	}
	qi, _ := s.QueueItem(id)
	if qi.State != "left" || qi.BuildNumber != 1 {
		t.Fatalf("item after connecting = %+v", qi)
	}
	b, _ := s.Build("app", 1)
	if !b.Building || b.Node != "ferry-1" || b.QueueID != id || b.Params["SHA"] != "abc" || !b.Start.Equal(clk.Now()) {
		t.Fatalf("build = %+v", b)
	}
	clk.Advance(90 * time.Second)
	b, _ = s.Build("app", 1)
	if b.Building || b.Result != Failure || b.Duration != 90*time.Second {
		t.Fatalf("finished build = %+v", b)
	}
	n, _ := s.Node("ferry-1")
	if len(n.Running) != 0 || !n.Online {
		t.Errorf("node after the build = %+v", n)
	}
	if got := c.getJSON("/computer/ferry-1/api/json")["idle"]; got != true {
		t.Errorf("REST idle = %v", got)
	}
}

func TestExecutors(t *testing.T) {
	s, clk := newTestServer(t, Options{})
	mustAdd(t, s, "app", JobSpec{Label: "ferry", Duration: time.Minute, Params: []Param{{Name: "N"}}})
	c := tokenClient(t, s)
	mustCreateAgent(t, s, c, "big", "ferry", "EXCLUSIVE", 2)
	for i := range 3 {
		c.trigger("app", url.Values{"N": {itoa(i)}})
	}
	if n, _ := s.Node("big"); len(n.Running) != 2 {
		t.Fatalf("running = %v, want two builds on two executors", n.Running)
	}
	items := s.QueueItems()
	if len(items) != 1 || items[0].Why != "Waiting for next available executor on ‘big’" {
		t.Fatalf("queue = %+v", items)
	}
	clk.Advance(time.Minute)
	if n, _ := s.Node("big"); len(n.Running) != 1 {
		t.Errorf("running after the first two ended = %v", n.Running)
	}
	if b, _ := s.Build("app", 3); !b.Start.Equal(clk.Now()) {
		t.Errorf("#3 started at %v, want when an executor freed up (%v)", b.Start, clk.Now())
	}
}

// TestEventOrder pins that a long jump of the clock replays every
// transition at its own time.
func TestEventOrder(t *testing.T) {
	s, clk := newTestServer(t, Options{})
	mustAdd(t, s, "app", JobSpec{Label: "ferry", Duration: 10 * time.Second, Params: []Param{{Name: "N"}}})
	c := tokenClient(t, s)
	mustCreateAgent(t, s, c, "a1", "ferry", "EXCLUSIVE", 1)
	t0 := clk.Now()
	for i := range 3 {
		c.trigger("app", url.Values{"N": {itoa(i)}})
	}
	clk.Advance(time.Hour)
	for i, b := range s.Builds("app") {
		if want := t0.Add(time.Duration(i) * 10 * time.Second); !b.Start.Equal(want) || b.Building || b.Duration != 10*time.Second {
			t.Errorf("build %d = start %v duration %v building %v, want start %v", b.Number, b.Start, b.Duration, b.Building, want)
		}
	}
}

func TestBuildControl(t *testing.T) {
	tests := []struct {
		name       string
		spec       JobSpec
		act        func(s *Server, clk *fakeClock) error
		wantResult Result
		wantDur    time.Duration
	}{
		{
			name: "job result and duration",
			spec: JobSpec{Label: "l", Duration: time.Minute, Result: Unstable},
			act: func(s *Server, clk *fakeClock) error {
				clk.Advance(time.Minute)
				return nil
			},
			wantResult: Unstable, wantDur: time.Minute,
		},
		{
			name:       "zero duration ends at once",
			spec:       JobSpec{Label: "l"},
			act:        func(*Server, *fakeClock) error { return nil },
			wantResult: Success, wantDur: 0,
		},
		{
			name: "finish a forever build",
			spec: JobSpec{Label: "l", Duration: Forever},
			act: func(s *Server, clk *fakeClock) error {
				clk.Advance(time.Hour)
				return s.FinishBuild("app", 1, Failure)
			},
			wantResult: Failure, wantDur: time.Hour,
		},
		{
			name: "override a running build",
			spec: JobSpec{Label: "l", Duration: time.Hour},
			act: func(s *Server, clk *fakeClock) error {
				clk.Advance(time.Minute)
				if err := s.OverrideBuild("app", 1, BuildOverride{Result: Aborted, Duration: 2 * time.Minute}); err != nil {
					return err
				}
				clk.Advance(time.Minute)
				return nil
			},
			wantResult: Aborted, wantDur: 2 * time.Minute,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, clk := newTestServer(t, Options{})
			mustAdd(t, s, "app", tt.spec)
			c := tokenClient(t, s)
			mustCreateAgent(t, s, c, "a1", "l", "EXCLUSIVE", 1)
			c.post("/job/app/build", nil)
			if err := tt.act(s, clk); err != nil {
				t.Fatal(err)
			}
			b, ok := s.Build("app", 1)
			if !ok || b.Building || b.Result != tt.wantResult || b.Duration != tt.wantDur {
				t.Fatalf("build = %+v, want %s after %v", b, tt.wantResult, tt.wantDur)
			}
		})
	}
}

func TestOverrideFutureBuild(t *testing.T) {
	s, clk := newTestServer(t, Options{})
	mustAdd(t, s, "app", JobSpec{Label: "l", Duration: time.Minute})
	c := tokenClient(t, s)
	if err := s.OverrideBuild("app", 1, BuildOverride{Result: Failure, Duration: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	mustCreateAgent(t, s, c, "a1", "l", "EXCLUSIVE", 1)
	c.post("/job/app/build", nil)
	clk.Advance(5 * time.Second)
	if b, _ := s.Build("app", 1); b.Building || b.Result != Failure {
		t.Errorf("build = %+v, want FAILURE after 5s", b)
	}
	if err := s.FinishBuild("app", 1, Success); err == nil {
		t.Errorf("finishing a finished build succeeded")
	}
	if err := s.FinishBuild("app", 7, Success); !errors.Is(err, ErrNoSuchBuild) {
		t.Errorf("FinishBuild of a missing build = %v", err)
	}
	if err := s.FinishBuild("nope", 1, Success); !errors.Is(err, ErrNoSuchJob) {
		t.Errorf("FinishBuild of a missing job = %v", err)
	}
}

// TestAgentLoss pins what DisconnectAgent does: the build hangs (building,
// executor held, no end) until the agent reconnects, then finishes with the
// time it had left; deleting the node instead aborts it.
func TestAgentLoss(t *testing.T) {
	s, clk := newTestServer(t, Options{})
	mustAdd(t, s, "app", JobSpec{Label: "ferry", Duration: time.Minute, Params: []Param{{Name: "N"}}})
	c := tokenClient(t, s)
	mustCreateAgent(t, s, c, "a1", "ferry", "EXCLUSIVE", 1)
	mustCreateAgent(t, s, c, "a2", "ferry", "EXCLUSIVE", 1)
	c.trigger("app", url.Values{"N": {"1"}})
	c.trigger("app", url.Values{"N": {"2"}})
	clk.Advance(20 * time.Second)
	for _, n := range []string{"a1", "a2"} {
		if err := s.DisconnectAgent(n); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(time.Hour)
	for _, n := range []int{1, 2} {
		if b, _ := s.Build("app", n); !b.Building || !b.Hung {
			t.Fatalf("build %d = %+v, want hanging", n, b)
		}
	}
	comp := c.getJSON("/computer/a1/api/json")
	if comp["offline"] != true || path(t, comp, "offlineCause", "_class") != "hudson.slaves.OfflineCause$ChannelTermination" || comp["idle"] != false {
		t.Errorf("a1 = offline %v cause %v idle %v", comp["offline"], comp["offlineCause"], comp["idle"])
	}

	if err := s.ConnectAgent("a1", s.AgentSecret("a1")); err != nil {
		t.Fatal(err)
	}
	clk.Advance(40*time.Second - time.Millisecond)
	if b, _ := s.Build("app", 1); !b.Building {
		t.Fatalf("build 1 ended before its remaining 40s")
	}
	clk.Advance(time.Millisecond)
	if b, _ := s.Build("app", 1); b.Building || b.Result != Success {
		t.Errorf("build 1 after reconnecting = %+v", b)
	}

	if r := c.post("/computer/a2/doDelete", nil); r.status != 302 {
		t.Fatalf("delete: %d", r.status)
	}
	if b, _ := s.Build("app", 2); b.Building || b.Result != Aborted {
		t.Errorf("build 2 after deleting its node = %+v", b)
	}
}

func TestBuiltInExecutors(t *testing.T) {
	s, _ := newTestServer(t, Options{BuiltInExecutors: 1})
	mustAdd(t, s, "plain", JobSpec{Duration: Forever})
	mustAdd(t, s, "labelled", JobSpec{Label: "ferry", Duration: Forever})
	c := tokenClient(t, s)
	c.post("/job/plain/build", nil)
	c.post("/job/labelled/build", nil)
	if b, ok := s.Build("plain", 1); !ok || b.Node != "" || !b.Building {
		t.Errorf("unlabelled build = %+v, want it on the built-in node", b)
	}
	if _, ok := s.Build("labelled", 1); ok {
		t.Errorf("labelled build ran on the built-in node")
	}
	if bi := c.getJSON("/computer/api/json?depth=1"); path(t, bi, "computer", 0, "executors", 0, "currentExecutable", "number") != float64(1) {
		t.Errorf("built-in executors = %v", path(t, bi, "computer", 0, "executors"))
	}
}

func TestNonConcurrentJob(t *testing.T) {
	s, clk := newTestServer(t, Options{})
	mustAdd(t, s, "app", JobSpec{Label: "ferry", Duration: time.Minute, DisableConcurrentBuilds: true, Params: []Param{{Name: "N"}}})
	c := tokenClient(t, s)
	mustCreateAgent(t, s, c, "a1", "ferry", "NORMAL", 4)
	for i := range 3 {
		c.trigger("app", url.Values{"N": {itoa(i)}})
	}
	if n := len(s.Builds("app")); n != 1 {
		t.Fatalf("%d builds running, want 1", n)
	}
	items := s.QueueItems()
	if len(items) != 2 || items[0].State != "blocked" || items[1].State != "blocked" {
		t.Fatalf("queue = %+v, want two blocked items", items)
	}
	clk.Advance(time.Minute)
	if n := len(s.Builds("app")); n != 2 {
		t.Errorf("%d builds after the first ended, want 2", n)
	}
}

// TestPipelineJob pins JobSpec.Pipeline: the job's item starts at once on a
// flyweight executor; the build waits for its node block through a
// placeholder item that has no parameters, whose task is the build, and
// whose why carries the label.
func TestPipelineJob(t *testing.T) {
	s, clk := newTestServer(t, Options{})
	mustAdd(t, s, "team/app", JobSpec{Label: "ferry", Duration: time.Minute, Pipeline: true, Params: []Param{{Name: "SHA"}}})
	c := tokenClient(t, s)
	c.createNode("other", "linux", "NORMAL", 1)
	id := c.trigger("team/app", url.Values{"SHA": {"abc"}})

	item := c.getJSON("/queue/item/" + itoa(int(id)) + "/api/json")
	if item["_class"] != "hudson.model.Queue$LeftItem" || path(t, item, "executable", "number") != float64(1) ||
		path(t, item, "task", "_class") != "org.jenkinsci.plugins.workflow.job.WorkflowJob" {
		t.Fatalf("job item = %v", item)
	}
	b := c.getJSON("/job/team/job/app/1/api/json")
	if b["_class"] != "org.jenkinsci.plugins.workflow.job.WorkflowRun" || b["building"] != true || b["inProgress"] != true {
		t.Errorf("run = %v", b)
	}
	items := c.getJSON("/queue/api/json")["items"].([]any)
	if len(items) != 1 {
		t.Fatalf("queue = %v, want the node block's placeholder", items)
	}
	ph := items[0].(map[string]any)
	if ph["why"] != "There are no nodes with the label ‘ferry’" || ph["params"] != "" || len(ph["actions"].([]any)) != 0 ||
		path(t, ph, "task", "url") != "job/team/job/app/1/" || path(t, ph, "task", "name") != "part of team » app #1" ||
		path(t, ph, "task", "_class") != "org.jenkinsci.plugins.workflow.support.steps.ExecutorStepExecution$PlaceholderTask" {
		t.Errorf("placeholder = %v", ph)
	}
	if j := c.getJSON("/job/team/job/app/api/json"); j["inQueue"] != false || j["color"] != "notbuilt_anime" {
		t.Errorf("job inQueue %v color %v: the placeholder is not the job's item", j["inQueue"], j["color"])
	}
	if bi := path(t, c.getJSON("/computer/api/json"), "computer", 0); bi.(map[string]any)["idle"] != false || len(bi.(map[string]any)["oneOffExecutors"].([]any)) != 1 {
		t.Errorf("built-in node = %v, want the run on a one-off executor", bi)
	}

	clk.Advance(time.Minute) // waiting for the node does not count
	mustCreateAgent(t, s, c, "ferry-1", "ferry", "EXCLUSIVE", 1)
	if n := len(s.QueueItems()); n != 0 {
		t.Fatalf("%d items after the agent connected", n)
	}
	if bb, _ := s.Build("team/app", 1); !bb.Building || bb.Node != "ferry-1" {
		t.Fatalf("build = %+v, want it on ferry-1", bb)
	}
	phItem := c.getJSON("/queue/item/" + itoa(int(path(t, ph, "id").(float64))) + "/api/json")
	exe := path(t, phItem, "executable").(map[string]any)
	const placeholderExecutable = "org.jenkinsci.plugins.workflow.support.steps.ExecutorStepExecution$PlaceholderTask$PlaceholderExecutable"
	if phItem["_class"] != "hudson.model.Queue$LeftItem" || exe["_class"] != placeholderExecutable ||
		exe["number"] != float64(1) || exe["url"] != s.URL()+"/job/team/job/app/1/" {
		t.Errorf("placeholder left item = %v", phItem)
	}
	ce := path(t, c.getJSON("/computer/ferry-1/api/json?tree=executors[currentExecutable[number,url]]"), "executors", 0, "currentExecutable").(map[string]any)
	if ce["_class"] != placeholderExecutable || ce["number"] != float64(1) || ce["url"] != s.URL()+"/job/team/job/app/1/" {
		t.Errorf("agent executor runs %v", ce)
	}
	clk.Advance(time.Minute)
	if bb, _ := s.Build("team/app", 1); bb.Building || bb.Result != Success || bb.Duration != 2*time.Minute {
		t.Errorf("build = %+v, want SUCCESS after 2 minutes", bb)
	}

	t.Run("cancelling the node block aborts the run", func(t *testing.T) {
		c.trigger("team/app", url.Values{"SHA": {"def"}})
		c.trigger("team/app", url.Values{"SHA": {"ghi"}}) // ferry-1 is busy: #3 waits
		items := s.QueueItems()
		if len(items) != 1 || !items[0].Placeholder || items[0].BuildNumber != 3 {
			t.Fatalf("queue = %+v", items)
		}
		if r := c.post("/queue/cancelItem?id="+itoa(int(items[0].ID)), nil); r.status != 204 {
			t.Fatalf("cancel: %d", r.status)
		}
		if bb, _ := s.Build("team/app", 3); bb.Building || bb.Result != Aborted {
			t.Errorf("build 3 = %+v, want ABORTED", bb)
		}
	})
}

func TestUpdateJobAndDeleteNode(t *testing.T) {
	s, clk := newTestServer(t, Options{})
	mustAdd(t, s, "app", JobSpec{Label: "old", Duration: time.Minute, Params: []Param{{Name: "N"}}})
	c := tokenClient(t, s)
	mustCreateAgent(t, s, c, "a1", "new", "EXCLUSIVE", 1)
	c.trigger("app", url.Values{"N": {"1"}})
	if len(s.Builds("app")) != 0 {
		t.Fatalf("build started on a node without the label")
	}
	if err := s.UpdateJob("app", func(js *JobSpec) { js.Label, js.Result = "new", Failure }); err != nil {
		t.Fatal(err)
	}
	if b, ok := s.Build("app", 1); !ok || b.Node != "a1" {
		t.Fatalf("after relabelling the job: %+v", b)
	}
	if err := s.UpdateJob("app", func(js *JobSpec) { js.Label = "a &&" }); err == nil {
		t.Errorf("UpdateJob accepted a bad label expression")
	}
	if err := s.UpdateJob("nope", func(*JobSpec) {}); !errors.Is(err, ErrNoSuchJob) {
		t.Errorf("UpdateJob of a missing job = %v", err)
	}
	clk.Advance(10 * time.Second)
	if err := s.DeleteNode("a1"); err != nil {
		t.Fatal(err)
	}
	if b, _ := s.Build("app", 1); b.Result != Aborted || b.Duration != 10*time.Second {
		t.Errorf("build after DeleteNode = %+v", b)
	}
	for _, name := range []string{"a1", "", "(built-in)"} {
		if err := s.DeleteNode(name); !errors.Is(err, ErrNoSuchNode) {
			t.Errorf("DeleteNode(%q) = %v, want ErrNoSuchNode", name, err)
		}
	}
	if err := s.DisconnectAgent("a1"); !errors.Is(err, ErrNoSuchNode) {
		t.Errorf("DisconnectAgent of a deleted node = %v", err)
	}
}

func TestAddJobErrors(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	mustAdd(t, s, "team/app", JobSpec{})
	tests := []struct {
		name string
		path string
		spec JobSpec
		want error
	}{
		{"exists", "team/app", JobSpec{}, ErrJobExists},
		{"folder exists", "team", JobSpec{}, ErrJobExists},
		{"job used as folder", "team/app/sub", JobSpec{}, nil},
		{"empty", "/", JobSpec{}, nil},
		{"bad label", "x", JobSpec{Label: "(a"}, nil},
		{"choice without choices", "y", JobSpec{Params: []Param{{Name: "C", Type: ChoiceParam}}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.AddJob(tt.path, tt.spec)
			if err == nil {
				t.Fatalf("AddJob(%q) succeeded", tt.path)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}
