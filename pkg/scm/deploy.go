package scm

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/ferryci/ferry/pkg/event"
)

// ErrInvalidDeployment: a DeploymentRef or DeploymentStatus lacks what the
// provider needs (repository, commit, environment, a known state).
var ErrInvalidDeployment = errors.New("invalid deployment")

// DeploymentState is ferry's provider-neutral deployment state, GitHub's
// vocabulary; GitLab maps it onto its own (see GitLab.SetDeploymentStatus).
type DeploymentState string

// States a deployment goes through.
const (
	DeploymentPending    DeploymentState = "pending"     // recorded, not started (e.g. waiting for approval)
	DeploymentInProgress DeploymentState = "in_progress" // being rolled out and verified
	DeploymentSuccess    DeploymentState = "success"     // running and verified
	DeploymentFailure    DeploymentState = "failure"     // rollout or verification failed
	DeploymentError      DeploymentState = "error"       // ferry could not carry it out
	DeploymentInactive   DeploymentState = "inactive"    // called off (rejected) or superseded
)

// Valid reports whether s is one of the known states.
func (s DeploymentState) Valid() bool {
	switch s {
	case DeploymentPending, DeploymentInProgress, DeploymentSuccess, DeploymentFailure, DeploymentError, DeploymentInactive:
		return true
	}
	return false
}

// DeploymentRef names a deployment to create: a commit of a repository
// going to an environment.
type DeploymentRef struct {
	// Provider routes the call (Multi).
	Provider event.Provider
	// Repo is "owner/name" on GitHub, the project's full path on GitLab.
	Repo string
	// ProjectID is GitLab's numeric project id; when set it is used
	// instead of Repo.
	ProjectID int64
	// SHA is the deployed commit. Required.
	SHA string
	// Ref is the branch or tag the commit comes from (refs/heads/ and
	// refs/tags/ prefixes are accepted). GitHub is sent the SHA itself, so
	// the deployment is of exactly that commit and not of whatever the
	// branch points to later; GitLab requires a ref name and is sent this.
	Ref string
	// Environment is the environment's name, e.g. test or production.
	// Required.
	Environment string
	// Description is a one-line summary (GitHub only; GitLab has none).
	Description string
	// Payload is extra JSON for GitHub's deployment (ignored by GitLab).
	Payload map[string]any
	// Transient and Production set GitHub's transient_environment and
	// production_environment; nil leaves GitHub's default (production
	// when the environment is named production).
	Transient  *bool
	Production *bool
}

// DeploymentStatus is one status of a deployment.
type DeploymentStatus struct {
	State DeploymentState
	// Description is a one-line summary, truncated to 140 characters
	// (GitHub only).
	Description string
	// EnvironmentURL is where the environment answers (GitHub only).
	EnvironmentURL string
	// LogURL links to the deployment's output (GitHub only).
	LogURL string
}

// Deployer records deployments of commits to environments on the Git host.
type Deployer interface {
	// CreateDeployment records a deployment of ref.SHA to ref.Environment
	// and returns its id on the provider. Errors classify with IsRetryable.
	CreateDeployment(ctx context.Context, ref DeploymentRef) (int64, error)
	// SetDeploymentStatus sets the state of the deployment id created for
	// ref. Setting the state it already has succeeds.
	SetDeploymentStatus(ctx context.Context, ref DeploymentRef, id int64, st DeploymentStatus) error
}

// validateDeployment checks what every provider needs before a call.
func validateDeployment(ref DeploymentRef) error {
	if ref.Repo == "" && ref.ProjectID == 0 {
		return fmt.Errorf("%w: no repository", ErrInvalidDeployment)
	}
	if ref.SHA == "" {
		return fmt.Errorf("%w: no commit sha", ErrInvalidDeployment)
	}
	if strings.TrimSpace(ref.Environment) == "" {
		return fmt.Errorf("%w: no environment", ErrInvalidDeployment)
	}
	return nil
}

// startDeploySpan opens a span for one deployment call; end records the
// outcome.
func startDeploySpan(ctx context.Context, t trace.Tracer, name string, ref DeploymentRef, attrs ...attribute.KeyValue) (context.Context, func(error)) {
	attrs = append(attrs,
		attribute.String("scm.provider", string(ref.Provider)),
		attribute.String("scm.repo", ref.Repo),
		attribute.String("scm.sha", ref.SHA),
		attribute.String("scm.environment", ref.Environment))
	ctx, span := t.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
			span.SetAttributes(attribute.Bool("scm.retryable", IsRetryable(err)))
		}
		span.End()
	}
}

// CreateDeployment hands the deployment to the provider's deployer. A
// provider without one (no token) fails with ErrUnknownProvider.
func (m *Multi) CreateDeployment(ctx context.Context, ref DeploymentRef) (int64, error) {
	d, err := m.deployer(ref.Provider)
	if err != nil {
		return 0, err
	}
	return d.CreateDeployment(ctx, ref)
}

// SetDeploymentStatus hands the status to the provider's deployer.
func (m *Multi) SetDeploymentStatus(ctx context.Context, ref DeploymentRef, id int64, st DeploymentStatus) error {
	d, err := m.deployer(ref.Provider)
	if err != nil {
		return err
	}
	return d.SetDeploymentStatus(ctx, ref, id, st)
}

func (m *Multi) deployer(p event.Provider) (Deployer, error) {
	if d, ok := m.reporters[p].(Deployer); ok {
		return d, nil
	}
	return nil, fmt.Errorf("%w %q: deployments need its token", ErrUnknownProvider, p)
}
