package jenkins_test

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/ferryci/ferry/pkg/jenkins"
)

func TestTrigger(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		job     string
		route   string
		answer  http.HandlerFunc
		want    jenkins.TriggerResult
		wantErr error // sentinel; want is ignored when set
	}{
		{
			name:   "created, absolute location",
			job:    "app",
			route:  "POST /job/app/buildWithParameters",
			answer: redirect(http.StatusCreated, "http://jenkins.example.com/queue/item/123/"),
			want:   jenkins.TriggerResult{QueueID: 123},
		},
		{
			name:   "created, context path, no trailing slash",
			job:    "app",
			route:  "POST /job/app/buildWithParameters",
			answer: redirect(http.StatusCreated, "/jenkins/queue/item/77"),
			want:   jenkins.TriggerResult{QueueID: 77},
		},
		{
			name:   "merged into an identical waiting item: 303",
			job:    "app",
			route:  "POST /job/app/buildWithParameters",
			answer: redirect(http.StatusSeeOther, "http://jenkins.example.com/queue/item/120/"),
			want:   jenkins.TriggerResult{QueueID: 120, Merged: true},
		},
		{
			name:   "folder path, segments escaped",
			job:    "team a/app#1",
			route:  "POST /job/team%20a/job/app%231/buildWithParameters",
			answer: redirect(http.StatusCreated, "/queue/item/5/"),
			want:   jenkins.TriggerResult{QueueID: 5},
		},
		{
			name:    "refused: redirect to the job page",
			job:     "app",
			route:   "POST /job/app/buildWithParameters",
			answer:  redirect(http.StatusFound, "http://jenkins.example.com/job/app/"),
			wantErr: jenkins.ErrRefused,
		},
		{
			name:    "redirect to login",
			job:     "app",
			route:   "POST /job/app/buildWithParameters",
			answer:  redirect(http.StatusFound, "http://jenkins.example.com/login?from=%2Fjob%2Fapp"),
			wantErr: jenkins.ErrAuth,
		},
		{
			name:    "unknown job",
			job:     "nope",
			route:   "POST /job/other/buildWithParameters",
			wantErr: jenkins.ErrNotFound,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			if tt.answer != nil {
				f.on(tt.route, tt.answer)
			}
			got, err := f.client(t, nil).Trigger(context.Background(), tt.job, map[string]string{"SHA": "abc123", "FERRY_ID": "ev-1"})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Trigger error = %v, want %v", err, tt.wantErr)
				}
				if got != (jenkins.TriggerResult{}) {
					t.Errorf("Trigger result = %+v with an error, want zero", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Trigger: %v", err)
			}
			if got != tt.want {
				t.Errorf("Trigger = %+v, want %+v", got, tt.want)
			}
			reqs := f.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1 (redirects are not followed)", len(reqs))
			}
			r := reqs[0]
			if r.Method+" "+r.Path != tt.route {
				t.Errorf("request = %s %s, want %s", r.Method, r.Path, tt.route)
			}
			if r.Form.Get("SHA") != "abc123" || r.Form.Get("FERRY_ID") != "ev-1" || len(r.Query) != 0 {
				t.Errorf("form = %v, query = %v; want the parameters form-encoded in the body", r.Form, r.Query)
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
				t.Errorf("Content-Type = %q", ct)
			}
		})
	}
}

// TestTriggerRefusals pins the answers of ParameterizedJobMixIn.
// doBuildWithParameters that no retry can change: a disabled job (409 "…
// is not buildable"), a job without parameters (400 "… is not
// parameterized" since 2.524; before, an IllegalStateException: 500 with
// Jenkins' "Oops!" page, whose stack trace is hidden by default). A 500 is
// taken for "not parameterized" only when its body says so or the job,
// looked up, declares no parameters; otherwise it is Jenkins failing.
func TestTriggerRefusals(t *testing.T) {
	t.Parallel()
	const oopsPage = `<html><head><title>Jenkins</title></head><body><h1>Oops!</h1><h2>A problem occurred while processing the request</h2><p>Logging ID=6d1f0b9e-4c1f-4b62-9b1a-2f4f3c1d7e55</p></body></html>`
	jobWith := func(params string) http.HandlerFunc {
		return jsonAnswer(200, `{"_class":"org.jenkinsci.plugins.workflow.job.WorkflowJob","name":"app","fullName":"app","url":"http://j/job/app/","buildable":true,"property":[`+params+`]}`)
	}
	noParams := jobWith(`{"_class":"org.jenkinsci.plugins.workflow.job.properties.DisableConcurrentBuildsJobProperty"}`)
	withParams := jobWith(`{"_class":"hudson.model.ParametersDefinitionProperty","parameterDefinitions":[{"name":"SHA","type":"StringParameterDefinition"}]}`)
	tests := []struct {
		name      string
		answer    http.HandlerFunc
		job       http.HandlerFunc // GET /job/app/api/json; nil: 404
		wantErr   error
		wantNot   error
		wantWords string
	}{
		{"disabled, 409 since 2.524", status(http.StatusConflict, "<html><body><h2>HTTP ERROR 409 app is not buildable</h2></body></html>"), nil,
			jenkins.ErrDisabled, jenkins.ErrUnavailable, "disabled"},
		{"disabled, 409 with a stack trace before", status(http.StatusConflict, "java.io.IOException: app is not buildable!\n\tat jenkins.model.ParameterizedJobMixIn.doBuildWithParameters(ParameterizedJobMixIn.java:231)"), nil,
			jenkins.ErrDisabled, jenkins.ErrUnavailable, "disabled"},
		{"not parameterized, 400 since 2.524", status(http.StatusBadRequest, "<html><body><h2>HTTP ERROR 400 app is not parameterized</h2></body></html>"), nil,
			jenkins.ErrNotParameterized, jenkins.ErrUnavailable, "no parameters"},
		{"not parameterized, 500 Oops before 2.524, confirmed by the job", status(http.StatusInternalServerError, oopsPage), noParams,
			jenkins.ErrNotParameterized, jenkins.ErrUnavailable, "no parameters"},
		{"not parameterized, 500 with the stack trace shown", status(http.StatusInternalServerError, "java.lang.IllegalStateException: This build is not parameterized!"), nil,
			jenkins.ErrNotParameterized, jenkins.ErrUnavailable, "no parameters"},
		{"500 from a job with parameters: Jenkins failing", status(http.StatusInternalServerError, oopsPage), withParams,
			jenkins.ErrUnavailable, jenkins.ErrRefused, ""},
		{"500 and the lookup fails too", status(http.StatusInternalServerError, oopsPage), status(http.StatusServiceUnavailable, "starting"),
			jenkins.ErrUnavailable, jenkins.ErrRefused, ""},
		{"400 for another reason", status(http.StatusBadRequest, "Unable to parse form content"), withParams,
			nil, jenkins.ErrRefused, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			f.on("POST /job/app/buildWithParameters", tt.answer)
			if tt.job != nil {
				f.on("GET /job/app/api/json", tt.job)
			}
			got, err := f.client(t, nil).Trigger(context.Background(), "app", map[string]string{"SHA": "abc123"})
			if err == nil {
				t.Fatalf("Trigger = %+v, nil; want an error", got)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if errors.Is(err, tt.wantNot) {
				t.Errorf("err = %v, must not be %v", err, tt.wantNot)
			}
			if errors.Is(tt.wantErr, jenkins.ErrRefused) && !errors.Is(err, jenkins.ErrRefused) {
				t.Errorf("err = %v, want it to be a refusal (ErrRefused)", err)
			}
			if !strings.Contains(err.Error(), tt.wantWords) {
				t.Errorf("err = %q, want it to say %q", err, tt.wantWords)
			}
		})
	}
}

