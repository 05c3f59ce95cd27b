package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ferryci/ferry/pkg/store"
)

// Agent usage lives in one hash per UTC day, <prefix>usage:<day>, fields
// pod:<template>, build:<template> and agents:<template>; and a mark per
// agent counted, <prefix>usage:agent:<name>. All expire after
// store.UsageRetention; all share the prefix's hash tag.

// addUsageScript sets the agent's mark unless it exists and, only then,
// adds its seconds to the day hashes: one atomic step.
//
// KEYS[1] mark, KEYS[2..] day hashes; ARGV[1] retention seconds, ARGV[2]
// template, then per day hash: pod seconds, build seconds, agents.
// Returns 1 when counted, 0 when the agent was counted before.
var addUsageScript = redis.NewScript(`
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return 0
end
for i = 2, #KEYS do
  local j = 3 + (i - 2) * 3
  redis.call('HINCRBYFLOAT', KEYS[i], 'pod:' .. ARGV[2], ARGV[j])
  redis.call('HINCRBYFLOAT', KEYS[i], 'build:' .. ARGV[2], ARGV[j + 1])
  redis.call('HINCRBY', KEYS[i], 'agents:' .. ARGV[2], ARGV[j + 2])
  redis.call('EXPIRE', KEYS[i], ARGV[1])
end
return 1
`)

func (s *Store) usageKey(name string) string { return s.usagePrefix + name }

// AddAgentUsage implements store.Store.
func (s *Store) AddAgentUsage(ctx context.Context, u store.AgentUsage) (bool, error) {
	if err := u.Validate(); err != nil {
		return false, err
	}
	days := store.SplitUsage(u)
	keys := []string{s.usageKey("agent:" + u.Agent)}
	args := []any{int64(store.UsageRetention / time.Second), u.Template}
	for _, d := range days {
		keys = append(keys, s.usageKey(d.Day))
		args = append(args, strconv.FormatFloat(d.PodSeconds, 'f', 3, 64), strconv.FormatFloat(d.BuildSeconds, 'f', 3, 64), d.Agents)
	}
	n, err := addUsageScript.Run(ctx, s.client, keys, args...).Int64()
	if err != nil {
		return false, wrap("add agent usage of "+u.Agent, err)
	}
	return n == 1, nil
}

// Usage implements store.Store.
func (s *Store) Usage(ctx context.Context, day string) ([]store.UsageCount, error) {
	if _, err := time.Parse(store.UsageDayLayout, day); err != nil {
		return nil, fmt.Errorf("agent usage of day %q: want YYYY-MM-DD: %w", day, err)
	}
	h, err := s.client.HGetAll(ctx, s.usageKey(day)).Result()
	if err != nil {
		return nil, wrap("agent usage of "+day, err)
	}
	by := map[string]*store.UsageCount{}
	for f, v := range h {
		kind, tmpl, ok := strings.Cut(f, ":")
		if !ok {
			continue
		}
		c := by[tmpl]
		if c == nil {
			c = &store.UsageCount{Template: tmpl}
			by[tmpl] = c
		}
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, fmt.Errorf("agent usage of %s: field %s holds %q, not a number", day, f, v)
		}
		switch kind {
		case "pod":
			c.PodSeconds = x
		case "build":
			c.BuildSeconds = x
		case "agents":
			c.Agents = int64(x)
		}
	}
	out := make([]store.UsageCount, 0, len(by))
	for _, c := range by {
		out = append(out, *c)
	}
	store.SortUsage(out)
	return out, nil
}
