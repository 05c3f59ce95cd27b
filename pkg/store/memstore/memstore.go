// Package memstore is the in-memory store.Store: the same queue, dedup and
// build-record semantics as the Redis store, for a single ferry process with
// nothing to install (local runs, tests, the sandbox).
//
// It is not durable and not shared: everything is lost when the process
// exits, and two processes each have their own queue. Do not run several
// replicas on it. Entries are kept as their JSON encoding, so what comes out
// is exactly what the Redis store would give back.
package memstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferryci/ferry/pkg/event"
	"github.com/ferryci/ferry/pkg/store"
)

// sweepEvery is how often (by the store's clock) expired dedup keys are
// dropped, so the map does not grow without bound.
const sweepEvery = time.Minute

// Config configures a Store; the zero value is usable.
type Config struct {
	// DedupTTL is how long a dedup key is remembered; default
	// store.DefaultDedupTTL, at least store.MinDedupTTL.
	DedupTTL time.Duration
	// Now is the clock for idle times and dedup expiry; default time.Now.
	// Claim's block is always waited for in real time.
	Now func() time.Time
	// DeliveryRetention and DeliveryMax bound the delivery log (by age
	// and count); defaults store.DefaultDeliveryRetention and
	// store.DefaultDeliveryMax.
	DeliveryRetention time.Duration
	DeliveryMax       int
}

// Store is an in-memory store.Store. It is safe for concurrent use.
type Store struct {
	now func() time.Time
	ttl time.Duration

	mu        sync.Mutex
	closed    bool
	dedup     map[string]time.Time // key -> expiry
	lastSweep time.Time
	seq       uint64
	entries   map[string]*entry // every unacknowledged entry
	backlog   []*entry          // never delivered, oldest first; may hold acked ones
	builds    map[string][]byte
	promos    map[string][]byte
	refs      map[string]store.RefState
	leases    map[string]lease
	dlv       deliveryLog
	keys      map[string]claimed // ClaimKey
	usage     usage              // AddAgentUsage
	// wake is closed (and replaced) when an entry is added or the store is
	// closed, waking blocked Claims.
	wake chan struct{}
}

type entry struct {
	id         string
	seq        uint64
	payload    []byte
	consumer   string // "" until delivered
	deliveries int64
	delivered  time.Time
}

var _ store.Store = (*Store)(nil)

// New returns an empty store.
func New(cfg Config) (*Store, error) {
	if cfg.DedupTTL == 0 {
		cfg.DedupTTL = store.DefaultDedupTTL
	}
	if cfg.DedupTTL < store.MinDedupTTL {
		return nil, fmt.Errorf("memory store: dedup TTL %s is below the minimum %s (GitHub redelivers for 3 days)", cfg.DedupTTL, store.MinDedupTTL)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.DeliveryRetention <= 0 {
		cfg.DeliveryRetention = store.DefaultDeliveryRetention
	}
	if cfg.DeliveryMax <= 0 {
		cfg.DeliveryMax = store.DefaultDeliveryMax
	}
	return &Store{
		dlv:     newDeliveryLog(cfg.DeliveryRetention, cfg.DeliveryMax),
		now:     cfg.Now,
		ttl:     cfg.DedupTTL,
		dedup:   map[string]time.Time{},
		entries: map[string]*entry{},
		builds:  map[string][]byte{},
		promos:  map[string][]byte{},
		refs:    map[string]store.RefState{},
		wake:    make(chan struct{}),
	}, nil
}

var errClosed = fmt.Errorf("memory store is closed: %w", store.ErrUnavailable)

// lock takes the mutex unless the store is closed or ctx is done.
func (s *Store) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errClosed
	}
	return nil
}

// Enqueue implements store.Store.
func (s *Store) Enqueue(ctx context.Context, dedupKey string, ev event.Event) (bool, error) {
	if dedupKey == "" {
		return false, errors.New("enqueue event: empty dedup key")
	}
	payload, err := ev.Marshal()
	if err != nil {
		return false, fmt.Errorf("enqueue event %s: %w", ev.ID, err)
	}
	if err := s.lock(ctx); err != nil {
		return false, fmt.Errorf("enqueue event %s: %w", ev.ID, err)
	}
	defer s.mu.Unlock()

	now := s.now()
	s.sweepLocked(now)
	if exp, ok := s.dedup[dedupKey]; ok && now.Before(exp) {
		return false, nil
	}
	s.dedup[dedupKey] = now.Add(s.ttl)
	s.seq++
	e := &entry{id: strconv.FormatUint(s.seq, 10) + "-0", seq: s.seq, payload: payload}
	s.entries[e.id] = e
	s.backlog = append(s.backlog, e)
	close(s.wake)
	s.wake = make(chan struct{})
	return true, nil
}

