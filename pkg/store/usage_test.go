package store

import (
	"reflect"
	"testing"
	"time"
)

func TestSplitUsage(t *testing.T) {
	d := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	cst := time.FixedZone("CST", 8*3600)
	tests := []struct {
		name string
		u    AgentUsage
		want []DayUsage
	}{
		{"within a day, no build", AgentUsage{Template: "t", Created: d.Add(time.Hour), Ended: d.Add(2 * time.Hour)},
			[]DayUsage{{"2026-03-01", UsageCount{Template: "t", PodSeconds: 3600, Agents: 1}}}},
		{"over midnight", AgentUsage{Template: "t", Created: d.Add(-time.Hour), RanSince: d.Add(-30 * time.Minute), Ended: d.Add(time.Hour)},
			[]DayUsage{{"2026-02-28", UsageCount{Template: "t", PodSeconds: 3600, BuildSeconds: 1800}},
				{"2026-03-01", UsageCount{Template: "t", PodSeconds: 3600, BuildSeconds: 3600, Agents: 1}}}},
		{"times in another zone count by UTC day", AgentUsage{Template: "t", Created: d.Add(time.Hour).In(cst), Ended: d.Add(2 * time.Hour).In(cst)},
			[]DayUsage{{"2026-03-01", UsageCount{Template: "t", PodSeconds: 3600, Agents: 1}}}},
		{"build start before the pod is clamped", AgentUsage{Template: "t", Created: d, RanSince: d.Add(-time.Hour), Ended: d.Add(time.Minute)},
			[]DayUsage{{"2026-03-01", UsageCount{Template: "t", PodSeconds: 60, BuildSeconds: 60, Agents: 1}}}},
		{"three days", AgentUsage{Template: "t", Created: d.Add(-time.Hour), Ended: d.Add(25 * time.Hour)},
			[]DayUsage{{"2026-02-28", UsageCount{Template: "t", PodSeconds: 3600}},
				{"2026-03-01", UsageCount{Template: "t", PodSeconds: 86400}},
				{"2026-03-02", UsageCount{Template: "t", PodSeconds: 3600, Agents: 1}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := SplitUsage(tc.u); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("SplitUsage = %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
