// Package app assembles ferry from its configuration and runs it: the
// HTTP server (webhooks, probes, metrics), the dispatcher, and telemetry.
// It never touches OS signals and can listen on 127.0.0.1:0, so tests
// embed it whole.
//
//	GitHub/GitLab ─▶ webhook.Receiver ─Enqueue▶ store ─Claim▶ dispatch.Dispatcher ─Trigger▶ Jenkins
//	                                                              └─ build records ─▶ scm.Reporter (commit status)
//	   └─ every answer ─▶ delivery log ◀─ build trails (deliveries.Tracker around the dispatcher's store)
//	ferry why ─▶ /api/v1/deliveries ─▶ delivery log ;  recovery (one replica) ─▶ GitHub/GitLab: list hook deliveries, redeliver failed ones
//	ferry promote ─▶ /api/v1/promotions ─▶ store ─▶ promote.Promoter (leader) ─▶ registry copy, rollouts
//	browser ─▶ /ui/ (ui.Server) ─▶ the delivery API's Chains, the promotion API's actions and authorization, agent pods
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/deliveries"
	"github.com/ferryci/ferry/pkg/dispatch"
	"github.com/ferryci/ferry/pkg/event"
	"github.com/ferryci/ferry/pkg/jenkins"
	"github.com/ferryci/ferry/pkg/scm"
	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/pkg/store/memstore"
	"github.com/ferryci/ferry/pkg/store/redisstore"
	"github.com/ferryci/ferry/pkg/telemetry"
	"github.com/ferryci/ferry/pkg/trust"
	"github.com/ferryci/ferry/pkg/ui"
	"github.com/ferryci/ferry/pkg/webhook"
)

// Options are what ferry runs with.
type Options struct {
	// Config is the validated configuration.
	Config config.Config
	// Version is reported in logs and traces.
	Version string
	// LogOutput receives the logs (nil: discarded).
	LogOutput io.Writer
	// Consumer overrides the dispatcher's name in the queue.
	Consumer string
	// DisableDispatch runs only the receiver (for benchmarks and
	// receive-only replicas).
	DisableDispatch bool
}

// App is a running ferry.
type App struct {
	opts       Options
	tel        *telemetry.Telemetry
	log        *slog.Logger
	store      store.Store
	jenkins    *jenkins.Client
	dispatcher *dispatch.Dispatcher
	agents     *agents
	promoter   *promoter
	images     *images
	recoverer  *recoverer
	receiver   *webhook.Receiver
	ui         *ui.Server
	listener   net.Listener
	server     *http.Server
}

