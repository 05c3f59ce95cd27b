package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/pkg/store/redisstore"
	"github.com/ferryci/ferry/pkg/store/storetest"
	"github.com/ferryci/ferry/test/redisserver"
)

// sentinelSet is a primary, a replica and three sentinels watching them.
type sentinelSet struct {
	primary, replica *redisserver.Server
	sentinels        []*redisserver.Server
}

func (s sentinelSet) addrs() []string {
	var out []string
	for _, x := range s.sentinels {
		out = append(out, x.Addr())
	}
	return out
}

const masterName = "ferry"

func runSentinelSet(t *testing.T, sentinelPassword string) sentinelSet {
	t.Helper()
	primary := redisserver.Run(t, redisserver.Options{Args: []string{"--repl-diskless-sync-delay", "0"}})
	replica := redisserver.Run(t, redisserver.Options{Args: []string{"--replicaof", "127.0.0.1", fmt.Sprint(primary.Port()), "--repl-diskless-sync-delay", "0"}})
	waitReplicaOnline(t, primary)
	return sentinelSet{primary, replica, redisserver.RunSentinels(t, primary, redisserver.SentinelOptions{MasterName: masterName, Password: sentinelPassword})}
}

func waitReplicaOnline(t *testing.T, primary *redisserver.Server) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := redisserver.Command(primary.Port(), "", "INFO", "replication")
		if err == nil && strings.Contains(info, "connected_slaves:1") && strings.Contains(info, "state=online") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no replica of %s came online: %s %v", primary.Addr(), info, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSentinelContract runs the store contract through Redis Sentinel,
// with the sentinels requiring a password of their own.
func TestSentinelContract(t *testing.T) {
	set := runSentinelSet(t, "sentinel-secret")
	storetest.Run(t, func(t *testing.T) store.Store {
		return newStore(t, redisstore.Config{SentinelMasterName: masterName, SentinelAddrs: set.addrs(), SentinelPassword: "sentinel-secret"})
	})
}

// TestSentinelFailover kills the primary under a store that waits for one
// replica: every event Enqueue accepted before the crash is still there
// after Sentinel promoted the replica, and the store writes to the new
// primary without being told.
func TestSentinelFailover(t *testing.T) {
	set := runSentinelSet(t, "")
	s := newStore(t, redisstore.Config{SentinelMasterName: masterName, SentinelAddrs: set.addrs(),
		WaitReplicas: 1, WaitTimeout: 2 * time.Second})
	ctx := context.Background()
	accepted := map[string]bool{}
	for i := range 20 {
		key := fmt.Sprintf("before-%d", i)
		ok, err := s.Enqueue(ctx, key, storetest.Event(i))
		if err != nil || !ok {
			t.Fatalf("Enqueue %s = %v, %v", key, ok, err)
		}
		accepted[storetest.Event(i).ID] = true
	}
	if err := set.primary.Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		addr, err := redisserver.MasterAddr(set.sentinels[0], "", masterName)
		if err == nil && addr == set.replica.Addr() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Sentinel did not promote the replica %s: primary is %s, %v", set.replica.Addr(), addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The old primary comes back; Sentinel makes it a replica of the new
	// one, so WAIT 1 is satisfied again.
	if err := set.primary.Start(); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		key := fmt.Sprintf("after-%d", i)
		unconfirmed := false
		for {
			ok, err := s.Enqueue(ctx, key, storetest.Event(100+i))
			if err == nil {
				// A duplicate is right only after an attempt whose WAIT
				// timed out: that attempt queued the event.
				if !ok && !unconfirmed {
					t.Fatalf("Enqueue %s after fail-over: a duplicate of nothing", key)
				}
				accepted[storetest.Event(100+i).ID] = true
				break
			}
			unconfirmed = true
			if !errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("Enqueue %s after fail-over: %v, want success or ErrUnavailable", key, err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("Enqueue %s still failing after fail-over: %v", key, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	got := map[string]bool{}
	for len(got) < len(accepted) {
		entries, err := s.Claim(ctx, "c", 100, time.Hour, 0)
		if err != nil {
			t.Fatalf("Claim: %v", err)
		}
		if len(entries) == 0 {
			break
		}
		for _, e := range entries {
			got[e.Event.ID] = true
			if err := s.Ack(ctx, e.ID); err != nil {
				t.Fatalf("Ack: %v", err)
			}
		}
	}
	for key := range accepted {
		if !got[key] {
			t.Errorf("event %s was accepted but is gone after the fail-over", key)
		}
	}
	if len(got) != len(accepted) {
		t.Errorf("claimed %d events, accepted %d", len(got), len(accepted))
	}
}

// TestClusterContract runs the store contract on a Redis Cluster of three
// primaries; the prefix carries a hash tag.
func TestClusterContract(t *testing.T) {
	nodes := redisserver.RunCluster(t, 3)
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.Addr())
	}
	storetest.Run(t, func(t *testing.T) store.Store {
		return newStore(t, redisstore.Config{ClusterAddrs: addrs, Prefix: "{" + strings.TrimSuffix(uniquePrefix(), ":") + "}:"})
	})
	t.Run("refuses a prefix without a hash tag", func(t *testing.T) {
		_, err := redisstore.New(context.Background(), redisstore.Config{ClusterAddrs: addrs, Prefix: "ferry:", Logger: quietLogger()})
		if err == nil || !strings.Contains(err.Error(), "hash tag") {
			t.Errorf("New = %v, want a refusal naming the hash tag", err)
		}
	})
}
