// Package storetest is the contract every store.Store implementation must
// meet, as one suite the memory and Redis stores both run:
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return newStore(t) })
//	}
//
// The factory returns a fresh, empty store for each subtest and arranges its
// Close with t.Cleanup. Timings are small (minIdle in tens of milliseconds)
// but no assertion depends on the machine's speed: asynchronous outcomes are
// polled for with generous deadlines, and checks that need "soon enough" are
// only made when the measured time proves the precondition held.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/event"
	"github.com/ferryci/ferry/pkg/store"
)

// Factory makes a fresh, empty store for one subtest.
type Factory func(t *testing.T) store.Store

// patience bounds every wait for something asynchronous; it is long so a
// loaded CI machine never fails a correct store.
const patience = 20 * time.Second

// never is a minIdle under which nothing is reclaimed during a test.
const never = time.Hour

// Run runs the contract suite against stores made by newStore.
func Run(t *testing.T, newStore Factory) {
	tests := []struct {
		name string
		run  func(t *testing.T, s store.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"Duplicate", testDuplicate},
		{"ConcurrentDuplicate", testConcurrentDuplicate},
		{"ClaimRespectsMax", testClaimRespectsMax},
		{"ExclusiveConsumers", testExclusiveConsumers},
		{"Reclaim", testReclaim},
		{"Held", testHeld},
		{"TouchPreventsReclaim", testTouchPreventsReclaim},
		{"TouchNotOwned", testTouchNotOwned},
		{"ClaimWaitsForBlock", testClaimWaitsForBlock},
		{"ClaimReturnsEarly", testClaimReturnsEarly},
		{"Pending", testPending},
		{"AckTwice", testAckTwice},
		{"InvalidArguments", testInvalidArguments},
		{"Builds", testBuilds},
		{"Promotions", testPromotions},
		{"PromotionConflicts", testPromotionConflicts},
		{"Refs", testRefs},
		{"Lease", testLease},
		{"ClaimKey", testClaimKey},
		{"AgentUsage", testAgentUsage},
		{"CancelBlockedClaim", testCancelBlockedClaim},
		{"CancelledContext", testCancelledContext},
		{"Closed", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newStore(t))
		})
	}
}

// Event returns a fully populated sample event; n makes it distinct.
func Event(n int) event.Event {
	return event.Event{
		ID:           fmt.Sprintf("github/delivery-%d", n),
		Provider:     event.GitHub,
		DeliveryID:   fmt.Sprintf("delivery-%d", n),
		Kind:         event.PullRequest,
		Action:       "synchronize",
		Repo:         "acme/widgets",
		RepoURL:      "https://git.example/acme/widgets.git",
		Ref:          fmt.Sprintf("refs/pull/%d/head", n),
		SHA:          fmt.Sprintf("%040d", n),
		Before:       "1111111111111111111111111111111111111111",
		BaseRef:      "main",
		Number:       n,
		Message:      "Fix the widget\n\nwith a body, ünïcode and \"quotes\"",
		ChangedPaths: []string{"cmd/widget/main.go", "README.md"},
		Sender:       "octocat",
		ReceivedAt:   time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.FixedZone("CET", 3600)),
		TraceParent:  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}
}

// sameJSON reports whether a and b encode identically: the store's contract
// is to give back what it was given, as its JSON form says it.
func sameJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return string(ja) == string(jb)
}

func enqueue(t *testing.T, s store.Store, key string, ev event.Event) {
	t.Helper()
	ok, err := s.Enqueue(context.Background(), key, ev)
	if err != nil || !ok {
		t.Fatalf("Enqueue(%q) = %v, %v; want true, nil", key, ok, err)
	}
}

func claim(t *testing.T, s store.Store, consumer string, max int, minIdle, block time.Duration) []store.Entry {
	t.Helper()
	got, err := s.Claim(context.Background(), consumer, max, minIdle, block)
	if err != nil {
		t.Fatalf("Claim(%s): %v", consumer, err)
	}
	return got
}

func ack(t *testing.T, s store.Store, ids ...string) {
	t.Helper()
	if err := s.Ack(context.Background(), ids...); err != nil {
		t.Fatalf("Ack(%v): %v", ids, err)
	}
}

func pending(t *testing.T, s store.Store) int64 {
	t.Helper()
	n, err := s.Pending(context.Background())
	if err != nil {
		t.Fatalf("Pending: %v", err)
	}
	return n
}

// claimUntil polls Claim until it returns at least one entry.
func claimUntil(t *testing.T, s store.Store, consumer string, minIdle time.Duration) []store.Entry {
	t.Helper()
	deadline := time.Now().Add(patience)
	for time.Now().Before(deadline) {
		if got := claim(t, s, consumer, 10, minIdle, 5*time.Millisecond); len(got) > 0 {
			return got
		}
	}
	t.Fatalf("Claim(%s) returned nothing within %s", consumer, patience)
	return nil
}