// New builds every part and opens the listener, but starts nothing.
func New(ctx context.Context, opts Options) (*App, error) {
	cfg := opts.Config
	tel, err := telemetry.New(ctx, telemetry.Config{
		LogLevel: cfg.Telemetry.LogLevel, LogFormat: cfg.Telemetry.LogFormat,
		OTLPEndpoint: cfg.Telemetry.OTLPEndpoint, OTLPInsecure: cfg.Telemetry.OTLPInsecure,
		SampleRatio: cfg.Telemetry.SampleRatio, ServiceName: cfg.Telemetry.ServiceName,
		Version: opts.Version, LogOutput: opts.LogOutput,
	})
	if err != nil {
		return nil, err
	}
	a := &App{opts: opts, tel: tel, log: tel.Logger.With("component", "app")}
	ok := false
	defer func() {
		if !ok {
			a.close(context.Background())
		}
	}()

	if a.store, err = openStore(ctx, cfg, tel.Logger); err != nil {
		return nil, err
	}
	for _, w := range cfg.Warnings() {
		a.log.Warn("configuration", "warning", w)
	}
	if cfg.BackendName() == "memory" {
		a.log.Warn("no Redis configured: using the in-memory store; accepted events are lost on restart and replicas cannot share work (set store.redis.addr)")
	}

	jc, err := jenkins.New(jenkins.Config{
		URL: cfg.Jenkins.URL, User: cfg.Jenkins.User, APIToken: cfg.Jenkins.APIToken,
		Timeout: cfg.Jenkins.Timeout.Duration, SearchBuilds: cfg.Dispatch.RecentBuilds,
		Logger: tel.Logger, TracerProvider: tel.TracerProvider,
		MeterProvider: tel.MeterProvider, MarkerParam: config.ParamTriggerID,
		UserAgent: "ferry/" + opts.Version,
	})
	if err != nil {
		return nil, fmt.Errorf("jenkins client: %w", err)
	}
	a.jenkins = jc
	reporter, err := scm.New(scm.Config{
		GitHub:         scm.GitHubConfig{Token: cfg.GitHub.Token, BaseURL: cfg.GitHub.APIURL},
		GitLab:         scm.GitLabConfig{Token: cfg.GitLab.Token, BaseURL: cfg.GitLab.BaseURL},
		Logger:         tel.Logger,
		TracerProvider: tel.TracerProvider,
	})
	if err != nil {
		return nil, fmt.Errorf("commit status reporter: %w", err)
	}
	checker, prHosts := trustOf(cfg, reporter)
	if !opts.DisableDispatch {
		a.dispatcher, err = dispatch.New(dispatch.Config{
			Trust: checker, PRHosts: prHosts,
			Store: deliveries.NewTracker(a.store, nil, tel.Logger), Jenkins: jc, Reporter: reporter, Matcher: cfg, Pipelines: cfg.Pipelines, JenkinsURL: cfg.Jenkins.URL,
			Consumer: opts.Consumer, Workers: cfg.Dispatch.Workers, ReclaimAfter: cfg.Dispatch.ReclaimAfter.Duration,
			RetryInitial: cfg.Dispatch.RetryInitial.Duration, RetryMax: cfg.Dispatch.RetryMax.Duration,
			PermanentAttempts: cfg.Dispatch.PermanentAttempts, StatusInterval: cfg.Dispatch.StatusInterval.Duration,
			StatusGiveUp: cfg.Dispatch.StatusGiveUpAfter.Duration, StatusContext: cfg.Dispatch.StatusContext,
			Logger: tel.Logger, TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider,
		})
		if err != nil {
			return nil, err
		}
	}
	if cfg.Agents.Enabled {
		id := opts.Consumer
		if id == "" {
			id = identity()
		}
		if a.agents, err = newAgents(cfg, jc, a.dispatcher, a.store, tel, id); err != nil {
			return nil, err
		}
		if a.dispatcher != nil {
			// A triggered build wakes the provisioner at once.
			a.dispatcher.OnTriggered(func(store.Build) { a.agents.provisioner.Kick() })
		}
	}
	if cfg.Promotion.Enabled {
		id := opts.Consumer
		if id == "" {
			id = identity()
		}
		if a.promoter, err = newPromoter(cfg, a.store, tel, id); err != nil {
			return nil, err
		}
	}
	if cfg.Images.Enabled {
		if a.images, err = newImages(cfg, tel); err != nil {
			return nil, err
		}
	}
	if cfg.Deliveries.Recovery.Enabled {
		id := opts.Consumer
		if id == "" {
			id = identity()
		}
		if a.recoverer, err = newRecoverer(cfg, a.store, tel, id); err != nil {
			return nil, err
		}
	}
	recv, err := webhook.New(webhook.Config{
		Store: a.store, Deliveries: a.store, Matcher: cfg, GitHubSecrets: cfg.GitHub.WebhookSecrets, GitLabTokens: cfg.GitLab.WebhookTokens,
		GitHubAPIURL: cfg.GitHub.APIURL, GitLabURL: cfg.GitLab.BaseURL,
		GitHubGitURL: cfg.GitHub.GitURL, GitLabGitURL: cfg.GitLab.GitURL,
		MaxBodyBytes: cfg.Server.MaxBodyBytes, Logger: tel.Logger,
		TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider,
	})
	if err != nil {
		return nil, err
	}
	a.receiver = recv
	if len(cfg.GitHub.WebhookSecrets) == 0 && len(cfg.GitLab.WebhookTokens) == 0 {
		a.log.Warn("no webhook secret configured: /hooks/github and /hooks/gitlab answer 404 (set github.webhookSecrets or gitlab.webhookTokens)")
	}

	handler, err := a.routes(recv)
	if err != nil {
		return nil, err
	}
	a.server = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       cfg.Server.ReadTimeout.Duration,
		WriteTimeout:      cfg.Server.WriteTimeout.Duration,
		ErrorLog:          slog.NewLogLogger(tel.Logger.With("component", "http").Handler(), slog.LevelWarn),
	}
	if a.listener, err = net.Listen("tcp", cfg.Server.Listen); err != nil {
		return nil, fmt.Errorf("listen on %s (server.listen): %w", cfg.Server.Listen, err)
	}
	ok = true
	return a, nil
}

