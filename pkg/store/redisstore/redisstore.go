// Package redisstore is the Redis store.Store that ferry runs on in
// production: several replicas share one queue through a consumer group.
//
// # Layout
//
// Every key is under Config.Prefix (default "ferry:"):
//
//	ferry:events        stream of queued events, one field "event" = JSON
//	ferry:events:dead   entries whose payload could not be decoded
//	ferry:dedup:<key>   delivery de-duplication keys, with a TTL
//	ferry:builds        hash of build records, key -> JSON
//	ferry:dlv:r:<id>    one delivery record (JSON), expiring after the retention
//	ferry:dlv:all       sorted set of record ids by time (µs), capped
//	ferry:dlv:repo:<r>, ferry:dlv:ref:<r>, ferry:dlv:sha:<s>, ferry:dlv:id:<d>
//	                    the same, per repository, ref, commit and delivery id
//	ferry:dlv:trail:<e> hash of an event's build trails, pipeline -> JSON
//	ferry:mark:<key>    MarkOnce marks, with a TTL
//
// The consumer group (Config.Group, default "ferry-dispatch") is created on
// the stream at start. Enqueue is one Lua script: it refuses a dedup key that
// exists, else adds the entry and sets the key, so a redelivery can never
// slip in between. Acknowledged entries are deleted from the stream (XACK and
// XDEL in one MULTI); the stream is never trimmed, so an unacknowledged entry
// is never lost.
//
// # Durability
//
// "202 Accepted means durable" holds only if Redis persists writes before
// they can be lost: run it with the append-only file on (appendonly yes) and
// appendfsync always (nothing acknowledged is lost) or everysec (at most
// about a second of writes is lost on a crash of the host). A replica adds
// safety against losing the host: set Config.WaitReplicas so Enqueue waits
// (WAIT) until that many replicas have the entry, and fails with
// store.ErrUnavailable when they do not confirm in time. PutBuild waits the
// same way for a pending build record (the mark a dispatcher writes before
// it calls Jenkins), so a failover cannot lose both the stream entry's
// delivery state and that mark and let the event be triggered twice.
//
// # Redis Cluster
//
// Enqueue and Ack touch several keys in one step, which Redis Cluster allows
// only within one hash slot: give a cluster client a prefix with a hash tag,
// such as "{ferry}:". WaitReplicas is for a single primary (standalone or
// Sentinel) only.
//
// # Errors
//
// Every error caused by Redis being unreachable, timing out, loading, read
// only or refusing the credentials wraps store.ErrUnavailable. Errors never
// contain the password.
package redisstore

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ferryci/ferry/pkg/event"
	"github.com/ferryci/ferry/pkg/store"
)

// Defaults for Config.
const (
	DefaultAddr         = "127.0.0.1:6379"
	DefaultPrefix       = "ferry:"
	DefaultGroup        = "ferry-dispatch"
	DefaultDialTimeout  = 5 * time.Second
	DefaultReadTimeout  = 3 * time.Second
	DefaultWriteTimeout = 3 * time.Second
	DefaultWaitTimeout  = time.Second
)

// blockChunk bounds one blocking XREADGROUP. go-redis cannot abort a
// blocking read when its context is cancelled, so a long block is waited for
// in chunks, checking the context between them: a cancelled Claim returns
// within a chunk and never leaves a read behind that would take entries
// nobody receives.
const blockChunk = 250 * time.Millisecond

// deadlineMargin is kept between the end of a blocking read and the
// caller's context deadline for the answer to arrive.
const deadlineMargin = 50 * time.Millisecond

// deadLetterMaxLen caps the dead-letter stream (approximately); it only
// keeps undecodable payloads for inspection.
const deadLetterMaxLen = 10000

// maxAutoClaimRounds bounds the XAUTOCLAIM scan of one Claim.
const maxAutoClaimRounds = 16

