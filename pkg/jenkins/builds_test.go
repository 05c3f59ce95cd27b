package jenkins_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/jenkins"
)

func TestBuild(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.on("GET /job/team/job/app/17/api/json", jsonAnswer(200, `{"_class":"org.jenkinsci.plugins.workflow.job.WorkflowRun",
	 "actions":[{"_class":"hudson.model.ParametersAction","parameters":[{"name":"FERRY_ID","value":"ev-1"},{"name":"DEPLOY","value":false}]},{},{"_class":"hudson.model.CauseAction"}],
	 "building":false,"duration":61500,"number":17,"queueId":31,"result":"SUCCESS","timestamp":1732000001000,"url":"http://j/job/team/job/app/17/"}`))
	f.on("GET /job/team/job/app/18/api/json", jsonAnswer(200, `{"building":true,"duration":0,"number":18,"queueId":32,"result":null,"timestamp":1732000002000,"url":"u18","actions":[]}`))
	c := f.client(t, nil)

	got, err := c.Build(context.Background(), "team/app", 17)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	want := jenkins.Build{
		Number: 17, URL: "http://j/job/team/job/app/17/", Result: jenkins.ResultSuccess,
		Duration: 61500 * time.Millisecond, Timestamp: time.UnixMilli(1732000001000), QueueID: 31,
		Params: map[string]string{"FERRY_ID": "ev-1", "DEPLOY": "false"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Build =\n%+v\nwant\n%+v", got, want)
	}
	running, err := c.Build(context.Background(), "team/app", 18)
	if err != nil || !running.Building || running.Result != "" {
		t.Errorf("Build 18 = %+v, %v; want building with no result", running, err)
	}
	if _, err := c.Build(context.Background(), "team/app", 19); !errors.Is(err, jenkins.ErrNotFound) {
		t.Errorf("Build 19: err = %v, want ErrNotFound", err)
	}
}

const buildsJSON = `{"_class":"org.jenkinsci.plugins.workflow.job.WorkflowJob","builds":[
 {"number":20,"url":"u20","building":true,"result":null,"queueId":40,"actions":[{"parameters":[{"name":"FERRY_ID","value":"ev-3"}]}]},
 {"number":19,"url":"u19","building":false,"result":"FAILURE","queueId":39,"actions":[{},{"parameters":[{"name":"FERRY_ID","value":"ev-2"}]}]},
 {"number":18,"url":"u18","building":false,"result":"SUCCESS","queueId":38,"actions":[{"parameters":[{"name":"FERRY_ID","value":"ev-2"}]}]}]}`

func TestRecentBuilds(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.on("GET /job/app/api/json", jsonAnswer(200, buildsJSON))
	builds, err := f.client(t, nil).RecentBuilds(context.Background(), "app", 3)
	if err != nil {
		t.Fatalf("RecentBuilds: %v", err)
	}
	var numbers []int64
	for _, b := range builds {
		numbers = append(numbers, b.Number)
	}
	if !reflect.DeepEqual(numbers, []int64{20, 19, 18}) || builds[1].Params["FERRY_ID"] != "ev-2" || builds[1].Result != "FAILURE" {
		t.Errorf("RecentBuilds = %+v", builds)
	}
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want one", len(reqs))
	}
	tree := reqs[0].Query.Get("tree")
	if !strings.HasPrefix(tree, "builds[number,url,building,result,") || !strings.HasSuffix(tree, "actions[parameters[name,value]]]{0,3}") {
		t.Errorf("tree = %q, want builds[number,url,building,result,…,actions[parameters[name,value]]]{0,3}", tree)
	}
}

// history serves a job's allBuilds{from,to} from n builds, newest first:
// build i (1-based, n the newest) started at t0 + i minutes and carries
// FERRY_ID ev-i.
func history(t0 time.Time, n int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tree := r.URL.Query().Get("tree")
		m := regexp.MustCompile(`^allBuilds\[.*\]\{(\d+),(\d+)\}$`).FindStringSubmatch(tree)
		if m == nil {
			http.Error(w, "unexpected tree "+tree, http.StatusBadRequest)
			return
		}
		from, _ := strconv.Atoi(m[1])
		to, _ := strconv.Atoi(m[2])
		var out []string
		for i := n - from; i > n-to && i >= 1; i-- {
			out = append(out, fmt.Sprintf(`{"number":%d,"url":"u%d","building":false,"result":"SUCCESS","queueId":%d,"timestamp":%d,"actions":[{},{"parameters":[{"name":"FERRY_ID","value":"ev-%d"}]}]}`,
				i, i, 1000+i, t0.Add(time.Duration(i)*time.Minute).UnixMilli(), i))
		}
		jsonAnswer(200, `{"allBuilds":[`+strings.Join(out, ",")+`]}`)(w, r)
	}
}