func testRoundTrip(t *testing.T, s store.Store) {
	want := Event(1)
	enqueue(t, s, "github:delivery-1", want)

	got := claim(t, s, "c1", 10, never, time.Second)
	if len(got) != 1 {
		t.Fatalf("Claim returned %d entries, want 1", len(got))
	}
	e := got[0]
	if e.ID == "" {
		t.Errorf("entry ID is empty")
	}
	if e.Deliveries != 1 {
		t.Errorf("Deliveries = %d, want 1", e.Deliveries)
	}
	if !sameJSON(t, e.Event, want) {
		t.Errorf("event changed in the queue:\n got %+v\nwant %+v", e.Event, want)
	}
	if !e.Event.ReceivedAt.Equal(want.ReceivedAt) {
		t.Errorf("ReceivedAt = %v, want %v", e.Event.ReceivedAt, want.ReceivedAt)
	}
	if n := pending(t, s); n != 1 {
		t.Errorf("Pending before Ack = %d, want 1", n)
	}
	ack(t, s, e.ID)
	if n := pending(t, s); n != 0 {
		t.Errorf("Pending after Ack = %d, want 0", n)
	}
	if again := claim(t, s, "c2", 10, time.Millisecond, 0); len(again) != 0 {
		t.Errorf("Claim after Ack returned %d entries, want none", len(again))
	}
}

func testDuplicate(t *testing.T, s store.Store) {
	ctx := context.Background()
	first, err := s.Enqueue(ctx, "github:same", Event(1))
	if err != nil || !first {
		t.Fatalf("first Enqueue = %v, %v; want true, nil", first, err)
	}
	second, err := s.Enqueue(ctx, "github:same", Event(2))
	if err != nil || second {
		t.Fatalf("duplicate Enqueue = %v, %v; want false, nil", second, err)
	}
	// A different key with the same event is not a duplicate: dedup is on
	// the key alone.
	enqueue(t, s, "github:other", Event(1))

	got := claim(t, s, "c1", 10, never, 0)
	if len(got) != 2 {
		t.Fatalf("Claim returned %d entries, want 2", len(got))
	}
	if got[0].Event.Number != 1 || got[1].Event.Number != 1 {
		t.Errorf("queued events %d, %d; want the first event twice (the duplicate's event must not be queued)",
			got[0].Event.Number, got[1].Event.Number)
	}
	// The key stays taken after the entry is acknowledged: a redelivery
	// after processing must not build again.
	ack(t, s, got[0].ID, got[1].ID)
	again, err := s.Enqueue(ctx, "github:same", Event(1))
	if err != nil || again {
		t.Errorf("Enqueue after Ack = %v, %v; want false, nil", again, err)
	}
}

func testConcurrentDuplicate(t *testing.T, s store.Store) {
	const n = 32
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners int
		errs    []error
	)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ok, err := s.Enqueue(context.Background(), "github:raced", Event(i))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			if ok {
				winners++
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("concurrent Enqueue errors: %v", errs)
	}
	if winners != 1 {
		t.Fatalf("%d concurrent Enqueues of one key returned true, want exactly 1", winners)
	}
	if got := claim(t, s, "c1", 100, never, 0); len(got) != 1 {
		t.Errorf("queue holds %d entries, want 1", len(got))
	}
}

func testClaimRespectsMax(t *testing.T, s store.Store) {
	for i := range 5 {
		enqueue(t, s, fmt.Sprintf("k%d", i), Event(i))
	}
	first := claim(t, s, "c1", 2, never, 0)
	if len(first) != 2 {
		t.Fatalf("Claim(max=2) returned %d entries", len(first))
	}
	rest := claim(t, s, "c1", 10, never, 0)
	if len(rest) != 3 {
		t.Fatalf("second Claim returned %d entries, want the other 3", len(rest))
	}
	// Entries come out in the order they were enqueued.
	for i, e := range append(first, rest...) {
		if e.Event.Number != i {
			t.Errorf("entry %d holds event %d, want %d (FIFO)", i, e.Event.Number, i)
		}
	}
}

