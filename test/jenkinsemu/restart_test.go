package jenkinsemu

import (
	"net/http"
	"net/url"
	"testing"
	"time"
)

// A restart keeps what Jenkins keeps on disk (the job, its finished
// builds, the next build number, the agent node) and loses what lived
// in the JVM: the running build (404 afterwards), the queue, the agent's
// connection, the session. It comes back on the same address.
func TestRestartLosesRunningBuildsAndTheQueueKeepsJobsAndNodes(t *testing.T) {
	s, clk := newTestServer(t, Options{})
	mustAdd(t, s, "app", JobSpec{Label: "ferry", Duration: time.Minute, Params: []Param{{Name: "N"}}})
	c := tokenClient(t, s)
	mustCreateAgent(t, s, c, "agent-1", "ferry", "EXCLUSIVE", 1)
	c.trigger("app", url.Values{"N": {"1"}})
	clk.Advance(2 * time.Minute)
	c.trigger("app", url.Values{"N": {"2"}})
	c.trigger("app", url.Values{"N": {"3"}})
	if b, _ := s.Build("app", 2); !b.Building {
		t.Fatalf("build 2 = %+v, want running", b)
	}
	if len(s.QueueItems()) != 1 {
		t.Fatalf("queue = %+v, want build 3 waiting", s.QueueItems())
	}
	url0 := s.URL()
	session := c.get("/api/json").header.Get("X-Jenkins-Session")

	if err := s.Restart(0); err != nil {
		t.Fatal(err)
	}
	if s.URL() != url0 {
		t.Fatalf("URL after restart = %s, want %s", s.URL(), url0)
	}
	r := c.get("/api/json")
	if r.status != http.StatusOK || r.header.Get("X-Jenkins-Session") == session {
		t.Errorf("after restart: %d session %q (before %q), want 200 and a new session", r.status, r.header.Get("X-Jenkins-Session"), session)
	}
	if b, ok := s.Build("app", 1); !ok || b.Result != Success {
		t.Errorf("finished build 1 = %+v (%v), want kept", b, ok)
	}
	if r := c.get("/job/app/2/api/json"); r.status != http.StatusNotFound {
		t.Errorf("running build 2 after restart: %d, want 404 (lost)", r.status)
	}
	if q := s.QueueItems(); len(q) != 0 {
		t.Errorf("queue after restart = %+v, want empty", q)
	}
	if n, ok := s.Node("agent-1"); !ok || n.Connected || n.Online || len(n.Running) != 0 {
		t.Errorf("agent after restart = %+v (%v), want kept, offline, idle", n, ok)
	}
	if job := c.getJSON("/job/app/api/json"); job["nextBuildNumber"] != float64(3) {
		t.Errorf("nextBuildNumber = %v, want 3 (build 2's number is not reused; the lost queue item never had one)", job["nextBuildNumber"])
	}
	// The agent connects again and takes the next build.
	if err := s.ConnectAgent("agent-1", s.AgentSecret("agent-1")); err != nil {
		t.Fatal(err)
	}
	c.trigger("app", url.Values{"N": {"4"}})
	if b, ok := s.Build("app", 3); !ok || b.Node != "agent-1" {
		t.Errorf("build after restart = %+v (%v), want #3 on agent-1", b, ok)
	}
}
