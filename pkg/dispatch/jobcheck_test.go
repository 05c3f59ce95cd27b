package dispatch

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/jenkins"
	"github.com/ferryci/ferry/test/jenkinsemu"
)

// jobWith returns a buildable job declaring names as string parameters.
func jobWith(names ...string) jenkins.Job {
	j := jenkins.Job{Name: "app", FullName: "team/app", Buildable: true}
	for _, n := range names {
		j.Params = append(j.Params, jenkins.ParamDef{Name: n, Type: "StringParameterDefinition"})
	}
	return j
}

func without(all []string, drop ...string) []string {
	return slices.DeleteFunc(slices.Clone(all), func(s string) bool { return slices.Contains(drop, s) })
}

func TestJobProblem(t *testing.T) {
	t.Parallel()
	pipe := config.Pipeline{Name: "build", Job: "team/app"}
	withOwn := config.Pipeline{Name: "deploy", Job: "team/app", Parameters: map[string]string{"ENV": "prod", "DRY": "no"}}
	disabled := jobWith(config.ReservedParams...)
	disabled.Buildable = false
	tests := []struct {
		name         string
		pipe         config.Pipeline
		job          jenkins.Job
		wantMissing  []string // nil: no problem unless wantDisabled
		wantDisabled bool
		wantBlocking bool
		wantWords    []string
	}{
		{"every parameter declared", pipe, jobWith(config.ReservedParams...), nil, false, false, nil},
		{"only TRACEPARENT missing: builds, without the trace", pipe, jobWith(without(config.ReservedParams, config.ParamTraceParent)...),
			[]string{config.ParamTraceParent}, false, false, []string{"TRACEPARENT", "add the string parameter TRACEPARENT to job team/app"}},
		{"FERRY_TRIGGER_ID missing: blind", pipe, jobWith(without(config.ReservedParams, config.ParamTriggerID)...),
			[]string{config.ParamTriggerID}, false, true, []string{"build twice", "parameters block"}},
		{"no parameters at all", pipe, jobWith(), config.ReservedParams, false, true, []string{"FERRY_GIT_SHA, FERRY_GIT_REF", "run the job once"}},
		{"the pipeline's own parameters count", withOwn, jobWith(append(slices.Clone(config.ReservedParams), "ENV")...),
			[]string{"DRY"}, false, false, []string{`pipeline "deploy"`, "DRY"}},
		{"disabled", pipe, disabled, nil, true, true, []string{"disabled", "enable it"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pr := jobProblem(tt.pipe, tt.job)
			if tt.wantMissing == nil && !tt.wantDisabled {
				if pr != nil {
					t.Fatalf("jobProblem = %+v, want none", pr)
				}
				return
			}
			if pr == nil {
				t.Fatal("jobProblem = nil, want a problem")
			}
			if !slices.Equal(pr.Missing, tt.wantMissing) || pr.Disabled != tt.wantDisabled || pr.Blocking() != tt.wantBlocking {
				t.Errorf("problem = %+v (blocking %v), want missing %v, disabled %v, blocking %v", pr, pr.Blocking(), tt.wantMissing, tt.wantDisabled, tt.wantBlocking)
			}
			for _, w := range tt.wantWords {
				if !strings.Contains(pr.Error(), w) {
					t.Errorf("Error() = %q, want it to say %q", pr.Error(), w)
				}
			}
			if s := pr.Summary(); len(s) > 140 || !strings.Contains(s, "team/app") {
				t.Errorf("Summary() = %q (%d bytes), want at most 140 naming the job", s, len(s))
			}
		})
	}
}

// fakeJobs is a JobReader with a function field, counting lookups.
type fakeJobs struct {
	mu    sync.Mutex
	calls map[string]int
	job   func(job string) (jenkins.Job, error)
}

func (f *fakeJobs) Job(_ context.Context, job string) (jenkins.Job, error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[job]++
	f.mu.Unlock()
	return f.job(job)
}

func (f *fakeJobs) count(job string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[job]
}