func testExclusiveConsumers(t *testing.T, s store.Store) {
	const (
		entries   = 120
		consumers = 4
	)
	ctx := context.Background()
	var (
		mu    sync.Mutex
		seen  = map[int][]string{} // event number -> consumers that got it
		total int
		fails []string
	)
	done := make(chan struct{})
	var wg sync.WaitGroup

	// The producer runs while the consumers claim, so they race on new
	// entries as well as on the backlog.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range entries {
			ok, err := s.Enqueue(ctx, fmt.Sprintf("k%d", i), Event(i))
			if err != nil || !ok {
				mu.Lock()
				fails = append(fails, fmt.Sprintf("Enqueue %d = %v, %v", i, ok, err))
				mu.Unlock()
			}
		}
	}()
	deadline := time.Now().Add(patience)
	for c := range consumers {
		name := fmt.Sprintf("consumer-%d", c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				select {
				case <-done:
					return
				default:
				}
				got, err := s.Claim(ctx, name, 7, never, 20*time.Millisecond)
				if err != nil {
					mu.Lock()
					fails = append(fails, fmt.Sprintf("Claim(%s): %v", name, err))
					mu.Unlock()
					return
				}
				ids := make([]string, 0, len(got))
				mu.Lock()
				for _, e := range got {
					seen[e.Event.Number] = append(seen[e.Event.Number], name)
					if e.Deliveries != 1 {
						fails = append(fails, fmt.Sprintf("entry %s Deliveries = %d, want 1", e.ID, e.Deliveries))
					}
					ids = append(ids, e.ID)
				}
				total += len(got)
				if total >= entries {
					select {
					case <-done:
					default:
						close(done)
					}
				}
				mu.Unlock()
				if len(ids) > 0 {
					if err := s.Ack(ctx, ids...); err != nil {
						mu.Lock()
						fails = append(fails, fmt.Sprintf("Ack: %v", err))
						mu.Unlock()
					}
				}
			}
		}()
	}
	wg.Wait()
	for _, f := range fails {
		t.Error(f)
	}
	for i := range entries {
		if got := seen[i]; len(got) != 1 {
			t.Errorf("event %d was handed to %v, want exactly one consumer", i, got)
		}
	}
	if total != entries {
		t.Errorf("consumers got %d entries in all, want %d", total, entries)
	}
	if n := pending(t, s); n != 0 {
		t.Errorf("Pending after acking everything = %d, want 0", n)
	}
}

func testReclaim(t *testing.T, s store.Store) {
	const minIdle = 30 * time.Millisecond
	want := Event(7)
	enqueue(t, s, "k", want)
	held := claim(t, s, "dead", 1, minIdle, time.Second)
	if len(held) != 1 {
		t.Fatalf("first Claim returned %d entries, want 1", len(held))
	}
	// "dead" never touches nor acks; once minIdle passed, another consumer
	// takes the entry over.
	got := claimUntil(t, s, "alive", minIdle)
	if len(got) != 1 {
		t.Fatalf("reclaiming Claim returned %d entries, want 1", len(got))
	}
	if got[0].ID != held[0].ID {
		t.Errorf("reclaimed entry %s, want %s", got[0].ID, held[0].ID)
	}
	if got[0].Deliveries != 2 {
		t.Errorf("Deliveries after reclaim = %d, want 2", got[0].Deliveries)
	}
	if !sameJSON(t, got[0].Event, want) {
		t.Errorf("reclaimed event = %+v, want %+v", got[0].Event, want)
	}
	if n := pending(t, s); n != 1 {
		t.Errorf("Pending = %d, want 1 (one entry, now held by another consumer)", n)
	}
	ack(t, s, got[0].ID)
	if n := pending(t, s); n != 0 {
		t.Errorf("Pending after Ack = %d, want 0", n)
	}
}

// testHeld is a restarted consumer finding its own unfinished entries:
// only its own, in order, from a given id on, each a new delivery, and none
// that was acknowledged or taken over by another consumer.
func testHeld(t *testing.T, s store.Store) {
	ctx := context.Background()
	for i := range 4 {
		enqueue(t, s, fmt.Sprintf("k%d", i), Event(i))
	}
	mine := claim(t, s, "me", 3, never, time.Second)
	theirs := claim(t, s, "them", 1, never, time.Second)
	if len(mine) != 3 || len(theirs) != 1 {
		t.Fatalf("claimed %d and %d entries, want 3 and 1", len(mine), len(theirs))
	}
	ack(t, s, mine[1].ID)
	held := func(consumer, after string, max int) []store.Entry {
		t.Helper()
		got, err := s.Held(ctx, consumer, after, max)
		if err != nil {
			t.Fatalf("Held(%s, %q, %d): %v", consumer, after, max, err)
		}
		return got
	}
	got := held("me", "", 10)
	if len(got) != 2 || got[0].ID != mine[0].ID || got[1].ID != mine[2].ID {
		t.Fatalf("Held(me) = %v, want entries %s and %s (the acknowledged one left out)", entryIDs(got), mine[0].ID, mine[2].ID)
	}
	for _, e := range got {
		if e.Deliveries != 2 {
			t.Errorf("entry %s: Deliveries = %d, want 2", e.ID, e.Deliveries)
		}
	}
	if !sameJSON(t, got[1].Event, mine[2].Event) {
		t.Errorf("held event = %+v, want %+v", got[1].Event, mine[2].Event)
	}
	if got := held("me", mine[0].ID, 10); len(got) != 1 || got[0].ID != mine[2].ID {
		t.Errorf("Held(me, after %s) = %v, want only %s", mine[0].ID, entryIDs(got), mine[2].ID)
	}
	if got := held("me", "", 1); len(got) != 1 || got[0].ID != mine[0].ID {
		t.Errorf("Held(me, max 1) = %v, want only %s", entryIDs(got), mine[0].ID)
	}
	if got := held("them", "", 10); len(got) != 1 || got[0].ID != theirs[0].ID {
		t.Errorf("Held(them) = %v, want only %s", entryIDs(got), theirs[0].ID)
	}
	if got := held("nobody", "", 10); len(got) != 0 {
		t.Errorf("Held(nobody) = %v, want none", entryIDs(got))
	}
	// Taken over by another consumer: no longer held.
	time.Sleep(40 * time.Millisecond)
	stolen := claim(t, s, "thief", 10, 30*time.Millisecond, 0)
	if len(stolen) != 3 {
		t.Fatalf("thief reclaimed %d entries, want all 3 idle ones", len(stolen))
	}
	if got := held("me", "", 10); len(got) != 0 {
		t.Errorf("Held(me) after a takeover = %v, want none", entryIDs(got))
	}
	if _, err := s.Held(ctx, "", "", 1); err == nil {
		t.Error("Held with an empty consumer name: no error")
	}
	if _, err := s.Held(ctx, "me", "", 0); err == nil {
		t.Error("Held with max 0: no error")
	}
}

