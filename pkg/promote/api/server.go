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

	"github.com/ferryci/ferry/pkg/apiauth"
	"github.com/ferryci/ferry/pkg/promote"
	"github.com/ferryci/ferry/pkg/store"
)

// maxRequestBytes caps an API request body.
const maxRequestBytes = 64 << 10

// Server serves the promotion endpoints:
//
//	POST /api/v1/promotions                 create (promote.Request) → 201
//	GET  /api/v1/promotions[?app=]          list, newest first
//	GET  /api/v1/promotions/{id}            one, with its audit trail
//	POST /api/v1/promotions/{id}/approve    {"environment", "approver"}
//	POST /api/v1/promotions/{id}/reject     {"environment", "approver", "reason"}
//	POST /api/v1/rollbacks                  create (promote.RollbackRequest) → 201
//
// Every endpoint needs "Authorization: Bearer <token>"; without it, or
// with a wrong one, the answer is 401. Errors are {"error": "..."}.
type Server struct {
	promoter *promote.Promoter
	auth     gin.HandlerFunc
	log      *slog.Logger
}

// Config configures the Server.
type Config struct {
	Promoter *promote.Promoter
	// Token is the bearer token; empty refuses every request.
	Token  string
	Logger *slog.Logger
}

// New returns the Server.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{promoter: cfg.Promoter, auth: apiauth.Bearer(cfg.Token),
		log: cfg.Logger.With("component", "promote-api")}
}

// Register mounts the endpoints on r.
func (a *Server) Register(r gin.IRouter) {
	g := r.Group("/api/v1", a.auth)
	g.POST("/promotions", a.create)
	g.GET("/promotions", a.list)
	g.GET("/promotions/:id", a.get)
	g.POST("/promotions/:id/approve", a.approve)
	g.POST("/promotions/:id/reject", a.reject)
	g.POST("/rollbacks", a.rollback)
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
	if r.TraceParent == "" {
		r.TraceParent = c.GetHeader("traceparent")
	}
	p, err := a.promoter.Create(c.Request.Context(), r)
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, p)
}

func (a *Server) list(c *gin.Context) {
	ps, err := a.promoter.List(c.Request.Context(), c.Query("app"))
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"promotions": ps})
}

func (a *Server) get(c *gin.Context) {
	p, err := a.promoter.Get(c.Request.Context(), c.Param("id"))
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, p)
}

// Decision is the body of approve and reject.
type Decision struct {
	Environment string `json:"environment,omitempty"`
	Approver    string `json:"approver,omitempty"`
	Reason      string `json:"reason,omitempty"`
}

func (a *Server) approve(c *gin.Context) {
	var d Decision
	if !a.bind(c, &d) {
		return
	}
	p, err := a.promoter.Approve(c.Request.Context(), c.Param("id"), d.Environment, d.Approver)
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, p)
}

func (a *Server) reject(c *gin.Context) {
	var d Decision
	if !a.bind(c, &d) {
		return
	}
	p, err := a.promoter.Reject(c.Request.Context(), c.Param("id"), d.Environment, d.Approver, d.Reason)
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, p)
}

func (a *Server) rollback(c *gin.Context) {
	var r promote.RollbackRequest
	if !a.bind(c, &r) {
		return
	}
	p, err := a.promoter.Rollback(c.Request.Context(), r)
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, p)
}
