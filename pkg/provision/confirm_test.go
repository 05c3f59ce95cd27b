package provision

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/pkg/jenkins"
)

// The informer's cache lacks the pods of three agents whose Jenkins nodes
// exist: one the API server has (its create's answer was lost while the
// server restarted), one it does not have, one ferry deleted. Only the
// first is put back; the others stay gone without a read for the last.
func TestConfirmGoneReadsThePodsTheCacheLacks(t *testing.T) {
	ferrys := func(name string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS,
			Labels: map[string]string{eci.LabelManagedBy: eci.ManagedBy, eci.LabelTemplate: "linux"}}}
	}
	kube := fake.NewClientset(ferrys("ferry-agent-1-1"), ferrys("ferry-agent-3-1"))
	var reads []string
	kube.PrependReactor("get", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		reads = append(reads, a.(k8stesting.GetAction).GetName())
		return false, nil, nil
	})
	p := &Provisioner{cfg: Config{Kube: kube, Namespace: testNS}, log: slog.New(slog.DiscardHandler), events: newEventIndex()}
	w := &world{computers: []jenkins.Computer{{Name: "ferry-agent-1-1"}, {Name: "ferry-agent-2-1"}, {Name: "ferry-agent-3-1"}},
		events: map[string][]corev1.Event{}, deleted: map[string]time.Time{"ferry-agent-3-1": {}}}
	p.join(w)
	if err := p.confirmGone(context.Background(), w); err != nil {
		t.Fatal(err)
	}
	if a := w.agents["ferry-agent-1-1"]; a.pod == nil || a.template != "linux" || len(w.pods) != 1 {
		t.Errorf("agent 1: pod %v template %q, %d pods in the world; want the server's pod put back", a.pod, a.template, len(w.pods))
	}
	if w.agents["ferry-agent-2-1"].pod != nil || w.agents["ferry-agent-3-1"].pod != nil {
		t.Error("a pod the server lacks, or ferry deleted, was put back")
	}
	if len(reads) != 2 {
		t.Errorf("read pods %v, want agents 1 and 2 only (ferry deleted 3)", reads)
	}
}

// While the API server cannot answer, the cycle decides nothing.
func TestConfirmGoneFailsTheCycleWhenTheServerCannotAnswer(t *testing.T) {
	kube := fake.NewClientset()
	down := errors.New("connection refused")
	kube.PrependReactor("get", "pods", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, down })
	p := &Provisioner{cfg: Config{Kube: kube, Namespace: testNS}, log: slog.New(slog.DiscardHandler), events: newEventIndex()}
	w := &world{computers: []jenkins.Computer{{Name: "ferry-agent-1-1"}}, events: map[string][]corev1.Event{}}
	p.join(w)
	if err := p.confirmGone(context.Background(), w); !errors.Is(err, down) {
		t.Fatalf("confirmGone = %v, want the server's error", err)
	}
}