func (s *Store) sweepLocked(now time.Time) {
	if now.Sub(s.lastSweep) < sweepEvery {
		return
	}
	s.lastSweep = now
	for k, exp := range s.dedup {
		if !now.Before(exp) {
			delete(s.dedup, k)
		}
	}
}

// Claim implements store.Store.
func (s *Store) Claim(ctx context.Context, consumer string, max int, minIdle, block time.Duration) ([]store.Entry, error) {
	if consumer == "" {
		return nil, errors.New("claim entries: empty consumer name")
	}
	if max < 1 {
		return nil, fmt.Errorf("claim entries: max %d, want at least 1", max)
	}
	var timeout <-chan time.Time
	if block > 0 {
		timer := time.NewTimer(block)
		defer timer.Stop()
		timeout = timer.C
	}
	for {
		if err := s.lock(ctx); err != nil {
			return nil, fmt.Errorf("claim entries for %s: %w", consumer, err)
		}
		got := s.claimLocked(consumer, max, minIdle)
		wake := s.wake
		s.mu.Unlock()
		if len(got) > 0 || timeout == nil {
			return decode(got)
		}
		select {
		case <-wake:
		case <-timeout:
			return nil, nil
		case <-ctx.Done():
			return nil, fmt.Errorf("claim entries for %s: %w", consumer, ctx.Err())
		}
	}
}

// Held implements store.Store.
func (s *Store) Held(ctx context.Context, consumer, after string, max int) ([]store.Entry, error) {
	if consumer == "" {
		return nil, errors.New("list held entries: empty consumer name")
	}
	if max < 1 {
		return nil, fmt.Errorf("list held entries: max %d, want at least 1", max)
	}
	if err := s.lock(ctx); err != nil {
		return nil, fmt.Errorf("list entries held by %s: %w", consumer, err)
	}
	var from uint64
	if e, ok := s.entries[after]; ok {
		from = e.seq
	} else if after != "" {
		seq, _, _ := strings.Cut(after, "-")
		if n, err := strconv.ParseUint(seq, 10, 64); err == nil {
			from = n
		}
	}
	var held []*entry
	for _, e := range s.entries {
		if e.consumer == consumer && e.seq > from {
			held = append(held, e)
		}
	}
	slices.SortFunc(held, func(a, b *entry) int { return cmp.Compare(a.seq, b.seq) })
	now := s.now()
	var got []claimedEntry
	for _, e := range held[:min(len(held), max)] {
		e.deliveries++
		e.delivered = now
		got = append(got, claimedEntry{id: e.id, payload: e.payload, deliveries: e.deliveries})
	}
	s.mu.Unlock()
	return decode(got)
}

// claimedEntry is an entry's state copied under the lock.
type claimedEntry struct {
	id         string
	payload    []byte
	deliveries int64
}

func (s *Store) claimLocked(consumer string, max int, minIdle time.Duration) []claimedEntry {
	now := s.now()
	var got []claimedEntry
	take := func(e *entry) {
		e.consumer = consumer
		e.deliveries++
		e.delivered = now
		got = append(got, claimedEntry{id: e.id, payload: e.payload, deliveries: e.deliveries})
	}
	if minIdle > 0 {
		var idle []*entry
		for _, e := range s.entries {
			if e.consumer != "" && now.Sub(e.delivered) >= minIdle {
				idle = append(idle, e)
			}
		}
		slices.SortFunc(idle, func(a, b *entry) int { return cmp.Compare(a.seq, b.seq) })
		for _, e := range idle[:min(len(idle), max)] {
			take(e)
		}
	}
	for len(got) < max && len(s.backlog) > 0 {
		e := s.backlog[0]
		s.backlog[0] = nil
		s.backlog = s.backlog[1:]
		if _, ok := s.entries[e.id]; ok {
			take(e)
		}
	}
	return got
}

func decode(got []claimedEntry) ([]store.Entry, error) {
	if len(got) == 0 {
		return nil, nil
	}
	out := make([]store.Entry, 0, len(got))
	for _, c := range got {
		ev, err := event.Unmarshal(c.payload)
		if err != nil {
			return nil, fmt.Errorf("claim entry %s: %w", c.id, err)
		}
		out = append(out, store.Entry{ID: c.id, Event: ev, Deliveries: c.deliveries})
	}
	return out, nil
}

// Touch implements store.Store.
func (s *Store) Touch(ctx context.Context, consumer string, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	if err := s.lock(ctx); err != nil {
		return fmt.Errorf("touch entries of %s: %w", consumer, err)
	}
	defer s.mu.Unlock()
	now := s.now()
	var lost []string
	for _, id := range ids {
		e, ok := s.entries[id]
		if !ok || e.consumer != consumer {
			lost = append(lost, id)
			continue
		}
		e.delivered = now
	}
	if len(lost) > 0 {
		return fmt.Errorf("touch entries %s of %s: %w", strings.Join(lost, ", "), consumer, store.ErrNotOwned)
	}
	return nil
}

