package scm_test

import (
	"strings"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/ferryci/ferry/pkg/scm"
	"github.com/ferryci/ferry/test/scmfake"
)

func TestSpanPerCall(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(bg(t)) })

	ghFake := newGitHubFake(t)
	glFake := newGitLabFake(t)
	glFake.FailNext(1, 503)
	m, err := scm.New(scm.Config{
		GitHub:         scm.GitHubConfig{Token: scmfake.GitHubToken, BaseURL: ghFake.EnterpriseURL()},
		GitLab:         scm.GitLabConfig{Token: scmfake.GitLabToken, BaseURL: glFake.BaseURL()},
		TracerProvider: tp,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	st := scm.Status{State: scm.StateRunning, Context: ctxName}
	if err := m.SetStatus(bg(t), ghEvent(), st); err != nil {
		t.Fatalf("github SetStatus: %v", err)
	}
	if err := m.SetStatus(bg(t), glEvent(), st); err == nil {
		t.Fatal("gitlab SetStatus: got nil error after an injected 503")
	}

	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("spans = %d, want 2", len(spans))
	}
	tests := []struct {
		provider string
		code     codes.Code
	}{
		{"github", codes.Unset},
		{"gitlab", codes.Error},
	}
	for i, tt := range tests {
		s := spans[i]
		if s.Name() != "scm.set_status" {
			t.Errorf("span %d name = %q, want scm.set_status", i, s.Name())
		}
		attrs := map[string]string{}
		for _, kv := range s.Attributes() {
			attrs[string(kv.Key)] = kv.Value.String()
			for _, tok := range []string{scmfake.GitHubToken, scmfake.GitLabToken} {
				if strings.Contains(kv.Value.String(), tok) {
					t.Errorf("span attribute %s leaks a token", kv.Key)
				}
			}
		}
		if attrs["scm.provider"] != tt.provider || attrs["scm.sha"] != testSHA || attrs["scm.state"] != "running" || attrs["scm.context"] != ctxName {
			t.Errorf("span %d attributes = %v", i, attrs)
		}
		if s.Status().Code != tt.code {
			t.Errorf("span %d status = %v, want %v", i, s.Status().Code, tt.code)
		}
		if tt.code == codes.Error && attrs["scm.retryable"] != "true" {
			t.Errorf("span %d scm.retryable = %q, want true", i, attrs["scm.retryable"])
		}
	}
}
