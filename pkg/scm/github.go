package scm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-github/v60/github"
	"go.opentelemetry.io/otel/trace"

	"github.com/ferryci/ferry/pkg/event"
)

// GitHubConfig configures the GitHub reporter.
type GitHubConfig struct {
	// Token is a token allowed to write commit statuses (classic PAT with
	// repo:status, fine-grained "Commit statuses: write", or an app
	// installation token). Required.
	Token string
	// BaseURL is the REST API root of GitHub Enterprise Server, e.g.
	// https://ghe.example.com/api/v3/ ("/api/v3/" is added when missing).
	// Empty means github.com.
	BaseURL string
	// HTTPClient carries the calls; nil means a plain client. Its
	// transport is kept; the token is added per request.
	HTTPClient *http.Client
	// Timeout bounds one call; zero means DefaultTimeout.
	Timeout time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// TracerProvider, when set, gets one scm.set_status span per call.
	TracerProvider trace.TracerProvider
}

// GitHub publishes commit statuses through the GitHub REST API
// (POST /repos/{owner}/{repo}/statuses/{sha}).
//
// GitHub knows four states, so running is published as pending and
// canceled as error with a description that says the build was canceled.
type GitHub struct {
	client  *github.Client
	token   string
	timeout time.Duration
	logger  *slog.Logger
	tracer  trace.Tracer
}

// NewGitHub returns a GitHub reporter. Use Noop instead when no token is
// configured.
func NewGitHub(cfg GitHubConfig) (*GitHub, error) {
	if cfg.Token == "" {
		return nil, errors.New("github status reporter: no token configured")
	}
	client := github.NewClient(cfg.HTTPClient).WithAuthToken(cfg.Token)
	client.UserAgent = "ferry"
	if cfg.BaseURL != "" {
		u, err := url.Parse(cfg.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("github status reporter: base URL %q is not an http(s) URL", cfg.BaseURL)
		}
		// Uploads are unused; derive a well-formed upload root anyway so
		// go-github does not append "api/uploads/" under "api/v3/".
		upload := *u
		upload.Path = strings.TrimSuffix(strings.TrimSuffix(upload.Path, "/"), "/api/v3") + "/"
		client, err = client.WithEnterpriseURLs(u.String(), upload.String())
		if err != nil {
			return nil, fmt.Errorf("github status reporter: set enterprise URLs: %w", err)
		}
	}
	return &GitHub{
		client:  client,
		token:   cfg.Token,
		timeout: cfg.Timeout,
		logger:  defaultLogger(cfg.Logger, event.GitHub),
		tracer:  tracer(cfg.TracerProvider),
	}, nil
}

// SetStatus creates a commit status on ev.SHA in ev.Repo ("owner/name").
func (g *GitHub) SetStatus(ctx context.Context, ev event.Event, st Status) (err error) {
	if err := validate(ev, st); err != nil {
		return fmt.Errorf("set github status: %w", err)
	}
	owner, repo, ok := strings.Cut(ev.Repo, "/")
	if !ok || owner == "" || repo == "" || strings.Contains(repo, "/") {
		return fmt.Errorf("set github status: %w: repository %q is not owner/name", ErrInvalidEvent, ev.Repo)
	}
	state, desc := githubState(st)
	desc = Truncate(oneLine(desc), GitHubDescriptionLimit)

	ctx, end := startSpan(ctx, g.tracer, ev, st)
	defer func() { end(err) }()
	ctx, cancel := withTimeout(ctx, g.timeout)
	defer cancel()

	rs := &github.RepoStatus{State: github.String(state)}
	if st.Context != "" {
		rs.Context = github.String(st.Context)
	}
	if desc != "" {
		rs.Description = github.String(desc)
	}
	if st.TargetURL != "" {
		rs.TargetURL = github.String(st.TargetURL)
	}
	_, _, err = g.client.Repositories.CreateStatus(ctx, owner, repo, ev.SHA, rs)
	if err != nil {
		return g.classify(err, ev)
	}
	g.logger.DebugContext(ctx, "commit status set", "repo", ev.Repo, "sha", ev.SHA,
		"context", st.Context, "state", state)
	return nil
}

// githubState maps a State to GitHub's four states. GitHub has no running
// (pending is the closest: not finished) and no canceled (error: the build
// did not produce a verdict); the description tells a canceled build apart.
func githubState(st Status) (state, desc string) {
	desc = st.Description
	switch st.State {
	case StatePending, StateRunning:
		return "pending", desc
	case StateSuccess:
		return "success", desc
	case StateFailure:
		return "failure", desc
	case StateCanceled:
		switch {
		case desc == "":
			desc = "Canceled"
		case !strings.Contains(strings.ToLower(desc), "cancel"):
			desc = "Canceled: " + desc
		}
		return "error", desc
	default: // StateError; validate rejected anything else
		return "error", desc
	}
}

// classify turns a go-github error into an *Error.
func (g *GitHub) classify(err error, ev event.Event) error {
	e := &Error{Provider: event.GitHub, Repo: ev.Repo, SHA: ev.SHA, err: err}
	var (
		rateErr   *github.RateLimitError
		abuseErr  *github.AbuseRateLimitError
		respErr   *github.ErrorResponse
		acceptErr *github.AcceptedError
	)
	switch {
	case errors.As(err, &rateErr):
		// Primary rate limit: 403 with X-RateLimit-Remaining: 0, or
		// go-github refusing locally until the reset.
		e.StatusCode = statusCode(rateErr.Response)
		e.Message = rateErr.Message
		e.Retryable = true
		if d := time.Until(rateErr.Rate.Reset.Time); d > 0 {
			e.RetryAfter = d
		}
	case errors.As(err, &abuseErr):
		// Secondary rate limit: 403 (or 429) pointing at the secondary
		// rate limit documentation, usually with Retry-After.
		e.StatusCode = statusCode(abuseErr.Response)
		e.Message = abuseErr.Message
		e.Retryable = true
		if abuseErr.RetryAfter != nil && *abuseErr.RetryAfter > 0 {
			e.RetryAfter = *abuseErr.RetryAfter
		}
	case errors.As(err, &respErr):
		e.StatusCode = statusCode(respErr.Response)
		e.Message = githubMessage(respErr)
		e.Retryable = retryableStatus(e.StatusCode)
		if respErr.Response != nil {
			e.RetryAfter = parseRetryAfter(respErr.Response.Header.Get("Retry-After"), time.Now())
		}
	case errors.As(err, &acceptErr):
		e.StatusCode = http.StatusAccepted
		e.Message = "GitHub accepted the request without creating the status"
		e.Retryable = true
	default:
		e.Message = err.Error()
		e.Retryable = transportRetryable(err)
	}
	e.Message = redact(e.Message, g.token)
	return e
}

// githubMessage joins GitHub's message with its validation details.
func githubMessage(r *github.ErrorResponse) string {
	msg := r.Message
	var details []string
	for _, d := range r.Errors {
		switch {
		case d.Message != "":
			details = append(details, d.Message)
		case d.Field != "":
			details = append(details, d.Field+" "+d.Code)
		}
	}
	if len(details) > 0 {
		msg += " (" + strings.Join(details, "; ") + ")"
	}
	if msg == "" && r.Response != nil {
		msg = http.StatusText(r.Response.StatusCode)
	}
	return msg
}

func statusCode(r *http.Response) int {
	if r == nil {
		return 0
	}
	return r.StatusCode
}
