// Package api is the promotion API: the HTTP endpoints ferry serves for
// pipelines and people (Server) and the client `ferry promote` talks to
// them with (Client). The promotions themselves are driven by package
// promote; this package only translates HTTP to its calls and back.
package api

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/ferryci/ferry/pkg/promote"
	"github.com/ferryci/ferry/pkg/store"
)

// IdempotencyHeader makes a repeated create return the first promotion
// (draft-ietf-httpapi-idempotency-key-header): the same key with another
// body is refused with 422. Replays carry Idempotent-Replayed: true.
const IdempotencyHeader = "Idempotency-Key"

// maxRequestBytes caps an API request body.
const maxRequestBytes = 64 << 10

// Server serves the promotion endpoints:
//
//	POST /api/v1/promotions                 create (promote.Request) → 201
//	GET  /api/v1/promotions[?app=]          list, newest first
//	GET  /api/v1/promotions/{id}            one, with its audit trail
//	POST /api/v1/promotions/{id}/approve    {"environment"}
//	POST /api/v1/promotions/{id}/reject     {"environment", "reason"}
//	POST /api/v1/rollbacks                  create (promote.RollbackRequest) → 201
//
// Every endpoint needs "Authorization: Bearer <token>", verified by Auth:
// without a credential it knows the answer is 401; a verified identity
// without the right to the verb on the app in the environment gets 403.
// Refusals change nothing and are logged with the identity, never the
// token. The audit trail records the verified identity: requested_by
// and approver in a request body are not accepted. Errors are
// {"error": "..."}.
type Server struct {
	promoter *promote.Promoter
	auth     *Auth
	log      *slog.Logger
}

// Config configures the Server.
type Config struct {
	Promoter *promote.Promoter
	// Auth verifies credentials; nil: only Token, the pipelines' token.
	Auth *Auth
	// Token is the pipelines' token when Auth is nil (it may create and
	// read promotions); empty refuses every request.
	Token  string
	Logger *slog.Logger
}

// New returns the Server.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Auth == nil {
		cfg.Auth, _ = NewAuth(AuthConfig{PipelineToken: cfg.Token}) // cannot fail without tokens or Kubernetes
	}
	return &Server{promoter: cfg.Promoter, auth: cfg.Auth, log: cfg.Logger.With("component", "promote-api")}
}

// Register mounts the endpoints on r.
func (a *Server) Register(r gin.IRouter) {
	g := r.Group("/api/v1", a.authenticate)
	g.POST("/promotions", a.create)
	g.GET("/promotions", a.list)
	g.GET("/promotions/:id", a.get)
	g.POST("/promotions/:id/approve", a.approve)
	g.POST("/promotions/:id/reject", a.reject)
	g.POST("/rollbacks", a.rollback)
}

const identityKey = "ferry.identity"

// authenticate verifies the bearer token and keeps the identity for the
// handler; unknown credentials get 401, and an API server that cannot be
// asked 503.
func (a *Server) authenticate(c *gin.Context) {
	id, err := a.auth.Authenticate(c.Request.Context(), bearer(c.GetHeader("Authorization")))
	if err != nil {
		if errors.Is(err, errUnavailable) {
			a.log.ErrorContext(c.Request.Context(), "cannot verify a promotion API credential", "method", c.Request.Method,
				"path", c.Request.URL.Path, "error", err)
			c.AbortWithStatusJSON(http.StatusServiceUnavailable, gin.H{"error": "the credential cannot be verified now; retry later"})
			return
		}
		a.log.WarnContext(c.Request.Context(), "promotion API request refused: unauthenticated", "status", http.StatusUnauthorized,
			"method", c.Request.Method, "path", c.Request.URL.Path, "remote", c.ClientIP(), "reason", err)
		c.Header("WWW-Authenticate", `Bearer realm="ferry"`)
		c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": "missing or wrong bearer token: " + err.Error()})
		return
	}
	c.Set(identityKey, id)
	c.Next()
}

func identity(c *gin.Context) Identity {
	id, _ := c.Get(identityKey)
	v, _ := id.(Identity)
	return v
}

// authorize answers 403 (or 503) unless the caller may do acc.
func (a *Server) authorize(c *gin.Context, acc Access) bool {
	if err := a.check(c.Request.Context(), identity(c), acc, c.Request.URL.Path); err != nil {
		a.refuse(c, err)
		return false
	}
	return true
}

// refuse answers an authorization's refusal (403) or failure (503).
func (a *Server) refuse(c *gin.Context, err error) {
	if errors.Is(err, ErrForbidden) {
		c.AbortWithStatusJSON(http.StatusForbidden, gin.H{"error": strings.TrimPrefix(err.Error(), ErrForbidden.Error()+": ")})
		return
	}
	c.AbortWithStatusJSON(http.StatusServiceUnavailable, gin.H{"error": "the request cannot be authorized now; retry later"})
}

// access is verb on app in env (its namespace looked up); env "" with a
// known app is its first environment, where it starts.
func (a *Server) access(verb, app, env string) Access {
	acc := Access{Verb: verb, App: app, Environment: env}
	if cfg, ok := a.promoter.App(app); ok {
		for _, e := range cfg.Environments {
			if e.Name == env || (env == "" && acc.Namespace == "") {
				acc.Namespace = e.Namespace
			}
		}
	}
	return acc
}