func entryIDs(es []store.Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

// testTouchPreventsReclaim keeps touching an entry for several minIdle
// periods while another consumer tries to reclaim it. A reclaim is a
// failure only when the time from just before the last Touch to just after
// the reclaiming Claim was below minIdle, that is when the entry provably
// was not idle long enough; on a machine too slow to prove it the scenario
// is repeated.
func testTouchPreventsReclaim(t *testing.T, s store.Store) {
	const minIdle = 150 * time.Millisecond
	// Redis measures idle time in whole milliseconds.
	const slack = 5 * time.Millisecond
	ctx := context.Background()
	for attempt := 1; attempt <= 5; attempt++ {
		enqueue(t, s, fmt.Sprintf("k%d", attempt), Event(attempt))
		held := claim(t, s, "worker", 1, never, time.Second)
		if len(held) != 1 {
			t.Fatalf("Claim returned %d entries, want 1", len(held))
		}
		claimedAt := time.Now()
		proved := false
		stolen := false
		for time.Since(claimedAt) < 4*minIdle {
			beforeTouch := time.Now()
			if err := s.Touch(ctx, "worker", held[0].ID); err != nil {
				t.Fatalf("Touch: %v", err)
			}
			got := claim(t, s, "thief", 1, minIdle, 0)
			elapsed := time.Since(beforeTouch)
			if len(got) > 0 {
				if elapsed < minIdle-slack {
					t.Fatalf("entry reclaimed %s after a Touch, minIdle %s: Touch did not reset its idle time", elapsed, minIdle)
				}
				stolen = true // too slow to tell; try again
				ack(t, s, got[0].ID)
				break
			}
			// The thief's Claim ran after beforeTouch; if that was past
			// minIdle since the entry was handed out, an untouched entry
			// would have been taken.
			if beforeTouch.Sub(claimedAt) > minIdle+slack && elapsed < minIdle-slack {
				proved = true
			}
			time.Sleep(minIdle / 10)
		}
		if stolen {
			continue
		}
		if !proved {
			ack(t, s, held[0].ID)
			continue
		}
		if n := pending(t, s); n != 1 {
			t.Errorf("Pending = %d, want 1", n)
		}
		// Without touches the entry does become reclaimable.
		got := claimUntil(t, s, "thief", minIdle)
		if got[0].ID != held[0].ID {
			t.Errorf("reclaimed %s, want %s", got[0].ID, held[0].ID)
		}
		return
	}
	t.Fatalf("could not show within 5 attempts that Touch prevents reclaim: the machine is too slow for minIdle %s", minIdle)
}

func testTouchNotOwned(t *testing.T, s store.Store) {
	ctx := context.Background()
	enqueue(t, s, "k1", Event(1))
	enqueue(t, s, "k2", Event(2))
	held := claim(t, s, "a", 2, never, time.Second)
	if len(held) != 2 {
		t.Fatalf("Claim returned %d entries, want 2", len(held))
	}
	if err := s.Touch(ctx, "a", held[0].ID, held[1].ID); err != nil {
		t.Fatalf("Touch by the holder: %v", err)
	}
	if err := s.Touch(ctx, "a"); err != nil {
		t.Errorf("Touch of no entries: %v", err)
	}
	err := s.Touch(ctx, "b", held[0].ID)
	if !errors.Is(err, store.ErrNotOwned) {
		t.Errorf("Touch by another consumer: err = %v, want ErrNotOwned", err)
	}
	ack(t, s, held[0].ID)
	err = s.Touch(ctx, "a", held[0].ID, held[1].ID)
	if !errors.Is(err, store.ErrNotOwned) {
		t.Errorf("Touch of an acked entry: err = %v, want ErrNotOwned", err)
	}
	if errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Touch of an acked entry: err = %v is ErrUnavailable", err)
	}
	// The owned entry in the same call was still touched, and "b" did not
	// take it over.
	if err := s.Touch(ctx, "a", held[1].ID); err != nil {
		t.Errorf("Touch after a partly failed Touch: %v", err)
	}
	if n := pending(t, s); n != 1 {
		t.Errorf("Pending = %d, want 1", n)
	}
}

