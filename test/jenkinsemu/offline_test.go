package jenkinsemu

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestToggleOfflineKeepsTheRunningBuildAndTakesNoOther pins what ferry's
// one-build-per-agent rule rests on: a temporarily-offline node keeps the
// build it runs (the agent stays connected) but Queue.JobOffer.isAvailable()
// never offers it another, and toggleOffline toggles.
func TestToggleOfflineKeepsTheRunningBuildAndTakesNoOther(t *testing.T) {
	s, clk := newTestServer(t, Options{})
	mustAdd(t, s, "app", JobSpec{Label: "ferry", Duration: time.Minute, Params: []Param{{Name: "N"}}})
	c := tokenClient(t, s)
	mustCreateAgent(t, s, c, "agent-1", "ferry", "EXCLUSIVE", 1)
	c.trigger("app", url.Values{"N": {"1"}})
	if b, _ := s.Build("app", 1); !b.Building || b.Node != "agent-1" {
		t.Fatalf("build 1 = %+v, want running on agent-1", b)
	}

	r := c.post("/computer/agent-1/toggleOffline", url.Values{"offlineMessage": {"  ferry: one build per agent "}})
	if r.status != http.StatusFound || r.header.Get("Location") != s.URL()+"/computer/agent-1/" {
		t.Fatalf("toggleOffline: %d Location %q, want 302 to the computer", r.status, r.header.Get("Location"))
	}
	comp := c.getJSON("/computer/agent-1/api/json")
	if comp["offline"] != true || comp["temporarilyOffline"] != true ||
		comp["offlineCauseReason"] != "ferry: one build per agent" || comp["absoluteRemotePath"] != "/home/jenkins/agent" ||
		path(t, comp, "offlineCause", "_class") != "hudson.slaves.OfflineCause$UserCause" ||
		path(t, comp, "offlineCause", "description") != "Disconnected by "+DefaultUser.Name+" : ferry: one build per agent" {
		t.Errorf("computer = %v", comp)
	}
	n, _ := s.Node("agent-1")
	if n.Online || !n.TemporarilyOffline || !n.Connected || len(n.Running) != 1 {
		t.Errorf("node = %+v, want temporarily offline, connected, still running its build", n)
	}

	// A second item waits while the build runs and after it ends.
	c.trigger("app", url.Values{"N": {"2"}})
	clk.Advance(2 * time.Minute)
	if b, _ := s.Build("app", 1); b.Building || b.Result != Success {
		t.Fatalf("build 1 = %+v, want SUCCESS", b)
	}
	if len(s.Builds("app")) != 1 {
		t.Fatalf("builds = %+v, want the second item still waiting", s.Builds("app"))
	}
	q := s.QueueItems()
	if len(q) != 1 || q[0].Why != "agent-1 is offline" || !q[0].Stuck {
		t.Fatalf("queue = %+v, want one stuck item, why \"agent-1 is offline\"", q)
	}

	// Toggling again brings it back: the waiting item starts at once.
	if r := c.post("/computer/agent-1/toggleOffline", nil); r.status != http.StatusFound {
		t.Fatalf("toggle back: %d", r.status)
	}
	comp = c.getJSON("/computer/agent-1/api/json")
	if comp["offline"] != false || comp["temporarilyOffline"] != false || comp["offlineCauseReason"] != "" || comp["offlineCause"] != nil {
		t.Errorf("computer after toggling back = %v", comp)
	}
	if b, ok := s.Build("app", 2); !ok || b.Node != "agent-1" {
		t.Errorf("build 2 = %+v (%v), want on agent-1", b, ok)
	}
}

