package e2e

import (
	"context"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/test/jenkinsemu"
	"github.com/ferryci/ferry/test/scmfake"
	"github.com/ferryci/ferry/test/testbed"
)

// TestPushToAgentToStatus runs the whole path on the test bed: a signed
// push is triggered in Jenkins, the provisioner (elected through a Lease)
// starts one agent pod on an ECI-like virtual node, the "agent" connects,
// the build succeeds, the pod and the Jenkins node go away, and the commit
// shows success.
func TestPushToAgentToStatus(t *testing.T) {
	env := testbed.Kube(t)
	cs := testbed.Clientset(t)
	ns := testbed.Namespace(t)
	const label = "ferry-agent"
	w := start(t, func(c *config.Config) {
		c.Agents.Enabled = true
		c.Agents.Namespace = ns
		c.Agents.Kubeconfig = env.Get(testbed.KeyKubeconfigFerry)
		c.Agents.Resync = config.Duration{Duration: 500 * time.Millisecond}
		c.Agents.LeaderElection.LeaseDuration = config.Duration{Duration: 4 * time.Second}
		c.Agents.LeaderElection.RenewDeadline = config.Duration{Duration: 3 * time.Second}
		c.Agents.LeaderElection.RetryPeriod = config.Duration{Duration: 500 * time.Millisecond}
		c.Agents.Templates = []eci.Template{{Name: "default", Labels: []string{label}}}
	})
	if err := w.jenkins.UpdateJob("acme/app", func(s *jenkinsemu.JobSpec) { s.Label = label }); err != nil {
		t.Fatal(err)
	}
	if code, r := w.githubHook("push", "agent-1", w.payload("github_push.json")); code != http.StatusAccepted {
		t.Fatalf("push answered %d %+v", code, r)
	}

	// Play the agent: connect once the pod runs.
	var pod corev1.Pod
	w.eventually("an agent pod Running on a virtual node", func() bool {
		pods, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: eci.LabelAgent})
		if err != nil || len(pods.Items) != 1 {
			return false
		}
		pod = pods.Items[0]
		return pod.Status.Phase == corev1.PodRunning
	})
	node, err := cs.CoreV1().Nodes().Get(context.Background(), pod.Spec.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if node.Labels["type"] != "virtual-kubelet" {
		t.Fatalf("agent pod runs on %s, not a virtual node", node.Name)
	}
	agent := pod.Labels[eci.LabelAgent]
	if err := w.jenkins.ConnectAgent(agent, w.jenkins.AgentSecret(agent)); err != nil {
		t.Fatalf("connect agent %s: %v", agent, err)
	}
	w.eventually("the build running on the agent", func() bool {
		b := w.builds("acme/app")
		return len(b) == 1 && b[0].Node == agent
	})
	if err := w.jenkins.FinishBuild("acme/app", 1, jenkinsemu.Success); err != nil {
		t.Fatal(err)
	}
	w.github.WaitFor(t, scmfake.HasStates(ghSHA, "ferry/app", "pending", "success"), 20*time.Second)
	w.eventually("the agent pod and its Jenkins node gone", func() bool {
		_, nodeLeft := w.jenkins.Node(agent)
		pods, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: eci.LabelAgent})
		return err == nil && len(pods.Items) == 0 && !nodeLeft
	})
	if n := len(w.builds("acme/app")); n != 1 {
		t.Fatalf("%d builds, want 1", n)
	}
}
