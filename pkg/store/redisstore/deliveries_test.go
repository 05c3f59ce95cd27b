package redisstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/pkg/store/redisstore"
	"github.com/ferryci/ferry/pkg/store/storetest"
	"github.com/ferryci/ferry/test/redisserver"
)

func TestDeliveryLogContract(t *testing.T) {
	srv := redisserver.Run(t, redisserver.Options{})
	storetest.RunDeliveryLog(t, func(t *testing.T, retention time.Duration, maxRecords int) store.Store {
		return newStore(t, redisstore.Config{Addr: srv.Addr(), DeliveryRetention: retention, DeliveryMax: maxRecords})
	})
}

// TestDeliveryLogBoundedInRedis checks that the delivery log's keys stay
// bounded: every key it writes expires, and records cut by the cap are
// deleted at once.
func TestDeliveryLogBoundedInRedis(t *testing.T) {
	srv := redisserver.Run(t, redisserver.Options{})
	prefix := "bounded:"
	s := newStore(t, redisstore.Config{Addr: srv.Addr(), Prefix: prefix, DeliveryRetention: time.Hour, DeliveryMax: 3})
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		d := storetest.Delivery(fmt.Sprintf("d%d", i), "acme/app", "refs/heads/main", "cccccccccccccccccccccccccccccccccccccccc", time.Duration(10-i)*time.Minute)
		if _, err := s.RecordDelivery(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	rc := rawClient(t, srv.Addr())
	records, err := rc.Keys(ctx, prefix+"dlv:r:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(records) != 3 {
		t.Errorf("%d record keys after 10 deliveries with a cap of 3: %v", len(records), records)
	}
	all, err := rc.Keys(ctx, prefix+"dlv:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range all {
		ttl, err := rc.TTL(ctx, k).Result()
		if err != nil || ttl <= 0 {
			t.Errorf("key %s has TTL %v (%v); every delivery log key must expire", k, ttl, err)
		}
		if n, _ := rc.ZCard(ctx, k).Result(); n > 3 {
			t.Errorf("index %s holds %d members, over the cap of 3", k, n)
		}
	}
}
