package scm_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/event"
	"github.com/ferryci/ferry/pkg/scm"
	"github.com/ferryci/ferry/test/scmfake"
)

func newGitLabFake(t *testing.T) *scmfake.GitLab {
	t.Helper()
	f := scmfake.NewGitLab(t)
	f.AddProject(glID, glPath)
	return f
}

func newGitLabReporter(t *testing.T, cfg scm.GitLabConfig) *scm.GitLab {
	t.Helper()
	r, err := scm.NewGitLab(cfg)
	if err != nil {
		t.Fatalf("NewGitLab: %v", err)
	}
	return r
}

func TestGitLabStateMapping(t *testing.T) {
	t.Parallel()
	tests := []struct {
		state  scm.State
		wantSt string
	}{
		{scm.StatePending, "pending"},
		{scm.StateRunning, "running"},
		{scm.StateSuccess, "success"},
		{scm.StateFailure, "failed"},
		{scm.StateError, "failed"},
		{scm.StateCanceled, "canceled"},
	}
	for _, tt := range tests {
		t.Run(string(tt.state), func(t *testing.T) {
			t.Parallel()
			fake := newGitLabFake(t)
			r := newGitLabReporter(t, scm.GitLabConfig{Token: scmfake.GitLabToken, BaseURL: fake.BaseURL()})
			err := r.SetStatus(bg(t), glEvent(), scm.Status{State: tt.state, Context: ctxName,
				Description: "desc " + string(tt.state), TargetURL: buildURL})
			if err != nil {
				t.Fatalf("SetStatus: %v", err)
			}
			got := fake.Statuses()
			if len(got) != 1 {
				t.Fatalf("statuses = %d, want 1:\n%s", len(got), scmfake.Format(got))
			}
			want := scmfake.Status{Provider: "gitlab", Repo: glPath, ProjectID: glID, SHA: testSHA,
				State: tt.wantSt, Context: ctxName, Description: "desc " + string(tt.state),
				TargetURL: buildURL, Ref: "main"}
			if got[0] != want {
				t.Errorf("status = %+v\nwant     %+v", got[0], want)
			}
		})
	}
}

func TestGitLabAddressing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		ev       func() event.Event
		wantPath string
		wantRef  string
	}{
		{
			name:     "project id",
			ev:       glEvent,
			wantPath: "/api/v4/projects/42/statuses/" + testSHA,
			wantRef:  "main",
		},
		{
			name:     "url-escaped namespace path without id",
			ev:       func() event.Event { e := glEvent(); e.ProjectID = 0; return e },
			wantPath: "/api/v4/projects/group%2Fsub%2Fdemo/statuses/" + testSHA,
			wantRef:  "main",
		},
		{
			name:     "tag ref sends the tag name",
			ev:       func() event.Event { e := glEvent(); e.Ref = "refs/tags/v1.2.0"; return e },
			wantPath: "/api/v4/projects/42/statuses/" + testSHA,
			wantRef:  "v1.2.0",
		},
		{
			name: "merge request ref sends no ref",
			ev: func() event.Event {
				e := glEvent()
				e.Kind, e.Ref, e.Number = event.PullRequest, "refs/merge-requests/7/head", 7
				return e
			},
			wantPath: "/api/v4/projects/42/statuses/" + testSHA,
			wantRef:  "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := newGitLabFake(t)
			r := newGitLabReporter(t, scm.GitLabConfig{Token: scmfake.GitLabToken, BaseURL: fake.BaseURL()})
			if err := r.SetStatus(bg(t), tt.ev(), scm.Status{State: scm.StateRunning, Context: ctxName}); err != nil {
				t.Fatalf("SetStatus: %v", err)
			}
			c := fake.Calls()[0]
			if c.Path != tt.wantPath {
				t.Errorf("path = %q, want %q", c.Path, tt.wantPath)
			}
			if !c.Authorized {
				t.Error("call was not authorized: PRIVATE-TOKEN missing or wrong")
			}
			if got := fake.Statuses()[0]; got.Ref != tt.wantRef || got.Repo != glPath {
				t.Errorf("status ref, repo = %q, %q; want %q, %q", got.Ref, got.Repo, tt.wantRef, glPath)
			}
		})
	}
}

