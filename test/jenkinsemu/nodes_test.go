package jenkinsemu

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"html"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCreateNode(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	c := tokenClient(t, s)
	r := c.createNode("ferry-7", "ferry  linux", "EXCLUSIVE", 1)
	if r.status != http.StatusFound || r.header.Get("Location") != s.URL()+"/computer/" {
		t.Fatalf("create: %d Location %q, want 302 to the node list", r.status, r.header.Get("Location"))
	}
	n, ok := s.Node("ferry-7")
	if !ok {
		t.Fatal("node not created")
	}
	if n.Mode != "EXCLUSIVE" || n.NumExecutors != 1 || n.Online || !n.WebSocket ||
		n.Launcher != "hudson.slaves.JNLPLauncher" || n.RemoteFS != "/home/jenkins/agent" ||
		n.RetentionStrategy != "hudson.slaves.RetentionStrategy$Always" || n.Description != "ferry agent" ||
		n.LabelString != "ferry linux" || strings.Join(n.Labels, ",") != "ferry,ferry-7,linux" || n.CreateType != "hudson.slaves.DumbSlave" {
		t.Errorf("node = %+v", n)
	}
	var sent map[string]any
	if err := json.Unmarshal([]byte(n.CreateJSON), &sent); err != nil || sent["mode"] != "EXCLUSIVE" {
		t.Errorf("CreateJSON = %q (%v)", n.CreateJSON, err)
	}
}

func TestCreateNodeFailures(t *testing.T) {
	s, _ := newTestServer(t, Options{ShowStackTrace: true})
	c := tokenClient(t, s)
	if r := c.createNode("taken", "ferry", "NORMAL", 1); r.status != 302 {
		t.Fatalf("create: %d", r.status)
	}
	good, _ := json.Marshal(map[string]any{"numExecutors": 1, "mode": "NORMAL", "labelString": "x"})
	form := func(name, typ, js string) url.Values {
		v := url.Values{"name": {name}, "type": {typ}}
		if js != "" {
			v.Set("json", js)
		}
		return v
	}
	tests := []struct {
		name     string
		form     url.Values
		want     int
		wantBody string
	}{
		{"duplicate name", form("taken", "hudson.slaves.DumbSlave", string(good)), 400, "Agent called ‘taken’ already exists"},
		{"duplicate name with blanks", form(" taken ", "hudson.slaves.DumbSlave", string(good)), 400, "Agent called ‘taken’ already exists"},
		{"no name", form("", "hudson.slaves.DumbSlave", string(good)), 400, "Query parameter 'name' is required"},
		{"unsafe character", form("a/b", "hudson.slaves.DumbSlave", string(good)), 400, "‘/’ is an unsafe character"},
		{"no json", form("n1", "hudson.slaves.DumbSlave", ""), 500, "expects a form submission"},
		{"unknown type", form("n2", "hudson.slaves.Cloud", string(good)), 500, "NullPointerException"},
		{"zero executors", form("n3", "hudson.slaves.DumbSlave", `{"numExecutors":0}`), 400, "Invalid # of executors"},
		{"bad mode", form("n4", "hudson.slaves.DumbSlave", `{"numExecutors":1,"mode":"SOMETIMES"}`), 500, "No enum constant hudson.model.Node.Mode.SOMETIMES"},
		{"bad json", form("n5", "hudson.slaves.DumbSlave", `{`), 500, "JSONException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.post("/computer/doCreateItem", tt.form)
			if r.status != tt.want || !strings.Contains(html.UnescapeString(r.body), tt.wantBody) {
				t.Fatalf("got %d %q, want %d containing %q", r.status, r.body, tt.want, tt.wantBody)
			}
		})
	}
	if n := len(s.Nodes()); n != 2 {
		t.Errorf("%d nodes, want the built-in node and 'taken'", n)
	}
	t.Run("GET is not allowed", func(t *testing.T) {
		if r := c.get("/computer/doCreateItem"); r.status != 405 {
			t.Errorf("status %d, want 405", r.status)
		}
	})
}

