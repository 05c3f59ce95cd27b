package provision

import (
	"testing"
	"time"
)

// The warm view holds the last cycle's pool sizes and agents, and sums
// hits, misses and idle seconds over the cycles this replica ran.
func TestWarmView(t *testing.T) {
	t.Parallel()
	var v warmView
	if _, ok := v.get(); ok {
		t.Fatal("a view before any cycle: want none")
	}
	t0 := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	v.note(t0, &decision{
		warmDesired: map[string]int{"linux": 2}, warmSource: map[string]string{"linux": "window business-hours"},
		warm:       tally{{"linux", warmReady}: 1, {"linux", warmCreating}: 1},
		warmBuilds: tally{{"linux", "hit"}: 2, {"linux", "miss"}: 1},
		warmIdle:   []warmIdle{{"linux", 30}},
	})
	v.note(t0.Add(time.Minute), &decision{
		warmDesired: map[string]int{"linux": 0}, warmSource: map[string]string{"linux": "agentpool"},
		warm:       tally{{"linux", warmRetiring}: 1},
		warmBuilds: tally{{"linux", "miss"}: 1},
		warmIdle:   []warmIdle{{"linux", 12.5}, {"other", 1}},
	})
	got, ok := v.get()
	if !ok || !got.At.Equal(t0.Add(time.Minute)) || !got.Since.Equal(t0) || len(got.Pools) != 2 {
		t.Fatalf("view = %+v, %v; want two pools, at the second cycle, since the first", got, ok)
	}
	l := got.Pools[0]
	if l.Template != "linux" || l.Desired != 0 || l.Source != "agentpool" || l.Hits != 2 || l.Misses != 2 || l.IdleSeconds != 42.5 ||
		len(l.Agents) != 1 || l.Agents[warmRetiring] != 1 {
		t.Errorf("linux = %+v; want desired 0 from agentpool, 2 hits, 2 misses, 42.5 idle s, 1 retiring", l)
	}
	if o := got.Pools[1]; o.Template != "other" || o.IdleSeconds != 1 || o.Agents == nil {
		t.Errorf("other = %+v", o)
	}
	got.Pools[0].Agents["x"] = 1
	if again, _ := v.get(); again.Pools[0].Agents["x"] != 0 {
		t.Error("the view's maps are shared with its readers")
	}
}
