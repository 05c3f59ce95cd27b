// Package promote takes a built image through an app's environments: it
// resolves the source tag to a digest once, copies the image by digest to
// the release repository, rolls each environment's Deployments to
// repository@sha256:…, verifies, waits for approval where configured, and
// rolls an environment back to its recorded previous image when its
// rollout or verification fails.
//
//	Create ─▶ resolve digest ─▶ copy (mount/skip blobs) ─▶ for each environment:
//	          [approval gate] ─▶ record previous ─▶ [canary steps] ─▶ roll ─▶ verify (HTTP, Job, soak) ─▶ next
//	                                                         └─ failure ─▶ roll back to previous ─▶ failed
//
// Canary steps (canary.go) run the digest beside the stable for a share,
// judged by Prometheus (analysis.go); Knative Services (knative.go) are
// rolled through their template and traffic instead of Deployments.
//
// A promotion is a state machine kept in the store (store.Promotion):
// every step is recorded before and after it is taken and every step is
// idempotent, so a restarted promoter or a new leader resumes a promotion
// without repeating what was completed. The record is also the audit
// trail: who asked, who approved, digests, times and the outcome.
//
// Where an app names a GitHub repository or GitLab project, each
// environment is also reported there as a deployment of the promotion's
// commit (see report.go); reporting never holds up or fails a promotion.
//
// The engine is driven through Promoter's methods; the HTTP API that
// exposes them and its client are package api, `ferry promote` is
// package cli.
package promote

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/scm"
	"github.com/ferryci/ferry/pkg/store"
)

// Errors callers branch on (the API maps them to status codes).
var (
	// ErrInvalid: the request is malformed (400).
	ErrInvalid = errors.New("invalid request")
	// ErrUnknownApp: no such app is configured (404).
	ErrUnknownApp = errors.New("unknown app")
	// ErrNotFound: no such promotion (404).
	ErrNotFound = errors.New("promotion not found")
	// ErrState: the promotion is not in a state that allows the action,
	// e.g. approving a finished promotion (409).
	ErrState = errors.New("not allowed in the promotion's state")
	// ErrRegistry: the registry refused or could not be reached (502).
	ErrRegistry = errors.New("registry error")
	// ErrIdempotencyMismatch: an Idempotency-Key was used before with a
	// different request (422).
	ErrIdempotencyMismatch = errors.New("idempotency key reused with a different request")
)

// Store is the part of the store the promoter needs: the promotion
// records, with store.Store's contract (PutPromotion's revision check).
type Store interface {
	PutPromotion(ctx context.Context, p store.Promotion) (store.Promotion, error)
	GetPromotion(ctx context.Context, id string) (store.Promotion, error)
	ListPromotions(ctx context.Context) ([]store.Promotion, error)
	ClaimKey(ctx context.Context, key, value string, ttl time.Duration) (string, bool, error)
}

// Images resolves image references and copies images by digest; Registry
// is the real one.
type Images interface {
	Resolve(ctx context.Context, ref name.Reference) (name.Digest, error)
	Copy(ctx context.Context, src name.Digest, dst name.Repository, tags []string) (name.Digest, error)
}

// Config configures a Promoter.
type Config struct {
	// Store keeps the promotions; required.
	Store Store
	// Apps are the promotable apps; see config.PromotionApp.
	Apps []config.PromotionApp
	// Registry resolves and copies images; default NewRegistry with the
	// default keychain.
	Registry Images
	// Kube returns the Kubernetes client of an environment's context
	// ("" is the default one); required to roll anything.
	Kube func(context string) (kubernetes.Interface, error)
	// Dynamic returns the dynamic client of a context; required to roll
	// Knative Services (knative.go).
	Dynamic func(context string) (dynamic.Interface, error)
	// Deployer reports environments as deployments on the Git host for
	// apps that name a provider and repository; nil reports nothing.
	Deployer scm.Deployer
	// HTTPClient runs HTTP checks; default a client with a 10s timeout.
	HTTPClient *http.Client
	// IdempotencyTTL is how long an Idempotency-Key is remembered;
	// default 24h.
	IdempotencyTTL time.Duration
	// Resync is how often unfinished promotions are looked for; default 2s.
	Resync time.Duration
	// Poll is how often rollouts and Jobs are polled; default 500ms.
	Poll time.Duration
	// Now is the clock of the audit trail; default time.Now.
	Now func() time.Time
	// Logger, TracerProvider and MeterProvider default to no-ops.
	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
}

