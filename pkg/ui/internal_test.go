package ui

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferryci/ferry/pkg/deliveries"
	"github.com/ferryci/ferry/pkg/jenkins"
	"github.com/ferryci/ferry/pkg/store"
)

func TestSafeNext(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", "/ui/activity"},
		{"/ui/promotions/p-1", "/ui/promotions/p-1"},
		{"/ui/why?repo=a/b&sha=1", "/ui/why?repo=a/b&sha=1"},
		{"/ui", "/ui"},
		{"https://evil.example/ui/", "/ui/activity"},
		{"//evil.example/ui/", "/ui/activity"},
		{`/\evil.example/`, "/ui/activity"},
		{"/ui/../api/v1/promotions", "/ui/activity"},
		{"/uix", "/ui/activity"},
		{"/api/v1/promotions", "/ui/activity"},
		{"javascript:alert(1)", "/ui/activity"},
		{"/ui/login?next=//evil", "/ui/activity"},
		{"/ui/\r\nSet-Cookie: x", "/ui/activity"},
		{"http:/ui/x", "/ui/activity"},
	}
	for _, tt := range tests {
		if got := safeNext(tt.in); got != tt.want {
			t.Errorf("safeNext(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestStateOf(t *testing.T) {
	t.Parallel()
	pod := func(phase corev1.PodPhase, deleting bool) *corev1.Pod {
		p := &corev1.Pod{Status: corev1.PodStatus{Phase: phase}}
		if deleting {
			p.DeletionTimestamp = &metav1.Time{}
		}
		return p
	}
	tests := []struct {
		name string
		pod  *corev1.Pod
		node *jenkins.Computer
		want AgentState
	}{
		{"pending pod", pod(corev1.PodPending, false), &jenkins.Computer{Offline: true, Idle: true}, AgentCreating},
		{"running, not connected", pod(corev1.PodRunning, false), &jenkins.Computer{Offline: true, Idle: true}, AgentStarting},
		{"connected, idle", pod(corev1.PodRunning, false), &jenkins.Computer{Idle: true}, AgentWaiting},
		{"building", pod(corev1.PodRunning, false), &jenkins.Computer{Running: []jenkins.Executable{{Number: 1}}}, AgentBuilding},
		{"building, taken offline for one build", pod(corev1.PodRunning, false), &jenkins.Computer{TemporarilyOffline: true, Offline: true, Running: []jenkins.Executable{{Number: 1}}}, AgentBuilding},
		{"build over, offline", pod(corev1.PodRunning, false), &jenkins.Computer{TemporarilyOffline: true, Offline: true, Idle: true}, AgentEnding},
		{"deleting", pod(corev1.PodRunning, true), &jenkins.Computer{Idle: true}, AgentEnding},
		{"failed pod", pod(corev1.PodFailed, false), nil, AgentFailed},
		{"running without node", pod(corev1.PodRunning, false), nil, AgentOrphan},
	}
	for _, tt := range tests {
		if got := StateOf(tt.pod, tt.node); got != tt.want {
			t.Errorf("%s: StateOf = %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestDeliveryCharts(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 6, 15, 30, 0, 0, time.UTC)
	build := func(queued, started time.Time) deliveries.Link {
		return deliveries.Link{Steps: []store.BuildStep{{Step: deliveries.StepQueued, At: queued}, {Step: deliveries.StepStarted, At: started}}}
	}
	chains := []deliveries.Chain{{Builds: []deliveries.Link{
		build(now.Add(-10*time.Minute), now.Add(-9*time.Minute)),
		build(now.Add(-10*time.Minute), now.Add(-8*time.Minute)),
		build(now.Add(-3*time.Hour), now.Add(-3*time.Hour+5*time.Second)),
		build(now.Add(-30*time.Hour), now.Add(-30*time.Hour)), // older than a day: left out
	}}}
	cs := deliveryCharts(chains, now)
	perHour, latency := cs[0], cs[1]
	if len(perHour.Bars) != 24 || perHour.Max != "2" {
		t.Fatalf("builds per hour: %d bars, max %q; want 24 bars, max 2", len(perHour.Bars), perHour.Max)
	}
	last := perHour.Bars[23]
	if last.H != chartH || !strings.HasPrefix(last.Label, "15:00: 2") {
		t.Errorf("the last hour's bar = %+v, want full height, 2 builds", last)
	}
	if got := perHour.Bars[20]; got.H != chartH/2 {
		t.Errorf("12:00's bar height = %v, want half", got.H)
	}
	if latency.Max != "1m30s" && latency.Max != "2m0s" {
		t.Errorf("latency max = %q, want the median of the last hour (1m or 2m)", latency.Max)
	}
	if empty := deliveryCharts(nil, now); !empty[0].Empty || !empty[1].Empty {
		t.Errorf("charts without builds are not marked empty")
	}
}

func TestBuildAgentSnapshot(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 6, 15, 0, 0, 0, time.UTC)
	pod := func(name, tmpl string, phase corev1.PodPhase, ann map[string]string) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"ferry.dev/template": tmpl},
			Annotations: ann, CreationTimestamp: metav1.NewTime(now.Add(-time.Minute))}, Status: corev1.PodStatus{Phase: phase}}
	}
	snap := Build(now, []corev1.Pod{
		pod("ferry-agent-1-1", "maven", corev1.PodRunning, map[string]string{annotationSpecs: "2-4Gi", annotationSpot: "SpotAsPriceGo"}),
		pod("ferry-agent-2-1", "maven", corev1.PodPending, nil),
		pod("ferry-agent-3-2", "go", corev1.PodRunning, map[string]string{annotationSpot: "SpotAsPriceGo", "ferry.dev/on-demand": "rerun"}),
	}, []jenkins.Computer{{Name: "ferry-agent-1-1", Running: []jenkins.Executable{{Number: 4, URL: "http://j/job/x/4/"}}}, {Name: "ferry-agent-3-2", Idle: true}},
		[]corev1.Event{{Reason: "AgentRetry", Message: "ECI stock-out; retrying", InvolvedObject: corev1.ObjectReference{Name: "ferry-agent-3-1"}, LastTimestamp: metav1.NewTime(now)},
			{Reason: "Scheduled", InvolvedObject: corev1.ObjectReference{Name: "ferry-agent-3-1"}}})
	if len(snap.Agents) != 3 || snap.Agents[0].Template != "go" || snap.Agents[0].Spot != "on-demand" {
		t.Fatalf("agents = %+v, want 3 sorted by template, the re-run on-demand", snap.Agents)
	}
	if a := snap.Agents[1]; a.State != AgentBuilding || a.Specs != "2-4Gi" || a.Spot != "SpotAsPriceGo" || a.Build != "http://j/job/x/4/" {
		t.Errorf("maven agent = %+v", a)
	}
	if len(snap.ByState) != 2 || snap.ByState[1].Counts[0] != 1 || snap.ByState[1].Counts[3] != 1 {
		t.Errorf("by state = %+v, want maven: 1 creating, 1 building", snap.ByState)
	}
	if len(snap.Failures) != 1 || snap.Failures[0].Reason != "AgentRetry" || snap.Failures[0].Count != 1 {
		t.Errorf("failures = %+v, want the one AgentRetry", snap.Failures)
	}
}

func TestAgentHistoryAndLine(t *testing.T) {
	t.Parallel()
	h := newAgentHistory(time.Hour)
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for i := range 1000 {
		h.add(t0.Add(time.Duration(i)*time.Second), i%7)
	}
	pts := h.snapshot()
	if len(pts) > 120 {
		t.Errorf("%d samples kept for 1000 looks a second apart, want about one per %s", len(pts), minSpacing)
	}
	h.add(t0.Add(3*time.Hour), 1)
	if pts := h.snapshot(); len(pts) != 1 {
		t.Errorf("%d samples after an hour's gap, want only the newest (older than keep are dropped)", len(pts))
	}
	many := make([]point, 5000)
	for i := range many {
		many[i] = point{At: t0.Add(time.Duration(i) * time.Second)}
	}
	many[4321].Value = 9
	c := line("x", "", many, t0, t0.Add(5000*time.Second))
	if n := strings.Count(c.Line, ","); n > maxLinePoints || c.Max != "9" {
		t.Errorf("line of 5000 points: %d drawn, max %q; want at most %d, the peak 9 kept", n, c.Max, maxLinePoints)
	}
}
