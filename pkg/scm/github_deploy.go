package scm

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-github/v60/github"
	"go.opentelemetry.io/otel/attribute"

	"github.com/ferryci/ferry/pkg/event"
)

// CreateDeployment creates a GitHub deployment
// (POST /repos/{owner}/{repo}/deployments) of ref.SHA to ref.Environment.
// The commit itself is the deployed ref; auto_merge is off and
// required_contexts empty, so GitHub neither merges the default branch in
// nor refuses the deployment over the commit's statuses: ferry deploys
// what was built and verified. The token needs "Deployments: write"
// (classic: repo_deployment).
func (g *GitHub) CreateDeployment(ctx context.Context, ref DeploymentRef) (id int64, err error) {
	owner, repo, err := githubRepo(ref)
	if err != nil {
		return 0, fmt.Errorf("create github deployment: %w", err)
	}
	ctx, end := startDeploySpan(ctx, g.tracer, "scm.create_deployment", ref)
	defer func() { end(err) }()
	ctx, cancel := withTimeout(ctx, g.timeout)
	defer cancel()

	req := &github.DeploymentRequest{
		Ref:                   github.String(ref.SHA),
		Task:                  github.String("deploy"),
		AutoMerge:             github.Bool(false),
		RequiredContexts:      &[]string{},
		Environment:           github.String(ref.Environment),
		TransientEnvironment:  ref.Transient,
		ProductionEnvironment: ref.Production,
	}
	if d := Truncate(oneLine(ref.Description), GitHubDescriptionLimit); d != "" {
		req.Description = github.String(d)
	}
	if len(ref.Payload) > 0 {
		req.Payload = ref.Payload
	}
	dep, _, err := g.client.Repositories.CreateDeployment(ctx, owner, repo, req)
	if err != nil {
		return 0, g.classifyDeploy(err, ref, "create github deployment")
	}
	if dep.GetID() == 0 {
		return 0, &Error{Provider: event.GitHub, Op: "create github deployment", Repo: ref.Repo, SHA: ref.SHA,
			Message: "GitHub answered without a deployment id"}
	}
	g.logger.DebugContext(ctx, "deployment created", "repo", ref.Repo, "sha", ref.SHA,
		"environment", ref.Environment, "deployment", dep.GetID())
	return dep.GetID(), nil
}

// SetDeploymentStatus creates a deployment status
// (POST /repos/{owner}/{repo}/deployments/{id}/statuses). GitHub marks
// earlier successful deployments to the environment inactive when one
// succeeds.
func (g *GitHub) SetDeploymentStatus(ctx context.Context, ref DeploymentRef, id int64, st DeploymentStatus) (err error) {
	owner, repo, err := githubRepo(ref)
	if err != nil {
		return fmt.Errorf("set github deployment status: %w", err)
	}
	if !st.State.Valid() {
		return fmt.Errorf("set github deployment status: %w: state %q", ErrInvalidDeployment, st.State)
	}
	if id <= 0 {
		return fmt.Errorf("set github deployment status: %w: deployment id %d", ErrInvalidDeployment, id)
	}
	ctx, end := startDeploySpan(ctx, g.tracer, "scm.set_deployment_status", ref,
		attribute.Int64("scm.deployment", id), attribute.String("scm.state", string(st.State)))
	defer func() { end(err) }()
	ctx, cancel := withTimeout(ctx, g.timeout)
	defer cancel()

	req := &github.DeploymentStatusRequest{State: github.String(string(st.State))}
	if d := Truncate(oneLine(st.Description), GitHubDescriptionLimit); d != "" {
		req.Description = github.String(d)
	}
	if st.EnvironmentURL != "" {
		req.EnvironmentURL = github.String(st.EnvironmentURL)
	}
	if st.LogURL != "" {
		req.LogURL = github.String(st.LogURL)
	}
	if _, _, err = g.client.Repositories.CreateDeploymentStatus(ctx, owner, repo, id, req); err != nil {
		return g.classifyDeploy(err, ref, "set github deployment status")
	}
	g.logger.DebugContext(ctx, "deployment status set", "repo", ref.Repo, "environment", ref.Environment,
		"deployment", id, "state", st.State)
	return nil
}

func githubRepo(ref DeploymentRef) (owner, repo string, err error) {
	if err := validateDeployment(ref); err != nil {
		return "", "", err
	}
	owner, repo, ok := strings.Cut(ref.Repo, "/")
	if !ok || owner == "" || repo == "" || strings.Contains(repo, "/") {
		return "", "", fmt.Errorf("%w: repository %q is not owner/name", ErrInvalidDeployment, ref.Repo)
	}
	return owner, repo, nil
}

// classifyDeploy classifies like SetStatus does and names the operation.
func (g *GitHub) classifyDeploy(err error, ref DeploymentRef, op string) error {
	cerr := g.classify(err, event.Event{Provider: event.GitHub, Repo: ref.Repo, SHA: ref.SHA})
	var e *Error
	if errors.As(cerr, &e) {
		e.Op = op
		if e.StatusCode == 202 {
			e.Message = "GitHub accepted the request without creating the deployment"
		}
	}
	return cerr
}