func TestGitLabBaseURLs(t *testing.T) {
	t.Parallel()
	const suffix = "/api/v4/projects/42/statuses/" + testSHA
	tests := []struct {
		name     string
		root     string // fake's relative URL root
		base     func(f *scmfake.GitLab) string
		client   func(t *testing.T, f *scmfake.GitLab) *http.Client
		wantPath string
		wantHost string
	}{
		{"instance root", "", func(f *scmfake.GitLab) string { return f.BaseURL() }, nil, suffix, ""},
		{"trailing slash", "", func(f *scmfake.GitLab) string { return f.BaseURL() + "/" }, nil, suffix, ""},
		{"already /api/v4", "", func(f *scmfake.GitLab) string { return f.BaseURL() + "/api/v4" }, nil, suffix, ""},
		{"self-hosted under a path", "/gitlab", func(f *scmfake.GitLab) string { return f.BaseURL() }, nil, "/gitlab" + suffix, ""},
		{
			"gitlab.com by default", "",
			func(*scmfake.GitLab) string { return "" },
			func(t *testing.T, f *scmfake.GitLab) *http.Client { return rewriteClient(t, f.URL()) },
			suffix, "gitlab.com",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := newGitLabFake(t)
			fake.SetRelativeURLRoot(tt.root)
			cfg := scm.GitLabConfig{Token: scmfake.GitLabToken, BaseURL: tt.base(fake)}
			if tt.client != nil {
				cfg.HTTPClient = tt.client(t, fake)
			}
			r := newGitLabReporter(t, cfg)
			if err := r.SetStatus(bg(t), glEvent(), scm.Status{State: scm.StateSuccess, Context: ctxName}); err != nil {
				t.Fatalf("SetStatus: %v", err)
			}
			c := fake.Calls()[0]
			if c.Path != tt.wantPath {
				t.Errorf("path = %q, want %q", c.Path, tt.wantPath)
			}
			if tt.wantHost != "" && c.Host != tt.wantHost {
				t.Errorf("host = %q, want %q", c.Host, tt.wantHost)
			}
		})
	}
}

// TestGitLabTransitionQuirk replays sequences in which GitLab refuses a
// transition to a state the status already has; the reporter must treat
// those as done, and only those.
func TestGitLabTransitionQuirk(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		states     []scm.State
		wantStates []string // accepted by the fake, in order
		wantRefuse int      // 400 answers the reporter swallowed
	}{
		{"pending twice", []scm.State{scm.StatePending, scm.StatePending}, []string{"pending"}, 1},
		{"running twice", []scm.State{scm.StateRunning, scm.StateRunning}, []string{"running"}, 1},
		{"pending after running", []scm.State{scm.StatePending, scm.StateRunning, scm.StatePending}, []string{"pending", "running"}, 1},
		{
			"full retried lifecycle",
			[]scm.State{scm.StatePending, scm.StatePending, scm.StateRunning, scm.StateRunning, scm.StateSuccess},
			[]string{"pending", "running", "success"}, 2,
		},
		{"success twice makes a new status", []scm.State{scm.StateSuccess, scm.StateSuccess}, []string{"success", "success"}, 0},
		{"rebuild after a finished build", []scm.State{scm.StateRunning, scm.StateFailure, scm.StatePending, scm.StateRunning}, []string{"running", "failed", "pending", "running"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := newGitLabFake(t)
			r := newGitLabReporter(t, scm.GitLabConfig{Token: scmfake.GitLabToken, BaseURL: fake.BaseURL()})
			for i, st := range tt.states {
				if err := r.SetStatus(bg(t), glEvent(), scm.Status{State: st, Context: ctxName}); err != nil {
					t.Fatalf("SetStatus #%d (%s): %v", i+1, st, err)
				}
			}
			if got := scmfake.StatesOf(fake.Statuses(), testSHA, ctxName); fmt.Sprint(got) != fmt.Sprint(tt.wantStates) {
				t.Errorf("accepted states = %v, want %v", got, tt.wantStates)
			}
			refused := 0
			for _, c := range fake.Calls() {
				if c.Code == http.StatusBadRequest {
					refused++
				}
			}
			if refused != tt.wantRefuse {
				t.Errorf("refused transitions = %d, want %d", refused, tt.wantRefuse)
			}
		})
	}
}

