package api

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/promote"
	"github.com/ferryci/ferry/pkg/store"
)

// ErrForbidden is returned by the Server's actions when the verified
// identity may not do what it asked (the API's 403).
var ErrForbidden = errors.New("forbidden")

// IsUnavailable reports whether err means a credential or a right could
// not be decided now (the Kubernetes API server did not answer): 503, not
// a refusal.
func IsUnavailable(err error) bool { return errors.Is(err, errUnavailable) }

// IsUnauthenticated reports whether err is Authenticate's refusal of a
// credential (401).
func IsUnauthenticated(err error) bool { return errors.Is(err, errUnauthenticated) }

// Authenticate verifies a bearer token as the API does.
func (a *Server) Authenticate(ctx context.Context, token string) (Identity, error) {
	return a.auth.Authenticate(ctx, token)
}

// Allowed reports whether id may do verb on app in env ("" for reading),
// with the environment's namespace looked up as the API does. The error
// wraps errUnavailable when no decision could be made.
func (a *Server) Allowed(ctx context.Context, id Identity, verb, app, env string) (bool, error) {
	return a.auth.Authorize(ctx, id, a.access(verb, app, env))
}

// check is the one authorization of every action, over HTTP or not: nil,
// ErrForbidden (logged with the identity, never the credential) or an
// error wrapping errUnavailable.
func (a *Server) check(ctx context.Context, id Identity, acc Access, path string) error {
	ok, err := a.auth.Authorize(ctx, id, acc)
	if err != nil {
		a.log.ErrorContext(ctx, "cannot authorize a promotion request", "user", id.Name, "via", id.Via,
			"access", acc.String(), "error", err)
		return err
	}
	if !ok {
		a.log.WarnContext(ctx, "promotion request refused: forbidden", "path", path, "user", id.Name, "via", id.Via,
			"access", acc.String(), "namespace", acc.Namespace)
		return fmt.Errorf("%w: %s (verified by %s) may not %s", ErrForbidden, id.Name, id.Via, acc)
	}
	return nil
}

// Get returns a promotion if id may read its app's promotions.
func (a *Server) Get(ctx context.Context, id Identity, promotionID string) (store.Promotion, error) {
	p, err := a.promoter.Get(ctx, promotionID)
	if err != nil {
		return store.Promotion{}, err
	}
	if err := a.check(ctx, id, a.access(VerbGet, p.App, ""), "get"); err != nil {
		return store.Promotion{}, err
	}
	return p, nil
}

// Visible returns the promotions (newest first) of the apps id may read.
func (a *Server) Visible(ctx context.Context, id Identity, app string) ([]store.Promotion, error) {
	ps, err := a.promoter.List(ctx, app)
	if err != nil {
		return nil, err
	}
	allowed := map[string]bool{}
	out := ps[:0:0]
	for _, p := range ps {
		ok, seen := allowed[p.App]
		if !seen {
			if ok, err = a.auth.Authorize(ctx, id, a.access(VerbGet, p.App, "")); err != nil {
				return nil, err
			}
			allowed[p.App] = ok
		}
		if ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// Apps returns the configured apps' names, in configuration order.
func (a *Server) Apps() []string { return a.promoter.Apps() }

// Approve approves the promotion in env ("" the environment it waits
// for) as id, after the same authorization as POST …/approve.
func (a *Server) Approve(ctx context.Context, id Identity, promotionID, env string) (store.Promotion, error) {
	env, err := a.decide(ctx, id, VerbApprove, promotionID, env)
	if err != nil {
		return store.Promotion{}, err
	}
	return a.promoter.Approve(ctx, promotionID, env, id.Name)
}

// Reject rejects the promotion in env as id, after the same authorization
// as POST …/reject.
func (a *Server) Reject(ctx context.Context, id Identity, promotionID, env, reason string) (store.Promotion, error) {
	env, err := a.decide(ctx, id, VerbReject, promotionID, env)
	if err != nil {
		return store.Promotion{}, err
	}
	return a.promoter.Reject(ctx, promotionID, env, id.Name, reason)
}

// Rollback records a rollback as id, after the same authorization as
// POST /api/v1/rollbacks. r.RequestedBy is replaced by id.
func (a *Server) Rollback(ctx context.Context, id Identity, r promote.RollbackRequest) (store.Promotion, error) {
	if err := a.check(ctx, id, a.access(VerbRollback, r.App, r.Environment), "rollback"); err != nil {
		return store.Promotion{}, err
	}
	r.RequestedBy = id.Name
	return a.promoter.Rollback(ctx, r)
}

// decide authorizes verb on the environment a decision is about: the one
// named, else the one the promotion waits for. The environment is
// returned so a promotion that moved on meanwhile is not decided in one
// the caller was not authorized for.
func (a *Server) decide(ctx context.Context, id Identity, verb, promotionID, env string) (string, error) {
	p, err := a.promoter.Get(ctx, promotionID)
	if err != nil {
		return "", err
	}
	if env == "" {
		for _, e := range p.Environments {
			if e.Phase == store.EnvAwaitingApprove {
				env = e.Name
			}
		}
	}
	return env, a.check(ctx, id, a.access(verb, p.App, env), verb)
}

// ViaAnonymous marks the identity of Reader.
const ViaAnonymous = "anonymous"

// Reader is an identity that may read every app's promotions and do
// nothing else: what the web UI reads with for visitors when the operator
// lets them read without signing in (ui.anonymousRead).
func Reader(name string) Identity {
	return Identity{Name: name, Via: ViaAnonymous, roles: []config.PromotionRole{{
		Apps: []string{"*"}, Environments: []string{"*"}, Verbs: []string{VerbGet}}}}
}
