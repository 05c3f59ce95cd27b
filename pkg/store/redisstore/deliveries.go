package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ferryci/ferry/pkg/store"
)

// deliveryKeys names the delivery log's keys and holds its bounds.
type deliveryKeys struct {
	record, all, trail, mark string
	repo, ref, sha, id       string
	retention                time.Duration
	max                      int
	now                      func() time.Time
}

func newDeliveryKeys(prefix string, retention time.Duration, maxRecords int, now func() time.Time) deliveryKeys {
	p := prefix + "dlv:"
	return deliveryKeys{record: p + "r:", all: p + "all", trail: p + "trail:", mark: prefix + "mark:",
		repo: p + "repo:", ref: p + "ref:", sha: p + "sha:", id: p + "id:",
		retention: retention, max: maxRecords, now: now}
}

// indexes are the sorted sets a record is listed in, "all" first.
func (k deliveryKeys) indexes(d store.Delivery) []string {
	keys := []string{k.all}
	if d.Repo != "" {
		keys = append(keys, k.repo+d.Repo)
		if d.Ref != "" {
			keys = append(keys, k.ref+d.Repo+"\x00"+d.Ref)
		}
	}
	if d.SHA != "" {
		keys = append(keys, k.sha+d.SHA)
	}
	if d.DeliveryID != "" {
		keys = append(keys, k.id+d.DeliveryID)
	}
	return keys
}

// index picks the most selective sorted set for q; the rest of q is
// checked on each record.
func (k deliveryKeys) index(q store.DeliveryQuery) string {
	switch {
	case q.DeliveryID != "":
		return k.id + q.DeliveryID
	case q.SHA != "":
		return k.sha + q.SHA
	case q.Repo != "" && q.Ref != "":
		return k.ref + q.Repo + "\x00" + q.Ref
	case q.Repo != "":
		return k.repo + q.Repo
	default:
		return k.all
	}
}

func (k deliveryKeys) cutoff() int64 { return k.now().Add(-k.retention).UnixMicro() }

// recordScript stores a record and lists it in its sorted sets, each cut to
// the cap (oldest first); "all" is also cut to the retention by score. An
// index's members older than the retention are skipped by reads and go
// with the index's TTL (renewed on each write) or its cap. Records cut from
// "all" are deleted at once, the rest expire with their TTL.
//
// KEYS[1] record key, KEYS[2] "all", KEYS[3..] other indexes; ARGV[1]
// payload, ARGV[2] score (µs), ARGV[3] record id, ARGV[4] TTL seconds,
// ARGV[5] cutoff score, ARGV[6] cap, ARGV[7] record key prefix.
var recordScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[4])
local cap = tonumber(ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[5])
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], ARGV[2], ARGV[3])
  local n = redis.call('ZCARD', KEYS[i])
  if n > cap then
    if i == 2 then
      for _, m in ipairs(redis.call('ZRANGE', KEYS[i], 0, n - cap - 1)) do
        redis.call('DEL', ARGV[7] .. m)
      end
    end
    redis.call('ZREMRANGEBYRANK', KEYS[i], 0, n - cap - 1)
  end
  redis.call('EXPIRE', KEYS[i], ARGV[4])