// TestGitLabOtherTransitionErrors checks that a refusal which does not leave
// the status where it was asked to be stays an error.
func TestGitLabOtherTransitionErrors(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"message":"Cannot transition status via :drop from :success (Reason(s): Status cannot transition via \"drop\")"}`))
	}))
	t.Cleanup(srv.Close)
	r := newGitLabReporter(t, scm.GitLabConfig{Token: scmfake.GitLabToken, BaseURL: srv.URL})
	err := r.SetStatus(bg(t), glEvent(), scm.Status{State: scm.StateFailure, Context: ctxName})
	checkErr(t, err, wantErr{code: 400}, scmfake.GitLabToken)
	if !strings.Contains(err.Error(), "Cannot transition status via :drop from :success") {
		t.Errorf("error %q does not carry GitLab's message", err)
	}
}

func TestGitLabErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(t *testing.T, f *scmfake.GitLab) scm.GitLabConfig
		ev    func() event.Event
		want  wantErr
	}{
		{
			name: "wrong token is permanent",
			setup: func(t *testing.T, f *scmfake.GitLab) scm.GitLabConfig {
				return scm.GitLabConfig{Token: "glpat-wrongWrongWrong", BaseURL: f.BaseURL()}
			},
			want: wantErr{code: 401},
		},
		{
			name: "unknown project is permanent",
			setup: func(t *testing.T, f *scmfake.GitLab) scm.GitLabConfig {
				return scm.GitLabConfig{Token: scmfake.GitLabToken, BaseURL: f.BaseURL()}
			},
			ev:   func() event.Event { e := glEvent(); e.ProjectID = 7; return e },
			want: wantErr{code: 404},
		},
		{
			name: "unknown project path is permanent",
			setup: func(t *testing.T, f *scmfake.GitLab) scm.GitLabConfig {
				return scm.GitLabConfig{Token: scmfake.GitLabToken, BaseURL: f.BaseURL()}
			},
			ev:   func() event.Event { e := glEvent(); e.ProjectID, e.Repo = 0, "group/other"; return e },
			want: wantErr{code: 404},
		},
		{
			name: "unknown commit is permanent",
			setup: func(t *testing.T, f *scmfake.GitLab) scm.GitLabConfig {
				return scm.GitLabConfig{Token: scmfake.GitLabToken, BaseURL: f.BaseURL()}
			},
			ev:   func() event.Event { e := glEvent(); e.SHA = "zzz-not-hex"; return e },
			want: wantErr{code: 404},
		},
		{
			name: "500 is retryable",
			setup: func(t *testing.T, f *scmfake.GitLab) scm.GitLabConfig {
				f.FailNext(1, 500)
				return scm.GitLabConfig{Token: scmfake.GitLabToken, BaseURL: f.BaseURL()}
			},
			want: wantErr{code: 500, retryable: true},
		},
		{
			name: "502 from the proxy is retryable",
			setup: func(t *testing.T, f *scmfake.GitLab) scm.GitLabConfig {
				f.FailNext(1, 502)
				return scm.GitLabConfig{Token: scmfake.GitLabToken, BaseURL: f.BaseURL()}
			},
			want: wantErr{code: 502, retryable: true},
		},
		{
			name: "429 is retryable after Retry-After",
			setup: func(t *testing.T, f *scmfake.GitLab) scm.GitLabConfig {
				f.InjectFailures(1, scmfake.Failure{Code: 429, RetryAfter: 45 * time.Second})
				return scm.GitLabConfig{Token: scmfake.GitLabToken, BaseURL: f.BaseURL()}
			},
			want: wantErr{code: 429, retryable: true, after: 45 * time.Second},
		},
		{
			name: "409 lock contention is retryable",
			setup: func(t *testing.T, f *scmfake.GitLab) scm.GitLabConfig {
				f.FailNext(1, 409)
				return scm.GitLabConfig{Token: scmfake.GitLabToken, BaseURL: f.BaseURL()}
			},
			want: wantErr{code: 409, retryable: true},
		},
		{
			name: "403 is permanent",
			setup: func(t *testing.T, f *scmfake.GitLab) scm.GitLabConfig {
				f.FailNext(1, 403)
				return scm.GitLabConfig{Token: scmfake.GitLabToken, BaseURL: f.BaseURL()}
			},
			want: wantErr{code: 403},
		},
		{
			name: "connection refused is retryable",
			setup: func(t *testing.T, f *scmfake.GitLab) scm.GitLabConfig {
				return scm.GitLabConfig{Token: scmfake.GitLabToken, BaseURL: closedServerURL(t)}
			},
			want: wantErr{retryable: true},
		},
		{
			name: "timeout from config is retryable",
			setup: func(t *testing.T, f *scmfake.GitLab) scm.GitLabConfig {
				return scm.GitLabConfig{Token: scmfake.GitLabToken, BaseURL: hangingServer(t), Timeout: 50 * time.Millisecond}
			},
			want: wantErr{retryable: true},
		},
		{
			name: "event without sha is refused before calling",
			setup: func(t *testing.T, f *scmfake.GitLab) scm.GitLabConfig {
				return scm.GitLabConfig{Token: scmfake.GitLabToken, BaseURL: f.BaseURL()}
			},
			ev:   func() event.Event { e := glEvent(); e.SHA = ""; return e },
			want: wantErr{is: scm.ErrInvalidEvent},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := newGitLabFake(t)
			cfg := tt.setup(t, fake)
			r := newGitLabReporter(t, cfg)
			ev := glEvent()
			if tt.ev != nil {
				ev = tt.ev()
			}
			err := r.SetStatus(bg(t), ev, scm.Status{State: scm.StatePending, Context: ctxName})
			checkErr(t, err, tt.want, cfg.Token)
			if n := len(fake.Statuses()); n != 0 {
				t.Errorf("fake accepted %d statuses, want 0", n)
			}
		})
	}
}

func TestGitLabLimits(t *testing.T) {
	t.Parallel()
	longURL := "https://jenkins.example.com/job/" + strings.Repeat("x", 300)
	tests := []struct {
		name             string
		desc, targetURL  string
		wantDesc, wantTU string
	}{
		{"short description stays", "ok", buildURL, "ok", buildURL},
		{"long description is cut to 255", strings.Repeat("d", 400), buildURL, strings.Repeat("d", scm.GitLabDescriptionLimit-1) + "…", buildURL},
		{"exactly 255 stays", strings.Repeat("d", 255), buildURL, strings.Repeat("d", 255), buildURL},
		{"too long target URL is dropped", "ok", longURL, "ok", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := newGitLabFake(t)
			r := newGitLabReporter(t, scm.GitLabConfig{Token: scmfake.GitLabToken, BaseURL: fake.BaseURL()})
			err := r.SetStatus(bg(t), glEvent(), scm.Status{State: scm.StateFailure, Context: ctxName,
				Description: tt.desc, TargetURL: tt.targetURL})
			if err != nil {
				t.Fatalf("SetStatus: %v", err)
			}
			got := fake.Statuses()[0]
			if got.Description != tt.wantDesc || got.TargetURL != tt.wantTU {
				t.Errorf("description, target_url = %q, %q\nwant %q, %q", got.Description, got.TargetURL, tt.wantDesc, tt.wantTU)
			}
		})
	}
}

func TestGitLabTokenNeverInErrors(t *testing.T) {
	t.Parallel()
	const token = "glpat-superSecretTokenValue123"
	for _, code := range []int{400, 401, 500} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			t.Parallel()
			r := newGitLabReporter(t, scm.GitLabConfig{Token: token, BaseURL: echoServer(t, code)})
			err := r.SetStatus(bg(t), glEvent(), scm.Status{State: scm.StatePending, Context: ctxName})
			if err == nil {
				t.Fatal("SetStatus: got nil error")
			}
			if strings.Contains(err.Error(), token) {
				t.Fatalf("error leaks the token: %q", err.Error())
			}
			if !strings.Contains(err.Error(), "[REDACTED]") {
				t.Errorf("error %q: want the echoed token replaced by [REDACTED]", err.Error())
			}
		})
	}
}

func TestNewGitLabConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  scm.GitLabConfig
	}{
		{"no token", scm.GitLabConfig{}},
		{"not a URL", scm.GitLabConfig{Token: "t", BaseURL: "gitlab.example.com"}},
		{"ftp", scm.GitLabConfig{Token: "t", BaseURL: "ftp://gitlab.example.com/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := scm.NewGitLab(tt.cfg); err == nil {
				t.Fatal("NewGitLab: got nil error")
			}
		})
	}
}