func TestFindByParam(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	// The queue holds ev-q for team/app and ev-9 for another job named app
	// in another folder (same short name, same parameter).
	const queue = `{"items":[
	 {"id":50,"task":{"name":"app","url":"http://j/jenkins/job/team/job/app/"},"actions":[{"parameters":[{"name":"FERRY_ID","value":"ev-q"}]}]},
	 {"id":51,"task":{"name":"app","url":"http://j/jenkins/job/other/job/team/job/app/"},"actions":[{"parameters":[{"name":"FERRY_ID","value":"ev-x"}]}]}]}`
	const builds = 1000
	tests := []struct {
		name  string
		value string
		since time.Time
		want  jenkins.Found
		pages int // build pages read
	}{
		{"queued", "ev-q", t0, jenkins.Found{QueueID: 50, Queued: true}, 0},
		{"newest build", "ev-1000", t0, jenkins.Found{QueueID: 2000, BuildNumber: 1000}, 1},
		// 900 builds newer than the match: far past any fixed count, found
		// because the search goes back in time, not by number.
		{"deep in the history", "ev-100", t0.Add(90 * time.Minute), jenkins.Found{QueueID: 1100, BuildNumber: 100}, 31},
		{"queued for another job", "ev-x", t0.Add(990 * time.Minute), jenkins.Found{}, 1},
		// Builds before since − SearchSlack cannot be it: the search stops
		// at the first of them instead of reading all 1000.
		{"stops at since", "ev-404", t0.Add(900 * time.Minute), jenkins.Found{}, 4},
		{"older than since is not searched", "ev-5", t0.Add(900 * time.Minute), jenkins.Found{}, 4},
		{"to the first build", "ev-none", t0, jenkins.Found{}, 34},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			f.on("GET /queue/api/json", jsonAnswer(200, queue))
			f.on("GET /job/team/job/app/api/json", history(t0, builds))
			c := f.client(t, func(c *jenkins.Config) { c.SearchBuilds = 30 })
			got, err := c.FindByParam(context.Background(), "team/app", "FERRY_ID", tt.value, tt.since)
			if err != nil {
				t.Fatalf("FindByParam: %v", err)
			}
			if got != tt.want || got.Exists() != (tt.want != jenkins.Found{}) {
				t.Errorf("FindByParam = %+v (exists %v), want %+v", got, got.Exists(), tt.want)
			}
			if n := f.count("GET /job/team/job/app/api/json"); n != tt.pages {
				t.Errorf("read %d pages of builds, want %d", n, tt.pages)
			}
			next := 0
			for _, r := range f.requests() {
				if r.Path != "/job/team/job/app/api/json" {
					continue
				}
				if want := fmt.Sprintf("{%d,%d}", next, next+30); !strings.HasSuffix(r.Query.Get("tree"), want) {
					t.Errorf("builds tree = %q, want the page %s", r.Query.Get("tree"), want)
				}
				next += 30
			}
		})
	}
	t.Run("needs a time", func(t *testing.T) {
		t.Parallel()
		f := newFake(t)
		f.on("GET /queue/api/json", jsonAnswer(200, queue))
		if _, err := f.client(t, nil).FindByParam(context.Background(), "team/app", "FERRY_ID", "ev-1", time.Time{}); err == nil {
			t.Error("FindByParam with a zero since: no error")
		}
	})
	t.Run("page size is capped", func(t *testing.T) {
		t.Parallel()
		f := newFake(t)
		f.on("GET /queue/api/json", jsonAnswer(200, `{"items":[]}`))
		f.on("GET /job/team/job/app/api/json", history(t0, builds))
		c := f.client(t, func(c *jenkins.Config) { c.SearchBuilds = 1000 })
		if _, err := c.FindByParam(context.Background(), "team/app", "FERRY_ID", "ev-950", t0); err != nil {
			t.Fatal(err)
		}
		for _, r := range f.requests() {
			if r.Path == "/job/team/job/app/api/json" && !strings.HasSuffix(r.Query.Get("tree"), "{0,100}") {
				t.Errorf("builds tree = %q, want pages of at most 100", r.Query.Get("tree"))
			}
		}
	})
}

func TestFindByParamUnknownJob(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.on("GET /queue/api/json", jsonAnswer(200, `{"items":[]}`))
	_, err := f.client(t, nil).FindByParam(context.Background(), "gone", "FERRY_ID", "ev-1", time.Now())
	if !errors.Is(err, jenkins.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound (an unknown job is not 'nothing found')", err)
	}
}

func TestFindByParamQueueDown(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.on("GET /queue/api/json", status(503, "restarting"))
	f.on("GET /job/app/api/json", jsonAnswer(200, buildsJSON))
	_, err := f.client(t, nil).FindByParam(context.Background(), "app", "FERRY_ID", "ev-2", time.Now())
	if !jenkins.IsRetryable(err) {
		t.Fatalf("err = %v, want retryable: a half-checked answer must not read as 'not found'", err)
	}
}

// The timeout bounds each request of the search, not the whole search: a
// long history is read to the end however many pages it takes.
func TestFindByParamTimeoutIsPerRequest(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	f := newFake(t)
	f.on("GET /queue/api/json", jsonAnswer(200, `{"items":[]}`))
	slow := history(t0, 300)
	f.on("GET /job/app/api/json", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(40 * time.Millisecond)
		slow(w, r)
	})
	c := f.client(t, func(c *jenkins.Config) { c.Timeout = 200 * time.Millisecond; c.SearchBuilds = 30 })
	got, err := c.FindByParam(context.Background(), "app", "FERRY_ID", "ev-2", t0)
	if err != nil {
		t.Fatalf("FindByParam over 10 pages of 40 ms with a 200 ms timeout: %v", err)
	}
	if got.BuildNumber != 2 {
		t.Errorf("found %+v, want build 2", got)
	}
}