// Promoter runs promotions.
type Promoter struct {
	cfg    Config
	apps   map[string]config.PromotionApp
	log    *slog.Logger
	tracer trace.Tracer
	steps  metric.Int64Counter
	kick   chan struct{}

	mu      sync.Mutex
	running map[string]bool       // promotion ids being driven
	envs    map[string]bool       // app/environment pairs being rolled
	holds   map[string]reportHold // promotion/environment deployments not to report yet
}

// New returns a Promoter; Run starts it.
func New(cfg Config) (*Promoter, error) {
	if cfg.Store == nil {
		return nil, errors.New("promoter: a store is required")
	}
	if cfg.Registry == nil {
		cfg.Registry = NewRegistry(RegistryConfig{})
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.IdempotencyTTL <= 0 {
		cfg.IdempotencyTTL = 24 * time.Hour
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 2 * time.Second
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 500 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = noop.NewTracerProvider()
	}
	p := &Promoter{
		cfg: cfg, apps: map[string]config.PromotionApp{}, log: cfg.Logger.With("component", "promote"),
		tracer: cfg.TracerProvider.Tracer("github.com/ferryci/ferry/pkg/promote"),
		kick:   make(chan struct{}, 1), running: map[string]bool{}, envs: map[string]bool{},
		holds: map[string]reportHold{},
	}
	for _, a := range cfg.Apps {
		p.apps[a.Name] = a
		if a.Reports() && cfg.Deployer == nil {
			p.log.Warn("app names a repository to report deployments to, but no deployer is configured; nothing is reported",
				"app", a.Name, "provider", a.Provider, "repo", a.Repo)
		}
	}
	if cfg.MeterProvider != nil {
		c, err := cfg.MeterProvider.Meter("github.com/ferryci/ferry/pkg/promote").Int64Counter("ferry.promote.steps",
			metric.WithDescription("Promotion steps taken, by step and outcome"))
		if err != nil {
			return nil, fmt.Errorf("promoter metrics: %w", err)
		}
		p.steps = c
	}
	return p, nil
}

// Request asks for an image to be promoted.
type Request struct {
	App string `json:"app"`
	// Image is the source image, a tag or a digest of the app's source
	// repository.
	Image       string `json:"image"`
	Commit      string `json:"commit,omitempty"`
	BuildURL    string `json:"build_url,omitempty"`
	Version     string `json:"version,omitempty"`
	RequestedBy string `json:"requested_by,omitempty"`
	TraceParent string `json:"traceparent,omitempty"`
}

// Create validates the request, resolves the image to a digest (once: the
// tag is never read again) and records a new promotion. Nothing is
// recorded when it fails.
func (p *Promoter) Create(ctx context.Context, r Request) (store.Promotion, error) {
	pr, _, err := p.CreateOnce(ctx, "", r)
	return pr, err
}

// CreateOnce is Create with an idempotency key (none when empty): the
// first request with a key creates the promotion, and every repeat of it
// within Config.IdempotencyTTL returns that promotion (replayed true)
// without resolving the image again. The key is scoped to the requester;
// a repeat with a different request fails with ErrIdempotencyMismatch.
// The key is recorded, with the id the promotion gets, before the
// promotion: a create that failed or crashed in between is completed by
// its retry, under that id, and concurrent repeats race for one id, so at
// most one promotion is created per key.
func (p *Promoter) CreateOnce(ctx context.Context, key string, r Request) (store.Promotion, bool, error) {
	app, ok := p.apps[r.App]
	if !ok {
		return store.Promotion{}, false, fmt.Errorf("%w %q", ErrUnknownApp, r.App)
	}
	id := newID(p.cfg.Now().UTC())
	if key != "" {
		if len(key) > 255 {
			return store.Promotion{}, false, fmt.Errorf("%w: Idempotency-Key is longer than 255 characters", ErrInvalid)
		}
		fp := fingerprint(r)
		scoped := "promotion-create:" + hashHex(orAPI(r.RequestedBy)+"\n"+key)
		v, _, err := p.cfg.Store.ClaimKey(ctx, scoped, fp+" "+id, p.cfg.IdempotencyTTL)
		if err != nil {
			return store.Promotion{}, false, fmt.Errorf("record idempotency key: %w", err)
		}
		storedFP, storedID, _ := strings.Cut(v, " ")
		if storedFP != fp {
			return store.Promotion{}, false, fmt.Errorf("%w: the key was first used for another app, image, commit, build or version; use a new key for a new request", ErrIdempotencyMismatch)
		}
		if existing, err := p.Get(ctx, storedID); err == nil {
			return existing, true, nil
		} else if !errors.Is(err, ErrNotFound) {
			return store.Promotion{}, false, err
		}
		id = storedID
	}
	saved, err := p.create(ctx, app, id, r)
	if errors.Is(err, store.ErrConflict) {
		// A concurrent repeat of the same key created it first.
		existing, gerr := p.Get(ctx, id)
		return existing, true, gerr
	}
	return saved, false, err
}

// fingerprint identifies what a create asks for (not how it is traced).
func fingerprint(r Request) string {
	return hashHex(strings.Join([]string{r.App, r.Image, r.Commit, r.BuildURL, r.Version}, "\n"))
}

func hashHex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func (p *Promoter) create(ctx context.Context, app config.PromotionApp, id string, r Request) (store.Promotion, error) {
	ref, err := p.parseSource(app, r.Image)
	if err != nil {
		return store.Promotion{}, err
	}
	if r.Commit != "" && !isHex(r.Commit) {
		return store.Promotion{}, fmt.Errorf("%w: commit %q is not a hexadecimal SHA", ErrInvalid, r.Commit)
	}
	digest, err := p.cfg.Registry.Resolve(ctx, ref)
	if err != nil {
		if permanent(err) {
			return store.Promotion{}, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		return store.Promotion{}, fmt.Errorf("%w: %w", ErrRegistry, err)
	}
	now := p.cfg.Now().UTC()
	actor := orAPI(r.RequestedBy)
	pr := store.Promotion{
		ID: id, Kind: store.KindPromote, App: app.Name, Source: r.Image, SourceDigest: digest.DigestStr(),
		Commit: r.Commit, BuildURL: r.BuildURL, Version: r.Version, TraceParent: r.TraceParent, RequestedBy: actor,
		State: store.PromotionRunning, CreatedAt: now, UpdatedAt: now,
	}
	pr.Tags = tagsFor(app, pr)
	for _, e := range app.Environments {
		pr.Environments = append(pr.Environments, store.PromotionEnv{Name: e.Name, Phase: store.EnvPending, NeedsApproval: e.Approval})
	}
	audit(&pr, now, actor, "requested", "", fmt.Sprintf("%s resolved to %s", r.Image, digest.DigestStr()))
	saved, err := p.cfg.Store.PutPromotion(ctx, pr)
	if err != nil {
		return store.Promotion{}, fmt.Errorf("record promotion %s: %w", id, err)
	}
	p.log.InfoContext(ctx, "promotion requested", "promotion", saved.ID, "app", app.Name, "digest", saved.SourceDigest, "by", actor)
	p.Kick()
	return saved, nil
}

func (p *Promoter) parseSource(app config.PromotionApp, image string) (name.Reference, error) {
	if image == "" {
		return nil, fmt.Errorf("%w: image is required (a tag or digest of %s)", ErrInvalid, app.Source)
	}
	ref, err := name.ParseReference(image, name.StrictValidation)
	if err != nil {
		return nil, fmt.Errorf("%w: image %q is not a valid reference (want %s:tag or %s@sha256:…)", ErrInvalid, image, app.Source, app.Source)
	}
	src, err := name.NewRepository(app.Source)
	if err != nil {
		return nil, fmt.Errorf("app %s source %q: %w", app.Name, app.Source, err)
	}
	if ref.Context().Name() != src.Name() {
		return nil, fmt.Errorf("%w: image %q is not in the app's source repository %s", ErrInvalid, image, app.Source)
	}
	return ref, nil
}

// Approve lets a promotion waiting for approval enter its next
// environment; environment, when set, must name it.
func (p *Promoter) Approve(ctx context.Context, id, environment, approver string) (store.Promotion, error) {
	return p.update(ctx, id, func(pr *store.Promotion, now time.Time) error {
		i := waitingEnv(*pr)
		if i < 0 {
			return fmt.Errorf("%w: promotion %s is %s, not waiting for approval", ErrState, id, pr.State)
		}
		if environment != "" && pr.Environments[i].Name != environment {
			return fmt.Errorf("%w: promotion %s waits for approval of %s, not %s", ErrState, id, pr.Environments[i].Name, environment)
		}
		e := &pr.Environments[i]
		e.Phase, e.Approver, e.ApprovedAt = store.EnvApproved, orAPI(approver), now
		pr.State = store.PromotionRunning
		audit(pr, now, e.Approver, "approved", e.Name, "")
		return nil
	})
}

// Reject ends a promotion waiting for approval; nothing more is rolled.
func (p *Promoter) Reject(ctx context.Context, id, environment, approver, reason string) (store.Promotion, error) {
	return p.update(ctx, id, func(pr *store.Promotion, now time.Time) error {
		i := waitingEnv(*pr)
		if i < 0 {
			return fmt.Errorf("%w: promotion %s is %s, not waiting for approval", ErrState, id, pr.State)
		}
		if environment != "" && pr.Environments[i].Name != environment {
			return fmt.Errorf("%w: promotion %s waits for approval of %s, not %s", ErrState, id, pr.Environments[i].Name, environment)
		}
		e := &pr.Environments[i]
		who := orAPI(approver)
		e.Phase, e.Approver, e.FinishedAt, e.Reason = store.EnvRejected, who, now, reason
		pr.State, pr.FinishedAt = store.PromotionRejected, now
		pr.Reason = fmt.Sprintf("%s rejected by %s", e.Name, who)
		if reason != "" {
			pr.Reason += ": " + reason
		}
		audit(pr, now, who, "rejected", e.Name, reason)
		return nil
	})
}

// RollbackRequest asks for an environment to run the digest an earlier
// promotion delivered.
type RollbackRequest struct {
	App         string `json:"app"`
	Environment string `json:"environment"`
	// To is the promotion whose digest is restored; empty means the one
	// before what the environment runs now (see Promoter.Rollback).
	To          string `json:"to,omitempty"`
	RequestedBy string `json:"requested_by,omitempty"`
	Reason      string `json:"reason,omitempty"`
}

// Rollback records a rollback: a one-environment promotion of an earlier
// promotion's digest (already in the target repository, so nothing is
// copied). It is rolled and verified like a promotion but, failing, is not
// reverted.
//
// Without To, the rollback restores the newest promotion (not a rollback)
// that succeeded in the environment before the one it runs now and
// delivered a different digest. What it runs now is the newest promotion
// or rollback that succeeded there; a rollback stands for the promotion it
// restored. So repeated rollbacks walk back through history (C, B, A)
// instead of flipping between the last two digests as kubectl rollout
// undo does; To names any earlier promotion, newer ones included.
func (p *Promoter) Rollback(ctx context.Context, r RollbackRequest) (store.Promotion, error) {
	app, ok := p.apps[r.App]
	if !ok {
		return store.Promotion{}, fmt.Errorf("%w %q", ErrUnknownApp, r.App)
	}
	if _, ok := envOf(app, r.Environment); !ok {
		return store.Promotion{}, fmt.Errorf("%w: app %s has no environment %q", ErrInvalid, app.Name, r.Environment)
	}
	all, err := p.cfg.Store.ListPromotions(ctx)
	if err != nil {
		return store.Promotion{}, fmt.Errorf("list promotions: %w", err)
	}
	var to *store.Promotion
	if r.To != "" {
		for i := range all {
			if all[i].ID == r.To {
				to = &all[i]
			}
		}
		if to == nil {
			return store.Promotion{}, fmt.Errorf("%w: %s", ErrNotFound, r.To)
		}
		if to.App != app.Name || !reached(*to, r.Environment) {
			return store.Promotion{}, fmt.Errorf("%w: promotion %s never succeeded in %s of %s", ErrState, r.To, r.Environment, app.Name)
		}
	} else {
		i, err := rollbackTarget(all, app.Name, r.Environment)
		if err != nil {
			return store.Promotion{}, err
		}
		to = &all[i]
	}
	now := p.cfg.Now().UTC()
	actor := orAPI(r.RequestedBy)
	pr := store.Promotion{
		ID: newID(now), Kind: store.KindRollback, App: app.Name, Source: to.Target, SourceDigest: to.SourceDigest,
		Target: to.Target, Commit: to.Commit, Version: to.Version, RequestedBy: actor, RollbackOf: to.ID,
		State: store.PromotionRunning, CreatedAt: now, UpdatedAt: now,
		Environments: []store.PromotionEnv{{Name: r.Environment, Phase: store.EnvApproved, Approver: actor, ApprovedAt: now}},
	}
	audit(&pr, now, actor, "rollback requested", r.Environment, strings.TrimSpace("to "+to.Target+" of promotion "+to.ID+"; "+r.Reason))
	saved, err := p.cfg.Store.PutPromotion(ctx, pr)
	if err != nil {
		return store.Promotion{}, fmt.Errorf("record rollback: %w", err)
	}
	p.Kick()
	return saved, nil
}

// rollbackTarget picks the promotion a rollback without To restores, as
// an index into all (the app's promotions, oldest first): the newest
// promotion, not a rollback, that succeeded in env before the one env
// runs now and whose digest differs from it.
func rollbackTarget(all []store.Promotion, app, env string) (int, error) {
	cur := -1
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].App == app && reached(all[i], env) {
			cur = i
			break
		}
	}
	if cur < 0 {
		return -1, fmt.Errorf("%w: %s of %s has no earlier promoted digest to return to: nothing was promoted to it yet", ErrState, env, app)
	}
	digest := all[cur].SourceDigest
	if all[cur].Kind == store.KindRollback {
		// A rollback stands where the promotion it restored stands.
		for i := cur - 1; i >= 0; i-- {
			if all[i].ID == all[cur].RollbackOf {
				cur = i
				break
			}
		}
	}
	for i := cur - 1; i >= 0; i-- {
		p := all[i]
		if p.App == app && p.Kind != store.KindRollback && p.SourceDigest != digest && reached(p, env) {
			return i, nil
		}
	}
	return -1, fmt.Errorf("%w: %s of %s has no earlier promoted digest to return to; name one with to", ErrState, env, app)
}

