package scm

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"go.opentelemetry.io/otel/trace"

	"github.com/ferryci/ferry/pkg/event"
)

// Multi routes each status to the reporter of the event's provider.
type Multi struct {
	reporters map[event.Provider]Reporter
}

// MultiConfig lists the reporters Multi routes to.
type MultiConfig struct {
	// Reporters maps a provider to its reporter. A nil reporter is
	// replaced by a Noop for that provider (reporting off); a provider
	// that is absent is unknown.
	Reporters map[event.Provider]Reporter
	// Logger is used by the Noop reporters; nil means slog.Default().
	Logger *slog.Logger
}

// NewMulti returns a router over cfg.Reporters.
func NewMulti(cfg MultiConfig) *Multi {
	m := &Multi{reporters: make(map[event.Provider]Reporter, len(cfg.Reporters))}
	for p, r := range cfg.Reporters {
		if r == nil {
			r = NewNoop(p, cfg.Logger)
		}
		m.reporters[p] = r
	}
	return m
}

// SetStatus hands the status to the provider's reporter. An event from a
// provider that has no reporter fails with ErrUnknownProvider (permanent).
func (m *Multi) SetStatus(ctx context.Context, ev event.Event, st Status) error {
	r, ok := m.reporters[ev.Provider]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownProvider, ev.Provider)
	}
	return r.SetStatus(ctx, ev, st)
}

// Noop is the reporter of a provider without a token: it reports nothing and
// says so once, at debug level.
type Noop struct {
	provider event.Provider
	logger   *slog.Logger
	once     sync.Once
}

// NewNoop returns a reporter that drops statuses for provider.
func NewNoop(provider event.Provider, logger *slog.Logger) *Noop {
	return &Noop{provider: provider, logger: defaultLogger(logger, provider)}
}

// SetStatus drops the status; it never fails.
func (n *Noop) SetStatus(ctx context.Context, _ event.Event, _ Status) error {
	n.once.Do(func() {
		n.logger.DebugContext(ctx, "commit status reporting is off: no token configured")
	})
	return nil
}

// Config builds the reporters of every provider in one go.
type Config struct {
	// GitHub configures GitHub; an empty Token turns GitHub statuses off.
	GitHub GitHubConfig
	// GitLab configures GitLab; an empty Token turns GitLab statuses off.
	GitLab GitLabConfig
	// Logger is the default for providers that set none.
	Logger *slog.Logger
	// TracerProvider is the default for providers that set none; nil
	// means no spans.
	TracerProvider trace.TracerProvider
}

// New returns a Multi over GitHub and GitLab, each a real reporter when its
// token is set and a Noop otherwise.
func New(cfg Config) (*Multi, error) {
	reporters := map[event.Provider]Reporter{event.GitHub: nil, event.GitLab: nil}
	if cfg.GitHub.Token != "" {
		gc := cfg.GitHub
		if gc.Logger == nil {
			gc.Logger = cfg.Logger
		}
		if gc.TracerProvider == nil {
			gc.TracerProvider = cfg.TracerProvider
		}
		gh, err := NewGitHub(gc)
		if err != nil {
			return nil, err
		}
		reporters[event.GitHub] = gh
	}
	if cfg.GitLab.Token != "" {
		lc := cfg.GitLab
		if lc.Logger == nil {
			lc.Logger = cfg.Logger
		}
		if lc.TracerProvider == nil {
			lc.TracerProvider = cfg.TracerProvider
		}
		gl, err := NewGitLab(lc)
		if err != nil {
			return nil, err
		}
		reporters[event.GitLab] = gl
	}
	return NewMulti(MultiConfig{Reporters: reporters, Logger: cfg.Logger}), nil
}

// Reporter returns the reporter of provider p (a Noop when p has no token),
// nil for an unknown provider.
func (m *Multi) Reporter(p event.Provider) Reporter { return m.reporters[p] }