// Ack implements store.Store.
func (s *Store) Ack(ctx context.Context, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	if err := s.lock(ctx); err != nil {
		return fmt.Errorf("ack entries: %w", err)
	}
	defer s.mu.Unlock()
	for _, id := range ids {
		// An acknowledged entry still in the backlog is skipped by Claim.
		delete(s.entries, id)
	}
	return nil
}

// Pending implements store.Store.
func (s *Store) Pending(ctx context.Context) (int64, error) {
	if err := s.lock(ctx); err != nil {
		return 0, fmt.Errorf("count pending entries: %w", err)
	}
	defer s.mu.Unlock()
	var n int64
	for _, e := range s.entries {
		if e.consumer != "" {
			n++
		}
	}
	return n, nil
}

// PutBuild implements store.Store.
func (s *Store) PutBuild(ctx context.Context, b store.Build) error {
	if b.Key == "" {
		return errors.New("put build: empty key")
	}
	raw, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("put build %s: %w", b.Key, err)
	}
	if err := s.lock(ctx); err != nil {
		return fmt.Errorf("put build %s: %w", b.Key, err)
	}
	defer s.mu.Unlock()
	s.builds[b.Key] = raw
	return nil
}

// GetBuild implements store.Store.
func (s *Store) GetBuild(ctx context.Context, key string) (store.Build, error) {
	if err := s.lock(ctx); err != nil {
		return store.Build{}, fmt.Errorf("get build %s: %w", key, err)
	}
	raw, ok := s.builds[key]
	s.mu.Unlock()
	if !ok {
		return store.Build{}, fmt.Errorf("get build %s: %w", key, store.ErrNotFound)
	}
	var b store.Build
	if err := json.Unmarshal(raw, &b); err != nil {
		return store.Build{}, fmt.Errorf("decode build %s: %w", key, err)
	}
	return b, nil
}

