package testbed

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// Deadlines are generous: the machine is shared and slow at times; the
// tests assert what happens, not how fast.
const (
	podTimeout     = 90 * time.Second
	rolloutTimeout = 180 * time.Second
)

func createPod(t *testing.T, cs kubernetes.Interface, ns string, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	created, err := cs.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s/%s: %v", ns, pod.Name, err)
	}
	return created
}

func TestVirtualNodePodIsScheduledAndRuns(t *testing.T) {
	env := Kube(t)
	ns := Namespace(t)
	ferry := FerryClientset(t)

	createPod(t, ferry, ns, VirtualNodePod("agent", "jenkins/inbound-agent:3309.v27b_9314fd1a_4-1"))
	pod := WaitForPod(t, ferry, ns, "agent", podTimeout, PodPhase(corev1.PodRunning))

	nodes := strings.Split(env.Get(KeyVirtualNodes), ",")
	if !slices.Contains(nodes, pod.Spec.NodeName) {
		t.Errorf("pod runs on node %q, want one of the virtual nodes %v", pod.Spec.NodeName, nodes)
	}
	for _, ct := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodReady, corev1.ContainersReady} {
		if c := PodCondition(pod, ct); c == nil || c.Status != corev1.ConditionTrue {
			t.Errorf("condition %s = %+v, want True (%s)", ct, c, DescribePod(pod))
		}
	}
	if pod.Status.PodIP == "" || pod.Status.StartTime == nil {
		t.Errorf("podIP = %q, startTime = %v; want both set", pod.Status.PodIP, pod.Status.StartTime)
	}
	if len(pod.Status.ContainerStatuses) != 1 || pod.Status.ContainerStatuses[0].State.Running == nil {
		t.Errorf("container statuses = %+v, want one running container", pod.Status.ContainerStatuses)
	}

	node, err := Clientset(t).CoreV1().Nodes().Get(context.Background(), pod.Spec.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get node %s: %v", pod.Spec.NodeName, err)
	}
	if node.Labels[ZoneLabel] == "" || node.Labels["kubernetes.io/role"] != "agent" {
		t.Errorf("node %s labels = %v, want a zone and kubernetes.io/role=agent", node.Name, node.Labels)
	}
}

func TestPodWithoutTolerationIsNotScheduled(t *testing.T) {
	ns := Namespace(t)
	cs := FerryClientset(t)

	pod := VirtualNodePod("untolerated", "busybox")
	pod.Spec.Tolerations = nil
	createPod(t, cs, ns, pod)

	got := WaitForPod(t, cs, ns, pod.Name, podTimeout, func(p *corev1.Pod) bool {
		c := PodCondition(p, corev1.PodScheduled)
		return c != nil && c.Status == corev1.ConditionFalse
	})
	c := PodCondition(got, corev1.PodScheduled)
	if c.Reason != corev1.PodReasonUnschedulable || !strings.Contains(c.Message, "untolerated taint") {
		t.Errorf("PodScheduled = %s %q, want reason %s for untolerated taints", c.Reason, c.Message, corev1.PodReasonUnschedulable)
	}
	if got.Spec.NodeName != "" || got.Status.Phase != corev1.PodPending {
		t.Errorf("pod node=%q phase=%s, want unbound and Pending", got.Spec.NodeName, got.Status.Phase)
	}
}

func TestPodsSpreadOverBothZones(t *testing.T) {
	env := Kube(t)
	ns := Namespace(t)
	cs := FerryClientset(t)

	zones := strings.Split(env.Get(KeyVirtualNodeZones), ",")
	if len(zones) < 2 {
		t.Fatalf("%s = %v, want two zones", KeyVirtualNodeZones, zones)
	}
	for _, name := range []string{"spread-a", "spread-b"} {
		pod := VirtualNodePod(name, "busybox")
		pod.Labels = map[string]string{"app": "spread"}
		pod.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{
			MaxSkew:           1,
			TopologyKey:       ZoneLabel,
			WhenUnsatisfiable: corev1.DoNotSchedule,
			LabelSelector:     &metav1.LabelSelector{MatchLabels: pod.Labels},
		}}
		createPod(t, cs, ns, pod)
		// One at a time, so the scheduler sees the first when placing the
		// second.
		WaitForPod(t, cs, ns, name, podTimeout, func(p *corev1.Pod) bool { return p.Spec.NodeName != "" })
	}
	nodeZone := map[string]string{}
	// ferry reads no nodes: the admin does.
	nodes, err := Clientset(t).CoreV1().Nodes().List(context.Background(), metav1.ListOptions{LabelSelector: labels.SelectorFromSet(VirtualNodeSelector()).String()})
	if err != nil {
		t.Fatalf("list virtual nodes: %v", err)
	}
	for _, n := range nodes.Items {
		nodeZone[n.Name] = n.Labels[ZoneLabel]
	}
	seen := map[string]bool{}
	for _, name := range []string{"spread-a", "spread-b"} {
		p := WaitForPod(t, cs, ns, name, podTimeout, PodPhase(corev1.PodRunning))
		seen[nodeZone[p.Spec.NodeName]] = true
	}
	if len(seen) != 2 {
		t.Errorf("pods landed in zones %v, want both of %v", seen, zones)
	}
}

