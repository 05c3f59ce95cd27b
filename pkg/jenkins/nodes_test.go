package jenkins_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/ferryci/ferry/pkg/jenkins"
)

func TestCreateNode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		spec     jenkins.NodeSpec
		wantJSON map[string]any
	}{
		{
			name: "defaults",
			spec: jenkins.NodeSpec{Name: "ferry-q31", Labels: []string{"ferry-eci"}, WebSocket: true},
			wantJSON: map[string]any{
				"name": "ferry-q31", "nodeDescription": "", "numExecutors": float64(1), "remoteFS": "/home/jenkins/agent",
				"labelString": "ferry-eci", "mode": "EXCLUSIVE", "type": "hudson.slaves.DumbSlave",
				"retentionStrategy": map[string]any{"stapler-class": "hudson.slaves.RetentionStrategy$Always", "$class": "hudson.slaves.RetentionStrategy$Always"},
				"nodeProperties":    map[string]any{"stapler-class-bag": "true"},
				"launcher":          map[string]any{"stapler-class": "hudson.slaves.JNLPLauncher", "$class": "hudson.slaves.JNLPLauncher", "webSocket": true},
			},
		},
		{
			name: "everything set",
			spec: jenkins.NodeSpec{Name: "big", Description: "by ferry", Labels: []string{"a", "b"}, RemoteFS: "/w",
				NumExecutors: 2, Mode: jenkins.ModeNormal},
			wantJSON: map[string]any{
				"name": "big", "nodeDescription": "by ferry", "numExecutors": float64(2), "remoteFS": "/w",
				"labelString": "a b", "mode": "NORMAL", "type": "hudson.slaves.DumbSlave",
				"retentionStrategy": map[string]any{"stapler-class": "hudson.slaves.RetentionStrategy$Always", "$class": "hudson.slaves.RetentionStrategy$Always"},
				"nodeProperties":    map[string]any{"stapler-class-bag": "true"},
				"launcher":          map[string]any{"stapler-class": "hudson.slaves.JNLPLauncher", "$class": "hudson.slaves.JNLPLauncher", "webSocket": false},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			// Jenkins redirects to the node list; following it would land
			// on an HTML page, here a 500 to prove it is not followed.
			f.on("POST /computer/doCreateItem", redirect(http.StatusFound, "."))
			f.on("GET /computer/", status(http.StatusInternalServerError, "<html>followed</html>"))
			if err := f.client(t, nil).CreateNode(context.Background(), tt.spec); err != nil {
				t.Fatalf("CreateNode: %v", err)
			}
			reqs := f.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			form := reqs[0].Form
			if form.Get("name") != tt.spec.Name || form.Get("type") != "hudson.slaves.DumbSlave" {
				t.Errorf("form name/type = %q/%q", form.Get("name"), form.Get("type"))
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(form.Get("json")), &got); err != nil {
				t.Fatalf("json field: %v", err)
			}
			if !reflect.DeepEqual(got, tt.wantJSON) {
				t.Errorf("json =\n%v\nwant\n%v", got, tt.wantJSON)
			}
		})
	}
}

