// Package store keeps ferry's durable state: the queue of accepted webhook
// events (with delivery de-duplication), the records of builds ferry has
// triggered, and the promotions of images through environments (the
// promoter's state machine and audit trail), and the delivery log: each
// webhook delivery's answer and the trail of the builds it led to, kept
// for a bounded window (delivery.go), and each UTC day's pod- and
// build-seconds of ended agents per template (usage.go). Two implementations share one contract: Redis for production
// (several replicas share one queue through a consumer group) and memory for
// a single process with nothing to install.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/ferryci/ferry/pkg/event"
)

// ErrUnavailable wraps every error caused by the backing store being
// unreachable; the webhook receiver answers 503 on it.
var ErrUnavailable = errors.New("store unavailable")

// ErrNotFound is returned when a record does not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned by PutPromotion when the stored record's revision
// is not the one the caller read: someone else changed it in between. The
// caller reads the record again and redoes its decision.
var ErrConflict = errors.New("record changed concurrently")

// ErrNotOwned is returned by Touch for entries the consumer no longer holds:
// they were acknowledged, or reclaimed by another consumer after minIdle.
// A consumer that gets it should stop working on those entries.
var ErrNotOwned = errors.New("entry not held by this consumer")

// MinDedupTTL is the shortest delivery de-duplication window an
// implementation accepts: GitHub lets a failed delivery be redelivered for
// three days.
const MinDedupTTL = 72 * time.Hour

// DefaultDedupTTL is the de-duplication window when none is configured: the
// three days of GitHub's redelivery window plus an hour of margin.
const DefaultDedupTTL = 73 * time.Hour

// Entry is one queued event as handed to a consumer.
type Entry struct {
	// ID is the queue's id of the entry; pass it to Ack and Touch.
	ID string
	// Event is the stored event.
	Event event.Event
	// Deliveries counts how many times the entry was handed out, this time
	// included; above 1 it was reclaimed from a consumer that stopped.
	Deliveries int64
}

