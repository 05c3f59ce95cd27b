// Package scm reports the state of a build back to the Git host as a commit
// status: GitHub through go-github's Repositories.CreateStatus, GitLab
// through its commit-status REST API. Callers speak one provider-neutral
// vocabulary (State, Status) and one interface (Reporter); Multi routes each
// event to the reporter of its provider, and Noop stands in for a provider
// that has no token configured.
//
// Every call is bounded by a timeout, failures are classified as retryable or
// permanent (IsRetryable, RetryAfter), and tokens never appear in an error,
// a log line or a span attribute.
package scm

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/ferryci/ferry/pkg/event"
)

// State is ferry's provider-neutral build state. Each provider maps it onto
// the states its API accepts.
type State string

// States a build goes through.
const (
	StatePending  State = "pending"  // accepted, waiting for an agent
	StateRunning  State = "running"  // an agent is building it
	StateSuccess  State = "success"  // the build passed
	StateFailure  State = "failure"  // the build ran and failed
	StateError    State = "error"    // ferry or the infrastructure could not build it
	StateCanceled State = "canceled" // the build was cancelled before it finished
)

// Valid reports whether s is one of the known states.
func (s State) Valid() bool {
	switch s {
	case StatePending, StateRunning, StateSuccess, StateFailure, StateError, StateCanceled:
		return true
	}
	return false
}

// Final reports whether s ends a build (no further status is expected).
func (s State) Final() bool {
	switch s {
	case StateSuccess, StateFailure, StateError, StateCanceled:
		return true
	}
	return false
}

// Status is one commit status to publish.
type Status struct {
	// State is the build state.
	State State
	// Context names the check, e.g. "ferry/<pipeline>". Statuses with the
	// same context replace each other on the provider.
	Context string
	// Description is a one-line human summary. It is truncated to the
	// provider's limit (GitHubDescriptionLimit, GitLabDescriptionLimit).
	Description string
	// TargetURL links to the build (optional).
	TargetURL string
}

// Provider limits on the description, in characters (Unicode code points).
const (
	// GitHubDescriptionLimit: GitHub answers 422 "description is too long
	// (maximum is 140 characters)" beyond this.
	GitHubDescriptionLimit = 140
	// GitLabDescriptionLimit: GitLab documents "Must be 255 characters or
	// fewer" for description (and for target_url).
	GitLabDescriptionLimit = 255
	// gitLabTargetURLLimit is GitLab's limit on target_url.
	gitLabTargetURLLimit = 255
)

// DefaultTimeout bounds one status call when the config sets none.
const DefaultTimeout = 10 * time.Second

// Reporter publishes commit statuses.
type Reporter interface {
	// SetStatus publishes st for the commit ev.SHA of ev.Repo. A returned
	// error can be classified with IsRetryable and RetryAfter.
	SetStatus(ctx context.Context, ev event.Event, st Status) error
}

// Truncate shortens s to at most limit characters (code points, which is
// how GitHub and GitLab count), ending a shortened string with "…".
func Truncate(s string, limit int) string {
	if limit <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= limit {
		return s
	}
	runes := []rune(s)
	return string(runes[:limit-1]) + "…"
}

// validate checks what every provider needs before any network call.
func validate(ev event.Event, st Status) error {
	if !st.State.Valid() {
		return fmt.Errorf("%w: %q", ErrInvalidState, st.State)
	}
	if ev.Repo == "" && ev.ProjectID == 0 {
		return fmt.Errorf("%w: event has no repository", ErrInvalidEvent)
	}
	if ev.SHA == "" {
		return fmt.Errorf("%w: event has no commit sha", ErrInvalidEvent)
	}
	return nil
}

// oneLine turns a description into a single line: providers render only one
// and GitLab's UI shows raw newlines badly.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n\t") {
		return s
	}
	return strings.Join(strings.Fields(s), " ")
}

// tracer returns the tracer for scm spans, a no-op one without a provider.
func tracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	return tp.Tracer("github.com/ferryci/ferry/pkg/scm")
}

// startSpan opens the scm.set_status span; end records the outcome.
func startSpan(ctx context.Context, t trace.Tracer, ev event.Event, st Status) (context.Context, func(error)) {
	ctx, span := t.Start(ctx, "scm.set_status",
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("scm.provider", string(ev.Provider)),
			attribute.String("scm.repo", ev.Repo),
			attribute.String("scm.sha", ev.SHA),
			attribute.String("scm.state", string(st.State)),
			attribute.String("scm.context", st.Context),
		))
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
			span.SetAttributes(attribute.Bool("scm.retryable", IsRetryable(err)))
		}
		span.End()
	}
}

// withTimeout bounds one call; a deadline already on ctx that is sooner wins.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		d = DefaultTimeout
	}
	return context.WithTimeout(ctx, d)
}

// defaultLogger returns l or the default logger, tagged with the component.
func defaultLogger(l *slog.Logger, provider event.Provider) *slog.Logger {
	if l == nil {
		l = slog.Default()
	}
	return l.With("component", "scm", "provider", string(provider))
}