// TestCreateNodeErrors pins how a failed creation is classified. Jenkins
// answers a taken name with a 400 whose text is localized (and so is every
// other 400 of doCreateItem), so a 400 is told apart by looking the node
// up, never by its words.
func TestCreateNodeErrors(t *testing.T) {
	t.Parallel()
	failure := func(msg string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html;charset=utf-8")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, "<html><body><h1>Error</h1><p>"+msg+"</p></body></html>")
		}
	}
	node := jsonAnswer(200, `{"_class":"hudson.slaves.SlaveComputer","displayName":"ferry-q31"}`)
	tests := []struct {
		name      string
		answer    http.HandlerFunc
		lookup    http.HandlerFunc // GET /computer/ferry-q31/api/json; nil: 404
		wantErr   error
		retryable bool
	}{
		{"duplicate name", failure("Agent called ‘ferry-q31’ already exists"), node, jenkins.ErrExists, false},
		{"duplicate name, zh_CN", failure("代理 ‘ferry-q31’ 已经存在"), node, jenkins.ErrExists, false},
		{"duplicate name, German", failure("Ein Agent mit dem Namen „ferry-q31“ existiert bereits."), node, jenkins.ErrExists, false},
		{"duplicate name, 409", status(http.StatusConflict, "exists"), nil, jenkins.ErrExists, false},
		{"no Computer.CREATE", status(http.StatusForbidden, "ferry-bot is missing the Agent/Create permission"), nil, jenkins.ErrAuth, false},
		{"bad name", failure("‘?’ is an unsafe character"), nil, nil, false},
		{"English words, yet no such node", failure("Agent called ‘ferry-q31’ already exists"), nil, nil, false},
		{"400, then Jenkins unavailable for the lookup", failure("代理 ‘ferry-q31’ 已经存在"), status(http.StatusServiceUnavailable, "starting"), nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			f.on("POST /computer/doCreateItem", tt.answer)
			if tt.lookup != nil {
				f.on("GET /computer/ferry-q31/api/json", tt.lookup)
			}
			err := f.client(t, nil).CreateNode(context.Background(), jenkins.NodeSpec{Name: "ferry-q31"})
			if err == nil {
				t.Fatal("CreateNode: no error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil && errors.Is(err, jenkins.ErrExists) {
				t.Errorf("err = %v, want no ErrExists", err)
			}
			if got := jenkins.IsRetryable(err); got != tt.retryable {
				t.Errorf("IsRetryable(%v) = %v, want %v", err, got, tt.retryable)
			}
		})
	}
}

func TestCreateNodeValidates(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	c := f.client(t, nil)
	for _, spec := range []jenkins.NodeSpec{
		{},
		{Name: "a/b"},
		{Name: "ok", Mode: "SOMETIMES"},
		{Name: "ok", Labels: []string{"two words"}},
	} {
		if err := c.CreateNode(context.Background(), spec); err == nil {
			t.Errorf("CreateNode(%+v): no error", spec)
		}
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("%d requests for invalid specs", n)
	}
}

const jnlp = `<?xml version="1.0" encoding="UTF-8"?>
<jnlp codebase="http://j/computer/ferry-q31/" spec="1.0+">
  <information><title>Agent for ferry-q31</title><vendor>Jenkins project</vendor></information>
  <security><all-permissions/></security>
  <resources><j2se version="1.8+"/><jar href="http://j/jnlpJars/remoting.jar"/></resources>
  <application-desc main-class="hudson.remoting.jnlp.Main">
    <argument>4d5e3f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e</argument>
    <argument>ferry-q31</argument>
    <argument>-webSocket</argument>
    <argument>-url</argument>
    <argument>http://j/</argument>
  </application-desc>
</jnlp>`

const jnlpSecret = "4d5e3f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e"

func xmlAnswer(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/x-java-jnlp-file")
		_, _ = io.WriteString(w, body)
	}
}

