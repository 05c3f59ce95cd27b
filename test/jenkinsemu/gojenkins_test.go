package jenkinsemu

import (
	"context"
	"encoding/xml"
	"net/http"
	"testing"
	"time"

	"github.com/bndr/gojenkins"
)

// TestGojenkins drives the emulator with gojenkins v1.1.0 itself, proving
// the wire format is what gojenkins decodes, and pins the gojenkins bugs
// ferry's client has to work around:
//
//   - CreateNode always sends mode NORMAL and misspells retentionStrategy
//     ("retentionsStrategy"), so Jenkins ignores the strategy.
//   - BuildJob first asks the job whether it is inQueue and, if anything of
//     that job is queued — whatever its parameters — returns (0, nil)
//     without triggering. Jenkins itself would have queued a build with
//     different parameters, and answers a merged identical trigger with 303
//     and the existing item's Location (which gojenkins never sees).
//   - Task.Cancel reports false on success: Jenkins answers 204, gojenkins
//     checks for 200.
//   - GetBuildFromQueueID polls every second without limit (it returns here
//     only because the item starts) and Task.GetJob resolves jobs by
//     task.name, which is wrong for jobs in folders.
//   - Requests ignore the context, and SetCrumb ignores the crumb request's
//     error (a nil response then panics) — not exercised here.
//   - Parameter values are decoded as strings: boolean parameters (JSON
//     true/false) make the decoding of the whole response fail silently.
func TestGojenkins(t *testing.T) {
	// Real time: GetBuildFromQueueID sleeps a real second between polls.
	s := New(Options{Logger: quietLogger})
	t.Cleanup(s.Close)
	mustAdd(t, s, "app", JobSpec{Label: "ferry", Duration: Forever, Params: []Param{{Name: "SHA"}, {Name: "REF", Default: "main"}}})
	ctx := context.Background()
	hc := &http.Client{Timeout: 10 * time.Second}
	jk, err := gojenkins.CreateJenkins(hc, s.URL(), DefaultUser.Name, DefaultUser.Token).Init(ctx)
	if err != nil {
		t.Fatalf("init: %v", err)
	}
	if jk.Version != "2.462.3" {
		t.Errorf("version = %q", jk.Version)
	}

	node, err := jk.CreateNode(ctx, "ferry-1", 1, "ferry agent", "/home/jenkins", "ferry")
	if err != nil {
		t.Fatalf("create node: %v", err)
	}
	if node.Raw.DisplayName != "ferry-1" || !node.Raw.Offline || !node.Raw.JnlpAgent {
		t.Errorf("node = %+v", node.Raw)
	}
	emuNode, _ := s.Node("ferry-1")
	if emuNode.Mode != "NORMAL" || emuNode.RetentionStrategy != "" || emuNode.CreateType != "hudson.slaves.DumbSlave$DescriptorImpl" {
		t.Errorf("gojenkins-created node = %+v; expected mode NORMAL and no retention strategy (misspelled)", emuNode)
	}

	queueID, err := jk.BuildJob(ctx, "app", map[string]string{"SHA": "abc"})
	if err != nil || queueID == 0 {
		t.Fatalf("BuildJob = %d, %v", queueID, err)
	}
	s.ResetCalls()
	again, err := jk.BuildJob(ctx, "app", map[string]string{"SHA": "def"})
	if err != nil || again != 0 {
		t.Errorf("second BuildJob while queued = %d, %v; want (0, nil)", again, err)
	}
	if n := s.Calls()[RouteBuildWithParameters]; n != 0 {
		t.Errorf("gojenkins sent %d triggers while the job was queued, want none", n)
	}

	q, err := jk.GetQueue(ctx)
	if err != nil {
		t.Fatalf("get queue: %v", err)
	}
	tasks := q.Tasks()
	if len(tasks) != 1 || tasks[0].Raw.ID != queueID || tasks[0].Raw.Task.Name != "app" ||
		tasks[0].GetWhy() != "ferry-1 is offline" || tasks[0].Raw.Params != "\nSHA=abc\nREF=main" {
		t.Fatalf("tasks = %+v", tasks)
	}
	if ps := tasks[0].GetParameters(); len(ps) != 2 || ps[0].Name != "SHA" || ps[0].Value != "abc" {
		t.Errorf("task parameters = %+v", ps)
	}
	if causes := tasks[0].GetCauses(); len(causes) != 1 || causes[0]["userId"] != "admin" {
		t.Errorf("task causes = %v", causes)
	}

	var jnlp string
	if _, err := jk.Requester.Get(ctx, "/computer/ferry-1/jenkins-agent.jnlp", &jnlp, nil); err != nil {
		t.Fatalf("jnlp: %v", err)
	}
	var f jnlpFile
	if err := xml.Unmarshal([]byte(jnlp), &f); err != nil || len(f.App.Args) == 0 {
		t.Fatalf("jnlp %q: %v", jnlp, err)
	}
	if err := s.ConnectAgent("ferry-1", f.App.Args[0]); err != nil {
		t.Fatalf("connect with the JNLP secret: %v", err)
	}

	build, err := jk.GetBuildFromQueueID(ctx, queueID)
	if err != nil {
		t.Fatalf("build from queue id: %v", err)
	}
	if build.GetBuildNumber() != 1 || !build.Raw.Building || build.Raw.QueueID != queueID || build.Raw.BuiltOn != "ferry-1" {
		t.Errorf("build = %+v", build.Raw)
	}
	if ps := build.GetParameters(); len(ps) != 2 || ps[0].Value != "abc" || ps[1].Value != "main" {
		t.Errorf("build parameters = %+v", ps)
	}
	if err := s.FinishBuild("app", 1, Failure); err != nil {
		t.Fatal(err)
	}
	build, err = jk.GetBuild(ctx, "app", 1)
	if err != nil {
		t.Fatalf("get build: %v", err)
	}
	if build.IsRunning(ctx) || build.GetResult() != "FAILURE" {
		t.Errorf("finished build: running %v result %q", build.Raw.Building, build.GetResult())
	}
	job, err := jk.GetJob(ctx, "app")
	if err != nil {
		t.Fatalf("get job: %v", err)
	}
	if job.Raw.LastBuild.Number != 1 || job.Raw.NextBuildNumber != 2 || len(job.Raw.Property) != 1 || len(job.Raw.Property[0].ParameterDefinitions) != 2 {
		t.Errorf("job = %+v", job.Raw)
	}

	// Cancel: the item is gone (204), yet gojenkins reports false.
	queueID, err = jk.BuildJob(ctx, "app", map[string]string{"SHA": "ghi"})
	if err != nil || queueID == 0 {
		t.Fatalf("BuildJob: %d %v", queueID, err)
	}
	if err := s.FinishBuild("app", 2, Success); err != nil {
		t.Fatal(err) // it started on the idle ferry-1 at once
	}
	if err := s.DisconnectAgent("ferry-1"); err != nil {
		t.Fatal(err)
	}
	queueID, err = jk.BuildJob(ctx, "app", map[string]string{"SHA": "jkl"})
	if err != nil || queueID == 0 {
		t.Fatalf("BuildJob: %d %v", queueID, err)
	}
	task, err := jk.GetQueueItem(ctx, queueID)
	if err != nil {
		t.Fatalf("queue item: %v", err)
	}
	ok, err := task.Cancel(ctx)
	if err != nil || ok {
		t.Errorf("Cancel = %v, %v; want gojenkins' false on a 204", ok, err)
	}
	if qi, _ := s.QueueItem(queueID); !qi.Cancelled {
		t.Errorf("item not cancelled: %+v", qi)
	}

	nodes, err := jk.GetAllNodes(ctx)
	if err != nil || len(nodes) != 2 || nodes[0].GetName() != "Built-In Node" || nodes[1].GetName() != "ferry-1" {
		t.Fatalf("nodes = %v, %v", nodes, err)
	}
	deleted, err := jk.DeleteNode(ctx, "ferry-1")
	if err != nil || !deleted {
		t.Errorf("DeleteNode = %v, %v (gojenkins follows the 302 to the node list)", deleted, err)
	}
	if _, ok := s.Node("ferry-1"); ok {
		t.Errorf("node still exists")
	}
}

