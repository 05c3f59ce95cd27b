package jenkinsemu

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestQueueWhy pins the why sentences of BuildableItem.getCauseOfBlockage()
// for every situation a provisioner meets. Note the cases without the label.
func TestQueueWhy(t *testing.T) {
	type agent struct {
		name, labels, mode string
		executors          int
		connect            bool
	}
	tests := []struct {
		name      string
		label     string
		agents    []agent
		busy      bool // a Forever build of another job occupies the agents first
		wantWhy   string
		wantStuck bool
	}{
		{
			name: "no agents at all: the label is not mentioned", label: "ferry",
			wantWhy: "Waiting for next available executor", wantStuck: true,
		},
		{
			name: "agents, none with the label", label: "ferry",
			agents:  []agent{{"linux-1", "linux", "NORMAL", 1, true}},
			wantWhy: "There are no nodes with the label ‘ferry’", wantStuck: true,
		},
		{
			name: "one node with the label, offline: its name, no quotes", label: "ferry",
			agents:  []agent{{"ferry-42", "ferry", "EXCLUSIVE", 1, false}},
			wantWhy: "ferry-42 is offline", wantStuck: true,
		},
		{
			name: "several nodes with the label, all offline", label: "ferry",
			agents:  []agent{{"ferry-1", "ferry", "EXCLUSIVE", 1, false}, {"ferry-2", "ferry", "EXCLUSIVE", 1, false}},
			wantWhy: "All nodes of label ‘ferry’ are offline", wantStuck: true,
		},
		{
			name: "one node with the label, busy: its name in quotes", label: "ferry",
			agents: []agent{{"ferry-1", "ferry", "EXCLUSIVE", 1, true}}, busy: true,
			wantWhy: "Waiting for next available executor on ‘ferry-1’",
		},
		{
			name: "several nodes with the label, busy", label: "ferry",
			agents: []agent{{"ferry-1", "ferry", "EXCLUSIVE", 1, true}, {"ferry-2", "ferry", "EXCLUSIVE", 1, true}}, busy: true,
			wantWhy: "Waiting for next available executor on ‘ferry’",
		},
		{
			name: "several nodes, one online and busy, one offline", label: "ferry",
			agents: []agent{{"ferry-1", "ferry", "EXCLUSIVE", 1, true}, {"ferry-2", "ferry", "EXCLUSIVE", 1, false}}, busy: true,
			wantWhy: "Waiting for next available executor on ‘ferry’",
		},
		{
			name: "no label, only exclusive agents", label: "",
			agents:  []agent{{"ferry-1", "ferry", "EXCLUSIVE", 1, true}},
			wantWhy: "Waiting for next available executor",
		},
		{
			name: "label expression is rendered without spaces", label: "linux && (amd64 || arm64)",
			agents:  []agent{{"other", "windows", "NORMAL", 1, true}},
			wantWhy: "There are no nodes with the label ‘linux&&(amd64||arm64)’", wantStuck: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestServer(t, Options{})
			mustAdd(t, s, "app", JobSpec{Label: tt.label, Duration: Forever})
			mustAdd(t, s, "hog", JobSpec{Label: tt.label, Duration: Forever, Params: []Param{{Name: "N"}}})
			c := tokenClient(t, s)
			for _, a := range tt.agents {
				if r := c.createNode(a.name, a.labels, a.mode, a.executors); r.status != 302 {
					t.Fatalf("create %s: %d", a.name, r.status)
				}
				if a.connect {
					if err := s.ConnectAgent(a.name, s.AgentSecret(a.name)); err != nil {
						t.Fatal(err)
					}
				}
			}
			if tt.busy {
				for i, a := range tt.agents {
					if a.connect {
						c.trigger("hog", url.Values{"N": {itoa(i)}})
					}
				}
				if got := len(s.QueueItems()); got != 0 {
					t.Fatalf("%d hog items still queued; the agents should be busy", got)
				}
			}
			r := c.post("/job/app/build", nil)
			id := queueIDFromLocation(t, r.header.Get("Location"))
			item := c.getJSON("/queue/item/" + itoa(int(id)) + "/api/json")
			if item["why"] != tt.wantWhy {
				t.Errorf("why = %q, want %q", item["why"], tt.wantWhy)
			}
			if item["stuck"] != tt.wantStuck {
				t.Errorf("stuck = %v, want %v", item["stuck"], tt.wantStuck)
			}
			if item["_class"] != "hudson.model.Queue$BuildableItem" || item["buildable"] != true || item["blocked"] != false {
				t.Errorf("item = %v %v %v, want a buildable item", item["_class"], item["buildable"], item["blocked"])
			}
			if _, has := item["label"]; has {
				t.Errorf("queue item has a label field; Jenkins exports none")
			}
		})
	}
}