func TestNodeSecret(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		routes  map[string]http.HandlerFunc
		want    string
		wantErr error
	}{
		{"jenkins-agent.jnlp", map[string]http.HandlerFunc{"GET /computer/ferry-q31/jenkins-agent.jnlp": xmlAnswer(jnlp)}, jnlpSecret, nil},
		{"fallback slave-agent.jnlp", map[string]http.HandlerFunc{"GET /computer/ferry-q31/slave-agent.jnlp": xmlAnswer(jnlp)}, jnlpSecret, nil},
		{"unknown node", nil, "", jenkins.ErrNotFound},
		{"no permission", map[string]http.HandlerFunc{"GET /computer/ferry-q31/jenkins-agent.jnlp": status(http.StatusForbidden, "no CONNECT")}, "", jenkins.ErrAuth},
		{"not a jnlp file", map[string]http.HandlerFunc{"GET /computer/ferry-q31/jenkins-agent.jnlp": xmlAnswer("<html>hi</html>")}, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			for route, h := range tt.routes {
				f.on(route, h)
			}
			logs := &syncBuffer{}
			got, err := f.client(t, func(c *jenkins.Config) { c.Logger = debugLogger(logs) }).NodeSecret(context.Background(), "ferry-q31")
			if tt.want != "" {
				if err != nil || got != tt.want {
					t.Fatalf("NodeSecret = %q, %v; want %q", got, err, tt.want)
				}
			} else if err == nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("NodeSecret = %q, %v; want error %v", got, err, tt.wantErr)
			}
			if strings.Contains(logs.String(), jnlpSecret) {
				t.Errorf("the agent secret reached the logs:\n%s", logs)
			}
		})
	}
}

func TestDeleteNode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		answer  http.HandlerFunc
		wantErr error
	}{
		{"deleted: redirect", redirect(http.StatusFound, "http://j/computer/"), nil},
		{"deleted: 200", status(http.StatusOK, ""), nil},
		{"gone", nil, jenkins.ErrNotFound},
		{"no Computer.DELETE", status(http.StatusForbidden, "missing permission"), jenkins.ErrAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			if tt.answer != nil {
				f.on("POST /computer/ferry%20q31/doDelete", tt.answer)
			}
			err := f.client(t, nil).DeleteNode(context.Background(), "ferry q31")
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("DeleteNode error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestMarkOffline(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		answer  http.HandlerFunc
		wantErr error
	}{
		{"offline: redirect", redirect(http.StatusFound, "http://j/computer/ferry%20q31/"), nil},
		{"offline: 200", status(http.StatusOK, ""), nil},
		{"unknown node", nil, jenkins.ErrNotFound},
		{"no Computer.DISCONNECT", status(http.StatusForbidden, "admin is missing the Agent/Disconnect permission"), jenkins.ErrAuth},
		{"login redirect", redirect(http.StatusFound, "http://j/login?from=%2Fcomputer"), jenkins.ErrAuth},
		{"down", status(http.StatusServiceUnavailable, ""), jenkins.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			if tt.answer != nil {
				f.on("POST /computer/ferry%20q31/changeOfflineCause", tt.answer)
			}
			// The redirect must not be followed onto the computer's page.
			f.on("GET /computer/ferry%20q31/", status(http.StatusInternalServerError, "<html>followed</html>"))
			err := f.client(t, nil).MarkOffline(context.Background(), "ferry q31", "ferry: one build per agent")
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("MarkOffline error = %v, want %v", err, tt.wantErr)
			}
			reqs := f.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1 (no read, no toggle, no redirect followed)", len(reqs))
			}
			// Never toggleOffline: called twice it would bring the node back.
			if r := reqs[0]; r.Method != http.MethodPost || r.Path != "/computer/ferry%20q31/changeOfflineCause" ||
				r.Form.Get("offlineMessage") != "ferry: one build per agent" {
				t.Errorf("request = %s %s form %v", r.Method, r.Path, r.Form)
			}
		})
	}
}

func TestMarkOfflineValidatesName(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	for _, name := range []string{"", ".", "a/b"} {
		if err := f.client(t, nil).MarkOffline(context.Background(), name, "x"); err == nil {
			t.Errorf("MarkOffline(%q) = nil, want an error", name)
		}
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("%d requests for invalid names, want 0", n)
	}
}

