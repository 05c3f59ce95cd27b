package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMissing(t *testing.T) {
	for _, tc := range []struct {
		name string
		seen []Stage
		want []Stage
	}{
		{"none seen", nil, Stages()},
		{"all seen", Stages(), nil},
		{"stopped at the build", []Stage{StageAccepted, StageQueued, StageAgentPod, StageBuildRunning},
			Stages()[StageImagePushed:]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen []Seen
			for _, st := range tc.seen {
				seen = append(seen, Seen{Stage: st})
			}
			if got := missing(seen); !slices.Equal(got, tc.want) {
				t.Errorf("missing = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestTimeline(t *testing.T) {
	var b bytes.Buffer
	printTimeline(&b, []Seen{
		{Stage: StageAccepted, After: 120 * time.Millisecond},
		{Stage: StageQueued, After: 1260 * time.Millisecond},
	})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2+int(numStages) {
		t.Fatalf("%d lines, want a title, a header and one per stage:\n%s", len(lines), b.String())
	}
	for i, want := range [][]string{
		{"accepted", "+0.1s", "+0.1s", "delivery log"},
		{"queued in Jenkins", "+1.3s", "+1.1s", "emulator's queue"},
		{"agent pod on a virtual node", "never"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[2+i], w) {
				t.Errorf("timeline line %q lacks %q", lines[2+i], w)
			}
		}
	}
}

func TestStageNames(t *testing.T) {
	seen := map[string]bool{}
	for _, st := range Stages() {
		if name := st.String(); name == "" || seen[name] || stageInfo[st].seenIn == "" {
			t.Errorf("stage %d: name %q (seen before: %v), seen in %q", st, name, seen[name], stageInfo[st].seenIn)
		}
		seen[st.String()] = true
	}
	if got := Stage(99).String(); got != "stage(99)" {
		t.Errorf("an unknown stage is %q", got)
	}
}