// Build records a Jenkins build that ferry triggered for an event, so its
// outcome can be reported back to the commit once it ends.
type Build struct {
	// Key identifies the record: event id + "/" + pipeline name.
	Key      string      `json:"key"`
	Event    event.Event `json:"event"`
	Pipeline string      `json:"pipeline"`
	Job      string      `json:"job"`
	// QueueID is Jenkins' queue item id returned by the trigger; 0 while
	// the record only says that a trigger is being attempted (see
	// Attempted).
	QueueID int64 `json:"queue_id"`
	// Attempted is when ferry first tried to trigger this build. The
	// dispatcher writes a record with Attempted and no QueueID before it
	// first calls Jenkins, so whoever finishes the event knows that a
	// build may exist and searches Jenkins back to that time.
	Attempted time.Time `json:"attempted_at,omitzero"`
	// Number and URL are set once the queue item became a build.
	Number int64  `json:"number,omitempty"`
	URL    string `json:"url,omitempty"`
	// Result is Jenkins' result once the build ended (SUCCESS, FAILURE…).
	Result string `json:"result,omitempty"`
	// CanceledBy says why ferry cancelled the build, when it did: the
	// short SHA of the head that superseded it, or the /cancel command.
	CanceledBy string `json:"canceled_by,omitempty"`
	// Reported is the last commit status state sent for the build while
	// it runs, so a replica that takes the tracking over does not send it
	// again.
	Reported string `json:"reported,omitempty"`
	// Attempt is the build's attempt: 0 or 1 for the first, n ≥ 2 for a
	// re-run after infrastructure loss (Key then ends in "#n"); RerunCause
	// says why it was re-run, RerunOf the lost build's URL.
	Attempt     int       `json:"attempt,omitempty"`
	RerunCause  string    `json:"rerun_cause,omitempty"`
	RerunOf     string    `json:"rerun_of,omitempty"`
	TriggeredAt time.Time `json:"triggered_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Pending reports whether the record only marks a trigger attempt: Jenkins
// may or may not have queued the build, and no queue item is known yet.
func (b Build) Pending() bool { return b.QueueID == 0 }

// Store is the durable state ferry's parts share.
type Store interface {
	// Enqueue appends ev to the queue unless dedupKey was already seen
	// within the dedup TTL; both happen in one atomic step. It returns
	// false, nil for a duplicate. A nil error with true means the event is
	// durably stored.
	Enqueue(ctx context.Context, dedupKey string, ev event.Event) (bool, error)
	// Claim hands consumer up to max entries: first entries that another
	// consumer has held without Touch or Ack for longer than minIdle, then
	// new ones, waiting up to block for new entries when there are none.
	// max must be at least 1. minIdle <= 0 reclaims nothing (a zero
	// minIdle would take entries live consumers are working on); block <= 0
	// does not wait. It returns no entries and a nil error when block
	// passed without any, and ctx's error when ctx ended first.
	Claim(ctx context.Context, consumer string, max int, minIdle, block time.Duration) ([]Entry, error)
	// Held hands consumer once more the entries it already holds: handed
	// to it and neither acknowledged nor taken over by another consumer.
	// A replica restarted under the same consumer name calls it at start
	// to resume its unfinished work at once, instead of leaving it for
	// another consumer to reclaim after minIdle. Entries come in queue
	// order, up to max of them, starting after the entry id after ("" for
	// the first); each counts as a new delivery and resets its idle time.
	Held(ctx context.Context, consumer, after string, max int) ([]Entry, error)
	// Touch tells the queue that consumer still works on the entries, so
	// they are not reclaimed by others. Entries the consumer no longer holds
	// are left alone and reported with an error wrapping ErrNotOwned.
	Touch(ctx context.Context, consumer string, ids ...string) error
	// Ack removes entries from the queue for good; acknowledging an entry
	// twice is not an error.
	Ack(ctx context.Context, ids ...string) error
	// Pending counts entries handed out but not yet acknowledged.
	Pending(ctx context.Context) (int64, error)

	// PutBuild creates or replaces a build record.
	PutBuild(ctx context.Context, b Build) error
	// GetBuild returns a build record or ErrNotFound.
	GetBuild(ctx context.Context, key string) (Build, error)
	// ListBuilds returns every build record (finished ones are deleted
	// once their status is reported).
	ListBuilds(ctx context.Context) ([]Build, error)
	// DeleteBuild removes a record; removing a missing one is not an error.
	DeleteBuild(ctx context.Context, key string) error

	// PutPromotion writes p if the stored record's revision equals
	// p.Revision (0: the record must not exist yet), and returns p with
	// Revision incremented. A different stored revision leaves the record
	// alone and returns an error wrapping ErrConflict.
	PutPromotion(ctx context.Context, p Promotion) (Promotion, error)
	// GetPromotion returns a promotion record or ErrNotFound.
	GetPromotion(ctx context.Context, id string) (Promotion, error)
	// ListPromotions returns every promotion record, oldest first (by
	// CreatedAt, then ID). Promotions are kept as the audit trail.
	ListPromotions(ctx context.Context) ([]Promotion, error)
	// ClaimKey records value under key for ttl unless key holds a value
	// already; it returns the value key holds now and whether this call
	// recorded it. Idempotency-Keys of promotion creates use it.
	ClaimKey(ctx context.Context, key, value string, ttl time.Duration) (string, bool, error)

	// PutRef writes r if the stored record's revision equals r.Revision
	// (0: it must not exist yet) and returns r with Revision incremented;
	// a different stored revision gives an error wrapping ErrConflict.
	PutRef(ctx context.Context, r RefState) (RefState, error)
	// GetRef returns a ref's state or ErrNotFound.
	GetRef(ctx context.Context, key string) (RefState, error)

	// Lease makes holder the holder of the named lease for ttl when nobody
	// else holds it, or extends it when holder already does. It reports
	// whether holder holds the lease now. Replicas use it to let one of
	// them do work that must not run everywhere.
	Lease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)

	// AddAgentUsage adds an agent's pod and build seconds to the per-day,
	// per-template counters (usage.go), once per agent name within
	// UsageRetention: the mark and the sums change in one atomic step.
	// It reports false, nil when the agent was counted before.
	AddAgentUsage(ctx context.Context, u AgentUsage) (bool, error)
	// Usage returns a UTC day's counters (day as UsageDayLayout), by
	// template; none when nothing was counted that day.
	Usage(ctx context.Context, day string) ([]UsageCount, error)

	// DeliveryLog keeps every delivery's answer and the trails of the
	// builds they led to, for a bounded window.
	DeliveryLog

	// Ping reports whether the store answers.
	Ping(ctx context.Context) error
	// Close releases the store's connections.
	Close() error
}
