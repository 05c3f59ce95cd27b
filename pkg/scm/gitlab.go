package scm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/ferryci/ferry/pkg/event"
)

// GitLabConfig configures the GitLab reporter.
type GitLabConfig struct {
	// Token is a personal, project or group access token with the api
	// scope, sent as PRIVATE-TOKEN. Required.
	Token string
	// BaseURL is the GitLab instance, e.g. https://gitlab.example.com or
	// https://example.com/gitlab ("/api/v4" is added when missing).
	// Empty means https://gitlab.com.
	BaseURL string
	// HTTPClient carries the calls; nil means a plain client.
	HTTPClient *http.Client
	// Timeout bounds one call; zero means DefaultTimeout.
	Timeout time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// TracerProvider, when set, gets one scm.set_status span per call.
	TracerProvider trace.TracerProvider
}

// DefaultGitLabURL is used when GitLabConfig.BaseURL is empty.
const DefaultGitLabURL = "https://gitlab.com"

// maxGitLabErrorBody caps how much of an error answer is read.
const maxGitLabErrorBody = 64 << 10

// GitLab publishes commit statuses through GitLab's REST API
// (POST /api/v4/projects/:id/statuses/:sha), without an SDK.
//
// GitLab's own states are used: failure and error are both published as
// failed. The ref sent is the branch or tag name for refs/heads/ and
// refs/tags/ refs; for any other ref (merge requests) no ref is sent, so
// GitLab attaches the status to the newest pipeline of the commit, which is
// the merge request's.
//
// GitLab quirk: a status that is still pending or running is updated in
// place through a state machine that refuses a transition to the state it
// is already in, answering 400 "Cannot transition status via :run from
// :running" (or "via :enqueue from :pending"). A redelivered or retried
// status hits exactly that. The reporter treats such an answer as success
// when the status has already reached the requested state, or is running
// when pending was asked (the build is past that point). The description
// and target URL of the refused call are not stored by GitLab then.
type GitLab struct {
	api     string // instance root + /api/v4, no trailing slash
	client  *http.Client
	token   string
	timeout time.Duration
	logger  *slog.Logger
	tracer  trace.Tracer
}

// NewGitLab returns a GitLab reporter. Use Noop instead when no token is
// configured.
func NewGitLab(cfg GitLabConfig) (*GitLab, error) {
	if cfg.Token == "" {
		return nil, errors.New("gitlab status reporter: no token configured")
	}
	base := cfg.BaseURL
	if base == "" {
		base = DefaultGitLabURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("gitlab status reporter: base URL %q is not an http(s) URL", base)
	}
	u.RawQuery, u.Fragment = "", ""
	api := strings.TrimSuffix(u.String(), "/")
	if !strings.HasSuffix(api, "/api/v4") {
		api += "/api/v4"
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{}
	}
	return &GitLab{
		api:     api,
		client:  client,
		token:   cfg.Token,
		timeout: cfg.Timeout,
		logger:  defaultLogger(cfg.Logger, event.GitLab),
		tracer:  tracer(cfg.TracerProvider),
	}, nil
}

// gitlabStatusRequest is the body of POST /projects/:id/statuses/:sha.
type gitlabStatusRequest struct {
	State       string `json:"state"`
	Name        string `json:"name,omitempty"`
	Description string `json:"description,omitempty"`
	TargetURL   string `json:"target_url,omitempty"`
	Ref         string `json:"ref,omitempty"`
}