// TestCreateNodeQueryForm pins that the fields may come in the query string
// (gojenkins sends them there), in descriptor-class form, with numbers as
// strings, without a launcher (JNLP by default).
func TestCreateNodeQueryForm(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	c := tokenClient(t, s)
	q := url.Values{
		"name": {"q1"},
		"type": {"hudson.slaves.DumbSlave$DescriptorImpl"},
		"json": {`{"name":"ignored","numExecutors":"2","labelString":"x","retentionsStrategy":{"stapler-class":"hudson.slaves.RetentionStrategy$Always"}}`},
	}
	r := c.do("POST", "/computer/doCreateItem?"+q.Encode(), nil)
	if r.status != 302 {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	n, _ := s.Node("q1")
	if n.NumExecutors != 2 || n.Mode != "NORMAL" || n.Launcher != "hudson.slaves.JNLPLauncher" || n.RetentionStrategy != "" {
		t.Errorf("node = %+v", n)
	}
}

func TestCreateNodeSerialized(t *testing.T) {
	const delay = 50 * time.Millisecond
	s, _ := newTestServer(t, Options{CreateNodeDelay: delay})
	c := tokenClient(t, s)
	const n = 4
	start := time.Now()
	var wg sync.WaitGroup
	statuses := make([]int, n+1)
	for i := range n + 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := "agent-" + itoa(i)
			if i == n {
				name = "agent-0" // a concurrent duplicate
			}
			statuses[i] = c.createNode(name, "ferry", "EXCLUSIVE", 1).status
		}()
	}
	wg.Wait()
	// Serialized creations cannot take less than the sum of their delays.
	if elapsed := time.Since(start); elapsed < (n+1)*delay {
		t.Errorf("%d creations took %v, less than %v: not serialized", n+1, elapsed, (n+1)*delay)
	}
	created, rejected := 0, 0
	for _, st := range statuses {
		switch st {
		case 302:
			created++
		case 400:
			rejected++
		}
	}
	if created != n || rejected != 1 {
		t.Errorf("statuses %v: want %d created and the duplicate rejected", statuses, n)
	}
}

type jnlpFile struct {
	Codebase string `xml:"codebase,attr"`
	App      struct {
		Main string   `xml:"main-class,attr"`
		Args []string `xml:"argument"`
	} `xml:"application-desc"`
}

func TestJNLP(t *testing.T) {
	key := []byte("controller-key")
	s, _ := newTestServer(t, Options{SecretKey: key})
	c := tokenClient(t, s)
	c.createNode("ferry-1", "ferry", "EXCLUSIVE", 1)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("ferry-1"))
	wantSecret := hex.EncodeToString(mac.Sum(nil))
	if s.AgentSecret("ferry-1") != wantSecret {
		t.Fatalf("AgentSecret = %s, want hex HMAC-SHA256 of the name", s.AgentSecret("ferry-1"))
	}
	for _, p := range []string{"/computer/ferry-1/jenkins-agent.jnlp", "/computer/ferry-1/slave-agent.jnlp"} {
		t.Run(p, func(t *testing.T) {
			r := c.get(p)
			if r.status != 200 || r.header.Get("Content-Type") != "application/x-java-jnlp-file" {
				t.Fatalf("status %d type %q", r.status, r.header.Get("Content-Type"))
			}
			var f jnlpFile
			if err := xml.Unmarshal([]byte(r.body), &f); err != nil {
				t.Fatalf("parse %s: %v", r.body, err)
			}
			if len(f.App.Args) < 2 || f.App.Args[0] != wantSecret || f.App.Args[1] != "ferry-1" || f.App.Main != "hudson.remoting.jnlp.Main" {
				t.Errorf("jnlp = %+v", f)
			}
			if !strings.Contains(strings.Join(f.App.Args, " "), "-webSocket") || f.Codebase != s.URL()+"/computer/ferry-1/" {
				t.Errorf("jnlp = %+v, want -webSocket and the node's codebase", f)
			}
		})
	}
	t.Run("same name same secret across emulators and re-creation", func(t *testing.T) {
		other, _ := newTestServer(t, Options{SecretKey: key})
		if other.AgentSecret("ferry-1") != wantSecret {
			t.Errorf("secret differs for the same key")
		}
		c.post("/computer/ferry-1/doDelete", nil)
		c.createNode("ferry-1", "ferry", "EXCLUSIVE", 1)
		var f jnlpFile
		if err := xml.Unmarshal([]byte(c.get("/computer/ferry-1/jenkins-agent.jnlp").body), &f); err != nil || f.App.Args[0] != wantSecret {
			t.Errorf("secret after re-creation = %v (%v)", f.App.Args, err)
		}
		if s.AgentSecret("ferry-2") == wantSecret {
			t.Errorf("different names share a secret")
		}
	})
	t.Run("unknown node", func(t *testing.T) {
		if r := c.get("/computer/nope/jenkins-agent.jnlp"); r.status != 404 {
			t.Errorf("status %d, want 404", r.status)
		}
	})
}

