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