func testClaimWaitsForBlock(t *testing.T, s store.Store) {
	const block = 150 * time.Millisecond
	start := time.Now()
	got := claim(t, s, "c1", 10, never, block)
	// A timer never fires early; the 2 ms allow for Redis' millisecond
	// rounding.
	if elapsed := time.Since(start); elapsed < block-2*time.Millisecond {
		t.Errorf("Claim on an empty queue returned after %s, want it to wait %s", elapsed, block)
	}
	if len(got) != 0 {
		t.Errorf("Claim on an empty queue returned %d entries", len(got))
	}
}

func testClaimReturnsEarly(t *testing.T, s store.Store) {
	const block = patience
	type result struct {
		entries []store.Entry
		err     error
		elapsed time.Duration
	}
	res := make(chan result, 1)
	go func() {
		start := time.Now()
		got, err := s.Claim(context.Background(), "c1", 10, never, block)
		res <- result{got, err, time.Since(start)}
	}()
	// Whether the Claim is already waiting or not, the entry must reach it.
	time.Sleep(50 * time.Millisecond)
	enqueue(t, s, "k", Event(3))
	r := <-res
	if r.err != nil {
		t.Fatalf("Claim: %v", r.err)
	}
	if len(r.entries) != 1 || r.entries[0].Event.Number != 3 {
		t.Fatalf("Claim returned %+v, want the enqueued event", r.entries)
	}
	if r.elapsed >= block {
		t.Errorf("Claim returned after %s, the whole block: it did not wake up on Enqueue", r.elapsed)
	}
}

func testPending(t *testing.T, s store.Store) {
	if n := pending(t, s); n != 0 {
		t.Fatalf("Pending of an empty store = %d", n)
	}
	for i := range 3 {
		enqueue(t, s, fmt.Sprintf("k%d", i), Event(i))
	}
	if n := pending(t, s); n != 0 {
		t.Errorf("Pending before any Claim = %d, want 0 (queued is not pending)", n)
	}
	first := claim(t, s, "c1", 2, never, 0)
	if n := pending(t, s); n != 2 {
		t.Errorf("Pending after claiming 2 = %d", n)
	}
	ack(t, s, first[0].ID)
	if n := pending(t, s); n != 1 {
		t.Errorf("Pending after one Ack = %d, want 1", n)
	}
	rest := claim(t, s, "c2", 10, never, 0)
	if len(rest) != 1 {
		t.Fatalf("second Claim returned %d entries, want 1", len(rest))
	}
	if n := pending(t, s); n != 2 {
		t.Errorf("Pending = %d, want 2", n)
	}
	ack(t, s, first[1].ID, rest[0].ID)
	if n := pending(t, s); n != 0 {
		t.Errorf("Pending after acking everything = %d, want 0", n)
	}
}

func testAckTwice(t *testing.T, s store.Store) {
	enqueue(t, s, "k", Event(1))
	got := claim(t, s, "c1", 1, never, time.Second)
	if len(got) != 1 {
		t.Fatalf("Claim returned %d entries", len(got))
	}
	ack(t, s, got[0].ID)
	ack(t, s, got[0].ID)
	ack(t, s) // no ids
}

func testInvalidArguments(t *testing.T, s store.Store) {
	ctx := context.Background()
	if _, err := s.Enqueue(ctx, "", Event(1)); err == nil {
		t.Errorf("Enqueue with an empty dedup key succeeded")
	}
	if _, err := s.Claim(ctx, "c1", 0, never, 0); err == nil {
		t.Errorf("Claim with max 0 succeeded")
	}
	if _, err := s.Claim(ctx, "", 1, never, 0); err == nil {
		t.Errorf("Claim with an empty consumer succeeded")
	}
	// None of these are the store being unavailable.
	_, err := s.Claim(ctx, "c1", -1, never, 0)
	if errors.Is(err, store.ErrUnavailable) {
		t.Errorf("invalid Claim: err = %v is ErrUnavailable", err)
	}
	// The rejected Enqueue left nothing behind.
	if got := claim(t, s, "c1", 10, never, 0); len(got) != 0 {
		t.Errorf("queue holds %d entries after rejected calls", len(got))
	}
}