func TestConnectAgent(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	c := tokenClient(t, s)
	c.createNode("ferry-1", "ferry", "EXCLUSIVE", 1)
	ssh, _ := json.Marshal(map[string]any{"numExecutors": 1, "launcher": map[string]any{"stapler-class": "hudson.plugins.sshslaves.SSHLauncher"}})
	c.post("/computer/doCreateItem", url.Values{"name": {"ssh-1"}, "type": {"hudson.slaves.DumbSlave"}, "json": {string(ssh)}})
	tests := []struct {
		name, node, secret string
		want               error
	}{
		{"wrong secret", "ferry-1", s.AgentSecret("ferry-2"), ErrBadSecret},
		{"unknown node", "ferry-9", s.AgentSecret("ferry-9"), ErrNoSuchNode},
		{"ssh launcher", "ssh-1", s.AgentSecret("ssh-1"), ErrNotInbound},
		{"right secret", "ferry-1", s.AgentSecret("ferry-1"), nil},
		{"second connection", "ferry-1", s.AgentSecret("ferry-1"), ErrAlreadyConnected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.ConnectAgent(tt.node, tt.secret); !errors.Is(err, tt.want) {
				t.Fatalf("ConnectAgent = %v, want %v", err, tt.want)
			}
		})
	}
	if n, _ := s.Node("ferry-1"); !n.Online {
		t.Errorf("node offline after connecting")
	}
	if got := c.getJSON("/computer/ferry-1/api/json")["offline"]; got != false {
		t.Errorf("REST offline = %v", got)
	}
}