func TestQueueBlockedWhy(t *testing.T) {
	s, clk := newTestServer(t, Options{})
	mustAdd(t, s, "app", JobSpec{Label: "ferry", Duration: time.Minute, DisableConcurrentBuilds: true, Params: []Param{{Name: "SHA"}}})
	c := tokenClient(t, s)
	mustCreateAgent(t, s, c, "a1", "ferry", "NORMAL", 2)
	c.trigger("app", url.Values{"SHA": {"1"}})
	id := c.trigger("app", url.Values{"SHA": {"2"}})
	item := c.getJSON("/queue/item/" + itoa(int(id)) + "/api/json")
	if item["_class"] != "hudson.model.Queue$BlockedItem" || item["blocked"] != true || item["why"] != "Build #1 is already in progress (ETA: N/A)" {
		t.Fatalf("item = %v blocked %v why %q", item["_class"], item["blocked"], item["why"])
	}
	clk.Advance(time.Minute)
	// #2 starts at #1's end; a third item now has an estimate from #1.
	id3 := c.trigger("app", url.Values{"SHA": {"3"}})
	clk.Advance(15 * time.Second)
	item = c.getJSON("/queue/item/" + itoa(int(id3)) + "/api/json")
	if item["why"] != "Build #2 is already in progress (ETA: 45 sec)" {
		t.Errorf("why = %q, want the ETA from the previous build", item["why"])
	}
	if b, _ := s.Build("app", 2); b.Start != clk.Now().Add(-15*time.Second) {
		t.Errorf("#2 started at %v, want at #1's end", b.Start)
	}
}

func TestQueueItemLifecycle(t *testing.T) {
	s, clk := newTestServer(t, Options{LeftItemTTL: 2 * time.Minute})
	mustAdd(t, s, "team/app", JobSpec{Label: "ferry", Duration: time.Hour, Params: []Param{{Name: "SHA"}}})
	c := tokenClient(t, s)
	start := clk.Now()
	id := c.trigger("team/app", url.Values{"SHA": {"abc"}})
	itemPath := "/queue/item/" + itoa(int(id)) + "/api/json"

	q := c.getJSON("/queue/api/json")
	if q["_class"] != "hudson.model.Queue" || len(q["items"].([]any)) != 1 {
		t.Fatalf("queue = %v", q)
	}
	item := path(t, q, "items", 0).(map[string]any)
	want := map[string]any{
		"id":           float64(id),
		"url":          "queue/item/" + itoa(int(id)) + "/",
		"params":       "\nSHA=abc",
		"inQueueSince": float64(start.UnixMilli()),
		"pending":      false,
	}
	for k, v := range want {
		if item[k] != v {
			t.Errorf("%s = %v, want %v", k, item[k], v)
		}
	}
	task := item["task"].(map[string]any)
	if task["name"] != "app" || task["url"] != s.URL()+"/job/team/job/app/" || task["_class"] != "hudson.model.FreeStyleProject" {
		t.Errorf("task = %v", task)
	}
	if _, ok := task["fullName"]; ok {
		t.Errorf("task has fullName; Jenkins exports name, url and color only")
	}
	if _, ok := item["executable"]; ok {
		t.Errorf("waiting item has executable")
	}

	clk.Advance(time.Second)
	mustCreateAgent(t, s, c, "a1", "ferry", "EXCLUSIVE", 1)
	item = c.getJSON(itemPath)
	if item["_class"] != "hudson.model.Queue$LeftItem" || item["cancelled"] != false || item["why"] != nil {
		t.Fatalf("left item = %v", item)
	}
	if path(t, item, "executable", "number") != float64(1) || path(t, item, "executable", "url") != s.URL()+"/job/team/job/app/1/" {
		t.Errorf("executable = %v", item["executable"])
	}
	if n := len(c.getJSON("/queue/api/json")["items"].([]any)); n != 0 {
		t.Errorf("queue still lists %d items", n)
	}
	clk.Advance(2*time.Minute - time.Millisecond)
	if r := c.get(itemPath); r.status != 200 {
		t.Errorf("left item gone before its TTL: %d", r.status)
	}
	clk.Advance(time.Millisecond)
	if r := c.get(itemPath); r.status != 404 {
		t.Errorf("left item after its TTL: %d, want 404", r.status)
	}
	if r := c.get("/queue/item/999/api/json"); r.status != 404 {
		t.Errorf("unknown item: %d, want 404", r.status)
	}
}

