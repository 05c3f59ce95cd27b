package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/pkg/store/redisstore"
	"github.com/ferryci/ferry/pkg/store/storetest"
	"github.com/ferryci/ferry/test/redisserver"
)

func TestMain(m *testing.M) {
	// The outage tests make go-redis log every failed dial.
	redisstore.SetClientLogger(quietLogger())
	os.Exit(m.Run())
}

var prefixes atomic.Int64

// uniquePrefix keeps stores sharing one server apart.
func uniquePrefix() string {
	return fmt.Sprintf("test%d:", prefixes.Add(1))
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newStore(t testing.TB, cfg redisstore.Config) *redisstore.Store {
	t.Helper()
	if cfg.Prefix == "" {
		cfg.Prefix = uniquePrefix()
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := redisstore.New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// rawClient is a plain client for looking at what the store wrote.
func rawClient(t testing.TB, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestContract(t *testing.T) {
	srv := redisserver.Run(t, redisserver.Options{})
	storetest.Run(t, func(t *testing.T) store.Store {
		return newStore(t, redisstore.Config{Addr: srv.Addr()})
	})
}

func TestKeysUnderPrefix(t *testing.T) {
	srv := redisserver.Run(t, redisserver.Options{})
	ctx := context.Background()
	raw := rawClient(t, srv.Addr())
	s := newStore(t, redisstore.Config{Addr: srv.Addr(), Prefix: "acme:ferry:"})

	if ok, err := s.Enqueue(ctx, "github:d1", storetest.Event(1)); err != nil || !ok {
		t.Fatalf("Enqueue = %v, %v", ok, err)
	}
	if err := raw.XAdd(ctx, &redis.XAddArgs{Stream: "acme:ferry:events", Values: []any{"event", "{broken"}}).Err(); err != nil {
		t.Fatalf("XADD: %v", err)
	}
	if _, err := s.Claim(ctx, "c1", 10, time.Hour, 0); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	if err := s.PutBuild(ctx, store.Build{Key: "b1"}); err != nil {
		t.Fatalf("PutBuild: %v", err)
	}

	keys, err := raw.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatalf("KEYS: %v", err)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "acme:ferry:") {
			t.Errorf("key %q is outside the prefix", k)
		}
	}
	for _, want := range []string{"acme:ferry:events", "acme:ferry:events:dead", "acme:ferry:dedup:github:d1", "acme:ferry:builds"} {
		if n, err := raw.Exists(ctx, want).Result(); err != nil || n != 1 {
			t.Errorf("key %q: EXISTS = %d, %v; want 1", want, n, err)
		}
	}
	groups, err := raw.XInfoGroups(ctx, "acme:ferry:events").Result()
	if err != nil || len(groups) != 1 || groups[0].Name != redisstore.DefaultGroup {
		t.Errorf("consumer groups = %+v, %v; want one named %s", groups, err, redisstore.DefaultGroup)
	}
}

func TestDedupTTL(t *testing.T) {
	srv := redisserver.Run(t, redisserver.Options{})
	ctx := context.Background()
	raw := rawClient(t, srv.Addr())

	tests := []struct {
		name    string
		ttl     time.Duration
		wantTTL time.Duration
	}{
		{"default", 0, store.DefaultDedupTTL},
		{"minimum", store.MinDedupTTL, store.MinDedupTTL},
		{"a week", 7 * 24 * time.Hour, 7 * 24 * time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prefix := uniquePrefix()
			s := newStore(t, redisstore.Config{Addr: srv.Addr(), Prefix: prefix, DedupTTL: tc.ttl})
			if ok, err := s.Enqueue(ctx, "k", storetest.Event(1)); err != nil || !ok {
				t.Fatalf("Enqueue = %v, %v", ok, err)
			}
			got, err := raw.TTL(ctx, prefix+"dedup:k").Result()
			if err != nil {
				t.Fatalf("TTL: %v", err)
			}
			if got < store.MinDedupTTL || got > tc.wantTTL || got < tc.wantTTL-time.Minute {
				t.Errorf("dedup key TTL = %s, want %s (and at least %s)", got, tc.wantTTL, store.MinDedupTTL)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  redisstore.Config
		want string
	}{
		{"dedup TTL below 72h", redisstore.Config{DedupTTL: 24 * time.Hour}, "dedup TTL"},
		{"negative WaitReplicas", redisstore.Config{WaitReplicas: -1}, "WaitReplicas"},
		{"WAIT longer than a read", redisstore.Config{WaitReplicas: 1, WaitTimeout: 5 * time.Second, ReadTimeout: time.Second}, "WaitTimeout"},
		{"cluster without hash tag", redisstore.Config{Client: redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})}, "hash tag"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := redisstore.New(context.Background(), tc.cfg)
			if err == nil {
				_ = s.Close()
				t.Fatalf("New succeeded, want an error about %s", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: err = %v, want it to mention %s", err, tc.want)
			}
		})
	}
}

func TestUnavailable(t *testing.T) {
	tests := []struct {
		name string
		down func(*redisserver.Server) error
	}{
		{"graceful stop", (*redisserver.Server).Stop},
		{"crash", (*redisserver.Server).Kill},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := redisserver.Run(t, redisserver.Options{})
			s := newStore(t, redisstore.Config{Addr: srv.Addr(), ReadTimeout: time.Second, WriteTimeout: time.Second})
			ctx := context.Background()
			want := storetest.Event(1)
			if ok, err := s.Enqueue(ctx, "github:before", want); err != nil || !ok {
				t.Fatalf("Enqueue = %v, %v", ok, err)
			}
			if err := s.PutBuild(ctx, store.Build{Key: "b1", Pipeline: "build"}); err != nil {
				t.Fatalf("PutBuild: %v", err)
			}

			if err := tc.down(srv); err != nil {
				t.Fatalf("take redis down: %v", err)
			}
			calls := map[string]func() error{
				"Ping": func() error { return s.Ping(ctx) },
				"Enqueue": func() error {
					_, err := s.Enqueue(ctx, "github:during", storetest.Event(2))
					return err
				},
				"Claim": func() error {
					_, err := s.Claim(ctx, "c1", 1, time.Minute, 50*time.Millisecond)
					return err
				},
				"Pending": func() error {
					_, err := s.Pending(ctx)
					return err
				},
				"GetBuild": func() error {
					_, err := s.GetBuild(ctx, "b1")
					return err
				},
				"Ack": func() error { return s.Ack(ctx, "1-0") },
			}
			for name, call := range calls {
				err := call()
				if !errors.Is(err, store.ErrUnavailable) {
					t.Errorf("%s with redis down: err = %v, want ErrUnavailable", name, err)
				}
				if errors.Is(err, store.ErrNotFound) {
					t.Errorf("%s with redis down: err = %v is ErrNotFound", name, err)
				}
			}

			if err := srv.Start(); err != nil {
				t.Fatalf("start redis again: %v", err)
			}
			deadline := time.Now().Add(20 * time.Second)
			for {
				err := s.Ping(ctx)
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("Ping after restart still fails: %v", err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			// What was accepted before the outage is still there.
			if ok, err := s.Enqueue(ctx, "github:before", want); err != nil || ok {
				t.Errorf("Enqueue of a key seen before the outage = %v, %v; want false, nil", ok, err)
			}
			got, err := s.Claim(ctx, "c1", 10, time.Hour, time.Second)
			if err != nil {
				t.Fatalf("Claim after restart: %v", err)
			}
			if len(got) != 1 || got[0].Event.ID != want.ID {
				t.Fatalf("Claim after restart = %+v, want the event enqueued before the outage", got)
			}
			if b, err := s.GetBuild(ctx, "b1"); err != nil || b.Pipeline != "build" {
				t.Errorf("GetBuild after restart = %+v, %v", b, err)
			}
			if err := s.Ack(ctx, got[0].ID); err != nil {
				t.Errorf("Ack after restart: %v", err)
			}
		})
	}
}

func TestNewUnreachable(t *testing.T) {
	srv := redisserver.Run(t, redisserver.Options{})
	addr := srv.Addr()
	if err := srv.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	_, err := redisstore.New(context.Background(), redisstore.Config{Addr: addr, DialTimeout: time.Second, Logger: quietLogger()})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("New with redis down: err = %v, want ErrUnavailable", err)
	}
}

func TestPasswordStaysSecret(t *testing.T) {
	const secret = "correct-horse-battery-staple"
	srv := redisserver.Run(t, redisserver.Options{Password: secret})
	ctx := context.Background()

	tests := []struct {
		name     string
		password string
		wantErr  bool
	}{
		{"wrong password", "wrong-" + secret, true},
		{"no password", "", true},
		{"right password", secret, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := redisstore.Config{Addr: srv.Addr(), Password: tc.password, Prefix: uniquePrefix(), Logger: quietLogger()}
			for _, shown := range []string{cfg.String(), fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg)} {
				if tc.password != "" && strings.Contains(shown, tc.password) {
					t.Errorf("config printed with its password: %s", shown)
				}
			}
			var logged strings.Builder
			slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "redis", cfg)
			if tc.password != "" && strings.Contains(logged.String(), tc.password) {
				t.Errorf("config logged with its password: %s", logged.String())
			}

			s, err := redisstore.New(ctx, cfg)
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				_ = s.Close()
				return
			}
			if err == nil {
				_ = s.Close()
				t.Fatalf("New succeeded with %s", tc.name)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error contains the password: %v", err)
			}
			if !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("New with %s: err = %v, want ErrUnavailable", tc.name, err)
			}
		})
	}
}

