package jenkins_test

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/jenkins"
)

func TestWaitingLabel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		why  string
		want string
	}{
		{"Waiting for next available executor on ‘ferry-eci’", "ferry-eci"},
		{"There are no nodes with the label ‘ferry-eci’", "ferry-eci"},
		{"All nodes of label ‘ferry-eci’ are offline", "ferry-eci"},
		{"‘ferry-agent-17’ is offline", "ferry-agent-17"},
		{"ferry-agent-17 is offline", "ferry-agent-17"},
		{"Waiting for next available executor on ferry-agent-17", "ferry-agent-17"},
		{"Waiting for next available executor on linux && amd64", "linux && amd64"},
		{"Waiting for next available executor on ‘linux && amd64’", "linux && amd64"},
		{"Waiting for next available executor on 'ferry-eci'", "ferry-eci"},
		{`There are no nodes with the label "ferry-eci"`, "ferry-eci"},
		{"Jenkins doesn’t have label ferry-eci", "ferry-eci"},
		{"Jenkins doesn't have label ‘ferry-eci’", "ferry-eci"},
		{"Still waiting to schedule task\nWaiting for next available executor on ‘ferry-eci’", "ferry-eci"},
		{"Still waiting to schedule task\n‘ferry-agent-3’ is offline", "ferry-agent-3"},
		{"In the quiet period. Expires in 4.9 sec", ""},
		{"Waiting for next available executor", ""},
		{"Build #12 is already in progress (ETA: 3 min 2 sec)", ""},
		{"Blocked by ‘other-job’", ""},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) {
			t.Parallel()
			if got := (jenkins.QueueItem{Why: tt.why}).WaitingLabel(); got != tt.want {
				t.Errorf("WaitingLabel(%q) = %q, want %q", tt.why, got, tt.want)
			}
		})
	}
}

// A queue as Jenkins renders it (trimmed), with a boolean parameter and a
// non-parameter action.
const queueJSON = `{"_class":"hudson.model.Queue","items":[
 {"_class":"hudson.model.Queue$BuildableItem","actions":[
   {"_class":"hudson.model.ParametersAction","parameters":[
     {"_class":"hudson.model.StringParameterValue","name":"FERRY_ID","value":"ev-1"},
     {"_class":"hudson.model.BooleanParameterValue","name":"DEPLOY","value":true},
     {"_class":"hudson.model.StringParameterValue","name":"EMPTY","value":null}]},
   {"_class":"hudson.model.CauseAction"}],
  "blocked":false,"buildable":true,"id":31,"inQueueSince":1732000000123,"params":"\nFERRY_ID=ev-1",
  "stuck":true,"task":{"_class":"org.jenkinsci.plugins.workflow.job.WorkflowJob","name":"app","url":"http://jenkins.example.com/job/team/job/app/"},
  "why":"Waiting for next available executor on ‘ferry-eci’"},
 {"_class":"hudson.model.Queue$WaitingItem","actions":[{"_class":"hudson.model.CauseAction"}],
  "blocked":false,"buildable":false,"id":32,"inQueueSince":1732000000999,
  "task":{"name":"other","url":"http://jenkins.example.com/job/other/"},"why":"In the quiet period. Expires in 4.9 sec"}]}`

func TestQueue(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.on("GET /queue/api/json", jsonAnswer(200, queueJSON))
	items, err := f.client(t, nil).Queue(context.Background())
	if err != nil {
		t.Fatalf("Queue: %v", err)
	}
	want := []jenkins.QueueItem{
		{
			ID: 31, TaskName: "app", TaskURL: "http://jenkins.example.com/job/team/job/app/",
			Why: "Waiting for next available executor on ‘ferry-eci’", Buildable: true, Stuck: true,
			InQueueSince: time.UnixMilli(1732000000123),
			Params:       map[string]string{"FERRY_ID": "ev-1", "DEPLOY": "true", "EMPTY": ""},
		},
		{
			ID: 32, TaskName: "other", TaskURL: "http://jenkins.example.com/job/other/",
			Why: "In the quiet period. Expires in 4.9 sec", InQueueSince: time.UnixMilli(1732000000999),
			Params: map[string]string{},
		},
	}
	if !reflect.DeepEqual(items, want) {
		t.Errorf("Queue =\n%+v\nwant\n%+v", items, want)
	}
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	tree := reqs[0].Query.Get("tree")
	for _, field := range []string{"items[", "id", "task[name,url]", "why", "blocked", "buildable", "stuck", "inQueueSince", "actions[parameters[name,value]]"} {
		if !strings.Contains(tree, field) {
			t.Errorf("tree %q lacks %s", tree, field)
		}
	}
	if got := items[0].WaitingLabel(); got != "ferry-eci" {
		t.Errorf("WaitingLabel = %q", got)
	}
}

