package scm_test

import (
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/ferryci/ferry/pkg/event"
	"github.com/ferryci/ferry/pkg/scm"
	"github.com/ferryci/ferry/test/scmfake"
)

func ghDeployRef() scm.DeploymentRef {
	return scm.DeploymentRef{Provider: event.GitHub, Repo: ghRepo, SHA: testSHA, Ref: "main", Environment: "test",
		Description: "ferry promotion p1: registry.example.com/web@sha256:abc",
		Payload:     map[string]any{"promotion": "p1"}}
}

func glDeployRef() scm.DeploymentRef {
	return scm.DeploymentRef{Provider: event.GitLab, Repo: glPath, SHA: testSHA, Ref: "refs/heads/main", Environment: "production"}
}

// A GitHub deployment deploys exactly the commit, without auto-merge and
// without GitHub's status-check gate, and its statuses carry the URLs.
func TestGitHubDeploymentLifecycle(t *testing.T) {
	t.Parallel()
	fake := newGitHubFake(t)
	// A pending commit status would make GitHub refuse a deployment that
	// leaves required_contexts at its default.
	fake.AddRef(ghRepo, "main", strings.Repeat("f", 40))
	g := newGitHubReporter(t, scm.GitHubConfig{Token: scmfake.GitHubToken, BaseURL: fake.EnterpriseURL()})
	if err := g.SetStatus(bg(t), ghEvent(), scm.Status{State: scm.StatePending, Context: ctxName}); err != nil {
		t.Fatal(err)
	}
	var d scm.Deployer = g
	id, err := d.CreateDeployment(bg(t), ghDeployRef())
	if err != nil {
		t.Fatalf("CreateDeployment: %v", err)
	}
	for _, st := range []scm.DeploymentStatus{
		{State: scm.DeploymentInProgress, Description: "rolling out"},
		{State: scm.DeploymentSuccess, Description: "verified", EnvironmentURL: "https://test.example.com", LogURL: buildURL},
	} {
		if err := d.SetDeploymentStatus(bg(t), ghDeployRef(), id, st); err != nil {
			t.Fatalf("SetDeploymentStatus(%s): %v", st.State, err)
		}
	}
	got := fake.Deployments()
	if len(got) != 1 {
		t.Fatalf("deployments = %d, want 1:\n%s", len(got), scmfake.FormatDeployments(got))
	}
	dep := got[0]
	if dep.ID != id || dep.SHA != testSHA || dep.Ref != testSHA || dep.Environment != "test" || dep.Task != "deploy" {
		t.Errorf("deployment = %+v; want id %d of %s (sent as the ref) to test", dep, id, testSHA)
	}
	if dep.AutoMerge == nil || *dep.AutoMerge || dep.RequiredContexts == nil || len(*dep.RequiredContexts) != 0 {
		t.Errorf("auto_merge %v, required_contexts %v; want false and []", dep.AutoMerge, dep.RequiredContexts)
	}
	if dep.Payload["promotion"] != "p1" || dep.Description != ghDeployRef().Description {
		t.Errorf("payload %v description %q", dep.Payload, dep.Description)
	}
	if want := []string{"in_progress", "success"}; !reflect.DeepEqual(dep.States(), want) {
		t.Errorf("states = %v, want %v", dep.States(), want)
	}
	if s := dep.Statuses[1]; s.EnvironmentURL != "https://test.example.com" || s.LogURL != buildURL {
		t.Errorf("success status = %+v", s)
	}
}

func TestGitHubDeploymentErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(*scmfake.GitHub)
		token string
		ref   func(scm.DeploymentRef) scm.DeploymentRef
		want  wantErr
	}{
		{"unknown repository", nil, scmfake.GitHubToken, func(r scm.DeploymentRef) scm.DeploymentRef { r.Repo = "acme/nope"; return r },
			wantErr{code: http.StatusNotFound}},
		{"bad token", nil, "ghp_wrongwrongwrong", nil, wantErr{code: http.StatusUnauthorized}},
		{"unknown commit", nil, scmfake.GitHubToken, func(r scm.DeploymentRef) scm.DeploymentRef { r.SHA = "nothex!"; return r },
			wantErr{code: http.StatusUnprocessableEntity}},
		{"server error", func(f *scmfake.GitHub) { f.FailNext(1, http.StatusBadGateway) }, scmfake.GitHubToken, nil,
			wantErr{code: http.StatusBadGateway, retryable: true}},
		{"no environment", nil, scmfake.GitHubToken, func(r scm.DeploymentRef) scm.DeploymentRef { r.Environment = ""; return r },
			wantErr{is: scm.ErrInvalidDeployment}},
		{"not owner/name", nil, scmfake.GitHubToken, func(r scm.DeploymentRef) scm.DeploymentRef { r.Repo = "a/b/c"; return r },
			wantErr{is: scm.ErrInvalidDeployment}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := newGitHubFake(t)
			if tt.setup != nil {
				tt.setup(fake)
			}
			g := newGitHubReporter(t, scm.GitHubConfig{Token: tt.token, BaseURL: fake.EnterpriseURL()})
			ref := ghDeployRef()
			if tt.ref != nil {
				ref = tt.ref(ref)
			}
			_, err := g.CreateDeployment(bg(t), ref)
			checkErr(t, err, tt.want, tt.token)
			if err != nil && tt.want.is == nil && !strings.HasPrefix(err.Error(), "create github deployment") {
				t.Errorf("error %q does not say what was being done", err)
			}
			if n := len(fake.Deployments()); n != 0 {
				t.Errorf("deployments recorded: %d, want 0", n)
			}
		})
	}
	t.Run("status of an unknown deployment", func(t *testing.T) {
		t.Parallel()
		fake := newGitHubFake(t)
		g := newGitHubReporter(t, scm.GitHubConfig{Token: scmfake.GitHubToken, BaseURL: fake.EnterpriseURL()})
		err := g.SetDeploymentStatus(bg(t), ghDeployRef(), 999, scm.DeploymentStatus{State: scm.DeploymentSuccess})
		checkErr(t, err, wantErr{code: http.StatusNotFound}, scmfake.GitHubToken)
		err = g.SetDeploymentStatus(bg(t), ghDeployRef(), 1, scm.DeploymentStatus{State: "done"})
		checkErr(t, err, wantErr{is: scm.ErrInvalidDeployment}, "")
	})
}

// GitLab gets its own statuses; a repeated status (a retry after a lost
// answer), which GitLab refuses with 400, succeeds.
func TestGitLabDeploymentLifecycle(t *testing.T) {
	t.Parallel()
	for _, byID := range []bool{false, true} {
		t.Run(map[bool]string{false: "by path", true: "by id"}[byID], func(t *testing.T) {
			t.Parallel()
			fake := newGitLabFake(t)
			g := newGitLabReporter(t, scm.GitLabConfig{Token: scmfake.GitLabToken, BaseURL: fake.BaseURL()})
			ref := glDeployRef()
			if byID {
				ref.Repo, ref.ProjectID = "", glID
			}
			id, err := g.CreateDeployment(bg(t), ref)
			if err != nil {
				t.Fatalf("CreateDeployment: %v", err)
			}
			for _, s := range []scm.DeploymentState{scm.DeploymentInProgress, scm.DeploymentFailure, scm.DeploymentFailure} {
				if err := g.SetDeploymentStatus(bg(t), ref, id, scm.DeploymentStatus{State: s, Description: "x"}); err != nil {
					t.Fatalf("SetDeploymentStatus(%s): %v", s, err)
				}
			}
			got := fake.Deployments()
			if len(got) != 1 {
				t.Fatalf("deployments = %d, want 1", len(got))
			}
			d := got[0]
			if d.ID != id || d.Repo != glPath || d.ProjectID != glID || d.SHA != testSHA || d.Ref != "main" || d.Tag || d.Environment != "production" {
				t.Errorf("deployment = %+v", d)
			}
			if want := []string{"running", "failed"}; !reflect.DeepEqual(d.States(), want) {
				t.Errorf("states = %v, want %v", d.States(), want)
			}
		})
	}
}

