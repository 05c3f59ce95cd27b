package scm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/ferryci/ferry/pkg/event"
)

// gitlabDeployment is the part of GitLab's deployment entity ferry reads.
type gitlabDeployment struct {
	ID     int64  `json:"id"`
	Status string `json:"status"`
}

// gitlabDeploymentState maps a DeploymentState onto the statuses GitLab's
// deployments API accepts: running, success, failed, canceled. Pending and
// in progress are both running (GitLab's created status cannot be set
// through the API), error is failed, and inactive (called off) is
// canceled.
func gitlabDeploymentState(s DeploymentState) string {
	switch s {
	case DeploymentSuccess:
		return "success"
	case DeploymentFailure, DeploymentError:
		return "failed"
	case DeploymentInactive:
		return "canceled"
	default: // pending, in_progress
		return "running"
	}
}

// CreateDeployment creates a GitLab deployment
// (POST /api/v4/projects/:id/deployments) of ref.SHA from ref.Ref (a
// branch, or a tag for refs/tags/ refs) to ref.Environment, which GitLab
// creates when it does not exist yet. GitLab requires the ref. The
// deployment starts running; description, payload and URLs have no place
// in GitLab's API and are not sent.
func (g *GitLab) CreateDeployment(ctx context.Context, ref DeploymentRef) (id int64, err error) {
	if err := validateDeployment(ref); err != nil {
		return 0, fmt.Errorf("create gitlab deployment: %w", err)
	}
	name, tag := gitlabRefName(ref.Ref)
	if name == "" {
		return 0, fmt.Errorf("create gitlab deployment: %w: GitLab needs the branch or tag name (ref %q)", ErrInvalidDeployment, ref.Ref)
	}
	ctx, end := startDeploySpan(ctx, g.tracer, "scm.create_deployment", ref)
	defer func() { end(err) }()
	body := map[string]any{"environment": ref.Environment, "sha": ref.SHA, "ref": name, "tag": tag, "status": "running"}
	var dep gitlabDeployment
	if err := g.call(ctx, http.MethodPost, g.project(ref)+"/deployments", body, &dep, ref, "create gitlab deployment"); err != nil {
		return 0, err
	}
	if dep.ID == 0 {
		return 0, g.failOp(ref, "create gitlab deployment", 0, "GitLab answered without a deployment id", false, 0, nil)
	}
	g.logger.DebugContext(ctx, "deployment created", "repo", ref.Repo, "project_id", ref.ProjectID,
		"sha", ref.SHA, "environment", ref.Environment, "deployment", dep.ID)
	return dep.ID, nil
}

// SetDeploymentStatus updates the deployment's status
// (PUT /api/v4/projects/:id/deployments/:deployment_id). GitLab refuses a
// transition to the status a deployment already has (400); the reporter
// then reads the deployment and succeeds when it is in the requested
// status, so a retried call is harmless.
func (g *GitLab) SetDeploymentStatus(ctx context.Context, ref DeploymentRef, id int64, st DeploymentStatus) (err error) {
	if err := validateDeployment(ref); err != nil {
		return fmt.Errorf("set gitlab deployment status: %w", err)
	}
	if !st.State.Valid() {
		return fmt.Errorf("set gitlab deployment status: %w: state %q", ErrInvalidDeployment, st.State)
	}
	if id <= 0 {
		return fmt.Errorf("set gitlab deployment status: %w: deployment id %d", ErrInvalidDeployment, id)
	}
	status := gitlabDeploymentState(st.State)
	ctx, end := startDeploySpan(ctx, g.tracer, "scm.set_deployment_status", ref,
		attribute.Int64("scm.deployment", id), attribute.String("scm.state", string(st.State)))
	defer func() { end(err) }()
	path := g.project(ref) + "/deployments/" + strconv.FormatInt(id, 10)
	const op = "set gitlab deployment status"
	err = g.call(ctx, http.MethodPut, path, map[string]any{"status": status}, nil, ref, op)
	if e := (*Error)(nil); errors.As(err, &e) && e.StatusCode == http.StatusBadRequest {
		var dep gitlabDeployment
		if gerr := g.call(ctx, http.MethodGet, path, nil, &dep, ref, op); gerr == nil && dep.Status == status {
			g.logger.DebugContext(ctx, "deployment already in the requested status", "repo", ref.Repo,
				"deployment", id, "status", status)
			return nil
		}
	}
	if err != nil {
		return err
	}
	g.logger.DebugContext(ctx, "deployment status set", "repo", ref.Repo, "project_id", ref.ProjectID,
		"environment", ref.Environment, "deployment", id, "status", status)
	return nil
}

// project is the API path of ref's project.
func (g *GitLab) project(ref DeploymentRef) string {
	if ref.ProjectID != 0 {
		return "/projects/" + strconv.FormatInt(ref.ProjectID, 10)
	}
	return "/projects/" + url.PathEscape(ref.Repo)
}

// call sends one JSON request and decodes a 2xx answer into out (when not
// nil); anything else becomes an *Error without the token.
func (g *GitLab) call(ctx context.Context, method, path string, in, out any, ref DeploymentRef, op string) error {
	ctx, cancel := withTimeout(ctx, g.timeout)
	defer cancel()
	var body io.Reader
	if in != nil {
		payload, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s: encode request: %w", op, err)
		}
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, g.api+path, body)
	if err != nil {
		return g.failOp(ref, op, 0, fmt.Sprintf("build request: %v", err), false, 0, err)
	}
	req.Header.Set("PRIVATE-TOKEN", g.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "ferry")
	resp, err := g.client.Do(req)
	if err != nil {
		return g.failOp(ref, op, 0, err.Error(), transportRetryable(err), 0, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxGitLabErrorBody))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if out != nil {
			if err := json.Unmarshal(raw, out); err != nil {
				return g.failOp(ref, op, resp.StatusCode, "answer is not a deployment: "+err.Error(), false, 0, err)
			}
		}
		return nil
	}
	return g.failOp(ref, op, resp.StatusCode, gitlabMessage(raw, resp.StatusCode), retryableStatus(resp.StatusCode),
		parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()), nil)
}

func (g *GitLab) failOp(ref DeploymentRef, op string, code int, msg string, retryable bool, after time.Duration, cause error) *Error {
	repo := ref.Repo
	if repo == "" {
		repo = "project " + strconv.FormatInt(ref.ProjectID, 10)
	}
	return &Error{Provider: event.GitLab, Op: op, Repo: repo, SHA: ref.SHA, StatusCode: code,
		Message: redact(msg, g.token), Retryable: retryable, RetryAfter: after, err: cause}
}

// gitlabRefName returns the ref name GitLab's deployments take and whether
// it is a tag.
func gitlabRefName(ref string) (string, bool) {
	if t, ok := strings.CutPrefix(ref, "refs/tags/"); ok {
		return t, true
	}
	if b, ok := strings.CutPrefix(ref, "refs/heads/"); ok {
		return b, false
	}
	if strings.HasPrefix(ref, "refs/") {
		return "", false
	}
	return ref, false
}
