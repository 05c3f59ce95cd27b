package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ferryci/ferry/pkg/config"
)

// Verbs of the promotion API, checked for every request (the verbs of
// config.PromotionRole and of the SubjectAccessReviews).
const (
	VerbCreate   = "create"
	VerbGet      = "get"
	VerbApprove  = "approve"
	VerbReject   = "reject"
	VerbRollback = "rollback"
)

// How an identity was verified (recorded with it in the audit trail).
const (
	ViaPipelineToken = "pipeline-token"
	ViaToken         = "token"
	ViaKubernetes    = "kubernetes"
)

// PipelineIdentity is the name recorded for the pipelines' token.
const PipelineIdentity = "pipeline"

// Identity is who a request was verified to come from.
type Identity struct {
	// Name is the verified name: a token's holder, or the Kubernetes user
	// name (e.g. system:serviceaccount:ns:name, or a RAM-mapped user).
	Name string
	// Via is how it was verified (ViaToken, ViaKubernetes, ...).
	Via string
	// Kubernetes identities carry what the SubjectAccessReview needs.
	UID    string
	Groups []string
	Extra  map[string]authorizationv1.ExtraValue
	// roles are a token's grants.
	roles []config.PromotionRole
}

// Access is what a request wants to do: Verb on App, in Environment,
// whose namespace is Namespace ("" with Environment: any of the app's).
type Access struct {
	Verb, App, Environment, Namespace string
}

func (a Access) String() string {
	s := a.Verb + " promotions"
	if a.App != "" {
		s += " of " + a.App
	}
	if a.Environment != "" {
		s += " in " + a.Environment
	}
	return s
}

// errUnauthenticated and errUnavailable are the Authenticator's refusals
// (401) and failures to decide (503).
var (
	errUnauthenticated = errors.New("unauthenticated")
	errUnavailable     = errors.New("cannot verify the credential now")
)

// Auth verifies bearer tokens and decides what their holders may do.
type Auth struct {
	pipeline    [sha256.Size]byte
	hasPipeline bool
	tokens      []tokenEntry
	kube        kubernetes.Interface
	group       string
	audiences   []string
}

type tokenEntry struct {
	hash  [sha256.Size]byte
	name  string
	roles []config.PromotionRole
}

// AuthConfig configures Auth.
type AuthConfig struct {
	// PipelineToken may create and read promotions, nothing more.
	PipelineToken string
	// Auth are people's credentials.
	Auth config.PromotionAuth
	// Kube is the client of the cluster whose TokenReviews and
	// SubjectAccessReviews decide; required when Auth.Kubernetes is enabled.
	Kube kubernetes.Interface
}

// NewAuth returns the Auth of cfg.
func NewAuth(cfg AuthConfig) (*Auth, error) {
	a := &Auth{pipeline: sha256.Sum256([]byte(cfg.PipelineToken)), hasPipeline: cfg.PipelineToken != "",
		group: cfg.Auth.Kubernetes.Group, audiences: cfg.Auth.Kubernetes.Audiences}
	if a.group == "" {
		a.group = "ferry.dev"
	}
	for _, t := range cfg.Auth.Tokens {
		raw, err := hex.DecodeString(t.SHA256)
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("promotion token of %s: sha256 is not a hex SHA-256", t.Name)
		}
		e := tokenEntry{name: t.Name, roles: t.Roles}
		copy(e.hash[:], raw)
		a.tokens = append(a.tokens, e)
	}
	if cfg.Auth.Kubernetes.Enabled {
		if cfg.Kube == nil {
			return nil, errors.New("promotion auth: kubernetes is enabled but no Kubernetes client was given")
		}
		a.kube = cfg.Kube
	}
	return a, nil
}

// Authenticate returns who token belongs to. Configured tokens are
// compared in constant time (SHA-256 hashes, so the length does not leak
// either); any other token is asked of the API server by a TokenReview
// when Kubernetes identities are enabled. The error wraps
// errUnauthenticated or errUnavailable.
func (a *Auth) Authenticate(ctx context.Context, token string) (Identity, error) {
	if token == "" {
		return Identity{}, fmt.Errorf("%w: no bearer token", errUnauthenticated)
	}
	h := sha256.Sum256([]byte(token))
	found := -1
	pipeline := a.hasPipeline && subtle.ConstantTimeCompare(h[:], a.pipeline[:]) == 1
	for i := range a.tokens {
		if subtle.ConstantTimeCompare(h[:], a.tokens[i].hash[:]) == 1 {
			found = i
		}
	}
	switch {
	case pipeline:
		return Identity{Name: PipelineIdentity, Via: ViaPipelineToken, roles: []config.PromotionRole{{
			Apps: []string{"*"}, Environments: []string{"*"}, Verbs: []string{VerbCreate, VerbGet}}}}, nil
	case found >= 0:
		return Identity{Name: a.tokens[found].name, Via: ViaToken, roles: a.tokens[found].roles}, nil
	case a.kube == nil:
		return Identity{}, fmt.Errorf("%w: unknown bearer token", errUnauthenticated)
	}
	tr, err := a.kube.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: a.audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		return Identity{}, fmt.Errorf("%w: TokenReview: %w", errUnavailable, err)
	}
	if !tr.Status.Authenticated {
		why := "the Kubernetes API server does not accept the bearer token"
		if tr.Status.Error != "" {
			why += ": " + tr.Status.Error
		}
		return Identity{}, fmt.Errorf("%w: %s", errUnauthenticated, why)
	}
	u := tr.Status.User
	id := Identity{Name: u.Username, Via: ViaKubernetes, UID: u.UID, Groups: u.Groups}
	if len(u.Extra) > 0 {
		id.Extra = map[string]authorizationv1.ExtraValue{}
		for k, v := range u.Extra {
			id.Extra[k] = authorizationv1.ExtraValue(v)
		}
	}
	return id, nil
}

// Authorize reports whether id may do acc. Tokens are judged by their
// roles; Kubernetes identities by a SubjectAccessReview of verb acc.Verb
// on resource promotions of the configured group, named acc.App, in
// acc.Namespace. The error means no decision could be made (503).
func (a *Auth) Authorize(ctx context.Context, id Identity, acc Access) (bool, error) {
	if id.Via != ViaKubernetes {
		for _, r := range id.roles {
			if slices.Contains(r.Verbs, acc.Verb) && matches(r.Apps, acc.App) && matches(r.Environments, acc.Environment) {
				return true, nil
			}
		}
		return false, nil
	}
	sar, err := a.kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{
			User: id.Name, UID: id.UID, Groups: id.Groups, Extra: id.Extra,
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: acc.Namespace, Verb: acc.Verb, Group: a.group, Resource: "promotions", Name: acc.App,
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("%w: SubjectAccessReview: %w", errUnavailable, err)
	}
	return sar.Status.Allowed && !sar.Status.Denied, nil
}

// matches reports whether a role's list grants v: "*" grants all, and
// an empty v (any environment, e.g. reading) is granted by any list.
func matches(list []string, v string) bool {
	return v == "" || slices.Contains(list, "*") || slices.Contains(list, v)
}

// bearer is the token of an Authorization header.
func bearer(h string) string {
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return ""
	}
	return strings.TrimSpace(tok)
}
