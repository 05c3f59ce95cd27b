package jenkinsemu

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestTriggerAnswers(t *testing.T) {
	s, _ := newTestServer(t, Options{ShowStackTrace: true})
	mustAdd(t, s, "app", JobSpec{Label: "ferry", Params: []Param{
		{Name: "SHA"},
		{Name: "DEPLOY", Type: BooleanParam, Default: "false"},
		{Name: "ENV", Type: ChoiceParam, Choices: []string{"test", "prod"}},
	}})
	mustAdd(t, s, "plain", JobSpec{Label: "ferry"})
	c := tokenClient(t, s)
	tests := []struct {
		name     string
		method   string
		path     string
		form     url.Values
		want     int
		wantBody string
	}{
		{"unknown job buildWithParameters", "POST", "/job/nope/buildWithParameters", nil, 404, ""},
		{"unknown job build", "POST", "/job/nope/build", nil, 404, ""},
		{"unknown job in folder", "POST", "/job/team/job/nope/buildWithParameters", nil, 404, ""},
		{"GET is not allowed", "GET", "/job/app/buildWithParameters", nil, 405, "requires POST"},
		{"buildWithParameters on a job without parameters", "POST", "/job/plain/buildWithParameters", nil, 500, "This build is not parameterized!"},
		{"build of a parameterized job without a form", "POST", "/job/app/build", nil, 500, "expects a form submission"},
		{"illegal choice", "POST", "/job/app/buildWithParameters", url.Values{"ENV": {"staging"}}, 500, "Illegal choice for parameter ENV: staging"},
		{"two values", "POST", "/job/app/buildWithParameters", url.Values{"SHA": {"a", "b"}}, 500, "Illegal number of parameter values for SHA: 2"},
		{"bad delay", "POST", "/job/app/buildWithParameters", url.Values{"delay": {"soon"}}, 500, "Invalid time duration value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.do(tt.method, tt.path, tt.form)
			if r.status != tt.want || !strings.Contains(r.body, tt.wantBody) {
				t.Fatalf("got %d %q, want %d containing %q", r.status, r.body, tt.want, tt.wantBody)
			}
		})
	}
	if n := len(s.QueueItems()); n != 0 {
		t.Errorf("failed triggers queued %d items", n)
	}
}