func testBuilds(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, err := s.GetBuild(ctx, "missing")
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetBuild(missing): err = %v, want ErrNotFound", err)
	}
	if errors.Is(err, store.ErrUnavailable) {
		t.Errorf("GetBuild(missing): err = %v is ErrUnavailable", err)
	}
	list, err := s.ListBuilds(ctx)
	if err != nil || len(list) != 0 {
		t.Fatalf("ListBuilds of an empty store = %v, %v", list, err)
	}

	ev := Event(1)
	at := time.Date(2026, 3, 14, 15, 0, 0, 123, time.UTC)
	a := store.Build{Key: ev.ID + "/build", Event: ev, Pipeline: "build", Job: "acme/widgets/build", QueueID: 41, TriggeredAt: at, UpdatedAt: at}
	b := store.Build{Key: ev.ID + "/deploy", Event: ev, Pipeline: "deploy", Job: "acme/widgets/deploy", QueueID: 42, TriggeredAt: at, UpdatedAt: at}
	for _, bu := range []store.Build{b, a} {
		if err := s.PutBuild(ctx, bu); err != nil {
			t.Fatalf("PutBuild(%s): %v", bu.Key, err)
		}
	}
	got, err := s.GetBuild(ctx, a.Key)
	if err != nil {
		t.Fatalf("GetBuild: %v", err)
	}
	if !sameJSON(t, got, a) {
		t.Errorf("GetBuild = %+v, want %+v", got, a)
	}

	// Put replaces.
	a.Number, a.URL, a.Result, a.UpdatedAt = 7, "http://jenkins/job/x/7/", "SUCCESS", at.Add(time.Minute)
	if err := s.PutBuild(ctx, a); err != nil {
		t.Fatalf("PutBuild (replace): %v", err)
	}
	got, err = s.GetBuild(ctx, a.Key)
	if err != nil || !sameJSON(t, got, a) {
		t.Errorf("GetBuild after replace = %+v, %v; want %+v", got, err, a)
	}

	list, err = s.ListBuilds(ctx)
	if err != nil {
		t.Fatalf("ListBuilds: %v", err)
	}
	if len(list) != 2 || !sameJSON(t, list[0], a) || !sameJSON(t, list[1], b) {
		t.Errorf("ListBuilds = %+v, want [%s %s] sorted by key", list, a.Key, b.Key)
	}

	if err := s.DeleteBuild(ctx, a.Key); err != nil {
		t.Fatalf("DeleteBuild: %v", err)
	}
	if err := s.DeleteBuild(ctx, a.Key); err != nil {
		t.Errorf("DeleteBuild of a missing record: %v", err)
	}
	if _, err := s.GetBuild(ctx, a.Key); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetBuild after delete: err = %v, want ErrNotFound", err)
	}
	list, err = s.ListBuilds(ctx)
	if err != nil || len(list) != 1 || list[0].Key != b.Key {
		t.Errorf("ListBuilds after delete = %+v, %v; want only %s", list, err, b.Key)
	}
}

func testCancelBlockedClaim(t *testing.T, s store.Store) {
	const block = patience
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		entries []store.Entry
		err     error
		elapsed time.Duration
	}
	res := make(chan result, 1)
	go func() {
		start := time.Now()
		got, err := s.Claim(ctx, "c1", 10, never, block)
		res <- result{got, err, time.Since(start)}
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	r := <-res
	if !errors.Is(r.err, context.Canceled) {
		t.Errorf("Claim after cancel: err = %v, want context.Canceled", r.err)
	}
	if errors.Is(r.err, store.ErrUnavailable) {
		t.Errorf("Claim after cancel: err = %v is ErrUnavailable; the caller gave up, the store did not fail", r.err)
	}
	if len(r.entries) != 0 {
		t.Errorf("cancelled Claim returned %d entries", len(r.entries))
	}
	if r.elapsed >= block {
		t.Errorf("cancelled Claim returned after %s, the whole block", r.elapsed)
	}
	// The store still works afterwards and the cancelled Claim did not
	// swallow an entry enqueued later.
	enqueue(t, s, "k", Event(1))
	if got := claimUntil(t, s, "c2", never); len(got) != 1 {
		t.Errorf("Claim after a cancelled Claim returned %d entries, want 1", len(got))
	}
}

func testCancelledContext(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if ok, err := s.Enqueue(ctx, "k", Event(1)); err == nil || ok {
		t.Errorf("Enqueue with a cancelled context = %v, %v; want an error", ok, err)
	}
	if _, err := s.Claim(ctx, "c1", 1, never, time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("Claim with a cancelled context: err = %v, want context.Canceled", err)
	}
	// The refused Enqueue did not take the key.
	enqueue(t, s, "k", Event(1))
}

