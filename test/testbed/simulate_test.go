package testbed

import (
	"context"
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

func simulatedPod(name, simulate string) *corev1.Pod {
	pod := VirtualNodePod(name, "registry.example/agent:1")
	pod.Annotations = map[string]string{SimulateAnnotation: simulate}
	return pod
}

func waitingReason(p *corev1.Pod) string {
	if len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].State.Waiting == nil {
		return ""
	}
	return p.Status.ContainerStatuses[0].State.Waiting.Reason
}

func TestSimulations(t *testing.T) {
	ns := Namespace(t)
	cs := FerryClientset(t)

	tests := []struct {
		simulate string
		check    func(t *testing.T, name string)
	}{
		{SimulateImagePullFailure, func(t *testing.T, name string) {
			WaitForEvent(t, cs, ns, name, "Failed", podTimeout)
			p := WaitForPod(t, cs, ns, name, podTimeout, func(p *corev1.Pod) bool { return waitingReason(p) == "ImagePullBackOff" })
			if p.Status.Phase != corev1.PodPending {
				t.Errorf("phase = %s, want Pending (%s)", p.Status.Phase, DescribePod(p))
			}
			if c := PodCondition(p, corev1.PodReady); c == nil || c.Status != corev1.ConditionFalse {
				t.Errorf("Ready = %+v, want False", c)
			}
		}},
		{SimulateProviderFailed, func(t *testing.T, name string) {
			p := WaitForPod(t, cs, ns, name, podTimeout, PodPhase(corev1.PodFailed))
			if p.Status.Reason != ReasonProviderFailed {
				t.Errorf("status.reason = %q, want %q (%s)", p.Status.Reason, ReasonProviderFailed, DescribePod(p))
			}
			ev := WaitForEvent(t, cs, ns, name, EventProviderCreateFailed, podTimeout)
			if ev.Type != corev1.EventTypeWarning {
				t.Errorf("event %s type = %s, want Warning", ev.Reason, ev.Type)
			}
		}},
		{SimulateNoStock, func(t *testing.T, name string) {
			p := WaitForPod(t, cs, ns, name, podTimeout, func(p *corev1.Pod) bool {
				return PodCondition(p, ConditionContainerInstanceCreated) != nil
			})
			c := PodCondition(p, ConditionContainerInstanceCreated)
			if c.Status != corev1.ConditionFalse || c.Reason != ReasonNoStock {
				t.Errorf("%s = %s/%s, want False/%s", c.Type, c.Status, c.Reason, ReasonNoStock)
			}
			if p.Status.Phase != corev1.PodPending || p.Spec.NodeName == "" {
				t.Errorf("pod phase=%s node=%q, want Pending on a virtual node", p.Status.Phase, p.Spec.NodeName)
			}
		}},
		{SimulateSpotReclaim, func(t *testing.T, name string) {
			WaitForPod(t, cs, ns, name, podTimeout, PodPhase(corev1.PodRunning))
			ev := WaitForEvent(t, cs, ns, name, ReasonSpotToBeReleased, podTimeout)
			if ev.Type != corev1.EventTypeWarning {
				t.Errorf("event %s type = %s, want Warning", ev.Reason, ev.Type)
			}
			p := WaitForPod(t, cs, ns, name, podTimeout, PodPhase(corev1.PodFailed))
			if p.Status.Reason != ReasonExpired {
				t.Errorf("status.reason = %q, want %q", p.Status.Reason, ReasonExpired)
			}
			if c := PodCondition(p, ConditionContainerInstanceCreated); c == nil || c.Reason != ReasonSpotToBeReleased {
				t.Errorf("%s = %+v, want reason %s", ConditionContainerInstanceCreated, c, ReasonSpotToBeReleased)
			}
			if st := p.Status.ContainerStatuses; len(st) != 1 || st[0].State.Terminated == nil || st[0].State.Terminated.ExitCode != 137 {
				t.Errorf("container statuses = %+v, want one terminated with exit code 137", st)
			}
		}},
		{SimulatePendingForever, func(t *testing.T, name string) {
			// A pod with the default behaviour, created after this one, runs;
			// by then this one would have run too if anything moved it.
			control := VirtualNodePod(name+"-control", "registry.example/agent:1")
			createPod(t, cs, ns, control)
			WaitForPod(t, cs, ns, control.Name, podTimeout, PodPhase(corev1.PodRunning))
			p := WaitForPod(t, cs, ns, name, podTimeout, func(p *corev1.Pod) bool { return p.Spec.NodeName != "" })
			if p.Status.Phase != corev1.PodPending || len(p.Status.ContainerStatuses) != 0 {
				t.Errorf("pod = %s, want Pending with no container status", DescribePod(p))
			}
		}},
		{"no-such-simulation", func(t *testing.T, name string) {
			p := WaitForPod(t, cs, ns, name, podTimeout, PodPhase(corev1.PodFailed))
			if p.Status.Reason != "TestbedUnknownSimulation" {
				t.Errorf("status.reason = %q, want TestbedUnknownSimulation", p.Status.Reason)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.simulate, func(t *testing.T) {
			t.Parallel()
			pod := simulatedPod("sim-"+tt.simulate, tt.simulate)
			createPod(t, cs, ns, pod)
			tt.check(t, pod.Name)
		})
	}
}

func TestStartDelayAnnotation(t *testing.T) {
	ns := Namespace(t)
	cs := FerryClientset(t)

	slow := VirtualNodePod("slow", "registry.example/agent:1")
	slow.Annotations = map[string]string{StartDelayAnnotation: "1h"}
	createPod(t, cs, ns, slow)
	fast := VirtualNodePod("fast", "registry.example/agent:1")
	fast.Annotations = map[string]string{StartDelayAnnotation: "0s"}
	createPod(t, cs, ns, fast)

	WaitForPod(t, cs, ns, "fast", podTimeout, PodPhase(corev1.PodRunning))
	p := WaitForPod(t, cs, ns, "slow", podTimeout, func(p *corev1.Pod) bool { return p.Spec.NodeName != "" })
	if p.Status.Phase != corev1.PodPending {
		t.Errorf("pod with a 1h start delay = %s, want Pending", DescribePod(p))
	}
}

// annotate sets annotations on a pod with a merge patch, as a test ending an
// agent would.
func annotate(t *testing.T, cs kubernetes.Interface, ns, name string, annotations map[string]string) {
	t.Helper()
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cs.CoreV1().Pods(ns).Patch(context.Background(), name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		t.Fatalf("annotate pod %s/%s: %v", ns, name, err)
	}
}

func TestCompleteAnnotation(t *testing.T) {
	ns := Namespace(t)
	// A test ends an agent; ferry never patches pods: act as the admin.
	cs := Clientset(t)

	tests := []struct {
		name        string
		annotations map[string]string
		wantPhase   corev1.PodPhase
		wantExit    int32
		wantReason  string
	}{
		{"succeeded", map[string]string{CompleteAnnotation: CompleteSucceeded}, corev1.PodSucceeded, 0, "Completed"},
		{"failed", map[string]string{CompleteAnnotation: CompleteFailed, ExitCodeAnnotation: "3"}, corev1.PodFailed, 3, "Error"},
		{"failed-default-exit", map[string]string{CompleteAnnotation: CompleteFailed}, corev1.PodFailed, 1, "Error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			createPod(t, cs, ns, VirtualNodePod(tt.name, "registry.example/agent:1"))
			WaitForPod(t, cs, ns, tt.name, podTimeout, PodPhase(corev1.PodRunning))
			annotate(t, cs, ns, tt.name, tt.annotations)
			p := WaitForPod(t, cs, ns, tt.name, podTimeout, PodPhase(tt.wantPhase))
			st := p.Status.ContainerStatuses
			if len(st) != 1 || st[0].State.Terminated == nil {
				t.Fatalf("container statuses = %+v, want one terminated container", st)
			}
			if term := st[0].State.Terminated; term.ExitCode != tt.wantExit || term.Reason != tt.wantReason {
				t.Errorf("terminated exit=%d reason=%s, want %d %s", term.ExitCode, term.Reason, tt.wantExit, tt.wantReason)
			}
			if c := PodCondition(p, corev1.PodReady); c == nil || c.Status != corev1.ConditionFalse {
				t.Errorf("Ready = %+v, want False", c)
			}
		})
	}
}