func TestMissingParams(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.on("GET /job/team/job/app/api/json", jsonAnswer(200, `{"name":"app","fullName":"team/app","url":"http://j/job/team/job/app/","buildable":true,
	 "property":[{"_class":"hudson.model.ParametersDefinitionProperty","parameterDefinitions":[
	  {"name":"FERRY_GIT_SHA","type":"StringParameterDefinition"},{"name":"FERRY_TRIGGER_ID","type":"StringParameterDefinition"}]}]}`))
	c := f.client(t, nil)
	got, err := c.MissingParams(context.Background(), "team/app", []string{"FERRY_GIT_SHA", "FERRY_GIT_REF", "FERRY_TRIGGER_ID", "TRACEPARENT"})
	if err != nil || !reflect.DeepEqual(got, []string{"FERRY_GIT_REF", "TRACEPARENT"}) {
		t.Errorf("MissingParams = %v, %v; want [FERRY_GIT_REF TRACEPARENT]", got, err)
	}
	if _, err := c.MissingParams(context.Background(), "nope", []string{"A"}); !errors.Is(err, jenkins.ErrNotFound) {
		t.Errorf("MissingParams of an unknown job: err = %v, want ErrNotFound", err)
	}
}

func TestTriggerNeverReportsQueueIDZero(t *testing.T) {
	t.Parallel()
	for name, answer := range map[string]http.HandlerFunc{
		"201 without Location":    status(http.StatusCreated, ""),
		"201 with a job Location": redirect(http.StatusCreated, "/job/app/"),
		"200 page":                status(http.StatusOK, "<html>Build scheduled</html>"),
		"queue item 0":            redirect(http.StatusCreated, "/queue/item/0/"),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			f.on("POST /job/app/buildWithParameters", answer)
			got, err := f.client(t, nil).Trigger(context.Background(), "app", nil)
			if err == nil {
				t.Fatalf("Trigger = %+v, nil; want an error", got)
			}
		})
	}
}

func TestTriggerRejectsBadJobNames(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	c := f.client(t, nil)
	for _, job := range []string{"", "/", "a//b", "a/../b"} {
		if _, err := c.Trigger(context.Background(), job, nil); err == nil {
			t.Errorf("Trigger(%q): no error", job)
		}
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("%d requests sent for invalid names", n)
	}
}

// Cores before JENKINS-66105 answer a merge like a creation: 201 with the
// existing item's Location.
func TestTriggerMergeAnsweredAs201(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	ids := map[string]string{"ev-1": "/queue/item/10/", "ev-2": "/queue/item/11/", "reused": "/queue/item/10/"}
	f.on("POST /job/app/buildWithParameters", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		redirect(http.StatusCreated, ids[r.PostForm.Get("FERRY_ID")])(w, r)
	})
	c := f.client(t, nil)
	steps := []struct {
		id   string
		want jenkins.TriggerResult
	}{
		{"ev-1", jenkins.TriggerResult{QueueID: 10}},
		{"ev-2", jenkins.TriggerResult{QueueID: 11}},
		{"ev-1", jenkins.TriggerResult{QueueID: 10, Merged: true}},
		// Same id for other parameters (ids restarting after a Jenkins
		// restart): not a merge.
		{"reused", jenkins.TriggerResult{QueueID: 10}},
	}
	for i, s := range steps {
		got, err := c.Trigger(context.Background(), "app", map[string]string{"FERRY_ID": s.id})
		if err != nil || got != s.want {
			t.Errorf("step %d: Trigger(%s) = %+v, %v; want %+v", i, s.id, got, err, s.want)
		}
	}
}
