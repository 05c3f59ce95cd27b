package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferryci/ferry/pkg/event"
)

// Delivery log defaults: how long, and how many, delivery records are kept.
const (
	DefaultDeliveryRetention = 7 * 24 * time.Hour
	DefaultDeliveryMax       = 100000
	// MaxDeliveryPage is the most records one ListDeliveries returns.
	MaxDeliveryPage = 500
	// DefaultDeliveryPage is the page size when the query names none.
	DefaultDeliveryPage = 50
)

// ErrInvalidQuery is returned for a delivery query whose values cannot be
// used (a malformed cursor, a limit out of range).
var ErrInvalidQuery = errors.New("invalid query")

// DeliveryOutcome is what ferry answered a webhook delivery.
type DeliveryOutcome string

// Delivery outcomes.
const (
	DeliveryAccepted  DeliveryOutcome = "accepted"  // 202: stored, will be built
	DeliveryDuplicate DeliveryOutcome = "duplicate" // 200: this delivery id was accepted before
	DeliveryIgnored   DeliveryOutcome = "ignored"   // 200: valid, but nothing builds it
	DeliverySkipped   DeliveryOutcome = "skipped"   // 200: the commit asks to skip CI
	DeliveryPong      DeliveryOutcome = "pong"      // 200: a ping
	DeliveryRejected  DeliveryOutcome = "rejected"  // 4xx/5xx: not accepted
)

// Delivery is the record of one webhook delivery and ferry's answer to it.
// It never holds the body, headers or secrets: only what the answer said.
type Delivery struct {
	// Record is the store's id of this record, assigned by RecordDelivery;
	// it orders records by time and is the pagination cursor.
	Record   string         `json:"record"`
	Provider event.Provider `json:"provider"`
	// DeliveryID is the sender's delivery id (printable form).
	DeliveryID string `json:"delivery_id,omitempty"`
	// Event is the sender's event type (X-GitHub-Event, X-Gitlab-Event).
	Event string `json:"event,omitempty"`
	// EventID is ferry's event id, once the payload was read.
	EventID string `json:"event_id,omitempty"`
	Repo    string `json:"repo,omitempty"`
	Ref     string `json:"ref,omitempty"`
	SHA     string `json:"sha,omitempty"`
	// Outcome and Status are the answer: what became of the delivery and
	// the HTTP status code sent.
	Outcome DeliveryOutcome `json:"outcome"`
	Status  int             `json:"http_status"`
	// Reason says why a delivery was ignored, skipped, a duplicate or
	// rejected.
	Reason string `json:"reason,omitempty"`
	// Pipelines are the pipelines an accepted event builds.
	Pipelines  []string  `json:"pipelines,omitempty"`
	ReceivedAt time.Time `json:"received_at"`
}

// DeliveryQuery selects delivery records; every field set must match.
type DeliveryQuery struct {
	Repo       string
	Ref        string
	SHA        string
	DeliveryID string
	// After is a cursor: the Next of an earlier page; records older than it
	// follow.
	After string
	// Limit is the page size, 1..MaxDeliveryPage; 0 means
	// DefaultDeliveryPage.
	Limit int
}

// DeliveryPage is one page of delivery records, newest first.
type DeliveryPage struct {
	Deliveries []Delivery `json:"deliveries"`
	// Next is the cursor of the following page, "" at the end.
	Next string `json:"next,omitempty"`
}

// Matches reports whether d meets every condition of q.
func (q DeliveryQuery) Matches(d Delivery) bool {
	return (q.Repo == "" || q.Repo == d.Repo) && (q.Ref == "" || q.Ref == d.Ref) &&
		(q.SHA == "" || q.SHA == d.SHA) && (q.DeliveryID == "" || q.DeliveryID == d.DeliveryID)
}

// Normalize checks the query's limit and cursor and fills the default limit.
func (q DeliveryQuery) Normalize() (DeliveryQuery, error) {
	switch {
	case q.Limit == 0:
		q.Limit = DefaultDeliveryPage
	case q.Limit < 0 || q.Limit > MaxDeliveryPage:
		return q, fmt.Errorf("%w: limit %d must be between 1 and %d", ErrInvalidQuery, q.Limit, MaxDeliveryPage)
	}
	if q.After != "" {
		if _, err := RecordTime(q.After); err != nil {
			return q, err
		}
	}
	return q, nil
}

