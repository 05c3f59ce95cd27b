package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/event"
	"github.com/ferryci/ferry/pkg/store"
)

// LogFactory makes a fresh, empty store whose delivery log keeps records
// for retention and at most maxRecords of them.
type LogFactory func(t *testing.T, retention time.Duration, maxRecords int) store.Store

// RunDeliveryLog runs the delivery log's contract against stores made by
// newStore.
func RunDeliveryLog(t *testing.T, newStore LogFactory) {
	tests := []struct {
		name      string
		retention time.Duration
		max       int
		run       func(t *testing.T, s store.Store)
	}{
		{"Filters", time.Hour, 1000, testDeliveryFilters},
		{"Pages", time.Hour, 1000, testDeliveryPages},
		{"Retention", time.Hour, 1000, testDeliveryRetention},
		{"Cap", time.Hour, 5, testDeliveryCap},
		{"InvalidQuery", time.Hour, 1000, testDeliveryInvalidQuery},
		{"Trails", time.Hour, 1000, testTrails},
		{"MarkOnce", time.Hour, 1000, testMarkOnce},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newStore(t, tc.retention, tc.max))
		})
	}
}

// Delivery returns a sample delivery record received ago before now.
func Delivery(id, repo, ref, sha string, ago time.Duration) store.Delivery {
	return store.Delivery{Provider: event.GitHub, DeliveryID: id, Event: "push", EventID: "gh-" + id,
		Repo: repo, Ref: ref, SHA: sha, Outcome: store.DeliveryAccepted, Status: 202,
		Pipelines: []string{"app"}, ReceivedAt: time.Now().Add(-ago).UTC().Truncate(time.Microsecond)}
}

func record(t *testing.T, s store.Store, ds ...store.Delivery) []store.Delivery {
	t.Helper()
	out := make([]store.Delivery, len(ds))
	for i, d := range ds {
		got, err := s.RecordDelivery(context.Background(), d)
		if err != nil {
			t.Fatalf("RecordDelivery(%s): %v", d.DeliveryID, err)
		}
		if got.Record == "" {
			t.Fatalf("RecordDelivery(%s) assigned no record id", d.DeliveryID)
		}
		out[i] = got
	}
	return out
}

func deliveryIDs(t *testing.T, s store.Store, q store.DeliveryQuery) []string {
	t.Helper()
	page, err := s.ListDeliveries(context.Background(), q)
	if err != nil {
		t.Fatalf("ListDeliveries(%+v): %v", q, err)
	}
	var ids []string
	for _, d := range page.Deliveries {
		ids = append(ids, d.DeliveryID)
	}
	return ids
}

const (
	shaA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	shaB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func testDeliveryFilters(t *testing.T, s store.Store) {
	got := record(t, s,
		Delivery("d1", "acme/app", "refs/heads/main", shaA, 50*time.Minute),
		Delivery("d2", "acme/app", "refs/heads/dev", shaB, 40*time.Minute),
		Delivery("d3", "acme/lib", "refs/heads/main", shaA, 30*time.Minute),
		Delivery("d4", "acme/app", "refs/heads/main", shaB, 20*time.Minute),
	)
	rejected := store.Delivery{Provider: event.GitHub, DeliveryID: "d1", Outcome: store.DeliveryRejected,
		Status: 401, Reason: "signature does not match", ReceivedAt: time.Now().Add(-10 * time.Minute).UTC()}
	record(t, s, rejected)
	for _, tc := range []struct {
		q    store.DeliveryQuery
		want []string
	}{
		{store.DeliveryQuery{}, []string{"d1", "d4", "d3", "d2", "d1"}},
		{store.DeliveryQuery{Repo: "acme/app"}, []string{"d4", "d2", "d1"}},
		{store.DeliveryQuery{Repo: "acme/app", Ref: "refs/heads/main"}, []string{"d4", "d1"}},
		{store.DeliveryQuery{Ref: "refs/heads/main"}, []string{"d4", "d3", "d1"}},
		{store.DeliveryQuery{SHA: shaA}, []string{"d3", "d1"}},
		{store.DeliveryQuery{Repo: "acme/app", SHA: shaA}, []string{"d1"}},
		{store.DeliveryQuery{DeliveryID: "d1"}, []string{"d1", "d1"}},
		{store.DeliveryQuery{DeliveryID: "d9"}, nil},
		{store.DeliveryQuery{Repo: "acme/none"}, nil},
	} {
		if ids := deliveryIDs(t, s, tc.q); !slices.Equal(ids, tc.want) {
			t.Errorf("ListDeliveries(%+v) = %v, want %v", tc.q, ids, tc.want)
		}
	}
	page, err := s.ListDeliveries(context.Background(), store.DeliveryQuery{SHA: shaB, Repo: "acme/app", Ref: "refs/heads/dev"})
	if err != nil || len(page.Deliveries) != 1 {
		t.Fatalf("ListDeliveries(d2) = %+v, %v", page, err)
	}
	if want := got[1]; !sameJSON(t, page.Deliveries[0], want) {
		t.Errorf("record read back = %+v, want %+v", page.Deliveries[0], want)
	}
}

func testDeliveryPages(t *testing.T, s store.Store) {
	var want []string
	for i := 0; i < 7; i++ {
		d := Delivery(fmt.Sprintf("p%d", i), "acme/app", "refs/heads/main", shaA, time.Duration(10-i)*time.Minute)
		record(t, s, d)
		want = append([]string{d.DeliveryID}, want...)
	}
	// A record of another repository between them must not end a page early.
	record(t, s, Delivery("other", "acme/lib", "refs/heads/main", shaB, 5*time.Minute))
	var all []string
	q := store.DeliveryQuery{Repo: "acme/app", Limit: 3}
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatalf("more pages than records: %v", all)
		}
		page, err := s.ListDeliveries(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Deliveries) > 3 {
			t.Fatalf("page of %d records, limit 3", len(page.Deliveries))
		}
		for _, d := range page.Deliveries {
			all = append(all, d.DeliveryID)
		}
		if page.Next == "" {
			break
		}
		q.After = page.Next
	}
	if !slices.Equal(all, want) {
		t.Errorf("pages = %v, want %v", all, want)
	}
}