func reached(pr store.Promotion, env string) bool {
	if pr.Target == "" {
		return false
	}
	for _, e := range pr.Environments {
		if e.Name == env && e.Phase == store.EnvSucceeded {
			return true
		}
	}
	return false
}

// App returns the configuration of the app named name.
func (p *Promoter) App(name string) (config.PromotionApp, bool) {
	a, ok := p.apps[name]
	return a, ok
}

// Get returns a promotion.
func (p *Promoter) Get(ctx context.Context, id string) (store.Promotion, error) {
	pr, err := p.cfg.Store.GetPromotion(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Promotion{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return pr, err
}

// List returns promotions, newest first; app filters when set.
func (p *Promoter) List(ctx context.Context, app string) ([]store.Promotion, error) {
	all, err := p.cfg.Store.ListPromotions(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]store.Promotion, 0, len(all))
	for i := len(all) - 1; i >= 0; i-- {
		if app == "" || all[i].App == app {
			out = append(out, all[i])
		}
	}
	return out, nil
}

// update applies change to the stored promotion, retrying on concurrent
// writes; a change that returns an error leaves the record alone.
func (p *Promoter) update(ctx context.Context, id string, change func(*store.Promotion, time.Time) error) (store.Promotion, error) {
	for {
		pr, err := p.Get(ctx, id)
		if err != nil {
			return store.Promotion{}, err
		}
		now := p.cfg.Now().UTC()
		if err := change(&pr, now); err != nil {
			return store.Promotion{}, err
		}
		pr.UpdatedAt = now
		saved, err := p.cfg.Store.PutPromotion(ctx, pr)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return store.Promotion{}, fmt.Errorf("record promotion %s: %w", id, err)
		}
		p.Kick()
		return saved, nil
	}
}