func TestComputerJSON(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	mustAdd(t, s, "app", JobSpec{Label: "ferry", Duration: Forever})
	c := tokenClient(t, s)
	c.createNode("zz-offline", "ferry", "EXCLUSIVE", 1)
	mustCreateAgent(t, s, c, "aa-busy", "ferry", "EXCLUSIVE", 2)
	c.post("/job/app/build", nil)

	set := c.getJSON("/computer/api/json")
	if set["_class"] != "hudson.model.ComputerSet" || set["busyExecutors"] != float64(1) || set["totalExecutors"] != float64(2) {
		t.Errorf("computer set = %v %v %v", set["_class"], set["busyExecutors"], set["totalExecutors"])
	}
	comps := set["computer"].([]any)
	names := []string{}
	for _, x := range comps {
		names = append(names, x.(map[string]any)["displayName"].(string))
	}
	if strings.Join(names, ",") != "Built-In Node,aa-busy,zz-offline" {
		t.Fatalf("computers = %v, want the built-in node first then by name", names)
	}
	bi := comps[0].(map[string]any)
	if bi["_class"] != "hudson.model.Hudson$MasterComputer" || bi["numExecutors"] != float64(0) || bi["offline"] != false ||
		len(bi["executors"].([]any)) != 0 || path(t, bi, "assignedLabels", 0, "name") != "built-in" {
		t.Errorf("built-in = %v", bi)
	}
	busy := comps[1].(map[string]any)
	if busy["_class"] != "hudson.slaves.SlaveComputer" || busy["offline"] != false || busy["idle"] != false || busy["jnlpAgent"] != true {
		t.Errorf("busy agent = %v", busy)
	}
	if e := path(t, busy, "executors", 0).(map[string]any); len(e) != 1 {
		t.Errorf("depth 0 executor = %v, want it pruned to _class", e)
	}
	off := comps[2].(map[string]any)
	if off["offline"] != true || off["idle"] != true || off["offlineCause"] != nil {
		t.Errorf("offline agent = %v", off)
	}

	t.Run("ferry's tree", func(t *testing.T) {
		set := c.getJSON("/computer/api/json?tree=computer[displayName,offline,idle,executors[currentExecutable[url,number]],assignedLabels[name]]")
		busy := path(t, set, "computer", 1).(map[string]any)
		if len(busy) != 6 {
			t.Errorf("tree computer = %v, want _class and the five named fields", busy)
		}
		var running, idle map[string]any
		for _, e := range busy["executors"].([]any) {
			if ce := e.(map[string]any)["currentExecutable"]; ce != nil {
				running = ce.(map[string]any)
			} else {
				idle = e.(map[string]any)
			}
		}
		if running == nil || running["number"] != float64(1) || running["url"] != s.URL()+"/job/app/1/" {
			t.Errorf("running executor = %v", running)
		}
		if idle == nil {
			t.Errorf("no idle executor with currentExecutable null in %v", busy["executors"])
		}
		labels := busy["assignedLabels"].([]any)
		if len(labels) != 2 || path(t, labels, 0, "name") != "aa-busy" || path(t, labels, 1, "name") != "ferry" {
			t.Errorf("assignedLabels = %v", labels)
		}
	})
	t.Run("depth 1", func(t *testing.T) {
		e := path(t, c.getJSON("/computer/aa-busy/api/json?depth=1"), "executors", 0).(map[string]any)
		if e["idle"] != false || path(t, e, "currentExecutable", "number") != float64(1) {
			t.Errorf("executor = %v", e)
		}
	})
	t.Run("built-in by URL name", func(t *testing.T) {
		for _, p := range []string{"/computer/(built-in)/api/json", "/computer/(master)/api/json"} {
			if got := c.getJSON(p)["displayName"]; got != "Built-In Node" {
				t.Errorf("%s displayName = %v", p, got)
			}
		}
		if r := c.get("/computer/nope/api/json"); r.status != 404 {
			t.Errorf("unknown computer: %d", r.status)
		}
	})
}

func TestDeleteNode(t *testing.T) {
	s, clk := newTestServer(t, Options{})
	mustAdd(t, s, "app", JobSpec{Label: "ferry", Duration: time.Hour})
	c := tokenClient(t, s)
	mustCreateAgent(t, s, c, "ferry-1", "ferry", "EXCLUSIVE", 1)
	c.post("/job/app/build", nil)
	clk.Advance(time.Minute)
	r := c.post("/computer/ferry-1/doDelete", nil)
	if r.status != 302 || r.header.Get("Location") != s.URL()+"/computer/" {
		t.Fatalf("delete: %d %q", r.status, r.header.Get("Location"))
	}
	if _, ok := s.Node("ferry-1"); ok {
		t.Errorf("node still there")
	}
	b, _ := s.Build("app", 1)
	if b.Building || b.Result != Aborted || b.Duration != time.Minute {
		t.Errorf("build = %+v, want ABORTED after a minute", b)
	}
	tests := []struct {
		name, method, path string
		want               int
	}{
		{"unknown node", "POST", "/computer/ferry-1/doDelete", 404},
		{"GET is not allowed", "GET", "/computer/ferry-1/doDelete", 405},
		{"built-in node", "POST", "/computer/(built-in)/doDelete", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r := c.do(tt.method, tt.path, url.Values{}); r.status != tt.want {
				t.Errorf("status %d, want %d", r.status, tt.want)
			}
		})
	}
}