// TestChangeOfflineCauseIsIdempotent: changeOfflineCause sets the node
// offline whatever it was, so calling it twice cannot bring it back as a
// second toggleOffline would.
func TestChangeOfflineCauseIsIdempotent(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	c := tokenClient(t, s)
	mustCreateAgent(t, s, c, "agent-1", "ferry", "EXCLUSIVE", 1)
	for i, msg := range []string{"first", "second"} {
		r := c.post("/computer/agent-1/changeOfflineCause", url.Values{"offlineMessage": {msg}})
		if r.status != http.StatusFound || r.header.Get("Location") != s.URL()+"/computer/agent-1/" {
			t.Fatalf("call %d: %d Location %q", i+1, r.status, r.header.Get("Location"))
		}
		comp := c.getJSON("/computer/agent-1/api/json?tree=offline,temporarilyOffline,offlineCauseReason")
		if comp["temporarilyOffline"] != true || comp["offline"] != true || comp["offlineCauseReason"] != msg {
			t.Errorf("after call %d: %v", i+1, comp)
		}
	}
	// No message: offline with an empty reason.
	if r := c.post("/computer/agent-1/toggleOffline", nil); r.status != http.StatusFound {
		t.Fatalf("toggle: %d", r.status)
	}
	if r := c.post("/computer/agent-1/toggleOffline", url.Values{"offlineMessage": {"   "}}); r.status != http.StatusFound {
		t.Fatalf("toggle: %d", r.status)
	}
	comp := c.getJSON("/computer/agent-1/api/json")
	if comp["temporarilyOffline"] != true || comp["offlineCauseReason"] != "" ||
		path(t, comp, "offlineCause", "description") != "Disconnected by "+DefaultUser.Name {
		t.Errorf("blank message: %v", comp)
	}
}

func TestToggleOfflineFailures(t *testing.T) {
	s, _ := newTestServer(t, Options{Users: []User{DefaultUser, readOnlyUser}})
	admin := tokenClient(t, s)
	mustCreateAgent(t, s, admin, "agent-1", "ferry", "EXCLUSIVE", 1)
	mustCreateAgent(t, s, admin, "agent-2", "ferry", "EXCLUSIVE", 1)
	if r := admin.post("/computer/agent-2/toggleOffline", nil); r.status != http.StatusFound {
		t.Fatalf("toggle: %d", r.status)
	}
	viewer := newClient(t, s, readOnlyUser.Name, readOnlyUser.Token)
	tests := []struct {
		name     string
		c        *client
		method   string
		path     string
		want     int
		wantBody string
	}{
		{"unknown node", admin, "POST", "/computer/nope/toggleOffline", 404, "Not Found"},
		{"unknown node, change cause", admin, "POST", "/computer/nope/changeOfflineCause", 404, "Not Found"},
		{"GET", admin, "GET", "/computer/agent-1/toggleOffline", 405, ""},
		{"take offline without Disconnect", viewer, "POST", "/computer/agent-1/toggleOffline", 403, "viewer is missing the Agent/Disconnect permission"},
		{"change cause without Disconnect", viewer, "POST", "/computer/agent-1/changeOfflineCause", 403, "viewer is missing the Agent/Disconnect permission"},
		{"bring online without Connect", viewer, "POST", "/computer/agent-2/toggleOffline", 403, "viewer is missing the Agent/Connect permission"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.c.do(tt.method, tt.path, url.Values{})
			if r.status != tt.want || !strings.Contains(r.body, tt.wantBody) {
				t.Fatalf("got %d %q, want %d containing %q", r.status, r.body, tt.want, tt.wantBody)
			}
		})
	}
	if n, _ := s.Node("agent-1"); !n.Online || n.TemporarilyOffline {
		t.Errorf("agent-1 = %+v, want untouched", n)
	}
	if n, _ := s.Node("agent-2"); n.Online || !n.TemporarilyOffline {
		t.Errorf("agent-2 = %+v, want still offline", n)
	}
	if calls := s.Calls(); calls[RouteToggleOffline] == 0 || calls[RouteChangeOfflineCause] == 0 {
		t.Errorf("calls = %v, want the offline routes counted", calls)
	}
}

// TestTemporarilyOfflineNodeLosingItsAgent: the two offline causes are
// independent; the channel's loss shows in absoluteRemotePath.
func TestTemporarilyOfflineNodeLosingItsAgent(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	c := tokenClient(t, s)
	mustCreateAgent(t, s, c, "agent-1", "ferry", "EXCLUSIVE", 1)
	c.post("/computer/agent-1/changeOfflineCause", url.Values{"offlineMessage": {"done"}})
	if err := s.DisconnectAgent("agent-1"); err != nil {
		t.Fatal(err)
	}
	comp := c.getJSON("/computer/agent-1/api/json")
	if comp["temporarilyOffline"] != true || comp["absoluteRemotePath"] != nil || comp["offlineCauseReason"] != "done" {
		t.Errorf("computer = %v, want temporarily offline without a remote path", comp)
	}
	if n, _ := s.Node("agent-1"); n.Connected {
		t.Errorf("node = %+v, want not connected", n)
	}
}
