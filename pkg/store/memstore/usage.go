package memstore

import (
	"context"
	"fmt"
	"time"

	"github.com/ferryci/ferry/pkg/store"
)

// usage is the agent usage counters: days by name, then templates.
type usage struct {
	days    map[string]map[string]*store.UsageCount
	touched map[string]time.Time // day -> last write
	counted map[string]time.Time // agent -> mark's expiry
}

// AddAgentUsage implements store.Store.
func (s *Store) AddAgentUsage(ctx context.Context, u store.AgentUsage) (bool, error) {
	if err := u.Validate(); err != nil {
		return false, err
	}
	if err := s.lock(ctx); err != nil {
		return false, fmt.Errorf("add agent usage of %s: %w", u.Agent, err)
	}
	defer s.mu.Unlock()
	now := s.now()
	us := &s.usage
	if us.days == nil {
		us.days, us.touched, us.counted = map[string]map[string]*store.UsageCount{}, map[string]time.Time{}, map[string]time.Time{}
	}
	for a, until := range us.counted {
		if !now.Before(until) {
			delete(us.counted, a)
		}
	}
	for d, at := range us.touched {
		if now.Sub(at) >= store.UsageRetention {
			delete(us.touched, d)
			delete(us.days, d)
		}
	}
	if _, ok := us.counted[u.Agent]; ok {
		return false, nil
	}
	us.counted[u.Agent] = now.Add(store.UsageRetention)
	for _, d := range store.SplitUsage(u) {
		day := us.days[d.Day]
		if day == nil {
			day = map[string]*store.UsageCount{}
			us.days[d.Day] = day
		}
		c := day[u.Template]
		if c == nil {
			c = &store.UsageCount{Template: u.Template}
			day[u.Template] = c
		}
		c.PodSeconds += d.PodSeconds
		c.BuildSeconds += d.BuildSeconds
		c.Agents += d.Agents
		us.touched[d.Day] = now
	}
	return true, nil
}

// Usage implements store.Store.
func (s *Store) Usage(ctx context.Context, day string) ([]store.UsageCount, error) {
	if _, err := time.Parse(store.UsageDayLayout, day); err != nil {
		return nil, fmt.Errorf("agent usage of day %q: want YYYY-MM-DD: %w", day, err)
	}
	if err := s.lock(ctx); err != nil {
		return nil, fmt.Errorf("agent usage of %s: %w", day, err)
	}
	defer s.mu.Unlock()
	out := []store.UsageCount{}
	if at, ok := s.usage.touched[day]; ok && s.now().Sub(at) < store.UsageRetention {
		for _, c := range s.usage.days[day] {
			out = append(out, *c)
		}
	}
	store.SortUsage(out)
	return out, nil
}