func TestJobChecker(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	down := true
	var mu sync.Mutex
	fake := &fakeJobs{job: func(job string) (jenkins.Job, error) {
		mu.Lock()
		defer mu.Unlock()
		switch job {
		case "team/app":
			return jobWith(without(config.ReservedParams, config.ParamTriggerID)...), nil
		case "flaky":
			if down {
				return jenkins.Job{}, &jenkins.HTTPError{Method: "GET", Path: "/job/flaky/api/json", Status: 503, Body: "starting"}
			}
			return jobWith(config.ReservedParams...), nil
		}
		return jenkins.Job{}, jenkins.ErrNotFound
	}}
	c, err := NewJobChecker(JobCheckConfig{Jenkins: fake, TTL: time.Minute, Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pipes := []config.Pipeline{
		{Name: "build", Job: "team/app"},
		{Name: "lint", Job: "team/app"},
		{Name: "gone", Job: "nope"},
		{Name: "later", Job: "flaky"},
	}
	problems, err := c.CheckAll(ctx, pipes)
	if err == nil || !strings.Contains(err.Error(), `"later"`) {
		t.Errorf("CheckAll error = %v, want the failed lookup of pipeline later", err)
	}
	if len(problems) != 3 || problems[0].Pipeline != "build" || problems[1].Pipeline != "lint" || !problems[2].NotFound {
		t.Fatalf("CheckAll problems = %+v; want build, lint (no FERRY_TRIGGER_ID) and gone (no job)", problems)
	}
	for _, p := range problems {
		if !p.Blocking() {
			t.Errorf("%+v is not blocking", p)
		}
	}
	if n := fake.count("team/app"); n != 1 {
		t.Errorf("team/app looked up %d times for two pipelines, want 1", n)
	}

	// Within the TTL nothing is asked; a failed lookup is not remembered.
	if pr, err := c.Check(ctx, pipes[0]); err != nil || pr == nil {
		t.Fatalf("Check(build) = %v, %v", pr, err)
	}
	mu.Lock()
	down = false
	mu.Unlock()
	if pr, err := c.Check(ctx, pipes[3]); err != nil || pr != nil {
		t.Errorf("Check(later) once Jenkins is back = %v, %v; want no problem", pr, err)
	}
	if n := fake.count("team/app"); n != 1 {
		t.Errorf("team/app looked up %d times within the TTL, want 1", n)
	}
	// Forget, or the TTL passing, asks again.
	c.Forget("team/app")
	if _, err := c.Check(ctx, pipes[0]); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	if _, err := c.Check(ctx, pipes[0]); err != nil {
		t.Fatal(err)
	}
	if n := fake.count("team/app"); n != 3 {
		t.Errorf("team/app looked up %d times, want 3 (start, after Forget, after the TTL)", n)
	}
	if _, err := NewJobChecker(JobCheckConfig{}); err == nil {
		t.Error("NewJobChecker without Jenkins: no error")
	}
}

// The checker with ferry's Jenkins client against the emulator.
func TestJobCheckerEmulator(t *testing.T) {
	emu := jenkinsemu.New(jenkinsemu.Options{Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(emu.Close)
	var old []jenkinsemu.Param
	for _, p := range ferryParams() {
		if p.Name != config.ParamTriggerID {
			old = append(old, p)
		}
	}
	for path, spec := range map[string]jenkinsemu.JobSpec{
		"ok":       {Params: ferryParams()},
		"team/old": {Params: old},
		"plain":    {},
		"off":      {Params: ferryParams(), Disabled: true},
	} {
		if err := emu.AddJob(path, spec); err != nil {
			t.Fatal(err)
		}
	}
	cl, err := jenkins.New(jenkins.Config{URL: emu.URL(), User: jenkinsemu.DefaultUser.Name, APIToken: jenkinsemu.DefaultUser.Token})
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewJobChecker(JobCheckConfig{Jenkins: cl})
	if err != nil {
		t.Fatal(err)
	}
	problems, err := c.CheckAll(context.Background(), []config.Pipeline{
		{Name: "a", Job: "ok"}, {Name: "b", Job: "team/old"}, {Name: "c", Job: "plain"}, {Name: "d", Job: "off"}, {Name: "e", Job: "missing"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range problems {
		if !p.Blocking() {
			t.Errorf("%s: not blocking", p.Error())
		}
		got = append(got, p.Pipeline)
	}
	if !slices.Equal(got, []string{"b", "c", "d", "e"}) {
		t.Errorf("problems for pipelines %v, want b c d e: %+v", got, problems)
	}
	if !strings.Contains(problems[0].Error(), "parameter "+config.ParamTriggerID) {
		t.Errorf("team/old: %s", problems[0].Error())
	}
}
