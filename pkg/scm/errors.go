package scm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ferryci/ferry/pkg/event"
)

// Sentinel errors callers may branch on with errors.Is.
var (
	// ErrInvalidState: the Status carries a state outside the State constants.
	ErrInvalidState = errors.New("invalid commit status state")
	// ErrInvalidEvent: the event lacks what a status needs (repo, sha).
	ErrInvalidEvent = errors.New("event cannot carry a commit status")
	// ErrUnknownProvider: Multi has no reporter for the event's provider.
	ErrUnknownProvider = errors.New("no status reporter for provider")
)

// Error is a failed call to a provider's status API. It never carries the
// token: the message is redacted when built.
type Error struct {
	// Provider is the Git host that was called.
	Provider event.Provider
	// Op says what was being done, e.g. "create github deployment";
	// empty means setting a commit status.
	Op string
	// Repo and SHA name the commit whose status was being set.
	Repo string
	SHA  string
	// StatusCode is the HTTP status of the answer, 0 when none arrived
	// (network error, timeout).
	StatusCode int
	// Message is the provider's explanation, or the transport error.
	Message string
	// Retryable says whether the same call may succeed later.
	Retryable bool
	// RetryAfter is how long the provider asked to wait (0 when it did
	// not say).
	RetryAfter time.Duration

	err error
}

// Error describes the failure without any credential.
func (e *Error) Error() string {
	var b strings.Builder
	if e.Op != "" {
		b.WriteString(e.Op)
	} else {
		fmt.Fprintf(&b, "set %s commit status", e.Provider)
	}
	switch {
	case e.Repo != "" && e.SHA != "":
		fmt.Fprintf(&b, " on %s@%s", e.Repo, shortSHA(e.SHA))
	case e.Repo != "":
		fmt.Fprintf(&b, " on %s", e.Repo)
	}
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.StatusCode)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	if e.Retryable {
		b.WriteString(" (retryable")
		if e.RetryAfter > 0 {
			fmt.Fprintf(&b, " after %s", e.RetryAfter)
		}
		b.WriteString(")")
	}
	return b.String()
}

// Unwrap returns the underlying error (context errors, transport errors,
// go-github's typed errors).
func (e *Error) Unwrap() error { return e.err }

// IsRetryable reports whether err is worth retrying later: a 5xx answer, a
// network failure or timeout, 408/409/429, or a GitHub (secondary) rate
// limit. Permanent failures (401, 403, 404, 422, invalid input) and a
// context cancelled by the caller are not retryable.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Retryable
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne)
}

// RetryAfter returns the wait the provider asked for (Retry-After, or the
// reset of a GitHub rate limit), if it said.
func RetryAfter(err error) (time.Duration, bool) {
	var e *Error
	if errors.As(err, &e) && e.RetryAfter > 0 {
		return e.RetryAfter, true
	}
	return 0, false
}

// retryableStatus classifies an HTTP status code.
func retryableStatus(code int) bool {
	switch {
	case code >= 500:
		return true
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests,
		code == http.StatusConflict:
		// 409 is GitLab's "Another update to this commit status is in
		// progress": its lock was held, the same call succeeds later.
		return true
	}
	return false
}

// transportRetryable classifies an error from the HTTP transport, that is
// one that came without an answer: everything is transient (refused or
// reset connections, EOFs, timeouts) except a context the caller cancelled
// (shutdown), where retrying is the caller's decision.
func transportRetryable(err error) bool {
	return !errors.Is(err, context.Canceled)
}

// redact removes every occurrence of the secret from s.
func redact(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "[REDACTED]")
}

// parseRetryAfter reads a Retry-After header: delay-seconds or HTTP-date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

func shortSHA(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}