// ListBuilds implements store.Store; records come sorted by key.
func (s *Store) ListBuilds(ctx context.Context) ([]store.Build, error) {
	if err := s.lock(ctx); err != nil {
		return nil, fmt.Errorf("list builds: %w", err)
	}
	raws := make([][]byte, 0, len(s.builds))
	for _, raw := range s.builds {
		raws = append(raws, raw)
	}
	s.mu.Unlock()
	out := make([]store.Build, 0, len(raws))
	for _, raw := range raws {
		var b store.Build
		if err := json.Unmarshal(raw, &b); err != nil {
			return nil, fmt.Errorf("decode build record: %w", err)
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b store.Build) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// DeleteBuild implements store.Store.
func (s *Store) DeleteBuild(ctx context.Context, key string) error {
	if err := s.lock(ctx); err != nil {
		return fmt.Errorf("delete build %s: %w", key, err)
	}
	defer s.mu.Unlock()
	delete(s.builds, key)
	return nil
}

// PutPromotion implements store.Store.
func (s *Store) PutPromotion(ctx context.Context, p store.Promotion) (store.Promotion, error) {
	if p.ID == "" {
		return store.Promotion{}, errors.New("put promotion: empty id")
	}
	if err := s.lock(ctx); err != nil {
		return store.Promotion{}, fmt.Errorf("put promotion %s: %w", p.ID, err)
	}
	defer s.mu.Unlock()
	var cur int64
	if raw, ok := s.promos[p.ID]; ok {
		var old store.Promotion
		if err := json.Unmarshal(raw, &old); err != nil {
			return store.Promotion{}, fmt.Errorf("decode promotion %s: %w", p.ID, err)
		}
		cur = old.Revision
	}
	if cur != p.Revision {
		return store.Promotion{}, fmt.Errorf("put promotion %s at revision %d (stored: %d): %w", p.ID, p.Revision, cur, store.ErrConflict)
	}
	p.Revision++
	raw, err := json.Marshal(p)
	if err != nil {
		return store.Promotion{}, fmt.Errorf("put promotion %s: %w", p.ID, err)
	}
	s.promos[p.ID] = raw
	return p, nil
}

// GetPromotion implements store.Store.
func (s *Store) GetPromotion(ctx context.Context, id string) (store.Promotion, error) {
	if err := s.lock(ctx); err != nil {
		return store.Promotion{}, fmt.Errorf("get promotion %s: %w", id, err)
	}
	raw, ok := s.promos[id]
	s.mu.Unlock()
	if !ok {
		return store.Promotion{}, fmt.Errorf("get promotion %s: %w", id, store.ErrNotFound)
	}
	var p store.Promotion
	if err := json.Unmarshal(raw, &p); err != nil {
		return store.Promotion{}, fmt.Errorf("decode promotion %s: %w", id, err)
	}
	return p, nil
}

// ListPromotions implements store.Store.
func (s *Store) ListPromotions(ctx context.Context) ([]store.Promotion, error) {
	if err := s.lock(ctx); err != nil {
		return nil, fmt.Errorf("list promotions: %w", err)
	}
	raws := make([][]byte, 0, len(s.promos))
	for _, raw := range s.promos {
		raws = append(raws, raw)
	}
	s.mu.Unlock()
	out := make([]store.Promotion, 0, len(raws))
	for _, raw := range raws {
		var p store.Promotion
		if err := json.Unmarshal(raw, &p); err != nil {
			return nil, fmt.Errorf("decode promotion record: %w", err)
		}
		out = append(out, p)
	}
	store.SortPromotions(out)
	return out, nil
}

// PutRef implements store.Store.
func (s *Store) PutRef(ctx context.Context, r store.RefState) (store.RefState, error) {
	if r.Key == "" {
		return store.RefState{}, errors.New("put ref state: empty key")
	}
	if err := s.lock(ctx); err != nil {
		return store.RefState{}, fmt.Errorf("put ref state %s: %w", r.Key, err)
	}
	defer s.mu.Unlock()
	if cur := s.refs[r.Key].Revision; cur != r.Revision {
		return store.RefState{}, fmt.Errorf("put ref state %s at revision %d (stored: %d): %w", r.Key, r.Revision, cur, store.ErrConflict)
	}
	r.Revision++
	// A copy through JSON, so the caller's maps are not shared.
	raw, err := json.Marshal(r)
	if err != nil {
		return store.RefState{}, fmt.Errorf("put ref state %s: %w", r.Key, err)
	}
	var stored store.RefState
	if err := json.Unmarshal(raw, &stored); err != nil {
		return store.RefState{}, fmt.Errorf("put ref state %s: %w", r.Key, err)
	}
	s.refs[r.Key] = stored
	return r, nil
}

// GetRef implements store.Store.
func (s *Store) GetRef(ctx context.Context, key string) (store.RefState, error) {
	if err := s.lock(ctx); err != nil {
		return store.RefState{}, fmt.Errorf("get ref state %s: %w", key, err)
	}
	r, ok := s.refs[key]
	s.mu.Unlock()
	if !ok {
		return store.RefState{}, fmt.Errorf("get ref state %s: %w", key, store.ErrNotFound)
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return store.RefState{}, err
	}
	var out store.RefState
	return out, json.Unmarshal(raw, &out)
}

type lease struct {
	holder string
	until  time.Time
}

// Lease implements store.Store.
func (s *Store) Lease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if name == "" || holder == "" || ttl <= 0 {
		return false, fmt.Errorf("lease %q: name, holder and a positive ttl are required", name)
	}
	if err := s.lock(ctx); err != nil {
		return false, fmt.Errorf("lease %s: %w", name, err)
	}
	defer s.mu.Unlock()
	now := s.now()
	if s.leases == nil {
		s.leases = map[string]lease{}
	}
	if l, ok := s.leases[name]; ok && l.holder != holder && now.Before(l.until) {
		return false, nil
	}
	s.leases[name] = lease{holder: holder, until: now.Add(ttl)}
	return true, nil
}

// ClaimKey implements store.Store.
func (s *Store) ClaimKey(ctx context.Context, key, value string, ttl time.Duration) (string, bool, error) {
	if key == "" || ttl <= 0 {
		return "", false, fmt.Errorf("claim key %q: a key and a positive ttl are required", key)
	}
	if err := s.lock(ctx); err != nil {
		return "", false, fmt.Errorf("claim key %s: %w", key, err)
	}
	defer s.mu.Unlock()
	now := s.now()
	if s.keys == nil {
		s.keys = map[string]claimed{}
	}
	for k, c := range s.keys {
		if !now.Before(c.until) {
			delete(s.keys, k)
		}
	}
	if c, ok := s.keys[key]; ok {
		return c.value, false, nil
	}
	s.keys[key] = claimed{value: value, until: now.Add(ttl)}
	return value, true, nil
}

type claimed struct {
	value string
	until time.Time
}

// Ping implements store.Store: it fails only once the store is closed.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.lock(ctx); err != nil {
		return fmt.Errorf("ping memory store: %w", err)
	}
	s.mu.Unlock()
	return nil
}

// Close implements store.Store: later calls fail with store.ErrUnavailable
// and blocked Claims return. Closing twice is not an error.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.wake)
	}
	return nil
}
