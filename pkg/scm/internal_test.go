package scm

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"
)

func TestTruncate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in    string
		limit int
		want  string
	}{
		{"", 5, ""},
		{"abc", 5, "abc"},
		{"abcde", 5, "abcde"},
		{"abcdef", 5, "abcd…"},
		{"日本語のテキスト", 4, "日本語…"},
		{"abc", 0, ""},
		{"abc", 1, "…"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.in, tt.limit), func(t *testing.T) {
			t.Parallel()
			if got := Truncate(tt.in, tt.limit); got != tt.want {
				t.Errorf("Truncate(%q, %d) = %q, want %q", tt.in, tt.limit, got, tt.want)
			}
		})
	}
}

func TestStatePredicates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		s            State
		valid, final bool
	}{
		{StatePending, true, false},
		{StateRunning, true, false},
		{StateSuccess, true, true},
		{StateFailure, true, true},
		{StateError, true, true},
		{StateCanceled, true, true},
		{State("failed"), false, false},
		{State(""), false, false},
	}
	for _, tt := range tests {
		t.Run(string(tt.s), func(t *testing.T) {
			t.Parallel()
			if got := tt.s.Valid(); got != tt.valid {
				t.Errorf("Valid() = %v, want %v", got, tt.valid)
			}
			if got := tt.s.Final(); got != tt.final {
				t.Errorf("Final() = %v, want %v", got, tt.final)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"30", 30 * time.Second},
		{" 2 ", 2 * time.Second},
		{"-1", 0},
		{"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			if got := parseRetryAfter(tt.in, now); got != tt.want {
				t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestAlreadyReached(t *testing.T) {
	t.Parallel()
	tests := []struct {
		msg, want string
		ok        bool
	}{
		{`Cannot transition status via :run from :running (Reason(s): Status cannot transition via "run")`, "running", true},
		{`Cannot transition status via :enqueue from :pending (Reason(s): Status cannot transition via "enqueue")`, "pending", true},
		{`Cannot transition status via :enqueue from :running (Reason(s): Status cannot transition via "enqueue")`, "pending", true},
		{`Cannot transition status via :run from :success`, "running", false},
		{`Cannot transition status via :drop from :success`, "failed", false},
		{`Cannot transition status via :enqueue from :pending`, "running", false},
		{`state does not have a valid value`, "pending", false},
	}
	for _, tt := range tests {
		t.Run(tt.msg+"/"+tt.want, func(t *testing.T) {
			t.Parallel()
			if _, ok := alreadyReached(tt.msg, tt.want); ok != tt.ok {
				t.Errorf("alreadyReached(%q, %q) = %v, want %v", tt.msg, tt.want, ok, tt.ok)
			}
		})
	}
}

func TestGitLabRef(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"refs/heads/main":            "main",
		"refs/heads/feature/x":       "feature/x",
		"refs/tags/v1.0":             "v1.0",
		"refs/merge-requests/7/head": "",
		"refs/pull/7/head":           "",
		"main":                       "main",
		"":                           "",
	}
	for in, want := range tests {
		if got := gitlabRef(in); got != want {
			t.Errorf("gitlabRef(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestGitLabMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		code int
		want string
	}{
		{"message string", `{"message":"401 Unauthorized"}`, 401, "401 Unauthorized"},
		{"message object", `{"message":{"description":["is too long (maximum is 255 characters)"]}}`, 400, `{"description":["is too long (maximum is 255 characters)"]}`},
		{"grape error", `{"error":"state does not have a valid value"}`, 400, "state does not have a valid value"},
		{"plain text", "Retry later\n", 429, "Retry later"},
		{"html", "<!DOCTYPE html><html>502</html>", 502, "Bad Gateway"},
		{"empty", "", 503, "Service Unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := gitlabMessage([]byte(tt.body), tt.code); got != tt.want {
				t.Errorf("gitlabMessage = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestIsRetryablePlainErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"deadline", fmt.Errorf("call: %w", context.DeadlineExceeded), true},
		{"canceled", fmt.Errorf("call: %w", context.Canceled), false},
		{"unknown", errors.New("something"), false},
		{"invalid state", fmt.Errorf("x: %w", ErrInvalidState), false},
		{"wrapped retryable Error", fmt.Errorf("dispatch: %w", &Error{StatusCode: 503, Retryable: true}), true},
		{"wrapped permanent Error", fmt.Errorf("dispatch: %w", &Error{StatusCode: 404}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := IsRetryable(tt.err); got != tt.want {
				t.Errorf("IsRetryable(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