// Config configures a Store. Only Addr (or Client) matters for a plain
// local Redis; everything else has a default.
type Config struct {
	// Addr is the Redis host:port; default DefaultAddr.
	Addr string
	// Username and Password authenticate (ACL user or requirepass). The
	// password never appears in errors or logs.
	Username string
	Password string
	// DB selects the logical database.
	DB int
	// TLS, when set, makes connections use TLS with this configuration.
	TLS *tls.Config
	// Prefix starts every key; default DefaultPrefix.
	Prefix string
	// Group is the consumer group of the dispatchers; default DefaultGroup.
	Group string
	// DedupTTL is how long a dedup key is remembered; default
	// store.DefaultDedupTTL, at least store.MinDedupTTL.
	DedupTTL time.Duration
	// WaitReplicas, when above 0, makes Enqueue wait until that many
	// replicas acknowledged the entry (WAIT), at most WaitTimeout.
	WaitReplicas int
	// WaitTimeout bounds that wait; default DefaultWaitTimeout.
	WaitTimeout time.Duration
	// DialTimeout, ReadTimeout and WriteTimeout bound each connection
	// attempt and command; defaults DefaultDialTimeout, DefaultReadTimeout,
	// DefaultWriteTimeout. A blocking Claim adds its block time.
	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// SentinelMasterName and SentinelAddrs, when SentinelAddrs is set,
	// make the store find the primary through Redis Sentinel (Addr is then
	// ignored) and follow its fail-overs. SentinelUsername and
	// SentinelPassword authenticate to the sentinels themselves; Username
	// and Password still authenticate to the data servers.
	SentinelMasterName string
	SentinelAddrs      []string
	SentinelUsername   string
	SentinelPassword   string
	// ClusterAddrs, when set, make the store a Redis Cluster client seeded
	// with these nodes (Addr and DB are then ignored); Prefix must carry a
	// hash tag.
	ClusterAddrs []string
	// Client, when set, is used instead of a client built from the fields
	// above (Addr, Username, Password, DB, TLS and the timeouts are then
	// ignored). Close does not close an injected client.
	Client redis.UniversalClient
	// Logger receives the store's logs; default slog.Default().
	Logger *slog.Logger
	// DeliveryRetention and DeliveryMax bound the delivery log (by age
	// and count); defaults store.DefaultDeliveryRetention and
	// store.DefaultDeliveryMax.
	DeliveryRetention time.Duration
	DeliveryMax       int
	// Now is the clock the delivery log's retention is measured with;
	// default time.Now. (Keys still expire by Redis' clock.)
	Now func() time.Time
}

// Where says which Redis the configuration reaches, for messages: the
// address, the sentinels and their master name, or the cluster's seeds.
func (c Config) Where() string {
	switch {
	case len(c.ClusterAddrs) > 0:
		return "cluster " + strings.Join(c.ClusterAddrs, ",")
	case len(c.SentinelAddrs) > 0:
		return fmt.Sprintf("primary %q of sentinels %s", c.SentinelMasterName, strings.Join(c.SentinelAddrs, ","))
	}
	return c.Addr
}

// String describes the configuration without the passwords.
func (c Config) String() string {
	return fmt.Sprintf("redis %s db=%d user=%q password-set=%t tls=%t prefix=%q group=%q",
		c.Where(), c.DB, c.Username, c.Password != "", c.TLS != nil, c.Prefix, c.Group)
}

// LogValue makes slog log the configuration without the password.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("addr", c.Where()),
		slog.Int("db", c.DB),
		slog.String("username", c.Username),
		slog.Bool("password_set", c.Password != ""),
		slog.Bool("tls", c.TLS != nil),
		slog.String("prefix", c.Prefix),
		slog.String("group", c.Group),
	)
}

// Store is the Redis store.Store. It is safe for concurrent use.
type Store struct {
	client     redis.UniversalClient
	ownsClient bool
	log        *slog.Logger

	group        string
	stream       string
	deadStream   string
	builds       string
	promos       string
	promoRevs    string
	refs         string
	refRevs      string
	keyPrefix    string // ClaimKey's keys
	usagePrefix  string // AddAgentUsage's keys (usage.go)
	dedupPrefix  string
	leasePrefix  string
	dedupSeconds int64
	waitReplicas int
	waitTimeout  time.Duration
	batchTimeout time.Duration
	batch        *batcher
	records      *recordBatcher
	dlv          deliveryKeys
}

var _ store.Store = (*Store)(nil)

