package memstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ferryci/ferry/pkg/store"
)

// deliveryLog is the memory store's store.DeliveryLog state, guarded by
// Store.mu.
type deliveryLog struct {
	retention time.Duration
	max       int
	records   [][]byte                    // JSON, sorted by record id (oldest first)
	ids       []string                    // record ids, parallel to records
	trails    map[string]map[string]trail // event id -> pipeline -> trail
	marks     map[string]time.Time        // key -> expiry
}

type trail struct {
	raw     []byte
	expires time.Time
}

func newDeliveryLog(retention time.Duration, maxRecords int) deliveryLog {
	return deliveryLog{retention: retention, max: maxRecords,
		trails: map[string]map[string]trail{}, marks: map[string]time.Time{}}
}

var _ store.DeliveryLog = (*Store)(nil)

// RecordDelivery implements store.DeliveryLog.
func (s *Store) RecordDelivery(ctx context.Context, d store.Delivery) (store.Delivery, error) {
	if d.ReceivedAt.IsZero() {
		return d, errors.New("record delivery: received_at is required")
	}
	d.Record = store.NewRecordID(d.ReceivedAt)
	raw, err := json.Marshal(d)
	if err != nil {
		return d, fmt.Errorf("record delivery %s: %w", d.DeliveryID, err)
	}
	if err := s.lock(ctx); err != nil {
		return d, fmt.Errorf("record delivery %s: %w", d.DeliveryID, err)
	}
	defer s.mu.Unlock()
	l := &s.dlv
	i, _ := slices.BinarySearch(l.ids, d.Record)
	l.ids = slices.Insert(l.ids, i, d.Record)
	l.records = slices.Insert(l.records, i, raw)
	l.trimLocked(s.now())
	return d, nil
}

// trimLocked drops records older than the retention and the oldest beyond
// the cap, and expired trails and marks.
func (l *deliveryLog) trimLocked(now time.Time) {
	cutoff := store.RecordTimeKey(now.Add(-l.retention))
	drop := 0
	for drop < len(l.ids) && l.ids[drop] < cutoff {
		drop++
	}
	drop = max(drop, len(l.ids)-l.max)
	if drop > 0 {
		l.ids = slices.Delete(l.ids, 0, drop)
		l.records = slices.Delete(l.records, 0, drop)
	}
	for ev, ts := range l.trails {
		for p, t := range ts {
			if !now.Before(t.expires) {
				delete(ts, p)
			}
		}
		if len(ts) == 0 {
			delete(l.trails, ev)
		}
	}
	for k, exp := range l.marks {
		if !now.Before(exp) {
			delete(l.marks, k)
		}
	}
}

// ListDeliveries implements store.DeliveryLog.
func (s *Store) ListDeliveries(ctx context.Context, q store.DeliveryQuery) (store.DeliveryPage, error) {
	q, err := q.Normalize()
	if err != nil {
		return store.DeliveryPage{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.DeliveryPage{}, fmt.Errorf("list deliveries: %w", err)
	}
	defer s.mu.Unlock()
	l := &s.dlv
	cutoff := store.RecordTimeKey(s.now().Add(-l.retention))
	var page store.DeliveryPage
	for i := len(l.ids) - 1; i >= 0; i-- {
		id := l.ids[i]
		if id < cutoff {
			break
		}
		if q.After != "" && id >= q.After {
			continue
		}
		var d store.Delivery
		if err := json.Unmarshal(l.records[i], &d); err != nil {
			return store.DeliveryPage{}, fmt.Errorf("decode delivery record %s: %w", id, err)
		}
		if !q.Matches(d) {
			continue
		}
		if len(page.Deliveries) == q.Limit {
			page.Next = page.Deliveries[q.Limit-1].Record
			break
		}
		page.Deliveries = append(page.Deliveries, d)
	}
	return page, nil
}

// PutTrail implements store.DeliveryLog.
func (s *Store) PutTrail(ctx context.Context, t store.BuildTrail) error {
	event, pipeline, raw, err := store.EncodeTrail(t)
	if err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return fmt.Errorf("put build trail %s: %w", t.Build.Key, err)
	}
	defer s.mu.Unlock()
	ts := s.dlv.trails[event]
	if ts == nil {
		ts = map[string]trail{}
		s.dlv.trails[event] = ts
	}
	ts[pipeline] = trail{raw: raw, expires: s.now().Add(s.dlv.retention)}
	return nil
}

// Trails implements store.DeliveryLog.
func (s *Store) Trails(ctx context.Context, eventID string) ([]store.BuildTrail, error) {
	if err := s.lock(ctx); err != nil {
		return nil, fmt.Errorf("read build trails of %s: %w", eventID, err)
	}
	now := s.now()
	var raws [][]byte
	for _, t := range s.dlv.trails[eventID] {
		if now.Before(t.expires) {
			raws = append(raws, t.raw)
		}
	}
	s.mu.Unlock()
	return store.DecodeTrails(raws)
}

// MarkOnce implements store.DeliveryLog.
func (s *Store) MarkOnce(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if key == "" || ttl <= 0 {
		return false, fmt.Errorf("mark %q: a key and a positive ttl are required", key)
	}
	if err := s.lock(ctx); err != nil {
		return false, fmt.Errorf("mark %s: %w", key, err)
	}
	defer s.mu.Unlock()
	now := s.now()
	if exp, ok := s.dlv.marks[key]; ok && now.Before(exp) {
		return false, nil
	}
	s.dlv.marks[key] = now.Add(ttl)
	return true, nil
}

// Unmark implements store.DeliveryLog.
func (s *Store) Unmark(ctx context.Context, key string) error {
	if err := s.lock(ctx); err != nil {
		return fmt.Errorf("unmark %s: %w", key, err)
	}
	defer s.mu.Unlock()
	delete(s.dlv.marks, key)
	return nil
}
