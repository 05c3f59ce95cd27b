package scm_test

import (
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ferryci/ferry/pkg/event"
	"github.com/ferryci/ferry/pkg/scm"
	"github.com/ferryci/ferry/test/scmfake"
)

func newGitHubFake(t *testing.T) *scmfake.GitHub {
	t.Helper()
	f := scmfake.NewGitHub(t)
	f.AddRepo(ghRepo)
	return f
}

func newGitHubReporter(t *testing.T, cfg scm.GitHubConfig) *scm.GitHub {
	t.Helper()
	r, err := scm.NewGitHub(cfg)
	if err != nil {
		t.Fatalf("NewGitHub: %v", err)
	}
	return r
}

func TestGitHubStateMapping(t *testing.T) {
	t.Parallel()
	tests := []struct {
		state    scm.State
		desc     string
		wantSt   string
		wantDesc string
	}{
		{scm.StatePending, "Queued", "pending", "Queued"},
		{scm.StateRunning, "Building on agent-1", "pending", "Building on agent-1"},
		{scm.StateSuccess, "Passed in 3m", "success", "Passed in 3m"},
		{scm.StateFailure, "Tests failed", "failure", "Tests failed"},
		{scm.StateError, "Agent pod could not start", "error", "Agent pod could not start"},
		{scm.StateCanceled, "", "error", "Canceled"},
		{scm.StateCanceled, "Superseded by a newer push", "error", "Canceled: Superseded by a newer push"},
		{scm.StateCanceled, "Build was cancelled by alice", "error", "Build was cancelled by alice"},
	}
	for _, tt := range tests {
		t.Run(string(tt.state)+"/"+tt.desc, func(t *testing.T) {
			t.Parallel()
			fake := newGitHubFake(t)
			r := newGitHubReporter(t, scm.GitHubConfig{Token: scmfake.GitHubToken, BaseURL: fake.EnterpriseURL()})
			err := r.SetStatus(bg(t), ghEvent(), scm.Status{State: tt.state, Context: ctxName,
				Description: tt.desc, TargetURL: buildURL})
			if err != nil {
				t.Fatalf("SetStatus: %v", err)
			}
			got := fake.Statuses()
			if len(got) != 1 {
				t.Fatalf("statuses = %d, want 1:\n%s", len(got), scmfake.Format(got))
			}
			want := scmfake.Status{Provider: "github", Repo: ghRepo, SHA: testSHA, State: tt.wantSt,
				Context: ctxName, Description: tt.wantDesc, TargetURL: buildURL}
			if got[0] != want {
				t.Errorf("status = %+v\nwant     %+v", got[0], want)
			}
			if c := fake.Calls()[0]; !c.Authorized || c.Method != http.MethodPost {
				t.Errorf("call = %+v, want an authorized POST", c)
			}
		})
	}
}

func TestGitHubBaseURLs(t *testing.T) {
	t.Parallel()
	const wantPath = "/repos/" + ghRepo + "/statuses/" + testSHA
	tests := []struct {
		name     string
		base     func(f *scmfake.GitHub) string
		client   func(t *testing.T, f *scmfake.GitHub) *http.Client
		wantPath string
		wantHost string
	}{
		{
			name:     "enterprise with /api/v3/",
			base:     func(f *scmfake.GitHub) string { return f.EnterpriseURL() },
			wantPath: "/api/v3" + wantPath,
		},
		{
			name:     "enterprise without trailing slash",
			base:     func(f *scmfake.GitHub) string { return strings.TrimSuffix(f.EnterpriseURL(), "/") },
			wantPath: "/api/v3" + wantPath,
		},
		{
			name:     "enterprise host only gets /api/v3/",
			base:     func(f *scmfake.GitHub) string { return f.URL() },
			wantPath: "/api/v3" + wantPath,
		},
		{
			name:     "github.com by default",
			base:     func(*scmfake.GitHub) string { return "" },
			client:   func(t *testing.T, f *scmfake.GitHub) *http.Client { return rewriteClient(t, f.URL()) },
			wantPath: wantPath,
			wantHost: "api.github.com",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := newGitHubFake(t)
			cfg := scm.GitHubConfig{Token: scmfake.GitHubToken, BaseURL: tt.base(fake)}
			if tt.client != nil {
				cfg.HTTPClient = tt.client(t, fake)
			}
			r := newGitHubReporter(t, cfg)
			if err := r.SetStatus(bg(t), ghEvent(), scm.Status{State: scm.StateSuccess, Context: ctxName}); err != nil {
				t.Fatalf("SetStatus: %v", err)
			}
			calls := fake.Calls()
			if len(calls) != 1 {
				t.Fatalf("calls = %d, want 1", len(calls))
			}
			if calls[0].Path != tt.wantPath {
				t.Errorf("path = %q, want %q", calls[0].Path, tt.wantPath)
			}
			if tt.wantHost != "" && calls[0].Host != tt.wantHost {
				t.Errorf("host = %q, want %q", calls[0].Host, tt.wantHost)
			}
		})
	}
}

func TestGitHubErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(t *testing.T, f *scmfake.GitHub) scm.GitHubConfig
		ev    func() event.Event
		st    scm.State
		want  wantErr
	}{
		{
			name: "wrong token is permanent",
			setup: func(t *testing.T, f *scmfake.GitHub) scm.GitHubConfig {
				return scm.GitHubConfig{Token: "ghp_wrongWrongWrong", BaseURL: f.EnterpriseURL()}
			},
			want: wantErr{code: 401},
		},
		{
			name: "unknown repository is permanent",
			setup: func(t *testing.T, f *scmfake.GitHub) scm.GitHubConfig {
				return scm.GitHubConfig{Token: scmfake.GitHubToken, BaseURL: f.EnterpriseURL()}
			},
			ev:   func() event.Event { e := ghEvent(); e.Repo = "ferryci/nope"; return e },
			want: wantErr{code: 404},
		},
		{
			name: "unknown commit is permanent",
			setup: func(t *testing.T, f *scmfake.GitHub) scm.GitHubConfig {
				return scm.GitHubConfig{Token: scmfake.GitHubToken, BaseURL: f.EnterpriseURL()}
			},
			ev:   func() event.Event { e := ghEvent(); e.SHA = "not-a-sha"; return e },
			want: wantErr{code: 422},
		},
		{
			name: "500 is retryable",
			setup: func(t *testing.T, f *scmfake.GitHub) scm.GitHubConfig {
				f.FailNext(1, 500)
				return scm.GitHubConfig{Token: scmfake.GitHubToken, BaseURL: f.EnterpriseURL()}
			},
			want: wantErr{code: 500, retryable: true},
		},
		{
			name: "502 from the proxy is retryable",
			setup: func(t *testing.T, f *scmfake.GitHub) scm.GitHubConfig {
				f.FailNext(1, 502)
				return scm.GitHubConfig{Token: scmfake.GitHubToken, BaseURL: f.EnterpriseURL()}
			},
			want: wantErr{code: 502, retryable: true},
		},
		{
			name: "429 is retryable after Retry-After",
			setup: func(t *testing.T, f *scmfake.GitHub) scm.GitHubConfig {
				f.InjectFailures(1, scmfake.Failure{Code: 429, RetryAfter: 30 * time.Second})
				return scm.GitHubConfig{Token: scmfake.GitHubToken, BaseURL: f.EnterpriseURL()}
			},
			want: wantErr{code: 429, retryable: true, after: 30 * time.Second},
		},
		{
			name: "secondary rate limit is retryable after Retry-After",
			setup: func(t *testing.T, f *scmfake.GitHub) scm.GitHubConfig {
				f.SecondaryRateLimitNext(1, 20*time.Second)
				return scm.GitHubConfig{Token: scmfake.GitHubToken, BaseURL: f.EnterpriseURL()}
			},
			want: wantErr{code: 403, retryable: true, after: 20 * time.Second},
		},
		{
			name: "primary rate limit is retryable after the reset",
			setup: func(t *testing.T, f *scmfake.GitHub) scm.GitHubConfig {
				f.InjectFailures(1, scmfake.Failure{Code: 403, RetryAfter: 2 * time.Minute})
				return scm.GitHubConfig{Token: scmfake.GitHubToken, BaseURL: f.EnterpriseURL()}
			},
			want: wantErr{code: 403, retryable: true, after: 2*time.Minute + time.Second},
		},
		{
			name: "connection refused is retryable",
			setup: func(t *testing.T, f *scmfake.GitHub) scm.GitHubConfig {
				return scm.GitHubConfig{Token: scmfake.GitHubToken, BaseURL: closedServerURL(t)}
			},
			want: wantErr{retryable: true},
		},
		{
			name: "timeout from config is retryable",
			setup: func(t *testing.T, f *scmfake.GitHub) scm.GitHubConfig {
				return scm.GitHubConfig{Token: scmfake.GitHubToken, BaseURL: hangingServer(t), Timeout: 50 * time.Millisecond}
			},
			want: wantErr{retryable: true},
		},
		{
			name: "invalid state is refused before calling",
			setup: func(t *testing.T, f *scmfake.GitHub) scm.GitHubConfig {
				return scm.GitHubConfig{Token: scmfake.GitHubToken, BaseURL: f.EnterpriseURL()}
			},
			st:   scm.State("bogus"),
			want: wantErr{is: scm.ErrInvalidState},
		},
		{
			name: "repository that is not owner/name is refused",
			setup: func(t *testing.T, f *scmfake.GitHub) scm.GitHubConfig {
				return scm.GitHubConfig{Token: scmfake.GitHubToken, BaseURL: f.EnterpriseURL()}
			},
			ev:   func() event.Event { e := ghEvent(); e.Repo = "group/sub/demo"; return e },
			want: wantErr{is: scm.ErrInvalidEvent},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := newGitHubFake(t)
			cfg := tt.setup(t, fake)
			r := newGitHubReporter(t, cfg)
			ev := ghEvent()
			if tt.ev != nil {
				ev = tt.ev()
			}
			st := tt.st
			if st == "" {
				st = scm.StatePending
			}
			err := r.SetStatus(bg(t), ev, scm.Status{State: st, Context: ctxName})
			checkErr(t, err, tt.want, cfg.Token)
			if n := len(fake.Statuses()); n != 0 {
				t.Errorf("fake accepted %d statuses, want 0", n)
			}
		})
	}
}

