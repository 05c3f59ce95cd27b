package chaos_test

import (
	"context"
	"testing"
	"time"

	"github.com/ferryci/ferry/test/chaos"
	"github.com/ferryci/ferry/test/redisserver"
)

// The Redis primary is SIGKILLed under three ferry processes that reach it
// through Redis Sentinel with waitReplicas: 1, while deliveries stream in:
// Sentinel promotes the replica, ferry follows it without a restart, and
// every delivery answered 202 (all of them, once redelivered) is built
// exactly once — none was acknowledged before the replica had it.
func TestRedisPrimaryKilledUnderSentinel(t *testing.T) {
	n := 200
	c := chaos.Start(t, chaos.Options{Replicas: 3, Sentinel: true, Senders: 8, TriggerDelay: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		c.Send(ctx, n)
	}()
	waitFor(t, "a first part of the deliveries built", time.Minute, func() bool { return c.Proxy.Triggers() >= 20 })
	select {
	case <-sent:
		t.Fatal("every delivery was answered before the kill: the fault would hit nothing")
	default:
	}
	if err := c.Redis.Kill(); err != nil {
		t.Fatal(err)
	}
	failover := waitFor(t, "Sentinel promotes the replica", time.Minute, func() bool {
		addr, err := redisserver.MasterAddr(c.Sentinels[0], "", chaos.SentinelMaster)
		return err == nil && addr == c.RedisReplica.Addr()
	})
	// The old primary returns as the new one's replica, so WAIT 1 can be
	// satisfied again.
	if err := c.Redis.Start(); err != nil {
		t.Fatal(err)
	}
	<-sent
	rep := c.WaitBuiltOnce(3 * time.Minute)
	chaos.Summary(t, "fault=redis-primary-SIGKILL-sentinel handoff=%s %s waitReplicas=1 (no provisioner: nothing to leak)", failover.Round(10*time.Millisecond), rep)
}
