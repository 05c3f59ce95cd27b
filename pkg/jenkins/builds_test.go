package jenkins_test

import (
	"context"
	"errors"
	"reflect"
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

func TestFindByParam(t *testing.T) {
	t.Parallel()
	// The queue holds ev-1 for team/app and ev-9 for another job named app
	// in another folder (same short name, same parameter).
	const queue = `{"items":[
	 {"id":50,"task":{"name":"app","url":"http://j/jenkins/job/team/job/app/"},"actions":[{"parameters":[{"name":"FERRY_ID","value":"ev-1"}]}]},
	 {"id":51,"task":{"name":"app","url":"http://j/jenkins/job/other/job/team/job/app/"},"actions":[{"parameters":[{"name":"FERRY_ID","value":"ev-9"}]}]}]}`
	tests := []struct {
		value string
		want  jenkins.Found
	}{
		{"ev-1", jenkins.Found{QueueID: 50, Queued: true}},
		{"ev-2", jenkins.Found{QueueID: 39, BuildNumber: 19}}, // newest of two builds
		{"ev-3", jenkins.Found{QueueID: 40, BuildNumber: 20}},
		{"ev-9", jenkins.Found{}}, // queued, but for another job
		{"ev-404", jenkins.Found{}},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			f.on("GET /queue/api/json", jsonAnswer(200, queue))
			f.on("GET /job/team/job/app/api/json", jsonAnswer(200, buildsJSON))
			c := f.client(t, func(c *jenkins.Config) { c.SearchBuilds = 30 })
			got, err := c.FindByParam(context.Background(), "team/app", "FERRY_ID", tt.value)
			if err != nil {
				t.Fatalf("FindByParam: %v", err)
			}
			if got != tt.want || got.Exists() != (tt.want != jenkins.Found{}) {
				t.Errorf("FindByParam = %+v (exists %v), want %+v", got, got.Exists(), tt.want)
			}
			if tt.want.Queued {
				return
			}
			if n := f.count("GET /job/team/job/app/api/json"); n != 1 {
				t.Errorf("builds read %d times, want 1", n)
			}
			for _, r := range f.requests() {
				if r.Path == "/job/team/job/app/api/json" && !strings.HasSuffix(r.Query.Get("tree"), "{0,30}") {
					t.Errorf("builds tree = %q, want the SearchBuilds range {0,30}", r.Query.Get("tree"))
				}
			}
		})
	}
}

func TestFindByParamUnknownJob(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.on("GET /queue/api/json", jsonAnswer(200, `{"items":[]}`))
	_, err := f.client(t, nil).FindByParam(context.Background(), "gone", "FERRY_ID", "ev-1")
	if !errors.Is(err, jenkins.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound (an unknown job is not 'nothing found')", err)
	}
}

func TestFindByParamQueueDown(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.on("GET /queue/api/json", status(503, "restarting"))
	f.on("GET /job/app/api/json", jsonAnswer(200, buildsJSON))
	_, err := f.client(t, nil).FindByParam(context.Background(), "app", "FERRY_ID", "ev-2")
	if !jenkins.IsRetryable(err) {
		t.Fatalf("err = %v, want retryable: a half-checked answer must not read as 'not found'", err)
	}
}
