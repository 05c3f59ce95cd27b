package ui_test

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/pkg/jenkins"
	"github.com/ferryci/ferry/pkg/provision"
	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/pkg/store/memstore"
	"github.com/ferryci/ferry/pkg/ui"
)

type noComputers struct{}

func (noComputers) Computers(context.Context) ([]jenkins.Computer, error) { return nil, nil }

type brokenUsage struct{}

func (brokenUsage) Usage(context.Context, string) ([]store.UsageCount, error) {
	return nil, errors.New("redis: connection refused")
}

// The agents page's "today" is the store's UTC day plus what live agents
// ran since 00:00 UTC; yesterday's agents are not in it, and a store that
// cannot be read leaves the rest of the page.
func TestKubeAgentsUsageIsTodaysFromTheStore(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 6, 1, 0, 0, 0, time.UTC)
	st, err := memstore.New(memstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ctx := context.Background()
	for _, u := range []store.AgentUsage{
		// Ended yesterday: not today's.
		{Agent: "ferry-agent-1-1", Template: "maven", Created: now.Add(-5 * time.Hour), RanSince: now.Add(-4 * time.Hour), Ended: now.Add(-3 * time.Hour)},
		// Ran over midnight: its 30 minutes after it are today's.
		{Agent: "ferry-agent-2-1", Template: "maven", Created: now.Add(-2 * time.Hour), RanSince: now.Add(-90 * time.Minute), Ended: now.Add(-30 * time.Minute)},
	} {
		if _, err := st.AddAgentUsage(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "ferry-agent-3-1", Namespace: "agents",
		Labels:            map[string]string{eci.LabelManagedBy: eci.ManagedBy, eci.LabelAgent: "true", eci.LabelTemplate: "go"},
		CreationTimestamp: metav1.NewTime(now.Add(-2 * time.Hour))}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	ka := ui.KubeAgents{Kube: fake.NewClientset(pod), Namespace: "agents", Jenkins: noComputers{}, Usage: st, Now: func() time.Time { return now }}
	snap, err := ka.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []ui.TemplateUsage{
		{Template: "go", LivePodSeconds: 3600},
		{Template: "maven", PodSeconds: 1800, BuildSeconds: 1800, Agents: 1, Ratio: "100%"},
	}
	if snap.UsageDay != "2026-12-06" || len(snap.Usage) != 2 || snap.Usage[0] != want[0] || snap.Usage[1] != want[1] {
		t.Errorf("usage of %s = %+v\nwant 2026-12-06 %+v", snap.UsageDay, snap.Usage, want)
	}
	ka.Usage = brokenUsage{}
	snap, err = ka.Snapshot(ctx)
	if err != nil || snap.UsageError == "" || len(snap.Agents) != 1 {
		t.Errorf("with the store down: err %v, usage error %q, %d agents; want the page with the error said", err, snap.UsageError, len(snap.Agents))
	}
}

// Warm pools: the leader's view with sizes, states and sums; elsewhere (or
// when the view is stale) only the pods labelled warm, and the page says
// where the rest is known.
func TestWarmRows(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	view := provision.WarmView{At: now.Add(-10 * time.Second), Since: now.Add(-time.Hour), Pools: []provision.WarmPool{
		{Template: "maven", Desired: 2, Source: "window business-hours", Agents: map[string]int64{"ready": 1, "serving": 1}, Hits: 3, Misses: 1, IdleSeconds: 95},
	}}
	agents := []ui.AgentRow{{Template: "maven", Warm: true}, {Template: "maven"}, {Template: "go", Warm: true}}
	rows, lead := ui.WarmRows(view, true, agents, now)
	if !lead || len(rows) != 2 {
		t.Fatalf("rows = %+v, lead %v; want go and maven from the leader's view", rows, lead)
	}
	if m := rows[1]; m.Template != "maven" || m.Desired != 2 || m.Pods != 1 || m.HitRate != "75%" || len(m.States) != len(provision.WarmStates) || m.States[2] != 1 || m.States[3] != 1 {
		t.Errorf("maven = %+v", m)
	}
	if g := rows[0]; g.Template != "go" || g.Pods != 1 || g.States != nil {
		t.Errorf("go = %+v: want its one labelled pod only", g)
	}
	for name, c := range map[string]struct {
		view provision.WarmView
		ok   bool
	}{"not leading": {provision.WarmView{}, false}, "stale view": {provision.WarmView{At: now.Add(-time.Hour), Pools: view.Pools}, true}} {
		rows, lead := ui.WarmRows(c.view, c.ok, agents, now)
		if lead || len(rows) != 2 || rows[1].Desired != 0 || rows[1].Pods != 1 {
			t.Errorf("%s: rows = %+v, lead %v; want the labelled pods alone", name, rows, lead)
		}
	}
}