// TestTriggerRefusals pins how cores of each era refuse a disabled job and
// buildWithParameters of a job without parameters
// (ParameterizedJobMixIn), and that the Oops page of a 500 names no
// exception unless stack traces are shown.
func TestTriggerRefusals(t *testing.T) {
	tests := []struct {
		name     string
		version  string
		show     bool
		path     string
		want     int
		wantType string
		wantBody string
		notBody  string
	}{
		{"disabled, buildWithParameters, 2.524", "2.524", false, "/job/team/job/off/buildWithParameters", 409, "text/html", "team/off is not buildable", "!"},
		{"disabled, build, 2.524", "2.524", false, "/job/team/job/off/build", 409, "text/html", "team/off is not buildable", ""},
		{"disabled, buildWithParameters, 2.462.3", "", false, "/job/team/job/off/buildWithParameters", 409, "text/plain", "java.io.IOException: team/off is not buildable!", ""},
		{"disabled, build, 2.462.3", "", false, "/job/team/job/off/build", 409, "text/plain", "java.io.IOException: team/off is not buildable\n", ""},
		{"not parameterized, 2.524", "2.524", false, "/job/plain/buildWithParameters", 400, "text/html", "plain is not parameterized", ""},
		{"not parameterized, 2.523, default Oops page", "2.523", false, "/job/plain/buildWithParameters", 500, "text/html", "Logging ID=", "parameterized"},
		{"not parameterized, 2.523, stack traces shown", "2.523", true, "/job/plain/buildWithParameters", 500, "text/html", "java.lang.IllegalStateException: This build is not parameterized!", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestServer(t, Options{Version: tt.version, ShowStackTrace: tt.show})
			mustAdd(t, s, "team/off", JobSpec{Label: "ferry", Disabled: true, Params: []Param{{Name: "SHA"}}})
			mustAdd(t, s, "plain", JobSpec{Label: "ferry"})
			r := tokenClient(t, s).post(tt.path, url.Values{"SHA": {"a"}})
			if r.status != tt.want || !strings.HasPrefix(r.header.Get("Content-Type"), tt.wantType) || !strings.Contains(r.body, tt.wantBody) ||
				(tt.notBody != "" && strings.Contains(r.body, tt.notBody)) {
				t.Errorf("got %d %s %q; want %d %s containing %q and not %q", r.status, r.header.Get("Content-Type"), r.body, tt.want, tt.wantType, tt.wantBody, tt.notBody)
			}
			if n := len(s.QueueItems()); n != 0 {
				t.Errorf("a refused trigger queued %d items", n)
			}
		})
	}

	s, _ := newTestServer(t, Options{})
	mustAdd(t, s, "off", JobSpec{Label: "ferry", Disabled: true})
	c := tokenClient(t, s)
	j := c.getJSON("/job/off/api/json")
	if j["buildable"] != false || j["disabled"] != true || j["color"] != "disabled" {
		t.Errorf("disabled job JSON: buildable %v, disabled %v, color %v", j["buildable"], j["disabled"], j["color"])
	}
	if err := s.UpdateJob("off", func(js *JobSpec) { js.Disabled = false }); err != nil {
		t.Fatal(err)
	}
	if r := c.post("/job/off/build", nil); r.status != http.StatusCreated {
		t.Errorf("trigger after enabling: %d %s", r.status, r.body)
	}
	// A read-only user of a disabled job: doBuild says 409 before checking
	// the permission, doBuildWithParameters 403 first.
	ro := User{Name: "viewer", Token: "viewer-token-0123456789", ReadOnly: true}
	s2, _ := newTestServer(t, Options{Users: []User{ro}})
	mustAdd(t, s2, "off", JobSpec{Label: "ferry", Disabled: true, Params: []Param{{Name: "SHA"}}})
	rc := newClient(t, s2, ro.Name, ro.Token)
	if r := rc.post("/job/off/build", nil); r.status != http.StatusConflict {
		t.Errorf("read-only build of a disabled job: %d, want 409", r.status)
	}
	if r := rc.post("/job/off/buildWithParameters", nil); r.status != http.StatusForbidden {
		t.Errorf("read-only buildWithParameters of a disabled job: %d, want 403", r.status)
	}
}

func mustAdd(t *testing.T, s *Server, path string, spec JobSpec) {
	t.Helper()
	if err := s.AddJob(path, spec); err != nil {
		t.Fatalf("add job %s: %v", path, err)
	}
}

// TestTriggerMerge pins Queue.schedule2's merge: a trigger whose parameter
// values (after defaults are filled in and undeclared ones dropped) equal
// those of a live item of the same job creates nothing and is answered
// with the existing item's Location: 303 from buildWithParameters since
// 2.308, 201 before and from build always.
func TestTriggerMerge(t *testing.T) {
	params := []Param{{Name: "SHA"}, {Name: "REF", Default: "main"}}
	tests := []struct {
		name      string
		version   string
		job       JobSpec
		first     url.Values
		second    url.Values
		startAll  bool // an agent runs the first item before the second trigger
		wantMerge bool
		wantCode  int // of the second trigger
	}{
		{"same parameters", "", JobSpec{Label: "l", Params: params}, url.Values{"SHA": {"a"}}, url.Values{"SHA": {"a"}}, false, true, 303},
		{"same parameters, before 2.308", "2.307", JobSpec{Label: "l", Params: params}, url.Values{"SHA": {"a"}}, url.Values{"SHA": {"a"}}, false, true, 201},
		{"different parameters", "", JobSpec{Label: "l", Params: params}, url.Values{"SHA": {"a"}}, url.Values{"SHA": {"b"}}, false, false, 201},
		{"explicit default equals implicit default", "", JobSpec{Label: "l", Params: params}, url.Values{"SHA": {"a"}}, url.Values{"SHA": {"a"}, "REF": {"main"}}, false, true, 303},
		{"undeclared parameters are dropped", "", JobSpec{Label: "l", Params: params}, url.Values{"SHA": {"a"}}, url.Values{"SHA": {"a"}, "TRACEPARENT": {"00-x"}}, false, true, 303},
		{"no merge once the first item started", "", JobSpec{Label: "l", Params: params, Duration: Forever}, url.Values{"SHA": {"a"}}, url.Values{"SHA": {"a"}}, true, false, 201},
		{"job without parameters always merges, build answers 201", "", JobSpec{Label: "l"}, nil, nil, false, true, 201},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestServer(t, Options{Version: tt.version})
			mustAdd(t, s, "app", tt.job)
			c := tokenClient(t, s)
			endpoint := "/job/app/buildWithParameters"
			if len(tt.job.Params) == 0 {
				endpoint = "/job/app/build"
			}
			post := func(v url.Values, want int) int64 {
				r := c.post(endpoint, v)
				if r.status != want {
					t.Fatalf("trigger: %d %s, want %d", r.status, r.body, want)
				}
				return queueIDFromLocation(t, r.header.Get("Location"))
			}
			id1 := post(tt.first, http.StatusCreated)
			if tt.startAll {
				mustCreateAgent(t, s, c, "a1", "l", "NORMAL", 1)
			}
			id2 := post(tt.second, tt.wantCode)
			if merged := id1 == id2; merged != tt.wantMerge {
				t.Fatalf("ids %d and %d: merged = %v, want %v", id1, id2, merged, tt.wantMerge)
			}
			wantItems := 2
			if tt.wantMerge {
				wantItems = 1
			}
			if tt.startAll {
				wantItems = 1
			}
			if got := len(s.QueueItems()); got != wantItems {
				t.Errorf("queue has %d items, want %d", got, wantItems)
			}
		})
	}
}

