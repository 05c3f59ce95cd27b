// Package recovery redelivers webhook deliveries that GitHub or GitLab could
// not hand over to ferry (ferry, the network or the ingress was down):
// GitHub does not retry a failed delivery, and GitLab disables hooks that
// keep failing. One replica (under a lease, see pkg/app) runs a pass at
// start-up and every interval:
//
//	for each hook: list recent attempts (bounded pages) ─▶ Decide (pure) ─▶ mark in the store ─▶ redeliver (bounded per pass)
//
// Each event (GUID) is redelivered at most once per failed attempt, and
// at most MaxAttempts-1 times in all: the store's mark, set before the
// redelivery and removed only when the request failed, keeps two passes
// or two replicas from redelivering the same attempt. The receiver's dedup
// on the delivery id makes a redelivered event build once even if its
// first delivery had, after all, been stored.
package recovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"
)

// Source is one watched hook at a Git host.
type Source interface {
	// Key identifies the hook in marks and logs, e.g. "github:acme/app:12".
	Key() string
	// List returns the hook's attempts of the last lookback, newest first,
	// reading at most maxPages pages.
	List(ctx context.Context, since time.Time, maxPages int) ([]Attempt, error)
	// Redeliver asks the host to deliver the attempt again.
	Redeliver(ctx context.Context, a Attempt) error
}

// Marks is the part of the store that remembers redeliveries.
type Marks interface {
	MarkOnce(ctx context.Context, key string, ttl time.Duration) (bool, error)
	Unmark(ctx context.Context, key string) error
}

// ErrRateLimited is wrapped by a Source's errors when the host's rate
// limit is reached: the pass stops and the next one starts over.
var ErrRateLimited = errors.New("rate limited")

// Config holds the Recoverer's dependencies and settings.
type Config struct {
	Sources []Source
	Marks   Marks
	// Interval between passes (default 5m); Lookback bounds the age of
	// what is redelivered (default 72h); MaxPages bounds the list pages per
	// source and pass (default 10), MaxRedeliveries the redeliveries per
	// pass (default 100).
	Interval        time.Duration
	Lookback        time.Duration
	MaxPages        int
	MaxRedeliveries int
	Logger          *slog.Logger
	Now             func() time.Time
}

// Recoverer runs recovery passes.
type Recoverer struct {
	cfg Config
	log *slog.Logger
}

// New returns a Recoverer.
func New(cfg Config) (*Recoverer, error) {
	if cfg.Marks == nil {
		return nil, errors.New("recovery: Marks is required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Minute
	}
	if cfg.Lookback <= 0 {
		cfg.Lookback = 72 * time.Hour
	}
	if cfg.MaxPages <= 0 {
		cfg.MaxPages = 10
	}
	if cfg.MaxRedeliveries <= 0 {
		cfg.MaxRedeliveries = 100
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Recoverer{cfg: cfg, log: cfg.Logger.With("component", "recovery")}, nil
}

// Run runs a pass at once and then every Interval until ctx ends.
func (r *Recoverer) Run(ctx context.Context) error {
	for {
		if _, err := r.Pass(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("recovery pass ended early; the next pass starts over", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(r.cfg.Interval):
		}
	}
}

// Summary counts what one pass did.
type Summary struct {
	Listed      int
	Redelivered int
	Verdicts    map[Verdict]int
}

// Pass lists every source's recent attempts and redelivers what Decide
// says, within the pass's bounds.
func (r *Recoverer) Pass(ctx context.Context) (Summary, error) {
	now := r.cfg.Now()
	sum := Summary{Verdicts: map[Verdict]int{}}
	var errs []error
	for _, src := range r.cfg.Sources {
		attempts, err := src.List(ctx, now.Add(-r.cfg.Lookback), r.cfg.MaxPages)
		if err != nil {
			errs = append(errs, fmt.Errorf("list the deliveries of hook %s: %w", src.Key(), err))
			if errors.Is(err, ErrRateLimited) || ctx.Err() != nil {
				break
			}
			continue
		}
		sum.Listed += len(attempts)
		for _, d := range Decide(attempts, now, r.cfg.Lookback) {
			sum.Verdicts[d.Verdict]++
			switch d.Verdict {
			case Refused:
				r.log.Info("a failed delivery is not redelivered: ferry refused its payload", "hook", src.Key(),
					"delivery", d.GUID, "status_code", d.Latest.Code, "event", d.Latest.Event)
				continue
			case GaveUp:
				r.log.Warn("a delivery failed on every attempt; not redelivered again", "hook", src.Key(),
					"delivery", d.GUID, "attempts", MaxAttempts, "status_code", d.Latest.Code)
				continue
			case Redeliver:
			default:
				continue
			}
			if sum.Redelivered >= r.cfg.MaxRedeliveries {
				r.log.Info("redelivery budget of this pass spent; the rest waits for the next pass",
					"max_redeliveries", r.cfg.MaxRedeliveries)
				return sum, errors.Join(errs...)
			}
			done, err := r.redeliver(ctx, src, d)
			if done {
				sum.Redelivered++
			}
			if err != nil {
				errs = append(errs, err)
				if errors.Is(err, ErrRateLimited) || ctx.Err() != nil {
					return sum, errors.Join(errs...)
				}
			}
		}
	}
	r.log.Info("recovery pass done", "listed", sum.Listed, "redelivered", sum.Redelivered,
		"delivered", sum.Verdicts[Delivered], "refused", sum.Verdicts[Refused], "gave_up", sum.Verdicts[GaveUp], "too_old", sum.Verdicts[TooOld])
	return sum, errors.Join(errs...)
}

// redeliver marks the attempt, then asks for it again; a failed request
// removes the mark so a later pass tries again.
func (r *Recoverer) redeliver(ctx context.Context, src Source, d Decision) (bool, error) {
	key := "redeliver:" + src.Key() + ":" + d.GUID + ":" + strconv.FormatInt(d.Latest.ID, 10)
	first, err := r.cfg.Marks.MarkOnce(ctx, key, r.cfg.Lookback+24*time.Hour)
	if err != nil {
		return false, fmt.Errorf("mark the redelivery of %s: %w", d.GUID, err)
	}
	if !first {
		return false, nil // redelivered by an earlier pass or another replica
	}
	if err := src.Redeliver(ctx, d.Latest); err != nil {
		if uerr := r.cfg.Marks.Unmark(context.WithoutCancel(ctx), key); uerr != nil {
			r.log.Warn("could not remove the mark of a failed redelivery; it is not tried again", "hook", src.Key(), "delivery", d.GUID, "error", uerr)
		}
		return false, fmt.Errorf("redeliver %s (attempt %d) of hook %s: %w", d.GUID, d.Latest.ID, src.Key(), err)
	}
	r.log.Info("missed delivery redelivered", "hook", src.Key(), "delivery", d.GUID, "attempt", d.Latest.ID,
		"event", d.Latest.Event, "failed_with", d.Latest.Code, "failed_at", d.Latest.At)
	return true, nil
}
