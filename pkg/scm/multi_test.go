package scm_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/ferryci/ferry/pkg/event"
	"github.com/ferryci/ferry/pkg/scm"
	"github.com/ferryci/ferry/test/scmfake"
)

// recordingReporter is a hand-written fake Reporter.
type recordingReporter struct {
	mu   sync.Mutex
	got  []event.Event
	err  error
	name string
}

func (r *recordingReporter) SetStatus(_ context.Context, ev event.Event, _ scm.Status) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, ev)
	return r.err
}

func (r *recordingReporter) calls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

func TestMultiRoutesByProvider(t *testing.T) {
	t.Parallel()
	gh, gl := &recordingReporter{name: "github"}, &recordingReporter{name: "gitlab", err: errors.New("boom")}
	m := scm.NewMulti(scm.MultiConfig{Reporters: map[event.Provider]scm.Reporter{event.GitHub: gh, event.GitLab: gl}})
	st := scm.Status{State: scm.StatePending, Context: ctxName}

	tests := []struct {
		name           string
		ev             event.Event
		wantGH, wantGL int
		wantErr        error // nil: no error; else errors.Is target or any error
		anyErr         bool
	}{
		{"github event goes to github", ghEvent(), 1, 0, nil, false},
		{"gitlab event goes to gitlab and its error comes back", glEvent(), 1, 1, nil, true},
		{"unknown provider", event.Event{Provider: "bitbucket", Repo: "a/b", SHA: testSHA}, 1, 1, scm.ErrUnknownProvider, true},
	}
	for _, tt := range tests { // sequential: the counts accumulate
		t.Run(tt.name, func(t *testing.T) {
			err := m.SetStatus(context.Background(), tt.ev, st)
			if tt.anyErr != (err != nil) {
				t.Fatalf("SetStatus error = %v, want error: %v", err, tt.anyErr)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v is not %v", err, tt.wantErr)
			}
			if tt.wantErr != nil && scm.IsRetryable(err) {
				t.Errorf("IsRetryable(%v) = true, want false", err)
			}
			if gh.calls() != tt.wantGH || gl.calls() != tt.wantGL {
				t.Errorf("calls github, gitlab = %d, %d; want %d, %d", gh.calls(), gl.calls(), tt.wantGH, tt.wantGL)
			}
		})
	}
}

func TestNoopLogsOnce(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m := scm.NewMulti(scm.MultiConfig{Reporters: map[event.Provider]scm.Reporter{event.GitLab: nil}, Logger: logger})

	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.SetStatus(context.Background(), glEvent(), scm.Status{State: scm.StateSuccess}); err != nil {
				t.Errorf("SetStatus on a noop reporter: %v", err)
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if n := strings.Count(out, "reporting is off"); n != 1 {
		t.Fatalf("log lines about reporting off = %d, want 1:\n%s", n, out)
	}
	for _, want := range []string{"level=DEBUG", "provider=gitlab", "component=scm"} {
		if !strings.Contains(out, want) {
			t.Errorf("log %q lacks %q", out, want)
		}
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestNew(t *testing.T) {
	t.Parallel()
	ghFake := newGitHubFake(t)
	glFake := newGitLabFake(t)
	tests := []struct {
		name           string
		cfg            scm.Config
		wantGH, wantGL int // statuses each fake should receive
	}{
		{"no tokens: both off", scm.Config{
			GitHub: scm.GitHubConfig{BaseURL: ghFake.EnterpriseURL()},
			GitLab: scm.GitLabConfig{BaseURL: glFake.BaseURL()},
		}, 0, 0},
		{"github only", scm.Config{
			GitHub: scm.GitHubConfig{Token: scmfake.GitHubToken, BaseURL: ghFake.EnterpriseURL()},
			GitLab: scm.GitLabConfig{BaseURL: glFake.BaseURL()},
		}, 1, 0},
		{"both", scm.Config{
			GitHub: scm.GitHubConfig{Token: scmfake.GitHubToken, BaseURL: ghFake.EnterpriseURL()},
			GitLab: scm.GitLabConfig{Token: scmfake.GitLabToken, BaseURL: glFake.BaseURL()},
		}, 1, 1},
	}
	for _, tt := range tests { // sequential: the fakes are shared
		t.Run(tt.name, func(t *testing.T) {
			ghFake.Reset()
			glFake.Reset()
			m, err := scm.New(tt.cfg)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			st := scm.Status{State: scm.StateSuccess, Context: ctxName}
			for _, ev := range []event.Event{ghEvent(), glEvent()} {
				if err := m.SetStatus(bg(t), ev, st); err != nil {
					t.Fatalf("SetStatus(%s): %v", ev.Provider, err)
				}
			}
			if got := len(ghFake.Statuses()); got != tt.wantGH {
				t.Errorf("github statuses = %d, want %d", got, tt.wantGH)
			}
			if got := len(glFake.Statuses()); got != tt.wantGL {
				t.Errorf("gitlab statuses = %d, want %d", got, tt.wantGL)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	_, err := scm.New(scm.Config{GitLab: scm.GitLabConfig{Token: "t", BaseURL: "gitlab.example.com"}})
	if err == nil {
		t.Fatal("New: got nil error for a base URL without scheme")
	}
}