// SetStatus creates or updates the commit status named st.Context on
// ev.SHA in the project ev.ProjectID (or, when 0, the project path ev.Repo).
func (g *GitLab) SetStatus(ctx context.Context, ev event.Event, st Status) (err error) {
	if err := validate(ev, st); err != nil {
		return fmt.Errorf("set gitlab status: %w", err)
	}
	body := gitlabStatusRequest{
		State:       gitlabState(st.State),
		Name:        st.Context,
		Description: Truncate(oneLine(st.Description), GitLabDescriptionLimit),
		TargetURL:   st.TargetURL,
		Ref:         gitlabRef(ev.Ref),
	}
	if n := len([]rune(body.TargetURL)); n > gitLabTargetURLLimit {
		// GitLab refuses the whole status (400) for a longer URL; a status
		// without a link beats no status.
		g.logger.WarnContext(ctx, "target URL longer than GitLab accepts; sending the status without it",
			"repo", ev.Repo, "length", n, "limit", gitLabTargetURLLimit)
		body.TargetURL = ""
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("set gitlab status: encode request: %w", err)
	}
	project := url.PathEscape(ev.Repo)
	if ev.ProjectID != 0 {
		project = strconv.FormatInt(ev.ProjectID, 10)
	}
	endpoint := g.api + "/projects/" + project + "/statuses/" + url.PathEscape(ev.SHA)

	ctx, end := startSpan(ctx, g.tracer, ev, st)
	defer func() { end(err) }()
	ctx, cancel := withTimeout(ctx, g.timeout)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(payload))
	if err != nil {
		return g.fail(ev, 0, fmt.Sprintf("build request: %v", err), false, 0, err)
	}
	req.Header.Set("PRIVATE-TOKEN", g.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "ferry")

	resp, err := g.client.Do(req)
	if err != nil {
		return g.fail(ev, 0, err.Error(), transportRetryable(err), 0, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxGitLabErrorBody))
		g.logger.DebugContext(ctx, "commit status set", "repo", ev.Repo, "project_id", ev.ProjectID,
			"sha", ev.SHA, "context", st.Context, "state", body.State)
		return nil
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxGitLabErrorBody))
	msg := gitlabMessage(raw, resp.StatusCode)
	if resp.StatusCode == http.StatusBadRequest {
		if from, ok := alreadyReached(msg, body.State); ok {
			g.logger.DebugContext(ctx, "commit status already in the requested state",
				"repo", ev.Repo, "sha", ev.SHA, "context", st.Context,
				"requested", body.State, "current", from)
			return nil
		}
	}
	return g.fail(ev, resp.StatusCode, msg, retryableStatus(resp.StatusCode),
		parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()), nil)
}

// fail builds the *Error of a failed call, without the token.
func (g *GitLab) fail(ev event.Event, code int, msg string, retryable bool, after time.Duration, cause error) error {
	return &Error{
		Provider:   event.GitLab,
		Repo:       ev.Repo,
		SHA:        ev.SHA,
		StatusCode: code,
		Message:    redact(msg, g.token),
		Retryable:  retryable,
		RetryAfter: after,
		err:        cause,
	}
}

// gitlabState maps a State to GitLab's states; GitLab has no error state.
func gitlabState(s State) string {
	switch s {
	case StatePending:
		return "pending"
	case StateRunning:
		return "running"
	case StateSuccess:
		return "success"
	case StateCanceled:
		return "canceled"
	default: // failure, error
		return "failed"
	}
}

// gitlabRef returns the ref GitLab expects: a branch or tag name; "" for
// other refs (see GitLab).
func gitlabRef(ref string) string {
	if b, ok := strings.CutPrefix(ref, "refs/heads/"); ok {
		return b
	}
	if t, ok := strings.CutPrefix(ref, "refs/tags/"); ok {
		return t
	}
	if strings.HasPrefix(ref, "refs/") {
		return ""
	}
	return ref
}

// transitionRE matches GitLab's state machine refusal, e.g. "Cannot
// transition status via :run from :running (Reason(s): Status cannot
// transition via "run")".
var transitionRE = regexp.MustCompile(`Cannot transition status via :(\w+) from :(\w+)`)

// alreadyReached reports whether msg is a transition refusal that leaves the
// status where the caller wanted it, and the state it is in.
func alreadyReached(msg, want string) (string, bool) {
	m := transitionRE.FindStringSubmatch(msg)
	if m == nil {
		return "", false
	}
	from := m[2]
	return from, from == want || (want == "pending" && from == "running")
}

// gitlabMessage extracts GitLab's explanation from an error body:
// {"message": "..."} or {"message": {"field": ["..."]}} or {"error": "..."};
// proxies answer with text or HTML instead.
func gitlabMessage(body []byte, code int) string {
	var m struct {
		Message json.RawMessage `json:"message"`
		Error   string          `json:"error"`
	}
	if json.Unmarshal(body, &m) == nil {
		if len(m.Message) > 0 {
			var s string
			if json.Unmarshal(m.Message, &s) == nil {
				return s
			}
			var c bytes.Buffer
			if json.Compact(&c, m.Message) == nil {
				return c.String()
			}
		}
		if m.Error != "" {
			return m.Error
		}
	}
	text := strings.Join(strings.Fields(string(body)), " ")
	if text == "" || strings.HasPrefix(text, "<") {
		return http.StatusText(code)
	}
	return Truncate(text, 200)
}