// enqueueScript adds an event unless its dedup key exists. The entry is
// added before the key is set so that a failure in between can at worst
// queue an event twice (the dispatcher's Jenkins check catches that), never
// take the key without queueing the event.
//
// KEYS[1] dedup key, KEYS[2] stream; ARGV[1] TTL seconds, ARGV[2] payload.
// Returns the entry id, or nil for a duplicate.
var enqueueScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  return false
end
local id = redis.call('XADD', KEYS[2], '*', 'event', ARGV[2])
redis.call('SET', KEYS[1], id, 'EX', ARGV[1])
return id
`)

// touchScript resets the idle time of the entries that consumer still holds
// and returns the ids it does not hold, so a slow consumer cannot take back
// an entry another consumer reclaimed.
//
// KEYS[1] stream; ARGV[1] group, ARGV[2] consumer, ARGV[3...] ids.
var touchScript = redis.NewScript(`
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 1 and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
`)

// putPromotionScript writes a promotion record only if its stored revision
// is the one the caller read, so the promoter and the API (on any replica)
// never overwrite each other's changes.
//
// KEYS[1] records hash, KEYS[2] revisions hash; ARGV[1] id, ARGV[2]
// expected revision, ARGV[3] new revision, ARGV[4] record.
// Returns the stored revision when it differs, or -1 after writing.
var putPromotionScript = redis.NewScript(`
local cur = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if cur ~= tonumber(ARGV[2]) then
  return cur
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return -1
`)

// New connects to Redis, checks that it answers and creates the consumer
// group (and the stream) if they do not exist.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.Group == "" {
		cfg.Group = DefaultGroup
	}
	if cfg.DedupTTL == 0 {
		cfg.DedupTTL = store.DefaultDedupTTL
	}
	if cfg.DedupTTL < store.MinDedupTTL {
		return nil, fmt.Errorf("redis store: dedup TTL %s is below the minimum %s (GitHub redelivers for 3 days)", cfg.DedupTTL, store.MinDedupTTL)
	}
	if cfg.WaitReplicas < 0 {
		return nil, fmt.Errorf("redis store: WaitReplicas %d is negative", cfg.WaitReplicas)
	}
	if cfg.WaitTimeout <= 0 {
		cfg.WaitTimeout = DefaultWaitTimeout
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.Client == nil && cfg.WaitReplicas > 0 && cfg.WaitTimeout >= cfg.ReadTimeout {
		return nil, fmt.Errorf("redis store: WaitTimeout %s must be below ReadTimeout %s", cfg.WaitTimeout, cfg.ReadTimeout)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DeliveryRetention <= 0 {
		cfg.DeliveryRetention = store.DefaultDeliveryRetention
	}
	if cfg.DeliveryMax <= 0 {
		cfg.DeliveryMax = store.DefaultDeliveryMax
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.SentinelAddrs) > 0 && len(cfg.ClusterAddrs) > 0 {
		return nil, errors.New("redis store: set SentinelAddrs or ClusterAddrs, not both")
	}
	if len(cfg.SentinelAddrs) > 0 && cfg.SentinelMasterName == "" {
		return nil, errors.New("redis store: SentinelAddrs need SentinelMasterName, the name the sentinels monitor")
	}
	if _, ok := cfg.Client.(*redis.ClusterClient); ok || (cfg.Client == nil && len(cfg.ClusterAddrs) > 0) {
		if !hasHashTag(cfg.Prefix) {
			return nil, fmt.Errorf("redis store: prefix %q has no hash tag; a cluster needs one such as \"{ferry}:\" so the queue's keys share a slot", cfg.Prefix)
		}
		if cfg.WaitReplicas > 0 {
			return nil, errors.New("redis store: WaitReplicas is not supported with a cluster client")
		}
	}

	owned := cfg.Client == nil
	if owned {
		cfg.Client = newClient(cfg)
	}
	s := &Store{
		client:       cfg.Client,
		log:          cfg.Logger.With("component", "store", "store", "redis"),
		group:        cfg.Group,
		stream:       cfg.Prefix + "events",
		deadStream:   cfg.Prefix + "events:dead",
		builds:       cfg.Prefix + "builds",
		promos:       cfg.Prefix + "promotions",
		promoRevs:    cfg.Prefix + "promotions:rev",
		refs:         cfg.Prefix + "refs",
		refRevs:      cfg.Prefix + "refs:rev",
		keyPrefix:    cfg.Prefix + "key:",
		usagePrefix:  cfg.Prefix + "usage:",
		dedupPrefix:  cfg.Prefix + "dedup:",
		leasePrefix:  cfg.Prefix + "lease:",
		dedupSeconds: int64(math.Ceil(cfg.DedupTTL.Seconds())),
		waitReplicas: cfg.WaitReplicas,
		waitTimeout:  cfg.WaitTimeout,
		batchTimeout: batchTimeoutFor(cfg.ReadTimeout, cfg.WriteTimeout),
		dlv:          newDeliveryKeys(cfg.Prefix, cfg.DeliveryRetention, cfg.DeliveryMax, cfg.Now),
	}
	s.ownsClient = owned
	if err := s.Ping(ctx); err != nil {
		s.closeOwned()
		return nil, fmt.Errorf("connect to redis at %s: %w", cfg.Where(), err)
	}
	if err := s.createGroup(ctx); err != nil {
		s.closeOwned()
		return nil, err
	}
	s.batch = newBatcher(s)
	s.records = newRecordBatcher(s.client)
	return s, nil
}

// newClient builds the client cfg describes: a cluster client, a Sentinel
// (fail-over) client or a plain one.
func newClient(cfg Config) redis.UniversalClient {
	// Commands are retried (MaxRetries) and each retry dials again; dial
	// retries on top of that only delay the 503 that a webhook sender
	// needs quickly when Redis is down.
	const dialerRetries = 1
	switch {
	case len(cfg.ClusterAddrs) > 0:
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: cfg.ClusterAddrs, Username: cfg.Username, Password: cfg.Password, TLSConfig: cfg.TLS,
			DialTimeout: cfg.DialTimeout, ReadTimeout: cfg.ReadTimeout, WriteTimeout: cfg.WriteTimeout,
			ContextTimeoutEnabled: true, DialerRetries: dialerRetries,
		})
	case len(cfg.SentinelAddrs) > 0:
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: cfg.SentinelMasterName, SentinelAddrs: cfg.SentinelAddrs,
			SentinelUsername: cfg.SentinelUsername, SentinelPassword: cfg.SentinelPassword,
			Username: cfg.Username, Password: cfg.Password, DB: cfg.DB, TLSConfig: cfg.TLS,
			DialTimeout: cfg.DialTimeout, ReadTimeout: cfg.ReadTimeout, WriteTimeout: cfg.WriteTimeout,
			ContextTimeoutEnabled: true, DialerRetries: dialerRetries,
		})
	}
	return redis.NewClient(&redis.Options{
		Addr: cfg.Addr, Username: cfg.Username, Password: cfg.Password, DB: cfg.DB, TLSConfig: cfg.TLS,
		DialTimeout: cfg.DialTimeout, ReadTimeout: cfg.ReadTimeout, WriteTimeout: cfg.WriteTimeout,
		ContextTimeoutEnabled: true, DialerRetries: dialerRetries,
	})
}

func hasHashTag(prefix string) bool {
	open := strings.IndexByte(prefix, '{')
	return open >= 0 && strings.IndexByte(prefix[open:], '}') > 1
}

// createGroup creates the consumer group from the start of the stream, so
// entries queued while the group did not exist are delivered too (the
// stream only holds unacknowledged entries).
func (s *Store) createGroup(ctx context.Context) error {
	err := s.client.XGroupCreateMkStream(ctx, s.stream, s.group, "0").Err()
	if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
		return wrap(fmt.Sprintf("create consumer group %s on %s", s.group, s.stream), err)
	}
	return nil
}

// withGroup runs fn and, if the consumer group is gone (the stream was
// deleted or Redis lost its data), creates it and runs fn once more.
func (s *Store) withGroup(ctx context.Context, fn func() error) error {
	err := fn()
	if err == nil || !redis.HasErrorPrefix(err, "NOGROUP") {
		return err
	}
	s.log.Warn("consumer group missing, creating it again", "stream", s.stream, "group", s.group)
	if err := s.createGroup(ctx); err != nil {
		return err
	}
	return fn()
}

// wrap says what was being done and marks unavailability. A cancelled
// context is the caller giving up, not Redis failing, so it is not
// ErrUnavailable.
func wrap(doing string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || !unavailable(err) {
		return fmt.Errorf("%s: %w", doing, err)
	}
	return fmt.Errorf("%s: %w: %w", doing, store.ErrUnavailable, err)
}

// unavailable tells errors of Redis not being able to serve now from
// answers about the request itself (a wrong type, a missing group, a script
// error).
func unavailable(err error) bool {
	if errors.Is(err, redis.Nil) {
		return false
	}
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		// Dial and I/O errors, timeouts, a closed client or pool.
		return true
	}
	return redis.IsLoadingError(err) || redis.IsReadOnlyError(err) ||
		redis.IsClusterDownError(err) || redis.IsTryAgainError(err) ||
		redis.IsMasterDownError(err) || redis.IsMaxClientsError(err) ||
		redis.IsAuthError(err) || redis.IsPermissionError(err) ||
		redis.IsOOMError(err) || redis.IsNoReplicasError(err) ||
		redis.HasErrorPrefix(err, "BUSY ") || redis.HasErrorPrefix(err, "MISCONF")
}

// Enqueue implements store.Store.
func (s *Store) Enqueue(ctx context.Context, dedupKey string, ev event.Event) (bool, error) {
	if dedupKey == "" {
		return false, errors.New("enqueue event: empty dedup key")
	}
	doing := "enqueue event " + ev.ID
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("%s: %w", doing, err)
	}
	payload, err := ev.Marshal()
	if err != nil {
		return false, fmt.Errorf("%s: %w", doing, err)
	}
	keys := []string{s.dedupPrefix + dedupKey, s.stream}
	if s.waitReplicas > 0 {
		return s.enqueueAndWait(ctx, doing, keys, payload)
	}
	err = s.batch.do(ctx, keys, payload)
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, wrap(doing, err)
	}
	return true, nil
}

// enqueueAndWait runs the script and WAIT on one connection: WAIT counts
// the replicas that have every write of its own connection.
func (s *Store) enqueueAndWait(ctx context.Context, doing string, keys []string, payload []byte) (bool, error) {
	run := func(useSHA bool) (*redis.Cmd, *redis.Cmd, error) {
		var script, wait *redis.Cmd
		_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			if useSHA {
				script = enqueueScript.EvalSha(ctx, p, keys, s.dedupSeconds, payload)
			} else {
				script = enqueueScript.Eval(ctx, p, keys, s.dedupSeconds, payload)
			}
			wait = p.Do(ctx, "wait", s.waitReplicas, ceilMs(s.waitTimeout).Milliseconds())
			return nil
		})
		return script, wait, err
	}
	script, wait, err := run(true)
	if redis.HasErrorPrefix(script.Err(), "NOSCRIPT") {
		script, wait, err = run(false)
	}
	if errors.Is(script.Err(), redis.Nil) {
		return false, nil
	}
	if err := script.Err(); err != nil {
		return false, wrap(doing, err)
	}
	if err != nil {
		return false, wrap(doing, err)
	}
	if err := s.replicated(doing, "entry", wait); err != nil {
		return false, err
	}
	return true, nil
}

// replicated reads the answer of a WAIT pipelined after a write: nil when
// WaitReplicas replicas confirmed it, else an error wrapping
// store.ErrUnavailable that names what was written.
func (s *Store) replicated(doing, what string, wait *redis.Cmd) error {
	acked, err := wait.Int64()
	if err != nil {
		return wrap(doing+": wait for replicas", err)
	}
	if acked < int64(s.waitReplicas) {
		return fmt.Errorf("%s: only %d of %d replicas confirmed the %s within %s: %w",
			doing, acked, s.waitReplicas, what, s.waitTimeout, store.ErrUnavailable)
	}
	return nil
}

// Claim implements store.Store. Reclaimed entries come from XAUTOCLAIM and
// new ones from XREADGROUP; entries whose payload cannot be decoded are
// moved to the dead-letter stream, acknowledged and logged instead of being
// returned.
func (s *Store) Claim(ctx context.Context, consumer string, max int, minIdle, block time.Duration) ([]store.Entry, error) {
	if consumer == "" {
		return nil, errors.New("claim entries: empty consumer name")
	}
	if max < 1 {
		return nil, fmt.Errorf("claim entries: max %d, want at least 1", max)
	}
	doing := "claim entries for " + consumer
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", doing, err)
	}
	var out []store.Entry
	if minIdle > 0 {
		reclaimed, err := s.reclaim(ctx, consumer, max, minIdle)
		if err != nil {
			return nil, wrap(doing, err)
		}
		out = reclaimed
	}
	if len(out) >= max {
		return out, nil
	}
	if len(out) > 0 {
		block = 0
	}
	fresh, err := s.readNew(ctx, consumer, max-len(out), block)
	if err != nil {
		if len(out) > 0 {
			// The reclaimed entries are this consumer's now; hand them
			// out, the error will show again on the next Claim.
			s.log.Warn("reading new entries failed after reclaiming some", "consumer", consumer, "error", err)
			return out, nil
		}
		return nil, wrap(doing, err)
	}
	return append(out, fresh...), nil
}

// reclaim takes over entries idle for at least minIdle.
func (s *Store) reclaim(ctx context.Context, consumer string, max int, minIdle time.Duration) ([]store.Entry, error) {
	var msgs []redis.XMessage
	err := s.withGroup(ctx, func() error {
		msgs = msgs[:0]
		start := "0-0"
		for range maxAutoClaimRounds {
			got, next, err := s.client.XAutoClaim(ctx, &redis.XAutoClaimArgs{
				Stream:   s.stream,
				Group:    s.group,
				Consumer: consumer,
				MinIdle:  ceilMs(minIdle),
				Start:    start,
				Count:    int64(max - len(msgs)),
			}).Result()
			if err != nil {
				return err
			}
			msgs = append(msgs, got...)
			if next == "0-0" || next == "" || len(msgs) >= max {
				return nil
			}
			start = next
		}
		return nil
	})
	if err != nil || len(msgs) == 0 {
		return nil, err
	}
	// XAUTOCLAIM counted this delivery; XPENDING tells the count.
	deliveries, err := s.deliveryCounts(ctx, msgs)
	if err != nil {
		// The entries are claimed; without the count they would be
		// handed out as first deliveries, so let them be reclaimed again.
		return nil, err
	}
	return s.decode(ctx, consumer, msgs, deliveries), nil
}

// Held implements store.Store with XREADGROUP from an explicit id, which
// reads the consumer's own pending entries and counts a delivery of each.
func (s *Store) Held(ctx context.Context, consumer, after string, max int) ([]store.Entry, error) {
	if consumer == "" {
		return nil, errors.New("list held entries: empty consumer name")
	}
	if max < 1 {
		return nil, fmt.Errorf("list held entries: max %d, want at least 1", max)
	}
	if after == "" {
		after = "0"
	}
	doing := "list entries held by " + consumer
	var msgs []redis.XMessage
	err := s.withGroup(ctx, func() error {
		streams, err := s.client.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: s.group, Consumer: consumer, Streams: []string{s.stream, after}, Count: int64(max), Block: -1,
		}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		msgs = msgs[:0]
		for _, st := range streams {
			msgs = append(msgs, st.Messages...)
		}
		return nil
	})
	if err != nil {
		return nil, wrap(doing, err)
	}
	if len(msgs) == 0 {
		return nil, nil
	}
	deliveries, err := s.deliveryCounts(ctx, msgs)
	if err != nil {
		return nil, wrap(doing, err)
	}
	return s.decode(ctx, consumer, msgs, deliveries), nil
}

// deliveryCounts reads how often each message was delivered (at least 2:
// they were all handed out before).
func (s *Store) deliveryCounts(ctx context.Context, msgs []redis.XMessage) ([]int64, error) {
	counts := make([]*redis.XPendingExtCmd, len(msgs))
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, m := range msgs {
			counts[i] = p.XPendingExt(ctx, &redis.XPendingExtArgs{
				Stream: s.stream, Group: s.group, Start: m.ID, End: m.ID, Count: 1,
			})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read delivery counts: %w", err)
	}
	deliveries := make([]int64, len(msgs))
	for i, c := range counts {
		deliveries[i] = 2
		if p := c.Val(); len(p) == 1 && p[0].RetryCount > 0 {
			deliveries[i] = p[0].RetryCount
		}
	}
	return deliveries, nil
}

// readNew reads entries never delivered, waiting up to block.
func (s *Store) readNew(ctx context.Context, consumer string, max int, block time.Duration) ([]store.Entry, error) {
	deadline := time.Now().Add(block)
	for {
		wait := time.Duration(-1) // no BLOCK argument: return at once
		if remaining := time.Until(deadline); block > 0 && remaining > 0 {
			wait = ceilMs(min(remaining, blockChunk))
			// End the read before ctx's deadline, so the answer is
			// received rather than cut off with entries in flight.
			if d, ok := ctx.Deadline(); ok {
				if left := time.Until(d) - deadlineMargin; left < wait {
					wait = -1
					if left >= time.Millisecond {
						wait = ceilMs(left)
					}
				}
			}
		}
		var streams []redis.XStream
		err := s.withGroup(ctx, func() error {
			var err error
			streams, err = s.client.XReadGroup(ctx, &redis.XReadGroupArgs{
				Group:    s.group,
				Consumer: consumer,
				Streams:  []string{s.stream, ">"},
				Count:    int64(max),
				Block:    wait,
			}).Result()
			return err
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		var msgs []redis.XMessage
		for _, st := range streams {
			msgs = append(msgs, st.Messages...)
		}
		if len(msgs) > 0 {
			deliveries := make([]int64, len(msgs))
			for i := range deliveries {
				deliveries[i] = 1 // ">" only returns entries never delivered
			}
			if out := s.decode(ctx, consumer, msgs, deliveries); len(out) > 0 {
				return out, nil
			}
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if wait < 0 || time.Until(deadline) <= 0 {
			return nil, nil
		}
	}
}

// ceilMs rounds d up to whole milliseconds, Redis' unit, so a positive
// duration never becomes 0 (which means "forever" for BLOCK).
func ceilMs(d time.Duration) time.Duration {
	if r := d % time.Millisecond; r != 0 {
		d += time.Millisecond - r
	}
	return d
}

// decode turns stream messages into entries and dead-letters those that
// cannot be decoded.
func (s *Store) decode(ctx context.Context, consumer string, msgs []redis.XMessage, deliveries []int64) []store.Entry {
	out := make([]store.Entry, 0, len(msgs))
	for i, m := range msgs {
		raw, ok := m.Values["event"].(string)
		if !ok {
			s.deadLetter(ctx, consumer, m, errors.New("entry has no event field"))
			continue
		}
		ev, err := event.Unmarshal([]byte(raw))
		if err != nil {
			s.deadLetter(ctx, consumer, m, err)
			continue
		}
		out = append(out, store.Entry{ID: m.ID, Event: ev, Deliveries: deliveries[i]})
	}
	return out
}

// deadLetter moves an undecodable entry to the dead-letter stream and
// acknowledges it, in one MULTI, so it is neither lost nor retried forever.
// If that fails the entry stays pending and is tried again once reclaimed.
func (s *Store) deadLetter(ctx context.Context, consumer string, m redis.XMessage, reason error) {
	fields := []any{"id", m.ID, "error", reason.Error(), "consumer", consumer}
	if raw, ok := m.Values["event"].(string); ok {
		fields = append(fields, "event", raw)
	}
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.XAdd(ctx, &redis.XAddArgs{
			Stream: s.deadStream, MaxLen: deadLetterMaxLen, Approx: true, Values: fields,
		})
		p.XAck(ctx, s.stream, s.group, m.ID)
		p.XDel(ctx, s.stream, m.ID)
		return nil
	})
	if err != nil {
		s.log.Error("could not move an undecodable entry to the dead-letter stream; it stays pending",
			"entry", m.ID, "reason", reason, "error", err)
		return
	}
	s.log.Error("moved an undecodable entry to the dead-letter stream",
		"entry", m.ID, "dead_letter_stream", s.deadStream, "reason", reason)
}

// Touch implements store.Store.
func (s *Store) Touch(ctx context.Context, consumer string, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	doing := "touch entries of " + consumer
	args := make([]any, 0, 2+len(ids))
	args = append(args, s.group, consumer)
	for _, id := range ids {
		args = append(args, id)
	}
	var lost []string
	err := s.withGroup(ctx, func() error {
		var err error
		lost, err = touchScript.Run(ctx, s.client, []string{s.stream}, args...).StringSlice()
		return err
	})
	if err != nil {
		return wrap(doing, err)
	}
	if len(lost) > 0 {
		return fmt.Errorf("%s: entries %s: %w", doing, strings.Join(lost, ", "), store.ErrNotOwned)
	}
	return nil
}

// Ack implements store.Store.
func (s *Store) Ack(ctx context.Context, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.XAck(ctx, s.stream, s.group, ids...)
		p.XDel(ctx, s.stream, ids...)
		return nil
	})
	if err != nil && !redis.HasErrorPrefix(err, "NOGROUP") {
		return wrap("ack entries", err)
	}
	return nil
}

// Pending implements store.Store.
func (s *Store) Pending(ctx context.Context) (int64, error) {
	var n int64
	err := s.withGroup(ctx, func() error {
		p, err := s.client.XPending(ctx, s.stream, s.group).Result()
		if err != nil {
			return err
		}
		n = p.Count
		return nil
	})
	if err != nil {
		return 0, wrap("count pending entries", err)
	}
	return n, nil
}

// PutBuild implements store.Store.
func (s *Store) PutBuild(ctx context.Context, b store.Build) error {
	if b.Key == "" {
		return errors.New("put build: empty key")
	}
	raw, err := jsonMarshal(b)
	if err != nil {
		return fmt.Errorf("put build %s: %w", b.Key, err)
	}
	doing := "put build " + b.Key
	if s.waitReplicas == 0 || !b.Pending() {
		return wrap(doing, s.client.HSet(ctx, s.builds, b.Key, raw).Err())
	}
	// A pending record is the dispatcher's mark that it is about to call
	// Jenkins: whoever handles the event after a failover must find it
	// and search Jenkins instead of triggering again. The stream entry's
	// delivery count is not replicated synchronously, so this record is
	// what survives a failover: it is written to WaitReplicas replicas
	// before the trigger, like an enqueued entry.
	var wait *redis.Cmd
	_, err = s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, s.builds, b.Key, raw)
		wait = p.Do(ctx, "wait", s.waitReplicas, ceilMs(s.waitTimeout).Milliseconds())
		return nil
	})
	if err != nil {
		return wrap(doing, err)
	}
	return s.replicated(doing, "record", wait)
}

// GetBuild implements store.Store.
func (s *Store) GetBuild(ctx context.Context, key string) (store.Build, error) {
	raw, err := s.client.HGet(ctx, s.builds, key).Result()
	if errors.Is(err, redis.Nil) {
		return store.Build{}, fmt.Errorf("get build %s: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return store.Build{}, wrap("get build "+key, err)
	}
	b, err := decodeBuild(raw)
	if err != nil {
		return store.Build{}, fmt.Errorf("decode build %s: %w", key, err)
	}
	return b, nil
}

// ListBuilds implements store.Store; records come sorted by key. A record
// that cannot be decoded is logged and left out, so one bad record cannot
// stop the reporting of all the others.
func (s *Store) ListBuilds(ctx context.Context) ([]store.Build, error) {
	all, err := s.client.HGetAll(ctx, s.builds).Result()
	if err != nil {
		return nil, wrap("list builds", err)
	}
	out := make([]store.Build, 0, len(all))
	for key, raw := range all {
		b, err := decodeBuild(raw)
		if err != nil {
			s.log.Error("skipping a build record that cannot be decoded", "build", key, "hash", s.builds, "error", err)
			continue
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b store.Build) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// DeleteBuild implements store.Store.
func (s *Store) DeleteBuild(ctx context.Context, key string) error {
	return wrap("delete build "+key, s.client.HDel(ctx, s.builds, key).Err())
}

// PutPromotion implements store.Store.
func (s *Store) PutPromotion(ctx context.Context, p store.Promotion) (store.Promotion, error) {
	if p.ID == "" {
		return store.Promotion{}, errors.New("put promotion: empty id")
	}
	expected := p.Revision
	p.Revision++
	raw, err := json.Marshal(p)
	if err != nil {
		return store.Promotion{}, fmt.Errorf("put promotion %s: %w", p.ID, err)
	}
	cur, err := putPromotionScript.Run(ctx, s.client, []string{s.promos, s.promoRevs},
		p.ID, expected, p.Revision, string(raw)).Int64()
	if err != nil {
		return store.Promotion{}, wrap("put promotion "+p.ID, err)
	}
	if cur != -1 {
		return store.Promotion{}, fmt.Errorf("put promotion %s at revision %d (stored: %d): %w", p.ID, expected, cur, store.ErrConflict)
	}
	return p, nil
}

// GetPromotion implements store.Store.
func (s *Store) GetPromotion(ctx context.Context, id string) (store.Promotion, error) {
	raw, err := s.client.HGet(ctx, s.promos, id).Result()
	if errors.Is(err, redis.Nil) {
		return store.Promotion{}, fmt.Errorf("get promotion %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Promotion{}, wrap("get promotion "+id, err)
	}
	var p store.Promotion
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		return store.Promotion{}, fmt.Errorf("decode promotion %s: %w", id, err)
	}
	return p, nil
}

// ListPromotions implements store.Store. A record that cannot be decoded
// is logged and left out.
func (s *Store) ListPromotions(ctx context.Context) ([]store.Promotion, error) {
	all, err := s.client.HGetAll(ctx, s.promos).Result()
	if err != nil {
		return nil, wrap("list promotions", err)
	}
	out := make([]store.Promotion, 0, len(all))
	for id, raw := range all {
		var p store.Promotion
		if err := json.Unmarshal([]byte(raw), &p); err != nil {
			s.log.Error("skipping a promotion record that cannot be decoded", "promotion", id, "hash", s.promos, "error", err)
			continue
		}
		out = append(out, p)
	}
	store.SortPromotions(out)
	return out, nil
}

// PutRef implements store.Store with the promotions' revision check.
func (s *Store) PutRef(ctx context.Context, r store.RefState) (store.RefState, error) {
	if r.Key == "" {
		return store.RefState{}, errors.New("put ref state: empty key")
	}
	expected := r.Revision
	r.Revision++
	raw, err := json.Marshal(r)
	if err != nil {
		return store.RefState{}, fmt.Errorf("put ref state %s: %w", r.Key, err)
	}
	cur, err := putPromotionScript.Run(ctx, s.client, []string{s.refs, s.refRevs},
		r.Key, expected, r.Revision, string(raw)).Int64()
	if err != nil {
		return store.RefState{}, wrap("put ref state "+r.Key, err)
	}
	if cur != -1 {
		return store.RefState{}, fmt.Errorf("put ref state %s at revision %d (stored: %d): %w", r.Key, expected, cur, store.ErrConflict)
	}
	return r, nil
}

// GetRef implements store.Store.
func (s *Store) GetRef(ctx context.Context, key string) (store.RefState, error) {
	raw, err := s.client.HGet(ctx, s.refs, key).Result()
	if errors.Is(err, redis.Nil) {
		return store.RefState{}, fmt.Errorf("get ref state %s: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return store.RefState{}, wrap("get ref state "+key, err)
	}
	var r store.RefState
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return store.RefState{}, fmt.Errorf("decode ref state %s: %w", key, err)
	}
	return r, nil
}

// leaseScript takes or extends a lease. KEYS[1] lease key; ARGV[1] holder,
// ARGV[2] ttl in ms. Returns 1 when the holder holds the lease.
var leaseScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if cur then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

// Lease implements store.Store; the lease is a key under the prefix that
// expires by itself when its holder stops renewing it.
func (s *Store) Lease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if name == "" || holder == "" || ttl <= 0 {
		return false, fmt.Errorf("lease %q: name, holder and a positive ttl are required", name)
	}
	n, err := leaseScript.Run(ctx, s.client, []string{s.leasePrefix + name}, holder, ttl.Milliseconds()).Int()
	if err != nil {
		return false, wrap("lease "+name, err)
	}
	return n == 1, nil
}

// claimKeyScript sets KEYS[1] to ARGV[1] for ARGV[2] ms unless it is
// set, and returns {value now, 1 if set by this call}.
var claimKeyScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  return {cur, 0}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {ARGV[1], 1}
`)

