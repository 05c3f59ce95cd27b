package memstore_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/pkg/store/memstore"
	"github.com/ferryci/ferry/pkg/store/storetest"
)

func newStore(t testing.TB, cfg memstore.Config) *memstore.Store {
	t.Helper()
	s, err := memstore.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newStore(t, memstore.Config{}) })
}

// fakeClock is a settable clock safe for concurrent use.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestNewValidatesDedupTTL(t *testing.T) {
	tests := []struct {
		name    string
		ttl     time.Duration
		wantErr bool
	}{
		{"default", 0, false},
		{"minimum", store.MinDedupTTL, false},
		{"a week", 7 * 24 * time.Hour, false},
		{"one day", 24 * time.Hour, true},
		{"just under 72h", store.MinDedupTTL - time.Second, true},
		{"negative", -time.Hour, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := memstore.New(memstore.Config{DedupTTL: tc.ttl})
			if (err != nil) != tc.wantErr {
				t.Errorf("New(DedupTTL %s) error = %v, want error %v", tc.ttl, err, tc.wantErr)
			}
		})
	}
}

func TestDedupExpires(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newStore(t, memstore.Config{Now: clock.Now})
	ctx := context.Background()

	tests := []struct {
		name    string
		advance time.Duration
		want    bool
	}{
		{"first delivery", 0, true},
		{"redelivered at once", 0, false},
		{"redelivered after 72h", 72 * time.Hour, false},
		{"redelivered after the TTL", store.DefaultDedupTTL - 72*time.Hour, true},
		{"and then a duplicate again", time.Hour, false},
	}
	for _, tc := range tests {
		clock.Advance(tc.advance)
		got, err := s.Enqueue(ctx, "github:d1", storetest.Event(1))
		if err != nil || got != tc.want {
			t.Errorf("%s: Enqueue = %v, %v; want %v, nil", tc.name, got, err, tc.want)
		}
	}
}

func TestReclaimFollowsClock(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newStore(t, memstore.Config{Now: clock.Now})
	ctx := context.Background()
	const minIdle = time.Minute

	if ok, err := s.Enqueue(ctx, "k", storetest.Event(1)); err != nil || !ok {
		t.Fatalf("Enqueue = %v, %v", ok, err)
	}
	held, err := s.Claim(ctx, "a", 1, minIdle, 0)
	if err != nil || len(held) != 1 {
		t.Fatalf("Claim = %v, %v", held, err)
	}

	steps := []struct {
		name    string
		advance time.Duration
		touch   bool
		want    int
	}{
		{"just claimed", 0, false, 0},
		{"idle just under minIdle", minIdle - time.Second, false, 0},
		{"touched, then idle just under minIdle again", minIdle - time.Second, true, 0},
		{"idle reaches minIdle", time.Second, false, 1},
	}
	for _, st := range steps {
		if st.touch {
			if err := s.Touch(ctx, "a", held[0].ID); err != nil {
				t.Fatalf("%s: Touch: %v", st.name, err)
			}
		}
		clock.Advance(st.advance)
		got, err := s.Claim(ctx, "b", 1, minIdle, 0)
		if err != nil {
			t.Fatalf("%s: Claim: %v", st.name, err)
		}
		if len(got) != st.want {
			t.Fatalf("%s: Claim by b returned %d entries, want %d", st.name, len(got), st.want)
		}
		if len(got) == 1 && got[0].Deliveries != 2 {
			t.Errorf("%s: Deliveries = %d, want 2", st.name, got[0].Deliveries)
		}
	}
}

func TestZeroMinIdleReclaimsNothing(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newStore(t, memstore.Config{Now: clock.Now})
	ctx := context.Background()
	if ok, err := s.Enqueue(ctx, "k", storetest.Event(1)); err != nil || !ok {
		t.Fatalf("Enqueue = %v, %v", ok, err)
	}
	if got, err := s.Claim(ctx, "a", 1, 0, 0); err != nil || len(got) != 1 {
		t.Fatalf("Claim = %v, %v", got, err)
	}
	clock.Advance(24 * time.Hour)
	if got, err := s.Claim(ctx, "b", 1, 0, 0); err != nil || len(got) != 0 {
		t.Errorf("Claim with minIdle 0 = %v, %v; want nothing", got, err)
	}
}

func TestCloseWakesBlockedClaim(t *testing.T) {
	s := newStore(t, memstore.Config{})
	res := make(chan error, 1)
	go func() {
		_, err := s.Claim(context.Background(), "a", 1, 0, time.Hour)
		res <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-res:
		if err == nil {
			t.Errorf("blocked Claim returned no error after Close")
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("blocked Claim did not return after Close")
	}
}

func BenchmarkEnqueue(b *testing.B) {
	s := newStore(b, memstore.Config{})
	ev := storetest.Event(1)
	var n atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			key := fmt.Sprintf("bench:%d", n.Add(1))
			if ok, err := s.Enqueue(ctx, key, ev); err != nil || !ok {
				b.Errorf("Enqueue(%s) = %v, %v", key, ok, err)
				return
			}
		}
	})
}