func TestGitLabDeploymentMapping(t *testing.T) {
	t.Parallel()
	tests := []struct {
		state scm.DeploymentState
		want  string
	}{
		{scm.DeploymentSuccess, "success"},
		{scm.DeploymentFailure, "failed"},
		{scm.DeploymentError, "failed"},
		{scm.DeploymentInactive, "canceled"},
	}
	for _, tt := range tests {
		t.Run(string(tt.state), func(t *testing.T) {
			t.Parallel()
			fake := newGitLabFake(t)
			g := newGitLabReporter(t, scm.GitLabConfig{Token: scmfake.GitLabToken, BaseURL: fake.BaseURL()})
			ref := glDeployRef()
			ref.Ref = "refs/tags/v1.2.0"
			id, err := g.CreateDeployment(bg(t), ref)
			if err != nil {
				t.Fatal(err)
			}
			if err := g.SetDeploymentStatus(bg(t), ref, id, scm.DeploymentStatus{State: tt.state}); err != nil {
				t.Fatal(err)
			}
			d := fake.Deployments()[0]
			if d.Ref != "v1.2.0" || !d.Tag {
				t.Errorf("ref %q tag %v, want v1.2.0 true", d.Ref, d.Tag)
			}
			if want := []string{"running", tt.want}; !reflect.DeepEqual(d.States(), want) {
				t.Errorf("states = %v, want %v", d.States(), want)
			}
		})
	}
}

func TestGitLabDeploymentErrors(t *testing.T) {
	t.Parallel()
	fake := newGitLabFake(t)
	g := newGitLabReporter(t, scm.GitLabConfig{Token: scmfake.GitLabToken, BaseURL: fake.BaseURL()})
	unknown := glDeployRef()
	unknown.Repo = "other/project"
	_, err := g.CreateDeployment(bg(t), unknown)
	checkErr(t, err, wantErr{code: http.StatusNotFound}, scmfake.GitLabToken)

	noRef := glDeployRef()
	noRef.Ref = "refs/merge-requests/1/head"
	if _, err := g.CreateDeployment(bg(t), noRef); !errors.Is(err, scm.ErrInvalidDeployment) {
		t.Errorf("merge request ref: err = %v, want ErrInvalidDeployment", err)
	}

	fake.FailNext(1, http.StatusServiceUnavailable)
	_, err = g.CreateDeployment(bg(t), glDeployRef())
	checkErr(t, err, wantErr{code: http.StatusServiceUnavailable, retryable: true}, scmfake.GitLabToken)

	err = g.SetDeploymentStatus(bg(t), glDeployRef(), 77, scm.DeploymentStatus{State: scm.DeploymentSuccess})
	checkErr(t, err, wantErr{code: http.StatusNotFound}, scmfake.GitLabToken)

	bad := newGitLabReporter(t, scm.GitLabConfig{Token: "glpat-wrong-token-value", BaseURL: fake.BaseURL()})
	_, err = bad.CreateDeployment(bg(t), glDeployRef())
	checkErr(t, err, wantErr{code: http.StatusUnauthorized}, "glpat-wrong-token-value")
	if len(fake.Deployments()) != 0 {
		t.Errorf("deployments recorded: %s", scmfake.FormatDeployments(fake.Deployments()))
	}
}

// Multi routes deployments by provider and refuses a provider without a
// token.
func TestMultiDeployer(t *testing.T) {
	t.Parallel()
	gh := newGitHubFake(t)
	m, err := scm.New(scm.Config{GitHub: scm.GitHubConfig{Token: scmfake.GitHubToken, BaseURL: gh.EnterpriseURL()}})
	if err != nil {
		t.Fatal(err)
	}
	var d scm.Deployer = m
	if _, err := d.CreateDeployment(bg(t), ghDeployRef()); err != nil {
		t.Fatalf("github: %v", err)
	}
	if _, err := d.CreateDeployment(bg(t), glDeployRef()); !errors.Is(err, scm.ErrUnknownProvider) || scm.IsRetryable(err) {
		t.Errorf("gitlab without token: err = %v, want permanent ErrUnknownProvider", err)
	}
	if n := len(gh.Deployments()); n != 1 {
		t.Errorf("github deployments = %d, want 1", n)
	}
}