// recordTimeDigits is the width of the microsecond time that starts a
// record id, so ids sort like their times.
const recordTimeDigits = 17

// NewRecordID returns a record id for a delivery received at t: its Unix
// time in microseconds, zero-padded, and a random suffix, so ids sort by
// time and two replicas never make the same one.
func NewRecordID(t time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%0*d-%s", recordTimeDigits, t.UnixMicro(), hex.EncodeToString(b[:]))
}

// RecordTime returns the microsecond time a record id starts with.
func RecordTime(id string) (int64, error) {
	ts, _, ok := strings.Cut(id, "-")
	n, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil || len(ts) != recordTimeDigits || n < 0 {
		return 0, fmt.Errorf("%w: cursor %q is not one ferry gave (use the \"next\" of the previous page)", ErrInvalidQuery, printableCursor(id))
	}
	return n, nil
}

func printableCursor(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

// BuildStep is one thing that happened to a build ferry triggered.
type BuildStep struct {
	// Step names it: attempted, queued, started, running-reported, ended,
	// closed.
	Step   string    `json:"step"`
	At     time.Time `json:"at"`
	Detail string    `json:"detail,omitempty"`
}

// BuildTrail is the history of a build record, kept after the record itself
// is deleted (once its final status was reported) for the delivery log's
// retention, so "why" can still follow an event to its build.
type BuildTrail struct {
	Build Build       `json:"build"`
	Steps []BuildStep `json:"steps"`
}

// DeliveryLog is the part of a store that answers "what became of this
// delivery?": the record of every delivery's answer, the trails of the
// builds that accepted events led to, and marks that something was done
// once (a delivery redelivered). All of it expires after the log's
// retention; the number of delivery records is capped as well.
type DeliveryLog interface {
	// RecordDelivery stores d with a new Record id (returned) and drops
	// records beyond the retention or the cap.
	RecordDelivery(ctx context.Context, d Delivery) (Delivery, error)
	// ListDeliveries returns the records q selects, newest first. A query
	// that cannot be used returns an error wrapping ErrInvalidQuery.
	ListDeliveries(ctx context.Context, q DeliveryQuery) (DeliveryPage, error)
	// PutTrail creates or replaces the trail of t.Build.Key.
	PutTrail(ctx context.Context, t BuildTrail) error
	// Trails returns the trails of an event's builds, ordered by pipeline.
	Trails(ctx context.Context, eventID string) ([]BuildTrail, error)
	// MarkOnce records key for ttl and reports true the first time; while
	// the mark lasts it reports false.
	MarkOnce(ctx context.Context, key string, ttl time.Duration) (bool, error)
	// Unmark removes a mark (undoing a MarkOnce whose work failed);
	// removing a missing mark is not an error.
	Unmark(ctx context.Context, key string) error
}

// RecordTimeKey is the time part of record ids made at t: ids of records
// received before t sort below it.
func RecordTimeKey(t time.Time) string {
	return fmt.Sprintf("%0*d", recordTimeDigits, t.UnixMicro())
}

// DecodeTrails decodes stored trails, ordered by pipeline.
func DecodeTrails(raws [][]byte) ([]BuildTrail, error) {
	out := make([]BuildTrail, 0, len(raws))
	for _, raw := range raws {
		var t BuildTrail
		if err := json.Unmarshal(raw, &t); err != nil {
			return nil, fmt.Errorf("decode build trail: %w", err)
		}
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b BuildTrail) int { return strings.Compare(a.Build.Pipeline, b.Build.Pipeline) })
	return out, nil
}

// EncodeTrail splits a trail's build key into event id and pipeline and
// encodes the trail, as both stores keep it.
func EncodeTrail(t BuildTrail) (eventID, pipeline string, raw []byte, err error) {
	eventID, pipeline, ok := strings.Cut(t.Build.Key, "/")
	if !ok || eventID == "" {
		return "", "", nil, fmt.Errorf("put build trail: key %q is not <event id>/<pipeline>", t.Build.Key)
	}
	if raw, err = json.Marshal(t); err != nil {
		return "", "", nil, fmt.Errorf("put build trail %s: %w", t.Build.Key, err)
	}
	return eventID, pipeline, raw, nil
}