func testDeliveryRetention(t *testing.T, s store.Store) {
	record(t, s,
		Delivery("old", "acme/app", "refs/heads/main", shaA, 2*time.Hour),
		Delivery("new", "acme/app", "refs/heads/main", shaA, time.Minute))
	for _, q := range []store.DeliveryQuery{{}, {Repo: "acme/app"}, {SHA: shaA}, {DeliveryID: "old"}} {
		for _, id := range deliveryIDs(t, s, q) {
			if id == "old" {
				t.Errorf("ListDeliveries(%+v) returned a record older than the retention", q)
			}
		}
	}
}

func testDeliveryCap(t *testing.T, s store.Store) {
	var want []string
	for i := 0; i < 8; i++ {
		d := Delivery(fmt.Sprintf("c%d", i), "acme/app", "refs/heads/main", shaA, time.Duration(20-i)*time.Minute)
		record(t, s, d)
		if i >= 3 {
			want = append([]string{d.DeliveryID}, want...)
		}
	}
	for _, q := range []store.DeliveryQuery{{}, {Repo: "acme/app"}} {
		if ids := deliveryIDs(t, s, q); !slices.Equal(ids, want) {
			t.Errorf("ListDeliveries(%+v) with a cap of 5 = %v, want the newest five %v", q, ids, want)
		}
	}
}

func testDeliveryInvalidQuery(t *testing.T, s store.Store) {
	for _, q := range []store.DeliveryQuery{{Limit: -1}, {Limit: store.MaxDeliveryPage + 1}, {After: "garbage"}, {After: "12-ab"}} {
		if _, err := s.ListDeliveries(context.Background(), q); !errors.Is(err, store.ErrInvalidQuery) {
			t.Errorf("ListDeliveries(%+v) = %v, want ErrInvalidQuery", q, err)
		}
	}
	if _, err := s.RecordDelivery(context.Background(), store.Delivery{DeliveryID: "x"}); err == nil {
		t.Error("RecordDelivery without received_at succeeded")
	}
}

func testTrails(t *testing.T, s store.Store) {
	ctx := context.Background()
	at := time.Now().UTC().Truncate(time.Second)
	mk := func(pipeline string, queue int64) store.BuildTrail {
		return store.BuildTrail{
			Build: store.Build{Key: "gh-d1/" + pipeline, Pipeline: pipeline, Job: pipeline, QueueID: queue, TriggeredAt: at},
			Steps: []store.BuildStep{{Step: "queued", At: at, Detail: fmt.Sprintf("queue item %d", queue)}},
		}
	}
	for _, tr := range []store.BuildTrail{mk("web", 7), mk("api", 8)} {
		if err := s.PutTrail(ctx, tr); err != nil {
			t.Fatal(err)
		}
	}
	updated := mk("web", 7)
	updated.Steps = append(updated.Steps, store.BuildStep{Step: "started", At: at, Detail: "build #3"})
	if err := s.PutTrail(ctx, updated); err != nil {
		t.Fatal(err)
	}
	got, err := s.Trails(ctx, "gh-d1")
	if err != nil {
		t.Fatal(err)
	}
	if want := []store.BuildTrail{mk("api", 8), updated}; !sameJSON(t, got, want) {
		t.Errorf("Trails = %+v, want %+v", got, want)
	}
	if got, err := s.Trails(ctx, "gh-none"); err != nil || len(got) != 0 {
		t.Errorf("Trails(unknown) = %+v, %v; want none", got, err)
	}
	if err := s.PutTrail(ctx, store.BuildTrail{Build: store.Build{Key: "no-pipeline"}}); err == nil {
		t.Error("PutTrail with a key without pipeline succeeded")
	}
}

func testMarkOnce(t *testing.T, s store.Store) {
	ctx := context.Background()
	for i, tc := range []struct {
		key  string
		want bool
	}{{"redeliver:1", true}, {"redeliver:1", false}, {"redeliver:2", true}, {"redeliver:1", false}} {
		got, err := s.MarkOnce(ctx, tc.key, time.Hour)
		if err != nil || got != tc.want {
			t.Errorf("MarkOnce #%d(%s) = %v, %v; want %v", i, tc.key, got, err, tc.want)
		}
	}
	if err := s.Unmark(ctx, "redeliver:1"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.MarkOnce(ctx, "redeliver:1", time.Hour); err != nil || !got {
		t.Errorf("MarkOnce after Unmark = %v, %v; want true", got, err)
	}
	if err := s.Unmark(ctx, "never-marked"); err != nil {
		t.Errorf("Unmark of a missing mark: %v", err)
	}
	if _, err := s.MarkOnce(ctx, "", time.Hour); err == nil {
		t.Error("MarkOnce with an empty key succeeded")
	}
}
