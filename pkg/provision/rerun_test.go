package provision

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/pkg/jenkins"
)

// withReruns turns re-runs after infrastructure loss on.
func withReruns(c *Config) {
	c.RequestRerun = func(context.Context, Failure) error { return nil }
}

func podUnknown(p *corev1.Pod) { p.Status = corev1.PodStatus{Phase: corev1.PodUnknown} }

func TestDecideBuildsLostToInfrastructure(t *testing.T) {
	ran := seenBefore(func(m *agentMemory) { m.ranSince = t0.Add(-time.Minute) })
	running1 := func() []jenkins.Computer { return []jenkins.Computer{node(5, 1, connected, runs(1), marked)} }
	runDecideCases(t, []decideCase{{
		name:   "spot reclaimed under the build: the re-run is asked first, the dead agent kept",
		cfg:    withReruns,
		mem:    remembered(map[string]agentMemory{a51: ran}, nil),
		scene:  scene{comps: running1(), pods: []*corev1.Pod{pod(5, 1, podFailed("Expired", "Spot ECI was released"))}},
		states: map[string]agentState{a51: stateInfraLost},
		acts:   []string{"request rerun " + a51 + ": spot_reclaimed"},
		agents: linux("lost", 1),
	}, {
		name:   "the re-run was accepted: the dead agent is deleted, the loss not reported again",
		cfg:    withReruns,
		mem:    remembered(map[string]agentMemory{a51: ran}, nil),
		scene:  scene{comps: running1(), pods: []*corev1.Pod{pod(5, 1, podFailed("Expired", "Spot ECI was released"))}, asked: []string{a51}},
		states: map[string]agentState{a51: stateInfraLost},
		acts:   []string{"delete " + a51 + " (failed)", "report lost " + a51 + ": SpotReclaimed (tell false)"},
		then:   func(t *testing.T, d *decision) { wantOutcomes(t, d, a51+" SpotReclaimed rerun") },
	}, {
		name:   "restart after the loss: the same dead agent under the same build asks again (the dispatcher dedups)",
		cfg:    withReruns,
		scene:  scene{comps: running1()},
		states: map[string]agentState{a51: stateInfraLost},
		acts:   []string{"request rerun " + a51 + ": pod_deleted"},
		agents: linux("lost", 1),
	}, {
		name:   "evicted under the build: re-run",
		cfg:    withReruns,
		mem:    remembered(map[string]agentMemory{a51: ran}, nil),
		scene:  scene{comps: running1(), pods: []*corev1.Pod{pod(5, 1, podFailed("Evicted", "The node was low on resource: ephemeral-storage."))}},
		states: map[string]agentState{a51: stateInfraLost},
		acts:   []string{"request rerun " + a51 + ": evicted"},
		agents: linux("lost", 1),
	}, {
		name:   "the pod's node is lost (phase Unknown) and the agent disconnected past the timeout: re-run",
		cfg:    withReruns,
		mem:    remembered(map[string]agentMemory{a51: seenBefore(func(m *agentMemory) { m.offlineSince = t0.Add(-3 * time.Minute) })}, nil),
		scene:  scene{comps: []jenkins.Computer{node(5, 1, runs(1), marked)}, pods: []*corev1.Pod{pod(5, 1, podUnknown)}},
		states: map[string]agentState{a51: stateInfraLost},
		acts:   []string{"request rerun " + a51 + ": node_lost"},
		agents: linux("lost", 1),
	}, {
		name:   "the agent container ran out of memory: the build's doing, reported, never re-run",
		cfg:    withReruns,
		mem:    remembered(map[string]agentMemory{a51: ran}, nil),
		scene:  scene{comps: running1(), pods: []*corev1.Pod{pod(5, 1, oomKilled)}},
		states: map[string]agentState{a51: stateLost},
		acts:   []string{"delete " + a51 + " (failed)", "report lost " + a51 + ": OOMKilled (tell true)"},
		then:   func(t *testing.T, d *decision) { wantOutcomes(t, d, a51+" OOMKilled died_mid_build") },
	}, {
		name:   "disconnected while its pod runs: may be the build's doing, reported, never re-run",
		cfg:    withReruns,
		mem:    remembered(map[string]agentMemory{a51: seenBefore(func(m *agentMemory) { m.offlineSince = t0.Add(-3 * time.Minute) })}, nil),
		scene:  scene{comps: []jenkins.Computer{node(5, 1, runs(1), marked)}, pods: []*corev1.Pod{pod(5, 1, running)}},
		states: map[string]agentState{a51: stateLost},
		acts:   []string{"delete " + a51 + " (failed)", "report lost " + a51 + ": NodeLost (tell true)"},
	}, {
		name:   "its build is over (steps failed or not): deleted, nothing re-run",
		cfg:    withReruns,
		mem:    remembered(map[string]agentMemory{a51: ran}, nil),
		scene:  scene{comps: []jenkins.Computer{node(5, 1, connected, marked)}, pods: []*corev1.Pod{pod(5, 1, running)}},
		states: map[string]agentState{a51: stateBuildOver},
		acts:   []string{"delete " + a51 + " (build_over)"},
		agents: linux("terminating", 1),
	}})
}

func oomKilled(p *corev1.Pod) {
	p.Status = corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{Name: eci.ContainerName,
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}}}}}
}

func TestInfraCause(t *testing.T) {
	for _, tc := range []struct {
		reason eci.Reason
		phase  corev1.PodPhase
		want   string
	}{
		{eci.ReasonSpotReclaimed, corev1.PodFailed, "spot_reclaimed"},
		{eci.ReasonPodGone, "", "pod_deleted"},
		{eci.ReasonEvicted, corev1.PodFailed, "evicted"},
		{eci.ReasonProviderFailed, corev1.PodFailed, "eci_system_failure"},
		{eci.ReasonNodeLost, corev1.PodUnknown, "node_lost"},
		{eci.ReasonNodeLost, corev1.PodRunning, ""},
		{eci.ReasonOOMKilled, corev1.PodFailed, ""},
		{eci.ReasonContainerFailed, corev1.PodFailed, ""},
		{eci.ReasonDeadlineExceeded, corev1.PodFailed, ""},
		{eci.ReasonUnknown, corev1.PodFailed, ""},
	} {
		var pod *corev1.Pod
		if tc.phase != "" {
			pod = &corev1.Pod{Status: corev1.PodStatus{Phase: tc.phase}}
		}
		c, ok := infraCause(pod, eci.Failure{Reason: tc.reason})
		if c.reason != tc.want || ok != (tc.want != "") {
			t.Errorf("infraCause(%s, %s) = %q %v, want %q", tc.reason, tc.phase, c.reason, ok, tc.want)
		}
	}
}

func TestRerunItemsGetOnDemandAgents(t *testing.T) {
	for id, want := range map[string]bool{"gh-1/app": false, "gh-1/app#2": true, "gh-1/app#3": true, "gh-1/app#x": false, "": false} {
		if got := isRerun(jenkins.QueueItem{Params: map[string]string{triggerIDParam: id}}); got != want {
			t.Errorf("isRerun(%q) = %v, want %v", id, got, want)
		}
	}
}