func TestTriggerParameterValues(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	mustAdd(t, s, "app", JobSpec{Label: "ferry", Params: []Param{
		{Name: "SHA", Default: "HEAD"},
		{Name: "DEPLOY", Type: BooleanParam, Default: "true"},
		{Name: "ENV", Type: ChoiceParam, Choices: []string{"test", "prod"}},
		{Name: "NOTES", Type: TextParam},
		{Name: "TOKEN", Type: PasswordParam, Default: "s3cret"},
	}})
	c := tokenClient(t, s)
	id := c.trigger("app", url.Values{"DEPLOY": {"FALSE"}, "NOTES": {"multi\nline"}, "UNDECLARED": {"x"}})
	item := c.getJSON("/queue/item/" + itoa(int(id)) + "/api/json")
	if got, want := item["params"], "\nSHA=HEAD\nDEPLOY=false\nENV=test\nNOTES=multi\nline\nTOKEN=****"; got != want {
		t.Errorf("params = %q, want %q", got, want)
	}
	ps := path(t, item, "actions", 0, "parameters").([]any)
	want := []map[string]any{
		{"_class": "hudson.model.StringParameterValue", "name": "SHA", "value": "HEAD"},
		{"_class": "hudson.model.BooleanParameterValue", "name": "DEPLOY", "value": false},
		{"_class": "hudson.model.StringParameterValue", "name": "ENV", "value": "test"},
		{"_class": "hudson.model.TextParameterValue", "name": "NOTES", "value": "multi\nline"},
		{"_class": "hudson.model.PasswordParameterValue", "name": "TOKEN"},
	}
	if len(ps) != len(want) {
		t.Fatalf("parameters = %v, want %d entries", ps, len(want))
	}
	for i, w := range want {
		got := ps[i].(map[string]any)
		if len(got) != len(w) {
			t.Errorf("parameter %d = %v, want %v", i, got, w)
		}
		for k, v := range w {
			if got[k] != v {
				t.Errorf("parameter %d %s = %v, want %v", i, k, got[k], v)
			}
		}
	}
	if cl := path(t, item, "actions", 1, "_class"); cl != "hudson.model.CauseAction" {
		t.Errorf("second action = %v, want the CauseAction", cl)
	}
	if got := path(t, item, "actions", 1, "causes", 0, "userId"); got != "admin" {
		t.Errorf("cause userId = %v, want admin", got)
	}
}