// ClaimKey implements store.Store; the key lives under the prefix and
// expires by itself.
func (s *Store) ClaimKey(ctx context.Context, key, value string, ttl time.Duration) (string, bool, error) {
	if key == "" || ttl <= 0 {
		return "", false, fmt.Errorf("claim key %q: a key and a positive ttl are required", key)
	}
	res, err := claimKeyScript.Run(ctx, s.client, []string{s.keyPrefix + key}, value, ttl.Milliseconds()).Slice()
	if err != nil {
		return "", false, wrap("claim key "+key, err)
	}
	if len(res) != 2 {
		return "", false, fmt.Errorf("claim key %s: unexpected answer %v", key, res)
	}
	cur, _ := res[0].(string)
	n, _ := res[1].(int64)
	return cur, n == 1, nil
}

// Ping implements store.Store.
func (s *Store) Ping(ctx context.Context) error {
	return wrap("ping redis", s.client.Ping(ctx).Err())
}

// Close implements store.Store. It closes the client only if New made it;
// closing twice is not an error.
func (s *Store) Close() error {
	if s.batch != nil {
		s.batch.close()
	}
	if s.records != nil {
		s.records.close()
	}
	if !s.ownsClient {
		return nil
	}
	err := s.client.Close()
	if errors.Is(err, redis.ErrClosed) {
		return nil
	}
	return err
}

func jsonMarshal(b store.Build) (string, error) {
	raw, err := json.Marshal(b)
	return string(raw), err
}

func decodeBuild(raw string) (store.Build, error) {
	var b store.Build
	err := json.Unmarshal([]byte(raw), &b)
	return b, err
}

func (s *Store) closeOwned() {
	if s.ownsClient {
		_ = s.client.Close()
	}
}

// SetClientLogger routes go-redis' own log lines (failed dials, pool
// events) into logger. go-redis has one logger for the whole process, so
// this affects every Redis client in it: call it once, from main.
func SetClientLogger(logger *slog.Logger) {
	redis.SetLogger(clientLogger{logger.With("component", "redis-client")})
}

type clientLogger struct{ log *slog.Logger }

func (l clientLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client", "message", fmt.Sprintf(format, v...))
}