func (a *Server) bind(c *gin.Context, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, maxRequestBytes))
	if err == nil && len(body) > 0 {
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		err = dec.Decode(v)
	}
	if err != nil {
		c.AbortWithStatusJSON(http.StatusBadRequest, gin.H{"error": "request body is not valid JSON for this endpoint: " + err.Error()})
		return false
	}
	return true
}

func (a *Server) fail(c *gin.Context, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, promote.ErrInvalid):
		code = http.StatusBadRequest
	case errors.Is(err, promote.ErrUnknownApp), errors.Is(err, promote.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, promote.ErrState):
		code = http.StatusConflict
	case errors.Is(err, promote.ErrIdempotencyMismatch):
		code = http.StatusUnprocessableEntity
	case errors.Is(err, promote.ErrRegistry):
		code = http.StatusBadGateway
	case errors.Is(err, store.ErrUnavailable):
		code = http.StatusServiceUnavailable
	}
	if code >= 500 {
		a.log.ErrorContext(c.Request.Context(), "promotion request failed", "path", c.FullPath(), "error", err)
	}
	c.AbortWithStatusJSON(code, gin.H{"error": err.Error()})
}

func (a *Server) create(c *gin.Context) {
	var r promote.Request
	if !a.bind(c, &r) {
		return
	}
	if r.RequestedBy != "" {
		a.refuseName(c, "requested_by")
		return
	}
	if !a.authorize(c, a.access(VerbCreate, r.App, "")) {
		return
	}
	if r.TraceParent == "" {
		r.TraceParent = c.GetHeader("traceparent")
	}
	r.RequestedBy = identity(c).Name
	p, replayed, err := a.promoter.CreateOnce(c.Request.Context(), c.GetHeader(IdempotencyHeader), r)
	if err != nil {
		a.fail(c, err)
		return
	}
	if replayed {
		c.Header("Idempotent-Replayed", "true")
	}
	c.JSON(http.StatusCreated, p)
}

// refuseName refuses a request that names who acts: the verified
// identity is recorded instead.
func (a *Server) refuseName(c *gin.Context, field string) {
	c.AbortWithStatusJSON(http.StatusBadRequest, gin.H{"error": field +
		" is not accepted: the audit trail records the identity the bearer token was verified as; remove it (ferry promote --as is gone)"})
}

// list shows the promotions of the apps the caller may get.
func (a *Server) list(c *gin.Context) {
	ps, err := a.promoter.List(c.Request.Context(), c.Query("app"))
	if err != nil {
		a.fail(c, err)
		return
	}
	if app := c.Query("app"); app != "" || len(ps) == 0 {
		if !a.authorize(c, a.access(VerbGet, app, "")) {
			return
		}
		c.JSON(http.StatusOK, gin.H{"promotions": ps})
		return
	}
	out, err := a.Visible(c.Request.Context(), identity(c), "")
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"promotions": out})
}

func (a *Server) get(c *gin.Context) {
	p, err := a.promoter.Get(c.Request.Context(), c.Param("id"))
	if err != nil {
		a.fail(c, err)
		return
	}
	if !a.authorize(c, a.access(VerbGet, p.App, "")) {
		return
	}
	c.JSON(http.StatusOK, p)
}

// Decision is the body of approve and reject. Who decides is the
// verified identity of the request, never a field.
type Decision struct {
	Environment string `json:"environment,omitempty"`
	Reason      string `json:"reason,omitempty"`
	// Approver is refused (400); it only exists to say so clearly.
	Approver string `json:"approver,omitempty"`
}

// decision reads the body of approve and reject.
func (a *Server) decision(c *gin.Context) (Decision, bool) {
	var d Decision
	if !a.bind(c, &d) {
		return d, false
	}
	if d.Approver != "" {
		a.refuseName(c, "approver")
		return d, false
	}
	return d, true
}

// done answers an action's outcome: its refusal, its failure or p.
func (a *Server) done(c *gin.Context, code int, p store.Promotion, err error) {
	switch {
	case errors.Is(err, ErrForbidden) || IsUnavailable(err):
		a.refuse(c, err)
	case err != nil:
		a.fail(c, err)
	default:
		c.JSON(code, p)
	}
}

func (a *Server) approve(c *gin.Context) {
	d, ok := a.decision(c)
	if !ok {
		return
	}
	p, err := a.Approve(c.Request.Context(), identity(c), c.Param("id"), d.Environment)
	a.done(c, http.StatusOK, p, err)
}

func (a *Server) reject(c *gin.Context) {
	d, ok := a.decision(c)
	if !ok {
		return
	}
	p, err := a.Reject(c.Request.Context(), identity(c), c.Param("id"), d.Environment, d.Reason)
	a.done(c, http.StatusOK, p, err)
}

func (a *Server) rollback(c *gin.Context) {
	var r promote.RollbackRequest
	if !a.bind(c, &r) {
		return
	}
	if r.RequestedBy != "" {
		a.refuseName(c, "requested_by")
		return
	}
	p, err := a.Rollback(c.Request.Context(), identity(c), r)
	a.done(c, http.StatusCreated, p, err)
}
