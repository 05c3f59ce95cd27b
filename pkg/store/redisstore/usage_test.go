package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/pkg/store/redisstore"
	"github.com/ferryci/ferry/test/redisserver"
)

// Agent usage keys live under the prefix and expire after the retention.
func TestAgentUsageKeys(t *testing.T) {
	srv := redisserver.Run(t, redisserver.Options{})
	ctx := context.Background()
	raw := rawClient(t, srv.Addr())
	s := newStore(t, redisstore.Config{Addr: srv.Addr(), Prefix: "{acme}:"})
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	if _, err := s.AddAgentUsage(ctx, store.AgentUsage{Agent: "ferry-agent-9", Template: "java", Created: at, Ended: at.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"{acme}:usage:2026-03-01", "{acme}:usage:agent:ferry-agent-9"} {
		ttl, err := raw.TTL(ctx, k).Result()
		if err != nil || ttl <= store.UsageRetention-time.Hour || ttl > store.UsageRetention {
			t.Errorf("TTL %s = %s, %v; want about %s", k, ttl, err, store.UsageRetention)
		}
	}
}