func waitingEnv(pr store.Promotion) int {
	if pr.State != store.PromotionWaiting {
		return -1
	}
	for i, e := range pr.Environments {
		if e.Phase == store.EnvAwaitingApprove {
			return i
		}
	}
	return -1
}

func envOf(app config.PromotionApp, name string) (config.PromotionEnvironment, bool) {
	for _, e := range app.Environments {
		if e.Name == name {
			return e, true
		}
	}
	return config.PromotionEnvironment{}, false
}

func audit(pr *store.Promotion, at time.Time, actor, action, env, detail string) {
	pr.Audit = append(pr.Audit, store.AuditEntry{At: at, Actor: actor, Action: action, Environment: env, Detail: detail})
}

func tagsFor(app config.PromotionApp, pr store.Promotion) []string {
	tags := app.Tags
	if len(tags) == 0 {
		tags = []string{"{{version}}", "{{short_commit}}"}
		if pr.Version != "" {
			tags = tags[:1]
		}
	}
	short := pr.Commit
	if len(short) > 12 {
		short = short[:12]
	}
	vars := map[string]string{"version": pr.Version, "commit": pr.Commit, "short_commit": short, "id": pr.ID}
	var out []string
	seen := map[string]bool{}
	for _, t := range tags {
		v := config.Expand(t, vars)
		if _, err := name.NewTag("registry.invalid/x:"+v, name.StrictValidation); err != nil || v == "" || seen[v] {
			continue // an empty or invalid tag is left out: the digest is what counts
		}
		seen[v] = true
		out = append(out, v)
	}
	return out
}

