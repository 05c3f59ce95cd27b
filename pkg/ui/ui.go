// Package ui is ferry's web UI, served by every replica under /ui/ on
// ferry's own port: server-rendered pages (html/template) over the same
// data and the same authorization as the JSON APIs, assets embedded in the
// binary, live by short polling from one small script.
//
//	browser ─▶ /ui/login ─ token ─▶ Auth.Authenticate (promotion API's) ─▶ session cookie (AES-GCM: token, expiry, CSRF)
//	        ─▶ /ui/activity, /ui/why  ─▶ deliveries.Server.Chains (what GET /api/v1/deliveries and `ferry why` show)
//	        ─▶ /ui/agents             ─▶ agent pods + Jenkins nodes + Warning Events (Agents)
//	        ─▶ /ui/promotions[/id]    ─▶ promote/api.Server.Visible / Get
//	        ─▶ POST approve/reject/rollback (CSRF) ─▶ promote/api.Server.Approve / Reject / Rollback (its authorization)
//
// Every response carries a strict Content-Security-Policy (no inline
// script or style), every form a CSRF token bound to the session, and a
// sign-in's next= only ever leads back into /ui/. Nothing is shown to a
// visitor who has not signed in unless AnonymousRead is set.
package ui

import (
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/ferryci/ferry/pkg/deliveries"
	"github.com/ferryci/ferry/pkg/promote"
	"github.com/ferryci/ferry/pkg/promote/api"
	"github.com/ferryci/ferry/pkg/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Deliveries is what the activity pages read: *deliveries.Server, the
// code behind GET /api/v1/deliveries and `ferry why`.
type Deliveries interface {
	Chains(ctx context.Context, q store.DeliveryQuery) (deliveries.Page, error)
}

// Authenticator verifies a sign-in's token and answers whether an
// identity may do a verb; *api.Server has it, and AuthOf adapts an
// *api.Auth when promotions are off.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (api.Identity, error)
	Allowed(ctx context.Context, id api.Identity, verb, app, env string) (bool, error)
}

// Promotions is the promotion API's actions for a verified identity;
// *api.Server has them.
type Promotions interface {
	Visible(ctx context.Context, id api.Identity, app string) ([]store.Promotion, error)
	Get(ctx context.Context, id api.Identity, promotionID string) (store.Promotion, error)
	Approve(ctx context.Context, id api.Identity, promotionID, env string) (store.Promotion, error)
	Reject(ctx context.Context, id api.Identity, promotionID, env, reason string) (store.Promotion, error)
	Rollback(ctx context.Context, id api.Identity, r promote.RollbackRequest) (store.Promotion, error)
	Apps() []string
}

// Config configures the Server.
type Config struct {
	// Deliveries is required.
	Deliveries Deliveries
	// Auth verifies sign-ins; nil: nobody can sign in.
	Auth Authenticator
	// Promotions is nil when the promoter is off.
	Promotions Promotions
	// Agents is nil when ferry runs no agents.
	Agents Agents
	// Canary gives an environment's configured canary steps, shown on the
	// promotion page; nil: none shown.
	Canary CanarySteps
	// Key encrypts the session cookie (≥ 32 bytes); nil: a random one.
	Key []byte
	// TTL is a sign-in's life (default 8h); Refresh the pages' poll
	// period (default 3s).
	TTL, Refresh time.Duration
	// AnonymousRead shows the pages without a sign-in.
	AnonymousRead bool
	// SecureCookie marks the cookie Secure on plain HTTP too.
	SecureCookie bool
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// Server serves the UI.
type Server struct {
	cfg      Config
	log      *slog.Logger
	sessions *sessions
	pages    map[string]*pageTemplate
	static   http.Handler
	history  *agentHistory

	mu     sync.Mutex
	charts chartCache
	snap   AgentSnapshot
	snapAt time.Time
}

// New returns the Server.
func New(cfg Config) (*Server, error) {
	if cfg.Deliveries == nil {
		return nil, errors.New("ui: Deliveries is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 8 * time.Hour
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = 3 * time.Second
	}
	if cfg.Key == nil {
		cfg.Key = make([]byte, 32)
		if _, err := rand.Read(cfg.Key); err != nil {
			return nil, fmt.Errorf("ui: make a session key: %w", err)
		}
	}
	ss, err := newSessions(cfg.Key, cfg.TTL, cfg.Now)
	if err != nil {
		return nil, err
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("ui: static files: %w", err)
	}
	return &Server{cfg: cfg, log: cfg.Logger.With("component", "ui"), sessions: ss, pages: pages,
		static: http.StripPrefix("/ui/static/", http.FileServerFS(sub)), history: newAgentHistory(24 * time.Hour)}, nil
}

// Register mounts /ui/ on r.
func (s *Server) Register(r gin.IRouter) {
	g := r.Group("/ui", s.headers)
	g.GET("", func(c *gin.Context) { c.Redirect(http.StatusSeeOther, "/ui/activity") })
	g.GET("/", func(c *gin.Context) { c.Redirect(http.StatusSeeOther, "/ui/activity") })
	g.GET("/static/*file", func(c *gin.Context) {
		c.Header("Cache-Control", "public, max-age=300")
		s.static.ServeHTTP(c.Writer, c.Request)
	})
	g.GET("/login", s.loginPage)
	g.POST("/login", s.login)
	g.POST("/logout", s.withSession(true), s.csrf, s.logout)
	read := g.Group("", s.withSession(!s.cfg.AnonymousRead))
	read.GET("/activity", s.activity)
	read.GET("/why", s.why)
	read.GET("/agents", s.agents)
	read.GET("/promotions", s.promotions)
	read.GET("/promotions/:id", s.promotion)
	act := g.Group("", s.withSession(true), s.csrf)
	act.POST("/promotions/:id/approve", s.approve)
	act.POST("/promotions/:id/reject", s.reject)
	act.POST("/rollback", s.rollback)
}

// Run samples the agent count once a minute for the agents page's chart,
// until ctx ends.
func (s *Server) Run(ctx context.Context) {
	if s.cfg.Agents == nil {
		return
	}
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		s.sampleAgents(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Server) sampleAgents(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	snap, err := s.agentSnapshot(ctx)
	if err != nil {
		s.log.Debug("agent count not sampled", "error", err)
		return
	}
	s.history.add(snap.At, len(snap.Agents))
}

// snapshotTTL lets every open agents page share one read of the cluster
// and Jenkins (each refresh would otherwise list pods, events and
// Jenkins' nodes).
const snapshotTTL = 2 * time.Second

func (s *Server) agentSnapshot(ctx context.Context) (AgentSnapshot, error) {
	s.mu.Lock()
	if !s.snapAt.IsZero() && s.cfg.Now().Sub(s.snapAt) < snapshotTTL {
		defer s.mu.Unlock()
		return s.snap, nil
	}
	s.mu.Unlock()
	snap, err := s.cfg.Agents.Snapshot(ctx)
	if err != nil {
		return AgentSnapshot{}, err
	}
	if snap.At.IsZero() {
		snap.At = s.cfg.Now()
	}
	s.mu.Lock()
	s.snap, s.snapAt = snap, s.cfg.Now()
	s.mu.Unlock()
	return snap, nil
}

// csp allows nothing but ferry's own files: no inline script or style, no
// frames, forms only to ferry.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

func (s *Server) headers(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	c.Next()
}