func testClosed(t *testing.T, s store.Store) {
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Ping(context.Background()); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Ping after Close: err = %v, want ErrUnavailable", err)
	}
	if _, err := s.Enqueue(context.Background(), "k", Event(1)); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Enqueue after Close: err = %v, want ErrUnavailable", err)
	}
}

// Promotion returns a sample promotion record; n makes it distinct.
func Promotion(n int, at time.Time) store.Promotion {
	return store.Promotion{
		ID: fmt.Sprintf("p-%d", n), Kind: store.KindPromote, App: "web",
		Source: "registry.example/ci/web:v1", SourceDigest: "sha256:" + fmt.Sprintf("%064d", n),
		Commit: "0123456789abcdef0123456789abcdef01234567", RequestedBy: "jenkins",
		State: store.PromotionRunning,
		Environments: []store.PromotionEnv{
			{Name: "test", Phase: store.EnvPending},
			{Name: "production", Phase: store.EnvPending, NeedsApproval: true},
		},
		Audit:     []store.AuditEntry{{At: at, Actor: "jenkins", Action: "requested"}},
		CreatedAt: at, UpdatedAt: at,
	}
}

func testPromotions(t *testing.T, s store.Store) {
	ctx := context.Background()
	if _, err := s.GetPromotion(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetPromotion(missing): err = %v, want ErrNotFound", err)
	}
	at := time.Date(2026, 3, 14, 15, 0, 0, 0, time.UTC)
	older, newer := Promotion(2, at), Promotion(1, at.Add(time.Second))
	var stored []store.Promotion
	for _, p := range []store.Promotion{newer, older} {
		got, err := s.PutPromotion(ctx, p)
		if err != nil {
			t.Fatalf("PutPromotion(%s): %v", p.ID, err)
		}
		if got.Revision != 1 {
			t.Errorf("PutPromotion(%s) revision = %d, want 1", p.ID, got.Revision)
		}
		stored = append(stored, got)
	}
	got, err := s.GetPromotion(ctx, older.ID)
	if err != nil {
		t.Fatalf("GetPromotion: %v", err)
	}
	if !sameJSON(t, got, stored[1]) {
		t.Errorf("GetPromotion = %+v, want %+v", got, stored[1])
	}

	got.Environments[0].Phase = store.EnvSucceeded
	got.Environments[0].Previous = []store.DeploymentImage{{Namespace: "t", Deployment: "web", Container: "web", Image: "r/web@sha256:" + fmt.Sprintf("%064d", 9)}}
	updated, err := s.PutPromotion(ctx, got)
	if err != nil {
		t.Fatalf("PutPromotion (update): %v", err)
	}
	if updated.Revision != 2 {
		t.Errorf("revision after update = %d, want 2", updated.Revision)
	}
	again, err := s.GetPromotion(ctx, older.ID)
	if err != nil || !sameJSON(t, again, updated) {
		t.Errorf("GetPromotion after update = %+v, %v; want %+v", again, err, updated)
	}

	list, err := s.ListPromotions(ctx)
	if err != nil {
		t.Fatalf("ListPromotions: %v", err)
	}
	if len(list) != 2 || list[0].ID != older.ID || list[1].ID != newer.ID {
		t.Errorf("ListPromotions = %v, want [%s %s] oldest first", ids(list), older.ID, newer.ID)
	}
}

func ids(ps []store.Promotion) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.ID
	}
	return out
}

func testPromotionConflicts(t *testing.T, s store.Store) {
	ctx := context.Background()
	p := Promotion(1, time.Date(2026, 3, 14, 15, 0, 0, 0, time.UTC))
	first, err := s.PutPromotion(ctx, p)
	if err != nil {
		t.Fatalf("PutPromotion: %v", err)
	}
	// Creating it again (revision 0) is a conflict, not an overwrite.
	dup := p
	dup.App = "other"
	if _, err := s.PutPromotion(ctx, dup); !errors.Is(err, store.ErrConflict) {
		t.Errorf("second create: err = %v, want ErrConflict", err)
	}

	// Of writers that read the same revision, exactly one wins.
	const writers = 8
	var wg sync.WaitGroup
	wins := make(chan string, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := first
			w.Reason = fmt.Sprintf("writer %d", i)
			if _, err := s.PutPromotion(ctx, w); err == nil {
				wins <- w.Reason
			} else if !errors.Is(err, store.ErrConflict) {
				t.Errorf("writer %d: err = %v, want nil or ErrConflict", i, err)
			}
		}()
	}
	wg.Wait()
	close(wins)
	var won []string
	for w := range wins {
		won = append(won, w)
	}
	if len(won) != 1 {
		t.Fatalf("%d writers won (%v), want exactly 1", len(won), won)
	}
	got, err := s.GetPromotion(ctx, p.ID)
	if err != nil {
		t.Fatalf("GetPromotion: %v", err)
	}
	if got.Reason != won[0] || got.Revision != 2 || got.App != "web" {
		t.Errorf("stored record: reason %q revision %d app %q; want %q, 2, web", got.Reason, got.Revision, got.App, won[0])
	}
}

