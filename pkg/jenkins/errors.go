package jenkins

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Sentinel errors callers branch on with errors.Is. Every error returned by
// a Client call that came from an HTTP exchange is an *HTTPError wrapping at
// most one of them.
var (
	// ErrNotFound: Jenkins answered 404 (unknown job, build, queue item or
	// node). Queue items that left the queue vanish after about five
	// minutes, so a 404 for an old queue id is normal.
	ErrNotFound = errors.New("jenkins: not found")
	// ErrUnavailable: Jenkins could not be reached or answered in a way that
	// may succeed later (connection refused, timeout, 408, 429, 5xx).
	// IsRetryable reports it.
	ErrUnavailable = errors.New("jenkins: unavailable")
	// ErrAuth: Jenkins refused the credentials or the permission (401, 403,
	// a redirect to the login page).
	ErrAuth = errors.New("jenkins: not authorized")
	// ErrExists: a node with the requested name already exists.
	ErrExists = errors.New("jenkins: already exists")
	// ErrRefused: Jenkins will not build the job as asked, and asking
	// again will not change that: it scheduled nothing and redirected to
	// the job page (a QueueDecisionHandler vetoed the build), or it is one
	// of ErrDisabled and ErrNotParameterized, which wrap it.
	ErrRefused = errors.New("jenkins: build not scheduled")
	// ErrDisabled: the job is disabled (409 "… is not buildable").
	// errors.Is(err, ErrRefused) holds too.
	ErrDisabled = fmt.Errorf("%w: job is disabled", ErrRefused)
	// ErrNotParameterized: the job declares no parameters, so it cannot be
	// built with buildWithParameters (400 "… is not parameterized" since
	// Jenkins 2.524, a 500 before). errors.Is(err, ErrRefused) holds too.
	ErrNotParameterized = fmt.Errorf("%w: job declares no parameters", ErrRefused)
	// ErrNotCancellable: the queue item exists but cannot be cancelled any
	// more (it has already left the queue, or the user lacks CANCEL).
	ErrNotCancellable = errors.New("jenkins: queue item not cancellable")
)

// IsRetryable reports whether err is worth retrying unchanged later:
// Jenkins was unreachable, timed out or answered with a temporary status.
func IsRetryable(err error) bool {
	return errors.Is(err, ErrUnavailable)
}

// snippetLen bounds the part of an error answer kept in an HTTPError.
const snippetLen = 300

// HTTPError describes a failed exchange with Jenkins. Status is 0 when no
// answer arrived (Err then holds the transport error). Path is the request
// path relative to the Jenkins URL, without query; it never holds
// credentials. Body is a short, secret-free snippet of the answer, taken
// from Jenkins' X-Error header when present.
type HTTPError struct {
	Method string
	Path   string
	Status int
	Body   string
	// Err is the transport error when Status is 0.
	Err error

	kind error // one of the sentinels, or nil
}

func (e *HTTPError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "jenkins: %s %s: ", e.Method, e.Path)
	switch {
	case e.Status == 0 && e.Err != nil:
		b.WriteString(e.Err.Error())
	default:
		fmt.Fprintf(&b, "%d %s", e.Status, http.StatusText(e.Status))
		if e.Body != "" {
			fmt.Fprintf(&b, ": %s", e.Body)
		}
	}
	return b.String()
}

// Unwrap exposes the sentinel (for errors.Is) and the transport error.
func (e *HTTPError) Unwrap() []error {
	var errs []error
	if e.kind != nil {
		errs = append(errs, e.kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// kindForStatus maps an HTTP status to the sentinel callers branch on.
func kindForStatus(status int) error {
	switch {
	case status == http.StatusNotFound:
		return ErrNotFound
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		return ErrAuth
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests, status >= 500:
		return ErrUnavailable
	}
	return nil
}

// kindForTransport classifies an error that prevented any answer. A caller
// cancelling its context is not a Jenkins failure; certificate problems do
// not heal by retrying; everything else (refused, reset, DNS, timeouts,
// including the per-call timeout) may.
func kindForTransport(err error) error {
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	switch {
	case errors.Is(err, context.Canceled):
		return nil
	case errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostErr):
		return nil
	}
	return ErrUnavailable
}