func TestDeadLetter(t *testing.T) {
	srv := redisserver.Run(t, redisserver.Options{})
	ctx := context.Background()
	raw := rawClient(t, srv.Addr())
	prefix := uniquePrefix()
	s := newStore(t, redisstore.Config{Addr: srv.Addr(), Prefix: prefix})
	stream := prefix + "events"

	bad := []struct {
		name   string
		values []any
	}{
		{"invalid JSON", []any{"event", "{not json"}},
		{"no event field", []any{"payload", "{}"}},
	}
	badIDs := map[string]string{}
	for i, b := range bad {
		id, err := raw.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: b.values}).Result()
		if err != nil {
			t.Fatalf("XADD: %v", err)
		}
		badIDs[id] = b.name
		// A good entry after each bad one must still come through.
		if ok, err := s.Enqueue(ctx, fmt.Sprintf("k%d", i), storetest.Event(i)); err != nil || !ok {
			t.Fatalf("Enqueue = %v, %v", ok, err)
		}
	}

	got, err := s.Claim(ctx, "c1", 10, time.Hour, time.Second)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	if len(got) != 2 || got[0].Event.Number != 0 || got[1].Event.Number != 1 {
		t.Fatalf("Claim = %+v, want the two good events", got)
	}
	for _, e := range got {
		if _, isBad := badIDs[e.ID]; isBad {
			t.Errorf("Claim returned undecodable entry %s", e.ID)
		}
	}
	if n, err := s.Pending(ctx); err != nil || n != 2 {
		t.Errorf("Pending = %d, %v; want 2 (the bad entries are acknowledged)", n, err)
	}

	dead, err := raw.XRange(ctx, prefix+"events:dead", "-", "+").Result()
	if err != nil {
		t.Fatalf("XRANGE dead: %v", err)
	}
	if len(dead) != len(bad) {
		t.Fatalf("dead-letter stream has %d entries, want %d", len(dead), len(bad))
	}
	for _, d := range dead {
		id, _ := d.Values["id"].(string)
		if _, ok := badIDs[id]; !ok {
			t.Errorf("dead letter for %q, want one of the bad entries %v", id, badIDs)
		}
		if reason, _ := d.Values["error"].(string); reason == "" {
			t.Errorf("dead letter for %s has no error", id)
		}
		if badIDs[id] == "invalid JSON" && d.Values["event"] != "{not json" {
			t.Errorf("dead letter for %s kept payload %v, want the original", id, d.Values["event"])
		}
		if n, err := raw.XRange(ctx, stream, id, id).Result(); err != nil || len(n) != 0 {
			t.Errorf("bad entry %s still in the stream: %v, %v", id, n, err)
		}
	}
	// Nothing bad comes back later, reclaimed or new.
	again, err := s.Claim(ctx, "c2", 10, time.Millisecond, 0)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	for _, e := range again {
		if _, isBad := badIDs[e.ID]; isBad {
			t.Errorf("undecodable entry %s was handed out later", e.ID)
		}
	}
}