func TestDeploymentRollsOutAndRollsAgain(t *testing.T) {
	ns := Namespace(t)
	// The bed's controllers are under test, not ferry's rights (ferry
	// neither creates Deployments nor reads ReplicaSets): act as the admin.
	cs := Clientset(t)
	ctx := context.Background()

	dep := VirtualNodeDeployment("web", "registry.example/web:v1", 3)
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment: %v", err)
	}
	waitRolledOut(t, cs, ns, "web", "registry.example/web:v1")

	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		d.Spec.Template.Spec.Containers[0].Image = "registry.example/web:v2"
		_, err = cs.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("update deployment image: %v", err)
	}
	waitRolledOut(t, cs, ns, "web", "registry.example/web:v2")

	rss, err := cs.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatalf("list replica sets: %v", err)
	}
	if len(rss.Items) != 2 {
		t.Fatalf("got %d replica sets, want 2 (one per image)", len(rss.Items))
	}
	for _, rs := range rss.Items {
		want := int32(0)
		if rs.Spec.Template.Spec.Containers[0].Image == "registry.example/web:v2" {
			want = 3
		}
		if rs.Spec.Replicas == nil || *rs.Spec.Replicas != want {
			t.Errorf("replica set %s (%s) wants %v replicas, want %d", rs.Name, rs.Spec.Template.Spec.Containers[0].Image, rs.Spec.Replicas, want)
		}
	}
}

// waitRolledOut waits until deployment name has its replicas updated to
// image, all available, and only pods of that image are left running.
func waitRolledOut(t *testing.T, cs kubernetes.Interface, ns, name, image string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), rolloutTimeout)
	defer cancel()
	var state string
	err := poll(ctx, 200*time.Millisecond, func() (bool, error) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		want := *d.Spec.Replicas
		st := d.Status
		state = "deployment: " + summarizeDeployment(d)
		if st.ObservedGeneration < d.Generation || st.UpdatedReplicas != want || st.AvailableReplicas != want || st.Replicas != want {
			return false, nil
		}
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(d.Spec.Selector.MatchLabels).String()})
		if err != nil {
			return false, err
		}
		var running int32
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil {
				continue
			}
			if p.Spec.Containers[0].Image != image {
				state += "; pod " + p.Name + " still has " + p.Spec.Containers[0].Image
				return false, nil
			}
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		return running == want, nil
	})
	if err != nil {
		t.Fatalf("wait for deployment %s/%s to roll out %s: %v; %s", ns, name, image, err, state)
	}
}

func summarizeDeployment(d *appsv1.Deployment) string {
	st := d.Status
	return fmt.Sprintf("generation=%d observed=%d replicas=%d updated=%d available=%d",
		d.Generation, st.ObservedGeneration, st.Replicas, st.UpdatedReplicas, st.AvailableReplicas)
}

// TestFerryIdentityIsConfinedToItsNamespaces checks on the real apiserver
// that ferry's identity has a part's rights only where that part's Role is
// bound, and nothing cluster-wide.
func TestFerryIdentityIsConfinedToItsNamespaces(t *testing.T) {
	both := Namespace(t)
	agents := Namespace(t, AgentsRole)
	promotion := Namespace(t, PromotionRole)
	admin := Clientset(t)
	ferry := FerryClientset(t)
	ctx := context.Background()

	// A namespace without ferry's RoleBindings.
	other, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "tb-unbound-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create unbound namespace: %v", err)
	}
	t.Cleanup(func() {
		_ = admin.CoreV1().Namespaces().Delete(context.Background(), other.Name, metav1.DeleteOptions{})
	})

	createSecret := func(ns string) func() error {
		return func() error {
			_, err := ferry.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{GenerateName: "agent-secret-"}, StringData: map[string]string{"k": "v"},
			}, metav1.CreateOptions{})
			return err
		}
	}
	// Deployments ferry has not made: the right is decided before the
	// object is looked for, so NotFound means allowed.
	getDeployment := func(ns string) func() error {
		return func() error {
			_, err := ferry.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return err
		}
	}
	tests := []struct {
		name      string
		do        func() error
		forbidden bool
	}{
		{"create a secret where both parts work", createSecret(both), false},
		{"read a deployment where both parts work", getDeployment(both), false},
		{"create a secret in the agents namespace", createSecret(agents), false},
		{"read a deployment in the agents namespace", getDeployment(agents), true},
		{"create a secret in an environment namespace", createSecret(promotion), true},
		{"read a deployment in an environment namespace", getDeployment(promotion), false},
		{"create a secret in an unbound namespace", createSecret(other.Name), true},
		{"list nodes", func() error {
			_, err := ferry.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			return err
		}, true},
		{"list namespaces", func() error {
			_, err := ferry.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
			return err
		}, true},
		{"list secrets cluster-wide", func() error {
			_, err := ferry.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
			return err
		}, true},
		{"create a namespace", func() error {
			_, err := ferry.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "tb-ferry-"}}, metav1.CreateOptions{})
			return err
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do()
			if tt.forbidden && !apierrors.IsForbidden(err) {
				t.Errorf("err = %v, want Forbidden", err)
			}
			if !tt.forbidden && err != nil {
				t.Errorf("err = %v, want nil", err)
			}
		})
	}
}
