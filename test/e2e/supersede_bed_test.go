package e2e

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/test/jenkinsemu"
	"github.com/ferryci/ferry/test/testbed"
)

// TestSupersededBuildsLeaveNoAgentPods runs on the test bed: the first head
// of a pull request runs on its agent pod, the next two arrive; the first
// build is stopped and the second's queue item cancelled (or never
// created), and their agent pods go away while the newest head's stays.
func TestSupersededBuildsLeaveNoAgentPods(t *testing.T) {
	env := testbed.Kube(t)
	cs := testbed.Clientset(t)
	ns := testbed.Namespace(t)
	const label = "ferry-agent"
	w := start(t, func(c *config.Config) {
		c.Agents.Enabled = true
		c.Agents.Namespace = ns
		c.Agents.Kubeconfig = env.Get(testbed.KeyKubeconfigFerry)
		c.Agents.Resync = config.Duration{Duration: 500 * time.Millisecond}
		// A cancelled item's agent that has no build may be collected as an
		// orphan; the default grace (30s) outlasts the test's wait.
		c.Agents.GCGrace = config.Duration{Duration: time.Second}
		c.Agents.LeaderElection.LeaseDuration = config.Duration{Duration: 4 * time.Second}
		c.Agents.LeaderElection.RenewDeadline = config.Duration{Duration: 3 * time.Second}
		c.Agents.LeaderElection.RetryPeriod = config.Duration{Duration: 500 * time.Millisecond}
		c.Agents.Templates = []eci.Template{{Name: "default", Labels: []string{label}}}
	})
	if err := w.jenkins.UpdateJob("acme/app", func(s *jenkinsemu.JobSpec) { s.Label = label }); err != nil {
		t.Fatal(err)
	}
	pods := func() []corev1.Pod {
		l, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: eci.LabelAgent})
		if err != nil {
			return nil
		}
		return l.Items
	}
	// Play the agents: connect each pod's agent once it runs.
	connected := map[string]bool{}
	connect := func() {
		for _, p := range pods() {
			a := p.Labels[eci.LabelAgent]
			if p.Status.Phase == corev1.PodRunning && !connected[a] && w.jenkins.ConnectAgent(a, w.jenkins.AgentSecret(a)) == nil {
				connected[a] = true
			}
		}
	}

	w.mustAccept("pull_request", "bed-a", w.prEvent("opened", prA, "mia", "MEMBER", false))
	w.eventually("the first head running on its agent", func() bool {
		connect()
		b := w.buildsOf(prA)
		return len(b) == 1 && b[0].Building && b[0].Node != ""
	})
	firstAgent := w.buildsOf(prA)[0].Node
	w.mustAccept("pull_request", "bed-b", w.prEvent("synchronize", prB, "mia", "MEMBER", false))
	w.mustAccept("pull_request", "bed-c", w.prEvent("synchronize", prC, "mia", "MEMBER", false))
	w.eventually("the newest head running on its agent", func() bool {
		connect()
		b := w.buildsOf(prC)
		return len(b) == 1 && b[0].Building && b[0].Node != ""
	})
	newest := w.buildsOf(prC)[0].Node
	w.eventually("only the newest head's agent pod left", func() bool {
		connect()
		left := pods()
		_, firstNode := w.jenkins.Node(firstAgent)
		// Jenkins may hand the newest head's item to the first agent once
		// its build is stopped (the known one-build-per-agent gap); then
		// that agent is the newest head's and stays.
		return len(left) == 1 && left[0].Labels[eci.LabelAgent] == newest && (!firstNode || firstAgent == newest)
	})
	if b := w.buildsOf(prA); b[0].Result != jenkinsemu.Aborted {
		t.Errorf("first head's build = %+v, want ABORTED", b[0])
	}
	for _, b := range w.buildsOf(prB) {
		if b.Result != jenkinsemu.Aborted {
			t.Errorf("second head's build = %+v, want ABORTED", b)
		}
	}
}
