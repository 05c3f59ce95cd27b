package jenkins_test

import (
	"context"
	"errors"
	"net/http"
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
		{
			name:    "not parameterized: 500",
			job:     "app",
			route:   "POST /job/app/buildWithParameters",
			answer:  status(http.StatusInternalServerError, "java.lang.IllegalStateException: This build is not parameterized!"),
			wantErr: jenkins.ErrUnavailable,
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