func TestComputerConnected(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		c    jenkins.Computer
		want bool
	}{
		{"online", jenkins.Computer{}, true},
		{"never connected", jenkins.Computer{Offline: true}, false},
		{"temporarily offline, agent connected", jenkins.Computer{Offline: true, TemporarilyOffline: true, RemotePath: "/home/jenkins/agent"}, true},
		{"temporarily offline, agent gone", jenkins.Computer{Offline: true, TemporarilyOffline: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.c.Connected(); got != tt.want {
				t.Errorf("Connected() = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestComputerOfflineWith pins the offlineCauseReason forms real cores
// return for a node taken offline by user "ferry" with a message. Jenkins
// strips its localized "Disconnected by {0}{1}" with a regular expression
// anchored at the sentence's start, which only works where the sentence
// starts with the fixed words: in zh_CN, ja and zh_TW the whole localized
// sentence comes back. Cores since 2.483 HTML-escape the result.
func TestComputerOfflineWith(t *testing.T) {
	t.Parallel()
	const msg = "ferry: one build per agent"
	offline := func(reason string) jenkins.Computer {
		return jenkins.Computer{Offline: true, TemporarilyOffline: true, OfflineReason: reason}
	}
	tests := []struct {
		name string
		c    jenkins.Computer
		msg  string
		want bool
	}{
		{"English: prefix stripped", offline(msg), msg, true},
		{"zh_CN: 被 {0}{1}断开连接", offline("被 ferry : " + msg + "断开连接"), msg, true},
		{"ja: {0}がオフラインにしています。{1}", offline("ferryがオフラインにしています。 : " + msg), msg, true},
		{"zh_TW: 由 {0} 中斷連線{1}", offline("由 ferry 中斷連線 : " + msg), msg, true},
		{"escaped by cores since 2.483", offline("ferry: don&#039;t &amp; won&#039;t"), "ferry: don't & won't", true},
		{"another message", offline("maintenance by ops"), msg, false},
		{"zh_CN, another message", offline("被 ops : maintenance断开连接"), msg, false},
		{"a prefix of the message only", offline("ferry: one build"), msg, false},
		{"online again, stale reason", jenkins.Computer{OfflineReason: msg}, msg, false},
		{"disconnected, not temporarily offline", jenkins.Computer{Offline: true, OfflineReason: msg}, msg, false},
		{"empty message never matches", offline("anything"), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.c.OfflineWith(tt.msg); got != tt.want {
				t.Errorf("OfflineWith(%q) on reason %q = %v, want %v", tt.msg, tt.c.OfflineReason, got, tt.want)
			}
		})
	}
}

func TestComputers(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.on("GET /computer/api/json", jsonAnswer(200, `{"_class":"hudson.model.ComputerSet","computer":[
	 {"_class":"hudson.model.Hudson$MasterComputer","assignedLabels":[{"name":"built-in"}],"displayName":"Built-In Node",
	  "executors":[{"currentExecutable":null},{"currentExecutable":null}],"idle":true,"numExecutors":2,"offline":false,"offlineCauseReason":""},
	 {"_class":"hudson.slaves.SlaveComputer","assignedLabels":[{"name":"ferry-eci"},{"name":"ferry-q31"}],"displayName":"ferry-q31",
	  "executors":[{"currentExecutable":{"_class":"org.jenkinsci.plugins.workflow.job.WorkflowRun","number":17,"url":"http://j/job/app/17/"}}],
	  "idle":false,"numExecutors":1,"offline":false},
	 {"_class":"hudson.slaves.SlaveComputer","assignedLabels":[{"name":"ferry-q32"}],"displayName":"ferry-q32","executors":[],
	  "idle":true,"numExecutors":1,"offline":true,"offlineCauseReason":"This agent is offline because Jenkins failed to launch the agent process on it."},
	 {"_class":"hudson.slaves.SlaveComputer","absoluteRemotePath":"/home/jenkins/agent","assignedLabels":[{"name":"ferry-q33"}],"displayName":"ferry-q33",
	  "executors":[{"currentExecutable":{"_class":"org.jenkinsci.plugins.workflow.job.WorkflowRun","number":18,"url":"http://j/job/app/18/"}}],
	  "idle":false,"numExecutors":1,"offline":true,"temporarilyOffline":true,"offlineCauseReason":"ferry: one build per agent"}]}`))
	got, err := f.client(t, nil).Computers(context.Background())
	if err != nil {
		t.Fatalf("Computers: %v", err)
	}
	want := []jenkins.Computer{
		{Name: "Built-In Node", Idle: true, NumExecutors: 2, Labels: []string{"built-in"}},
		{Name: "ferry-q31", NumExecutors: 1, Labels: []string{"ferry-eci", "ferry-q31"}, Running: []jenkins.Executable{{Number: 17, URL: "http://j/job/app/17/"}}},
		{Name: "ferry-q32", Offline: true, Idle: true, NumExecutors: 1, Labels: []string{"ferry-q32"},
			OfflineReason: "This agent is offline because Jenkins failed to launch the agent process on it."},
		{Name: "ferry-q33", Offline: true, TemporarilyOffline: true, RemotePath: "/home/jenkins/agent", NumExecutors: 1,
			Labels: []string{"ferry-q33"}, Running: []jenkins.Executable{{Number: 18, URL: "http://j/job/app/18/"}},
			OfflineReason: "ferry: one build per agent"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Computers =\n%+v\nwant\n%+v", got, want)
	}
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	tree := reqs[0].Query.Get("tree")
	for _, field := range []string{"computer[", "displayName", "offline", "temporarilyOffline", "absoluteRemotePath", "idle", "numExecutors", "executors[currentExecutable[url,number]]", "assignedLabels[name]"} {
		if !strings.Contains(tree, field) {
			t.Errorf("tree %q lacks %s", tree, field)
		}
	}
}

func TestJob(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.on("GET /job/team/job/my%20app/api/json", jsonAnswer(200, `{"_class":"org.jenkinsci.plugins.workflow.job.WorkflowJob",
	 "name":"my app","fullName":"team/my app","url":"http://j/job/team/job/my%20app/","buildable":true,"inQueue":false,
	 "property":[{"_class":"hudson.model.ParametersDefinitionProperty","parameterDefinitions":[
	   {"_class":"hudson.model.StringParameterDefinition","defaultParameterValue":{"name":"SHA","value":""},"name":"SHA","type":"StringParameterDefinition"},
	   {"_class":"hudson.model.BooleanParameterDefinition","defaultParameterValue":{"name":"DEPLOY","value":true},"name":"DEPLOY","type":"BooleanParameterDefinition"}]},
	  {"_class":"org.jenkinsci.plugins.workflow.job.properties.DisableConcurrentBuildsJobProperty"}]}`))
	c := f.client(t, nil)
	got, err := c.Job(context.Background(), "team/my app")
	if err != nil {
		t.Fatalf("Job: %v", err)
	}
	want := jenkins.Job{Name: "my app", FullName: "team/my app", URL: "http://j/job/team/job/my%20app/", Buildable: true,
		Params: []jenkins.ParamDef{{Name: "SHA", Type: "StringParameterDefinition"}, {Name: "DEPLOY", Type: "BooleanParameterDefinition", Default: "true"}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Job =\n%+v\nwant\n%+v", got, want)
	}
	if !got.HasParam("SHA") || got.HasParam("FERRY_ID") {
		t.Errorf("HasParam wrong for %+v", got.Params)
	}
	if _, err := c.Job(context.Background(), "team/gone"); !errors.Is(err, jenkins.ErrNotFound) {
		t.Errorf("Job of a missing job: err = %v, want ErrNotFound", err)
	}
	var he *jenkins.HTTPError
	if _, err := c.Job(context.Background(), "team/gone"); !errors.As(err, &he) || he.Path != "/job/team/job/gone/api/json" || he.Body != "Not Found" {
		t.Errorf("Job of a missing job: err = %#v, want an HTTPError for /job/team/job/gone/api/json with the page's text", err)
	}
}