// TestGojenkinsTransportBugs pins two gojenkins failures that show only when
// the controller misbehaves: SetCrumb dereferences the nil response of a
// failed crumb request (a panic instead of an error), and requests ignore
// the context.
func TestGojenkinsTransportBugs(t *testing.T) {
	s := New(Options{Logger: quietLogger})
	t.Cleanup(s.Close)
	mustAdd(t, s, "app", JobSpec{Label: "ferry"})
	ctx := context.Background()
	jk, err := gojenkins.CreateJenkins(&http.Client{Timeout: 10 * time.Second}, s.URL(), DefaultUser.Name, DefaultUser.Token).Init(ctx)
	if err != nil {
		t.Fatalf("init: %v", err)
	}

	t.Run("context is ignored", func(t *testing.T) {
		const latency = 300 * time.Millisecond
		s.SetLatency(latency)
		defer s.SetLatency(0)
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		start := time.Now()
		if _, err := jk.GetJob(cancelled, "app"); err != nil {
			t.Fatalf("GetJob with a cancelled context failed (%v); gojenkins was expected to ignore the context", err)
		}
		if d := time.Since(start); d < latency {
			t.Errorf("GetJob returned after %v, before the server answered", d)
		}
	})

	t.Run("SetCrumb panics when the controller is unreachable", func(t *testing.T) {
		if err := s.SetDown(Refuse); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := s.SetDown(Up); err != nil {
				t.Fatal(err)
			}
		}()
		panicked := func() (p bool) {
			defer func() { p = recover() != nil }()
			_, _ = jk.Requester.Post(ctx, "/job/app/build", nil, nil, nil)
			return false
		}()
		if !panicked {
			t.Errorf("gojenkins' POST on a refused connection did not panic; has SetCrumb been fixed?")
		}
	})
}