func testLease(t *testing.T, s store.Store) {
	ctx := context.Background()
	ok, err := s.Lease(ctx, "tracker", "a", 200*time.Millisecond)
	if err != nil || !ok {
		t.Fatalf("first Lease by a = %v, %v; want true", ok, err)
	}
	if ok, err := s.Lease(ctx, "tracker", "b", 200*time.Millisecond); err != nil || ok {
		t.Fatalf("Lease by b while a holds it = %v, %v; want false", ok, err)
	}
	if ok, err := s.Lease(ctx, "other", "b", 200*time.Millisecond); err != nil || !ok {
		t.Fatalf("another lease by b = %v, %v; want true", ok, err)
	}
	if ok, err := s.Lease(ctx, "tracker", "a", 200*time.Millisecond); err != nil || !ok {
		t.Fatalf("renewal by a = %v, %v; want true", ok, err)
	}
	// Once a stops renewing, b gets it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, err := s.Lease(ctx, "tracker", "b", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b never got the lease after a stopped renewing")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ok, _ := s.Lease(ctx, "tracker", "a", time.Minute); ok {
		t.Error("a got the lease back while b holds it")
	}
	if _, err := s.Lease(ctx, "", "a", time.Second); err == nil {
		t.Error("Lease without a name must fail")
	}
}

// testRefs checks RefState's revision check: a write based on a stale read
// is refused, and what is stored reads back whole.
func testRefs(t *testing.T, s store.Store) {
	ctx := context.Background()
	key := store.RefKey(event.GitHub, "acme/app", "refs/pull/7/head")
	if _, err := s.GetRef(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetRef(missing): err = %v, want ErrNotFound", err)
	}
	at := time.Date(2026, 3, 14, 15, 0, 0, 0, time.UTC)
	r := store.RefState{Key: key, Head: Event(1), Held: map[string]bool{"app": true}, UpdatedAt: at}
	first, err := s.PutRef(ctx, r)
	if err != nil || first.Revision != 1 {
		t.Fatalf("PutRef = rev %d, %v; want revision 1", first.Revision, err)
	}
	if _, err := s.PutRef(ctx, r); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("PutRef at revision 0 again: err = %v, want ErrConflict", err)
	}
	got, err := s.GetRef(ctx, key)
	if err != nil || !sameJSON(t, got, first) {
		t.Fatalf("GetRef = %+v, %v; want %+v", got, err, first)
	}
	got.Approved = map[string]store.Approval{"app": {By: "alice", SHA: got.Head.SHA, At: at}}
	delete(got.Held, "app")
	second, err := s.PutRef(ctx, got)
	if err != nil || second.Revision != 2 {
		t.Fatalf("PutRef (update) = rev %d, %v; want revision 2", second.Revision, err)
	}
	if _, err := s.PutRef(ctx, first); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("PutRef from a stale read: err = %v, want ErrConflict", err)
	}
	again, err := s.GetRef(ctx, key)
	if err != nil || again.Approved["app"].By != "alice" || again.Held["app"] {
		t.Fatalf("GetRef after update = %+v, %v", again, err)
	}
}

// A key is claimed once: later claims get the first value (concurrent
// ones too) until it expires, after which it can be claimed anew.
func testClaimKey(t *testing.T, s store.Store) {
	ctx := context.Background()
	const n = 8
	type result struct {
		v  string
		ok bool
	}
	results := make(chan result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, ok, err := s.ClaimKey(ctx, "idem:k1", fmt.Sprintf("v%d", i), time.Minute)
			if err != nil {
				t.Errorf("ClaimKey: %v", err)
			}
			results <- result{v, ok}
		}()
	}
	wg.Wait()
	close(results)
	winners, values := 0, map[string]bool{}
	for r := range results {
		values[r.v] = true
		if r.ok {
			winners++
		}
	}
	if winners != 1 || len(values) != 1 {
		t.Fatalf("%d concurrent claims: %d won, values %v; want exactly one winner whose value all see", n, winners, values)
	}
	if v, ok, err := s.ClaimKey(ctx, "idem:k2", "other", 100*time.Millisecond); err != nil || !ok || v != "other" {
		t.Fatalf("ClaimKey of another key = %q, %v, %v; want it claimed", v, ok, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, ok, err := s.ClaimKey(ctx, "idem:k2", "again", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if ok && v == "again" {
			break
		}
		if v != "other" || time.Now().After(deadline) {
			t.Fatalf("ClaimKey after expiry = %q, %v; want the key to expire and be claimed anew", v, ok)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, _, err := s.ClaimKey(ctx, "", "x", time.Minute); err == nil {
		t.Error("ClaimKey without a key must fail")
	}
}