func TestGroupRecreated(t *testing.T) {
	srv := redisserver.Run(t, redisserver.Options{})
	ctx := context.Background()
	raw := rawClient(t, srv.Addr())
	prefix := uniquePrefix()
	s := newStore(t, redisstore.Config{Addr: srv.Addr(), Prefix: prefix})

	// The stream (and its group) vanishes, as after a FLUSHALL; an event
	// queued afterwards must still be delivered.
	if err := raw.Del(ctx, prefix+"events").Err(); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if ok, err := s.Enqueue(ctx, "k", storetest.Event(1)); err != nil || !ok {
		t.Fatalf("Enqueue = %v, %v", ok, err)
	}
	got, err := s.Claim(ctx, "c1", 10, time.Minute, time.Second)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("Claim returned %d entries, want 1", len(got))
	}
}

func TestCorruptBuildRecord(t *testing.T) {
	srv := redisserver.Run(t, redisserver.Options{})
	ctx := context.Background()
	raw := rawClient(t, srv.Addr())
	prefix := uniquePrefix()
	s := newStore(t, redisstore.Config{Addr: srv.Addr(), Prefix: prefix})

	if err := s.PutBuild(ctx, store.Build{Key: "good"}); err != nil {
		t.Fatalf("PutBuild: %v", err)
	}
	if err := raw.HSet(ctx, prefix+"builds", "bad", "{").Err(); err != nil {
		t.Fatalf("HSET: %v", err)
	}
	_, err := s.GetBuild(ctx, "bad")
	if err == nil || errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetBuild of a corrupt record: err = %v, want a decode error", err)
	}
	list, err := s.ListBuilds(ctx)
	if err != nil || len(list) != 1 || list[0].Key != "good" {
		t.Errorf("ListBuilds = %+v, %v; want only the good record", list, err)
	}
}