func openStore(ctx context.Context, cfg config.Config, log *slog.Logger) (store.Store, error) {
	if cfg.BackendName() == "memory" {
		return memstore.New(memstore.Config{DedupTTL: cfg.Store.Redis.DedupTTL.Duration,
			DeliveryRetention: cfg.Deliveries.Retention.Duration, DeliveryMax: cfg.Deliveries.MaxRecords})
	}
	redisstore.SetClientLogger(log)
	r := cfg.Store.Redis
	rc := redisstore.Config{
		Addr: r.Addr, Username: r.Username, Password: r.Password, DB: r.DB, Prefix: r.Prefix, Group: r.Group,
		DedupTTL: r.DedupTTL.Duration, WaitReplicas: r.WaitReplicas, Logger: log,
		DeliveryRetention: cfg.Deliveries.Retention.Duration, DeliveryMax: cfg.Deliveries.MaxRecords,
		SentinelMasterName: r.Sentinel.MasterName, SentinelAddrs: r.Sentinel.Addrs,
		SentinelUsername: r.Sentinel.Username, SentinelPassword: r.Sentinel.Password,
		ClusterAddrs: r.Cluster.Addrs,
	}
	if r.TLS {
		rc.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	s, err := redisstore.New(ctx, rc)
	if err != nil {
		return nil, fmt.Errorf("open Redis store (store.redis): %w", err)
	}
	return s, nil
}

func (a *App) routes(recv *webhook.Receiver) (http.Handler, error) {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.Use(gin.CustomRecovery(func(c *gin.Context, err any) {
		a.log.Error("panic while serving a request", "path", c.Request.URL.Path, "panic", fmt.Sprint(err))
		c.AbortWithStatusJSON(http.StatusInternalServerError, gin.H{"status": "error", "error": "internal error"})
	}))
	recv.Register(e)
	if a.promoter != nil {
		a.promoter.api.Register(e)
	}
	if a.images != nil {
		a.images.api.Register(e)
	}
	token := a.opts.Config.Deliveries.APIToken
	if token == "" {
		token = a.opts.Config.Promotion.APIToken
	}
	ds := deliveries.NewServer(deliveries.Config{Log: a.store, Token: token, Agents: a.opts.Config.Agents.Enabled, Logger: a.tel.Logger})
	ds.Register(e)
	if a.opts.Config.UI.Enabled {
		var err error
		if a.ui, err = a.newUI(ds); err != nil {
			return nil, fmt.Errorf("web UI: %w", err)
		}
		a.ui.Register(e)
	}
	e.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	e.GET("/readyz", func(c *gin.Context) {
		ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
		defer cancel()
		if err := a.store.Ping(ctx); err != nil {
			c.JSON(http.StatusServiceUnavailable, gin.H{"status": "unavailable", "error": "store: " + err.Error()})
			return
		}
		body := gin.H{"status": "ready", "store": a.opts.Config.BackendName()}
		if err := a.jenkins.LanguageProblem(); err != nil {
			// Still ready: webhooks are accepted and builds triggered; only
			// agents cannot be given to builds ferry cannot read.
			body["jenkins"] = err.Error()
		}
		c.JSON(http.StatusOK, body)
	})
	e.GET("/metrics", gin.WrapH(a.tel.MetricsHandler()))
	return e, nil
}

// Addr is the address the server listens on.
func (a *App) Addr() string { return a.listener.Addr().String() }

// Store is the store the app uses (for tests and tools).
func (a *App) Store() store.Store { return a.store }

// Run serves until ctx ends, then drains: in-flight requests get
// server.shutdownTimeout, unacknowledged events stay queued for the next
// start or another replica.
func (a *App) Run(ctx context.Context) error {
	a.log.Info("ferry started", "addr", a.Addr(), "version", a.opts.Version, "store", a.opts.Config.BackendName(),
		"jenkins", a.opts.Config.Jenkins.URL, "pipelines", len(a.opts.Config.Pipelines))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := a.server.Serve(a.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("http server: %w", err)
			cancel()
		}
	}()
	if a.agents != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.agents.run(ctx); err != nil {
				errs <- fmt.Errorf("provisioner: %w", err)
				cancel()
			}
		}()
	}
	if a.promoter != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.promoter.run(ctx); err != nil {
				errs <- fmt.Errorf("promoter: %w", err)
				cancel()
			}
		}()
	}
	if a.images != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.images.run(ctx)
		}()
	}
	if a.ui != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.ui.Run(ctx)
		}()
	}
	if a.recoverer != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.recoverer.run(ctx); err != nil {
				errs <- fmt.Errorf("recovery: %w", err)
				cancel()
			}
		}()
	}
	if a.dispatcher != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.dispatcher.Run(ctx); err != nil {
				errs <- fmt.Errorf("dispatcher: %w", err)
				cancel()
			}
		}()
	}
	<-ctx.Done()
	sctx, scancel := context.WithTimeout(context.Background(), a.opts.Config.Server.ShutdownTimeout.Duration)
	defer scancel()
	if err := a.server.Shutdown(sctx); err != nil {
		a.log.Warn("http server did not drain in time", "error", err)
	}
	a.receiver.Drain()
	wg.Wait()
	a.close(sctx)
	a.log.Info("ferry stopped")
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

func (a *App) close(ctx context.Context) {
	if a.listener != nil {
		_ = a.listener.Close()
	}
	if a.store != nil {
		if err := a.store.Close(); err != nil {
			a.log.Warn("closing the store", "error", err)
		}
	}
	if err := a.tel.Shutdown(ctx); err != nil {
		a.log.Warn("flushing telemetry", "error", err)
	}
}

// Run builds ferry from opts and runs it until ctx ends.
func Run(ctx context.Context, opts Options) error {
	a, err := New(ctx, opts)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// trustOf builds the trust checker and the comment answerers from the
// providers that have a token: the same clients that report statuses.
func trustOf(cfg config.Config, reporter *scm.Multi) (*trust.Checker, map[event.Provider]dispatch.PRHost) {
	c := &trust.Checker{TTL: cfg.Dispatch.TrustCacheTTL.Duration}
	hosts := map[event.Provider]dispatch.PRHost{}
	if gh, ok := reporter.Reporter(event.GitHub).(*scm.GitHub); ok {
		c.GitHub, hosts[event.GitHub] = gh, gh
	}
	if gl, ok := reporter.Reporter(event.GitLab).(*scm.GitLab); ok {
		c.GitLab, hosts[event.GitLab] = gl, gl
	}
	return c, hosts
}
