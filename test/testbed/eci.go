package testbed

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The bed's virtual nodes look like ACK's ECI virtual-kubelet nodes.
const (
	VirtualNodeLabel      = "type"
	VirtualNodeLabelValue = "virtual-kubelet"
	VirtualNodeTaintKey   = "virtual-kubelet.io/provider"
	VirtualNodeTaintValue = "alibabacloud"
	ZoneLabel             = "topology.kubernetes.io/zone"
)

// Annotations read by the bed's kwok stages (test/bed/kwok/*.yaml) on pods
// that run on the virtual nodes. They exist only in the test bed.
const (
	// SimulateAnnotation selects an ECI behaviour; see the Simulate* values.
	SimulateAnnotation = "testbed.ferry.dev/simulate"
	// StartDelayAnnotation (a Go duration, e.g. "0s", "5s") sets how long the
	// container instance takes to start, or to fail; default a random 1-2 s.
	StartDelayAnnotation = "testbed.ferry.dev/start-delay"
	// CompleteAnnotation ends a Running pod as a finished container would:
	// CompleteSucceeded or CompleteFailed.
	CompleteAnnotation = "testbed.ferry.dev/complete"
	// ExitCodeAnnotation is the exit code of a pod ended with
	// CompleteFailed (default 1).
	ExitCodeAnnotation = "testbed.ferry.dev/exit-code"
	// SpotWarningDelayAnnotation is the time from Running to the
	// SpotToBeReleased warning of SimulateSpotReclaim (default 2s).
	SpotWarningDelayAnnotation = "testbed.ferry.dev/spot-warning-delay"
	// SpotReleaseDelayAnnotation is the time from the warning to the release
	// of SimulateSpotReclaim (default 3s).
	SpotReleaseDelayAnnotation = "testbed.ferry.dev/spot-release-delay"
)

// Values of SimulateAnnotation.
const (
	// SimulateNone: Pending, then Running after the start delay.
	SimulateNone = "none"
	// SimulateImagePullFailure: stays Pending; containers wait with reason
	// ErrImagePull, then ImagePullBackOff.
	SimulateImagePullFailure = "image-pull-failure"
	// SimulateProviderFailed: Failed with status.reason ProviderFailed and a
	// ProviderCreateFailed warning event.
	SimulateProviderFailed = "provider-failed"
	// SimulateNoStock: stays Pending with condition
	// ContainerInstanceCreated=False, reason NoStock.
	SimulateNoStock = "no-stock"
	// SimulateSpotReclaim: Running, then a SpotToBeReleased warning event and
	// condition, then Failed with status.reason Expired (exit code 137).
	SimulateSpotReclaim = "spot-reclaim"
	// SimulatePendingForever: scheduled, but its status never changes.
	SimulatePendingForever = "pending-forever"
)

// Values of CompleteAnnotation.
const (
	CompleteSucceeded = "true"
	CompleteFailed    = "failed"
)

// ECI status signals the simulations produce.
const ConditionContainerInstanceCreated corev1.PodConditionType = "ContainerInstanceCreated"

// ECI reasons the simulations produce.
const (
	ReasonProviderFailed      = "ProviderFailed"
	ReasonNoStock             = "NoStock"
	ReasonSpotToBeReleased    = "SpotToBeReleased"
	ReasonExpired             = "Expired"
	EventProviderCreateFailed = "ProviderCreateFailed"
)

// VirtualNodeSelector returns the node selector that steers a pod to the
// virtual nodes.
func VirtualNodeSelector() map[string]string {
	return map[string]string{VirtualNodeLabel: VirtualNodeLabelValue}
}

// VirtualNodeToleration returns the toleration for the virtual nodes' taint.
func VirtualNodeToleration() corev1.Toleration {
	return corev1.Toleration{
		Key:      VirtualNodeTaintKey,
		Operator: corev1.TolerationOpEqual,
		Value:    VirtualNodeTaintValue,
		Effect:   corev1.TaintEffectNoSchedule,
	}
}

// VirtualNodePod returns a one-container pod (container "main") that the
// scheduler places on a virtual node; callers add labels and annotations.
func VirtualNodePod(name, image string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			NodeSelector:  VirtualNodeSelector(),
			Tolerations:   []corev1.Toleration{VirtualNodeToleration()},
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "main", Image: image}},
		},
	}
}

// VirtualNodeDeployment returns a Deployment of replicas pods, each one
// container named like the Deployment, labelled app=<name> and placed on
// the virtual nodes.
func VirtualNodeDeployment(name, image string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector: VirtualNodeSelector(),
					Tolerations:  []corev1.Toleration{VirtualNodeToleration()},
					Containers:   []corev1.Container{{Name: name, Image: image}},
				},
			},
		},
	}
}