// TestBuildFormSubmission pins /build with the json form Jenkins' UI posts
// for parameterized jobs.
func TestBuildFormSubmission(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	mustAdd(t, s, "app", JobSpec{Label: "ferry", Params: []Param{{Name: "SHA"}, {Name: "REF", Default: "main"}}})
	c := tokenClient(t, s)
	js, _ := json.Marshal(map[string]any{"parameter": []any{map[string]any{"name": "SHA", "value": "abc"}}})
	r := c.post("/job/app/build", url.Values{"json": {string(js)}})
	if r.status != 201 {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	items := s.QueueItems()
	if len(items) != 1 || items[0].Params["SHA"] != "abc" || items[0].Params["REF"] != "main" {
		t.Fatalf("items = %+v, want one with SHA=abc REF=main", items)
	}
}

func TestDelayAndQuietPeriod(t *testing.T) {
	tests := []struct {
		name    string
		quiet   time.Duration
		delay   string
		wantWhy string
		wait    time.Duration
	}{
		{"global quiet period", 5 * time.Second, "", "In the quiet period. Expires in 5 sec", 5 * time.Second},
		{"delay in seconds", 0, "12sec", "In the quiet period. Expires in 12 sec", 12 * time.Second},
		{"delay 0sec overrides the quiet period", 5 * time.Second, "0sec", "There are no nodes with the label ‘ferry’", 0},
		{"bare delay is milliseconds", 0, "1500", "In the quiet period. Expires in 1.5 sec", 1500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, clk := newTestServer(t, Options{QuietPeriod: tt.quiet})
			mustAdd(t, s, "app", JobSpec{Label: "ferry", Params: []Param{{Name: "SHA"}}})
			c := tokenClient(t, s)
			if r := c.createNode("other", "linux", "NORMAL", 1); r.status != 302 {
				t.Fatalf("create node: %d", r.status)
			}
			form := url.Values{"SHA": {"a"}}
			if tt.delay != "" {
				form.Set("delay", tt.delay)
			}
			id := c.trigger("app", form)
			item := c.getJSON("/queue/item/" + itoa(int(id)) + "/api/json")
			if item["why"] != tt.wantWhy {
				t.Fatalf("why = %q, want %q", item["why"], tt.wantWhy)
			}
			if tt.wait == 0 {
				return
			}
			if item["_class"] != "hudson.model.Queue$WaitingItem" || item["buildable"] != false {
				t.Errorf("item = %v, want a WaitingItem", item)
			}
			if _, ok := item["timestamp"]; !ok {
				t.Errorf("waiting item has no timestamp")
			}
			clk.Advance(tt.wait - time.Millisecond)
			if got := c.getJSON("/queue/item/" + itoa(int(id)) + "/api/json")["_class"]; got != "hudson.model.Queue$WaitingItem" {
				t.Errorf("before the quiet period ends: %v", got)
			}
			clk.Advance(time.Millisecond)
			item = c.getJSON("/queue/item/" + itoa(int(id)) + "/api/json")
			if item["_class"] != "hudson.model.Queue$BuildableItem" || item["why"] != "There are no nodes with the label ‘ferry’" {
				t.Errorf("after the quiet period: %v %v", item["_class"], item["why"])
			}
		})
	}
}