func TestQueueItem(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		want jenkins.QueueItem
	}{
		{
			name: "waiting",
			body: `{"id":5,"why":"There are no nodes with the label ‘x’","blocked":false,"buildable":true,"task":{"name":"app","url":"u"},"executable":null}`,
			want: jenkins.QueueItem{ID: 5, Why: "There are no nodes with the label ‘x’", Buildable: true, TaskName: "app", TaskURL: "u", Params: map[string]string{}},
		},
		{
			name: "started",
			body: `{"_class":"hudson.model.Queue$LeftItem","id":5,"why":null,"cancelled":false,"task":{"name":"app","url":"u"},"executable":{"_class":"org.jenkinsci.plugins.workflow.job.WorkflowRun","number":17,"url":"http://j/job/app/17/"}}`,
			want: jenkins.QueueItem{ID: 5, TaskName: "app", TaskURL: "u", Params: map[string]string{}, Executable: jenkins.Executable{Number: 17, URL: "http://j/job/app/17/"}},
		},
		{
			name: "cancelled",
			body: `{"_class":"hudson.model.Queue$LeftItem","id":5,"cancelled":true,"task":{"name":"app","url":"u"},"executable":null}`,
			want: jenkins.QueueItem{ID: 5, TaskName: "app", TaskURL: "u", Params: map[string]string{}, Cancelled: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			f.on("GET /queue/item/5/api/json", jsonAnswer(200, tt.body))
			got, err := f.client(t, nil).QueueItem(context.Background(), 5)
			if err != nil {
				t.Fatalf("QueueItem: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("QueueItem =\n%+v\nwant\n%+v", got, tt.want)
			}
			if got.Started() != (tt.want.Executable.Number > 0) {
				t.Errorf("Started = %v", got.Started())
			}
			if tree := f.requests()[0].Query.Get("tree"); !strings.Contains(tree, "executable[number,url]") || !strings.Contains(tree, "cancelled") {
				t.Errorf("tree %q lacks executable or cancelled", tree)
			}
		})
	}
}

func TestQueueItemGone(t *testing.T) {
	t.Parallel()
	f := newFake(t) // every queue item is 404
	_, err := f.client(t, nil).QueueItem(context.Background(), 99)
	if !errors.Is(err, jenkins.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

func TestQueueRejectsNonJSON(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.on("GET /queue/api/json", status(http.StatusOK, "<html>proxy login page</html>"))
	if _, err := f.client(t, nil).Queue(context.Background()); err == nil {
		t.Fatal("Queue of an HTML answer: no error")
	}
}

func TestCancelQueueItem(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		answer  http.HandlerFunc
		wantErr error
	}{
		{"cancelled: 204", status(http.StatusNoContent, ""), nil},
		{"older cores: redirect", redirect(http.StatusFound, "http://j/queue/"), nil},
		{"unknown", status(http.StatusNotFound, "Provided id (8) not found"), jenkins.ErrNotFound},
		{"no permission", status(http.StatusUnprocessableEntity, "Item for id (8) is not cancellable"), jenkins.ErrNotCancellable},
		{"already left", status(http.StatusInternalServerError, "Could not cancel run for id 8"), jenkins.ErrNotCancellable},
		{"down", status(http.StatusServiceUnavailable, "Jenkins is getting ready to work"), jenkins.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			f.on("POST /queue/cancelItem", tt.answer)
			err := f.client(t, nil).CancelQueueItem(context.Background(), 8)
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("CancelQueueItem error = %v, want %v", err, tt.wantErr)
			}
			if errors.Is(tt.wantErr, jenkins.ErrNotCancellable) && jenkins.IsRetryable(err) {
				t.Errorf("not cancellable is retryable: %v", err)
			}
			reqs := f.requests()
			if len(reqs) != 1 || reqs[0].Query.Get("id") != "8" {
				t.Errorf("requests = %+v, want one POST with id=8", reqs)
			}
		})
	}
}