end
return 1
`)

// RecordDelivery implements store.DeliveryLog.
func (s *Store) RecordDelivery(ctx context.Context, d store.Delivery) (store.Delivery, error) {
	if d.ReceivedAt.IsZero() {
		return d, errors.New("record delivery: received_at is required")
	}
	d.Record = store.NewRecordID(d.ReceivedAt)
	raw, err := json.Marshal(d)
	if err != nil {
		return d, fmt.Errorf("record delivery %s: %w", d.DeliveryID, err)
	}
	k := s.dlv
	keys := append([]string{k.record + d.Record}, k.indexes(d)...)
	ttl := int64(math.Ceil(k.retention.Seconds()))
	err = s.records.do(ctx, keys, string(raw), d.ReceivedAt.UnixMicro(), d.Record,
		ttl, k.cutoff(), k.max, k.record)
	return d, wrap("record delivery "+d.DeliveryID, err)
}

// Bounds of one ListDeliveries scan: records are read from the index in
// batches; a query whose filters the index does not cover may need several.
const (
	scanBatch   = 200
	scanBatches = 20
)

// ListDeliveries implements store.DeliveryLog. When the scan bound is
// reached before the page is full, Next continues after the last record
// looked at.
func (s *Store) ListDeliveries(ctx context.Context, q store.DeliveryQuery) (store.DeliveryPage, error) {
	q, err := q.Normalize()
	if err != nil {
		return store.DeliveryPage{}, err
	}
	k := s.dlv
	key := k.index(q)
	top := "+inf"
	if q.After != "" {
		t, _ := store.RecordTime(q.After) // checked by Normalize
		top = strconv.FormatInt(t, 10)
	}
	rng := &redis.ZRangeBy{Max: top, Min: strconv.FormatInt(k.cutoff(), 10), Count: scanBatch}
	var page store.DeliveryPage
	last := ""
	for batch := 0; batch < scanBatches; batch++ {
		ids, err := s.client.ZRevRangeByScore(ctx, key, rng).Result()
		if err != nil {
			return store.DeliveryPage{}, wrap("list deliveries", err)
		}
		rng.Offset += int64(len(ids))
		var fresh []string
		for _, id := range ids {
			if q.After == "" || id < q.After {
				fresh = append(fresh, id)
			}
		}
		recs, err := s.readRecords(ctx, fresh)
		if err != nil {
			return store.DeliveryPage{}, err
		}
		for _, d := range recs {
			if !q.Matches(d) {
				last = d.Record
				continue
			}
			if len(page.Deliveries) == q.Limit {
				page.Next = page.Deliveries[q.Limit-1].Record
				return page, nil
			}
			page.Deliveries = append(page.Deliveries, d)
			last = d.Record
		}
		if len(ids) < scanBatch {
			return page, nil
		}
	}
	page.Next = last
	return page, nil
}

// readRecords reads records by id, in order, leaving out those gone.
func (s *Store) readRecords(ctx context.Context, ids []string) ([]store.Delivery, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = s.dlv.record + id
	}
	vals, err := s.client.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, wrap("read delivery records", err)
	}
	out := make([]store.Delivery, 0, len(vals))
	for i, v := range vals {
		raw, ok := v.(string)
		if !ok {
			continue // expired or cut
		}
		var d store.Delivery
		if err := json.Unmarshal([]byte(raw), &d); err != nil {
			s.log.Error("skipping a delivery record that cannot be decoded", "record", ids[i], "error", err)
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

// PutTrail implements store.DeliveryLog.
func (s *Store) PutTrail(ctx context.Context, t store.BuildTrail) error {
	event, pipeline, raw, err := store.EncodeTrail(t)
	if err != nil {
		return err
	}
	key := s.dlv.trail + event
	_, err = s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, pipeline, raw)
		p.Expire(ctx, key, s.dlv.retention)
		return nil
	})
	return wrap("put build trail "+t.Build.Key, err)
}

// Trails implements store.DeliveryLog.
func (s *Store) Trails(ctx context.Context, eventID string) ([]store.BuildTrail, error) {
	all, err := s.client.HGetAll(ctx, s.dlv.trail+eventID).Result()
	if err != nil {
		return nil, wrap("read build trails of "+eventID, err)
	}
	raws := make([][]byte, 0, len(all))
	for _, raw := range all {
		raws = append(raws, []byte(raw))
	}
	return store.DecodeTrails(raws)
}

// MarkOnce implements store.DeliveryLog.
func (s *Store) MarkOnce(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if key == "" || ttl <= 0 {
		return false, fmt.Errorf("mark %q: a key and a positive ttl are required", key)
	}
	ok, err := s.client.SetNX(ctx, s.dlv.mark+key, "1", ttl).Result()
	if err != nil {
		return false, wrap("mark "+key, err)
	}
	return ok, nil
}

// Unmark implements store.DeliveryLog.
func (s *Store) Unmark(ctx context.Context, key string) error {
	return wrap("unmark "+key, s.client.Del(ctx, s.dlv.mark+key).Err())
}