func TestJobJSON(t *testing.T) {
	s, clk := newTestServer(t, Options{})
	mustAdd(t, s, "team/app", JobSpec{Label: "ferry", Duration: 10 * time.Second, Params: []Param{{Name: "SHA", Description: "commit"}}})
	c := tokenClient(t, s)
	mustCreateAgent(t, s, c, "a1", "ferry", "EXCLUSIVE", 1)
	c.trigger("team/app", url.Values{"SHA": {"1"}})
	clk.Advance(10 * time.Second)
	c.trigger("team/app", url.Values{"SHA": {"2"}})
	c.trigger("team/app", url.Values{"SHA": {"3"}})

	j := c.getJSON("/job/team/job/app/api/json")
	base := s.URL() + "/job/team/job/app/"
	checks := map[string]any{
		"_class":          "hudson.model.FreeStyleProject",
		"name":            "app",
		"fullName":        "team/app",
		"fullDisplayName": "team » app",
		"url":             base,
		"nextBuildNumber": float64(3),
		"inQueue":         true,
		"color":           "blue_anime",
		"labelExpression": "ferry",
	}
	for k, want := range checks {
		if j[k] != want {
			t.Errorf("%s = %v, want %v", k, j[k], want)
		}
	}
	builds := j["builds"].([]any)
	if len(builds) != 2 || path(t, builds, 0, "number") != float64(2) || path(t, builds, 1, "number") != float64(1) {
		t.Errorf("builds = %v, want #2 then #1", builds)
	}
	if path(t, builds, 0, "url") != base+"2/" {
		t.Errorf("build url = %v", path(t, builds, 0, "url"))
	}
	if path(t, j, "lastBuild", "number") != float64(2) || path(t, j, "lastCompletedBuild", "number") != float64(1) {
		t.Errorf("lastBuild %v lastCompletedBuild %v", j["lastBuild"], j["lastCompletedBuild"])
	}
	if j["lastFailedBuild"] != nil {
		t.Errorf("lastFailedBuild = %v, want null", j["lastFailedBuild"])
	}
	def := path(t, j, "property", 0, "parameterDefinitions", 0).(map[string]any)
	if def["name"] != "SHA" || def["type"] != "StringParameterDefinition" || def["description"] != "commit" ||
		path(t, def, "defaultParameterValue", "value") != "" {
		t.Errorf("parameter definition = %v", def)
	}
	if path(t, j, "queueItem", "id") != float64(3) {
		t.Errorf("queueItem = %v, want item 3", j["queueItem"])
	}

	t.Run("folder", func(t *testing.T) {
		f := c.getJSON("/job/team/api/json")
		if f["_class"] != "com.cloudbees.hudson.plugins.folder.Folder" || path(t, f, "jobs", 0, "name") != "app" {
			t.Errorf("folder = %v", f)
		}
		root := c.getJSON("/api/json")
		if path(t, root, "jobs", 0, "name") != "team" {
			t.Errorf("root jobs = %v", root["jobs"])
		}
	})
	t.Run("tree", func(t *testing.T) {
		j := c.getJSON("/job/team/job/app/api/json?tree=builds[number],nextBuildNumber,nosuchfield")
		if len(j) != 3 || j["_class"] == nil || j["nextBuildNumber"] != float64(3) {
			t.Errorf("tree answer = %v, want only _class, builds, nextBuildNumber", j)
		}
		if b := path(t, j, "builds", 0).(map[string]any); len(b) != 2 || b["number"] != float64(2) {
			t.Errorf("builds[0] = %v, want _class and number", b)
		}
		if _, ok := c.getJSON("/job/team/job/app/api/json")["allBuilds"]; ok {
			t.Errorf("allBuilds present without a tree asking for it")
		}
		j = c.getJSON("/job/team/job/app/api/json?tree=allBuilds[number]{0,1}")
		if all := j["allBuilds"].([]any); len(all) != 1 {
			t.Errorf("allBuilds{0,1} = %v, want one build", all)
		}
	})
	t.Run("bad tree", func(t *testing.T) {
		if r := c.get("/job/team/job/app/api/json?tree=builds[number"); r.status != 400 {
			t.Errorf("status = %d, want 400", r.status)
		}
	})
}

func TestBuildJSON(t *testing.T) {
	s, clk := newTestServer(t, Options{})
	mustAdd(t, s, "app", JobSpec{Label: "ferry", Duration: 30 * time.Second, Result: Unstable, Params: []Param{{Name: "SHA"}}})
	c := tokenClient(t, s)
	mustCreateAgent(t, s, c, "a1", "ferry", "EXCLUSIVE", 1)
	start := clk.Now()
	id := c.trigger("app", url.Values{"SHA": {"abc"}})
	clk.Advance(10 * time.Second)

	b := c.getJSON("/job/app/1/api/json")
	running := map[string]any{
		"_class":    "hudson.model.FreeStyleBuild",
		"building":  true,
		"result":    nil,
		"duration":  float64(0),
		"number":    float64(1),
		"queueId":   float64(id),
		"url":       s.URL() + "/job/app/1/",
		"timestamp": float64(start.UnixMilli()),
		"builtOn":   "a1",
		"id":        "1",
	}
	for k, want := range running {
		if b[k] != want {
			t.Errorf("running %s = %v, want %v", k, b[k], want)
		}
	}
	if path(t, b, "actions", 0, "_class") != "hudson.model.ParametersAction" ||
		path(t, b, "actions", 0, "parameters", 0, "name") != "SHA" ||
		path(t, b, "actions", 0, "parameters", 0, "value") != "abc" {
		t.Errorf("actions = %v", b["actions"])
	}
	clk.Advance(20 * time.Second)
	b = c.getJSON("/job/app/1/api/json")
	if b["building"] != false || b["result"] != "UNSTABLE" || b["duration"] != float64(30000) {
		t.Errorf("finished build: building %v result %v duration %v", b["building"], b["result"], b["duration"])
	}
	for _, p := range []string{"/job/app/lastBuild/api/json", "/job/app/lastSuccessfulBuild/api/json", "/job/app/lastCompletedBuild/api/json"} {
		if got := c.getJSON(p)["number"]; got != float64(1) {
			t.Errorf("%s number = %v", p, got)
		}
	}
	for _, p := range []string{"/job/app/2/api/json", "/job/app/lastFailedBuild/api/json", "/job/nope/1/api/json"} {
		if r := c.get(p); r.status != 404 {
			t.Errorf("%s status = %d, want 404", p, r.status)
		}
	}
}

