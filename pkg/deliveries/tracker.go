package deliveries

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/ferryci/ferry/pkg/store"
)

// Tracker is a store.Store that keeps a trail of every build record
// written through it: what changed, and when. Build records are deleted
// once a build's final status is reported; the trail stays for the
// delivery log's retention, so `ferry why` can follow an event to its
// build, agent and commit status afterwards. The dispatcher is given a
// Tracker instead of the store; nothing else changes for it.
//
// A trail that cannot be written is logged and never fails the build
// record's write.
type Tracker struct {
	store.Store
	now func() time.Time
	log *slog.Logger
}

// NewTracker wraps s; now defaults to time.Now, log to a discarding one.
func NewTracker(s store.Store, now func() time.Time, log *slog.Logger) *Tracker {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Tracker{Store: s, now: now, log: log.With("component", "deliveries")}
}

// PutBuild writes the record, then adds its new steps to its trail.
func (t *Tracker) PutBuild(ctx context.Context, b store.Build) error {
	if err := t.Store.PutBuild(ctx, b); err != nil {
		return err
	}
	trail, found := t.trail(ctx, b.Key)
	var prev *store.Build
	if found {
		prev = &trail.Build
	}
	steps := Steps(prev, b, t.now())
	if len(steps) == 0 && found {
		trail.Build = b
	} else {
		trail = store.BuildTrail{Build: b, Steps: append(trail.Steps, steps...)}
	}
	t.put(ctx, trail)
	return nil
}

// DeleteBuild closes the record's trail, then deletes the record.
func (t *Tracker) DeleteBuild(ctx context.Context, key string) error {
	if trail, found := t.trail(ctx, key); found {
		trail.Steps = append(trail.Steps, Closed(trail.Build, t.now()))
		t.put(ctx, trail)
	}
	return t.Store.DeleteBuild(ctx, key)
}

func (t *Tracker) trail(ctx context.Context, key string) (store.BuildTrail, bool) {
	eventID, pipeline, _ := strings.Cut(key, "/")
	trails, err := t.Trails(ctx, eventID)
	if err != nil {
		t.log.Warn("could not read a build trail", "build", key, "error", err)
		return store.BuildTrail{}, false
	}
	for _, tr := range trails {
		if tr.Build.Pipeline == pipeline || tr.Build.Key == key {
			return tr, true
		}
	}
	return store.BuildTrail{}, false
}

func (t *Tracker) put(ctx context.Context, trail store.BuildTrail) {
	if err := t.PutTrail(ctx, trail); err != nil {
		t.log.Warn("could not write a build trail", "build", trail.Build.Key, "error", err)
	}
}
