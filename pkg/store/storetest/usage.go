package storetest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/store"
)

// An agent's seconds land on the UTC days they fell on, per template, and
// an agent is counted once however many callers (leaders) add it.
func testAgentUsage(t *testing.T, s store.Store) {
	ctx := context.Background()
	day1 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	over := store.AgentUsage{Agent: "ferry-agent-1", Template: "java",
		Created: day1.Add(23 * time.Hour), RanSince: day1.Add(23*time.Hour + 30*time.Minute), Ended: day1.Add(25 * time.Hour)}
	if ok, err := s.AddAgentUsage(ctx, over); err != nil || !ok {
		t.Fatalf("AddAgentUsage = %v, %v; want true, nil", ok, err)
	}
	const n = 8
	var counted atomic.Int32
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.AddAgentUsage(ctx, store.AgentUsage{Agent: "ferry-agent-2", Template: "java",
				Created: day1.Add(time.Hour), Ended: day1.Add(time.Hour + 90*time.Second)})
			if err != nil {
				t.Errorf("AddAgentUsage: %v", err)
			}
			if ok {
				counted.Add(1)
			}
		}()
	}
	wg.Wait()
	if c := counted.Load(); c != 1 {
		t.Errorf("concurrent adds of one agent counted it %d times, want once", c)
	}
	if ok, err := s.AddAgentUsage(ctx, over); err != nil || ok {
		t.Errorf("second AddAgentUsage of %s = %v, %v; want false, nil", over.Agent, ok, err)
	}
	if _, err := s.AddAgentUsage(ctx, store.AgentUsage{Agent: "ferry-agent-3", Template: "go",
		Created: day1.Add(2 * time.Hour), RanSince: day1.Add(2 * time.Hour), Ended: day1.Add(3 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	want := map[string][]store.UsageCount{
		"2026-03-01": {{Template: "go", PodSeconds: 3600, BuildSeconds: 3600, Agents: 1},
			{Template: "java", PodSeconds: 3600 + 90, BuildSeconds: 1800, Agents: 1}},
		"2026-03-02": {{Template: "java", PodSeconds: 3600, BuildSeconds: 3600, Agents: 1}},
		"2026-03-03": {},
	}
	for day, w := range want {
		got, err := s.Usage(ctx, day)
		if err != nil {
			t.Fatalf("Usage(%s): %v", day, err)
		}
		if len(got) != len(w) {
			t.Fatalf("Usage(%s) = %+v, want %+v", day, got, w)
		}
		for i := range w {
			g := got[i]
			if g.Template != w[i].Template || g.Agents != w[i].Agents ||
				!near(g.PodSeconds, w[i].PodSeconds) || !near(g.BuildSeconds, w[i].BuildSeconds) {
				t.Errorf("Usage(%s)[%d] = %+v, want %+v", day, i, g, w[i])
			}
		}
	}
	if _, err := s.Usage(ctx, "03/01/2026"); err == nil {
		t.Error("Usage of a malformed day: no error")
	}
	for _, bad := range []store.AgentUsage{
		{Template: "java", Created: day1, Ended: day1},
		{Agent: "a", Template: "ja:va", Created: day1, Ended: day1},
		{Agent: "a", Template: "java", Created: day1.Add(time.Hour), Ended: day1},
	} {
		if _, err := s.AddAgentUsage(ctx, bad); err == nil {
			t.Errorf("AddAgentUsage(%+v): no error", bad)
		}
	}
}

func near(a, b float64) bool { return a-b < 0.01 && b-a < 0.01 }