func TestLeftItemDefaultTTL(t *testing.T) {
	s, clk := newTestServer(t, Options{})
	mustAdd(t, s, "app", JobSpec{Label: "ferry"})
	c := tokenClient(t, s)
	r := c.post("/job/app/build", nil)
	id := queueIDFromLocation(t, r.header.Get("Location"))
	if r := c.post("/queue/cancelItem?id="+itoa(int(id)), nil); r.status != 204 {
		t.Fatalf("cancel: %d", r.status)
	}
	clk.Advance(5*time.Minute - time.Second)
	if _, ok := s.QueueItem(id); !ok {
		t.Fatalf("left item gone before 5 minutes")
	}
	clk.Advance(time.Second)
	if _, ok := s.QueueItem(id); ok {
		t.Fatalf("left item still there after 5 minutes")
	}
}

func TestCancelItem(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	mustAdd(t, s, "app", JobSpec{Label: "ferry", Duration: Forever, Params: []Param{{Name: "SHA"}}})
	c := tokenClient(t, s)
	waiting := c.trigger("app", url.Values{"SHA": {"1"}})
	mustCreateAgent(t, s, c, "a1", "ferry", "EXCLUSIVE", 1)
	// The first item started on a1; the second waits.
	started := waiting
	waiting = c.trigger("app", url.Values{"SHA": {"2"}})

	tests := []struct {
		name   string
		method string
		path   string
		want   int
		body   string
	}{
		{"GET is not allowed", "GET", "/queue/cancelItem?id=" + itoa(int(waiting)), 405, ""},
		{"waiting item", "POST", "/queue/cancelItem?id=" + itoa(int(waiting)), 204, ""},
		{"again", "POST", "/queue/cancelItem?id=" + itoa(int(waiting)), 404, "Provided id (" + itoa(int(waiting)) + ") not found"},
		{"started item", "POST", "/queue/cancelItem?id=" + itoa(int(started)), 404, "not found"},
		{"unknown item", "POST", "/queue/cancelItem?id=12345", 404, "Provided id (12345) not found"},
		{"no id", "POST", "/queue/cancelItem", 404, "Provided id (0) not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.do(tt.method, tt.path, url.Values{})
			if r.status != tt.want {
				t.Fatalf("status = %d, want %d (%s)", r.status, tt.want, r.body)
			}
			if tt.body != "" && !strings.Contains(r.body, tt.body) {
				t.Errorf("body = %q, want %q", r.body, tt.body)
			}
		})
	}
	item := c.getJSON("/queue/item/" + itoa(int(waiting)) + "/api/json")
	if item["_class"] != "hudson.model.Queue$LeftItem" || item["cancelled"] != true || item["executable"] != nil {
		t.Errorf("cancelled item = %v", item)
	}
	if b, _ := s.Build("app", 1); !b.Building {
		t.Errorf("cancelling another item touched the running build")
	}
	if n := len(s.Builds("app")); n != 1 {
		t.Errorf("%d builds, want 1", n)
	}
}

func TestQueueOrder(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	mustAdd(t, s, "app", JobSpec{Label: "ferry", Params: []Param{{Name: "N"}}})
	c := tokenClient(t, s)
	b1 := c.trigger("app", url.Values{"N": {"1"}})
	b2 := c.trigger("app", url.Values{"N": {"2"}})
	w := c.trigger("app", url.Values{"N": {"3"}, "delay": {"60sec"}})
	var ids []int64
	for _, it := range c.getJSON("/queue/api/json")["items"].([]any) {
		ids = append(ids, int64(it.(map[string]any)["id"].(float64)))
	}
	want := []int64{w, b2, b1} // waiting first, then buildable newest first
	if len(ids) != 3 || ids[0] != want[0] || ids[1] != want[1] || ids[2] != want[2] {
		t.Errorf("order = %v, want %v", ids, want)
	}
}