func TestStopBuild(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	mustAdd(t, s, "app", JobSpec{Label: "ferry", Duration: Forever})
	c := tokenClient(t, s)
	mustCreateAgent(t, s, c, "a1", "ferry", "EXCLUSIVE", 1)
	c.post("/job/app/build", nil)
	r := c.post("/job/app/1/stop", nil)
	if r.status != http.StatusFound || r.header.Get("Location") != s.URL()+"/job/app/1/" {
		t.Fatalf("stop: %d Location %q", r.status, r.header.Get("Location"))
	}
	if b, _ := s.Build("app", 1); b.Building || b.Result != Aborted {
		t.Errorf("build after stop = %+v, want ABORTED", b)
	}
	if n, _ := s.Node("a1"); len(n.Running) != 0 {
		t.Errorf("executor still busy: %v", n.Running)
	}
	if r := c.post("/job/app/9/stop", nil); r.status != 404 {
		t.Errorf("stop of a missing build: %d, want 404", r.status)
	}
}

// TestStopIsIdempotentAndNeedsACrumb: stopping a build that ended changes
// nothing (Run.doStop on a finished build only redirects), and a
// password-authenticated stop without a crumb is refused like any POST.
func TestStopIsIdempotentAndNeedsACrumb(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	mustAdd(t, s, "app", JobSpec{Label: "ferry", Duration: Forever})
	c := tokenClient(t, s)
	mustCreateAgent(t, s, c, "a1", "ferry", "EXCLUSIVE", 1)
	c.post("/job/app/build", nil)
	c.post("/job/app/build", nil)
	waitFor(t, "build #1 running", func() bool { b, ok := s.Build("app", 1); return ok && b.Building })

	browser := newClient(t, s, DefaultUser.Name, DefaultUser.Password)
	if r := browser.post("/job/app/1/stop", nil); r.status != http.StatusForbidden || !strings.Contains(r.body, "No valid crumb") {
		t.Fatalf("stop without a crumb: %d %q, want 403 No valid crumb", r.status, r.body)
	}
	if b, _ := s.Build("app", 1); !b.Building {
		t.Fatal("a refused stop stopped the build")
	}

	if r := c.post("/job/app/1/stop", nil); r.status != http.StatusFound {
		t.Fatalf("stop: %d", r.status)
	}
	// The freed executor takes the queued build #2.
	waitFor(t, "build #2 on the freed executor", func() bool { b, ok := s.Build("app", 2); return ok && b.Building && b.Node == "a1" })
	if r := c.post("/job/app/1/stop", nil); r.status != http.StatusFound {
		t.Fatalf("second stop: %d, want the same redirect", r.status)
	}
	if b, _ := s.Build("app", 1); b.Result != Aborted {
		t.Errorf("build #1 after a second stop = %+v", b)
	}
	if err := s.FinishBuild("app", 2, Success); err != nil {
		t.Fatal(err)
	}
	c.post("/job/app/2/stop", nil)
	if b, _ := s.Build("app", 2); b.Result != Success {
		t.Errorf("stopping a finished build changed its result to %s", b.Result)
	}
}