func TestWaitReplicas(t *testing.T) {
	// No diskless-sync delay: the replica syncs at once.
	primary := redisserver.Run(t, redisserver.Options{Args: []string{"--repl-diskless-sync-delay", "0"}})
	ctx := context.Background()

	t.Run("no replica", func(t *testing.T) {
		s := newStore(t, redisstore.Config{Addr: primary.Addr(), WaitReplicas: 1, WaitTimeout: 50 * time.Millisecond})
		ok, err := s.Enqueue(ctx, "k", storetest.Event(1))
		if ok || !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("Enqueue without a replica = %v, %v; want false, ErrUnavailable", ok, err)
		}
		// The entry is on the primary all the same; a redelivery is a
		// duplicate and the event is delivered once.
		ok, err = s.Enqueue(ctx, "k", storetest.Event(1))
		if ok {
			t.Errorf("redelivery after a failed WAIT = %v, %v; want a duplicate", ok, err)
		}
		if got, err := s.Claim(ctx, "c1", 10, time.Hour, 0); err != nil || len(got) != 1 {
			t.Errorf("Claim = %d entries, %v; want 1", len(got), err)
		}
		// The mark a dispatcher writes before calling Jenkins waits like an
		// entry (a failover must not lose it); later records do not.
		pending := store.Build{Key: "ev/app", Pipeline: "app", Job: "app", Attempted: time.Now()}
		if err := s.PutBuild(ctx, pending); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("PutBuild of a pending record without a replica = %v; want ErrUnavailable", err)
		}
		triggered := pending
		triggered.QueueID, triggered.TriggeredAt = 7, time.Now()
		if err := s.PutBuild(ctx, triggered); err != nil {
			t.Errorf("PutBuild of a triggered record without a replica = %v; want nil (only the pending mark waits)", err)
		}
	})

	t.Run("with a replica", func(t *testing.T) {
		replica := redisserver.Run(t, redisserver.Options{Args: []string{"--replicaof", "127.0.0.1", fmt.Sprint(primary.Port())}})
		raw := rawClient(t, primary.Addr())
		deadline := time.Now().Add(20 * time.Second)
		for {
			info, err := raw.Info(ctx, "replication").Result()
			if err == nil && strings.Contains(info, "connected_slaves:1") && strings.Contains(info, "state=online") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %s did not come online: %s %v", replica.Addr(), info, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		s := newStore(t, redisstore.Config{Addr: primary.Addr(), WaitReplicas: 1, WaitTimeout: 2 * time.Second})
		ok, err := s.Enqueue(ctx, "k", storetest.Event(1))
		if err != nil || !ok {
			t.Fatalf("Enqueue with a replica = %v, %v; want true, nil", ok, err)
		}
		if ok, err := s.Enqueue(ctx, "k", storetest.Event(1)); err != nil || ok {
			t.Errorf("duplicate Enqueue = %v, %v; want false, nil", ok, err)
		}
		if err := s.PutBuild(ctx, store.Build{Key: "ev/app", Pipeline: "app", Job: "app", Attempted: time.Now()}); err != nil {
			t.Errorf("PutBuild of a pending record with a replica = %v; want nil", err)
		}
	})
}

func TestInjectedClientIsNotClosed(t *testing.T) {
	srv := redisserver.Run(t, redisserver.Options{})
	client := rawClient(t, srv.Addr())
	s := newStore(t, redisstore.Config{Client: client})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := client.Ping(context.Background()).Err(); err != nil {
		t.Errorf("injected client after Store.Close: %v", err)
	}
}

func BenchmarkEnqueue(b *testing.B) {
	srv := redisserver.Run(b, redisserver.Options{Args: []string{"--appendfsync", "everysec"}})
	s := newStore(b, redisstore.Config{Addr: srv.Addr()})
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