func newID(now time.Time) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return now.Format("20060102-150405") + "-" + hex.EncodeToString(b)
}

func isHex(s string) bool {
	if len(s) < 7 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}

// orAPI names the actor of a request that did not say who it was.
func orAPI(s string) string {
	if s = strings.TrimSpace(s); s == "" {
		return "api"
	}
	return s
}

// Kick wakes the runner at once.
func (p *Promoter) Kick() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Run drives unfinished promotions until ctx ends: at start (resuming
// what a previous leader left), when kicked, and every Resync.
func (p *Promoter) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(p.cfg.Resync)
	defer t.Stop()
	for {
		p.sweep(ctx, &wg)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-p.kick:
		}
	}
}

func (p *Promoter) sweep(ctx context.Context, wg *sync.WaitGroup) {
	all, err := p.cfg.Store.ListPromotions(ctx)
	if err != nil {
		if ctx.Err() == nil {
			p.log.WarnContext(ctx, "cannot list promotions; retrying", "error", err)
		}
		return
	}
	for _, pr := range all {
		if _, _, cleanup := p.verifyJobDue(pr); (pr.Finished() || pr.State == store.PromotionWaiting) && !cleanup && len(p.reportDue(pr)) == 0 {
			continue
		}
		p.mu.Lock()
		busy := p.running[pr.ID]
		p.running[pr.ID] = true
		p.mu.Unlock()
		if busy {
			continue
		}
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			defer func() {
				p.mu.Lock()
				delete(p.running, id)
				p.mu.Unlock()
			}()
			p.drive(ctx, id)
		}(pr.ID)
	}
}

// traceContext joins the build's trace when the request carried one.
func traceContext(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}

func (p *Promoter) count(ctx context.Context, step, outcome string) {
	if p.steps != nil {
		p.steps.Add(ctx, 1, metric.WithAttributes(attribute.String("step", step), attribute.String("outcome", outcome)))
	}
}

func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