func TestGitHubRecoversAfterTransientFailures(t *testing.T) {
	t.Parallel()
	fake := newGitHubFake(t)
	fake.FailNext(2, 502)
	r := newGitHubReporter(t, scm.GitHubConfig{Token: scmfake.GitHubToken, BaseURL: fake.EnterpriseURL()})
	var errs int
	for range 3 {
		err := r.SetStatus(bg(t), ghEvent(), scm.Status{State: scm.StatePending, Context: ctxName})
		if err == nil {
			break
		}
		if !scm.IsRetryable(err) {
			t.Fatalf("SetStatus: %v is not retryable", err)
		}
		errs++
	}
	if errs != 2 {
		t.Errorf("failed calls = %d, want 2", errs)
	}
	if got := scmfake.StatesOf(fake.Statuses(), testSHA, ctxName); len(got) != 1 || got[0] != "pending" {
		t.Errorf("states = %v, want [pending]", got)
	}
}

func TestGitHubDescriptionTruncation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, desc, want string
	}{
		{"short stays", "all good", "all good"},
		{"exactly the limit stays", strings.Repeat("a", scm.GitHubDescriptionLimit), strings.Repeat("a", scm.GitHubDescriptionLimit)},
		{"one over is cut", strings.Repeat("a", scm.GitHubDescriptionLimit+1), strings.Repeat("a", scm.GitHubDescriptionLimit-1) + "…"},
		{"multi-byte counted as characters", strings.Repeat("é", 300), strings.Repeat("é", scm.GitHubDescriptionLimit-1) + "…"},
		{"newlines become spaces", "line one\nline two", "line one line two"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := newGitHubFake(t)
			r := newGitHubReporter(t, scm.GitHubConfig{Token: scmfake.GitHubToken, BaseURL: fake.EnterpriseURL()})
			err := r.SetStatus(bg(t), ghEvent(), scm.Status{State: scm.StateFailure, Context: ctxName, Description: tt.desc})
			if err != nil {
				t.Fatalf("SetStatus: %v", err)
			}
			got := fake.Statuses()[0].Description
			if got != tt.want {
				t.Errorf("description = %q (%d chars), want %q (%d chars)", got, utf8.RuneCountInString(got), tt.want, utf8.RuneCountInString(tt.want))
			}
		})
	}
}

func TestGitHubTokenNeverInErrors(t *testing.T) {
	t.Parallel()
	const token = "ghp_superSecretTokenValue1234567890"
	for _, code := range []int{401, 403, 500} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			t.Parallel()
			r := newGitHubReporter(t, scm.GitHubConfig{Token: token, BaseURL: echoServer(t, code)})
			err := r.SetStatus(bg(t), ghEvent(), scm.Status{State: scm.StatePending, Context: ctxName})
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

func TestNewGitHubConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  scm.GitHubConfig
	}{
		{"no token", scm.GitHubConfig{}},
		{"not a URL", scm.GitHubConfig{Token: "t", BaseURL: "ghe.example.com/api/v3"}},
		{"ftp", scm.GitHubConfig{Token: "t", BaseURL: "ftp://ghe.example.com/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := scm.NewGitHub(tt.cfg); err == nil {
				t.Fatal("NewGitHub: got nil error")
			}
		})
	}
}
