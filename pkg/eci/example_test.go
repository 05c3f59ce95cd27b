package eci_test

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ferryci/ferry/pkg/eci"
)

// The provisioner's path for one attempt: resolve the templates once, then
// create the Secret of the batch's JNLP secrets, render and create the pod,
// hand the Secret to the pod and later classify the pod.
func Example() {
	ctx := context.Background()
	templates, err := eci.Resolve([]eci.Template{
		{Name: "base", ECI: eci.ECI{Specs: []string{"2-4Gi", "4-8Gi"}, SpotStrategy: eci.SpotAsPriceGo}},
		{Name: "linux", Inherits: "base", Labels: []string{"linux"}, Fallbacks: []eci.Fallback{{OnDemand: true}}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	t := templates["linux"]
	a := eci.Agent{Name: eci.AgentName(42, 1), Namespace: "ci", QueueID: 42, Attempt: 1, JenkinsURL: "http://jenkins:8080/"}
	secret := eci.RenderSecret(a.Namespace, nil, map[string]string{a.Name: "from computer/NAME/jenkins-agent.jnlp"})
	secret.Name = "ferry-agent-secrets-1" // the API server generates it; the fake does not

	kube := fake.NewClientset()
	secret, err = kube.CoreV1().Secrets(a.Namespace).Create(ctx, secret, metav1.CreateOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	a.SecretName = secret.Name
	pod, err := kube.CoreV1().Pods(a.Namespace).Create(ctx, eci.Render(t, a), metav1.CreateOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	pod.UID = "uid-1" // the API server sets it; the fake does not
	if err := eci.OwnSecret(secret, pod); err != nil {
		fmt.Println(err)
		return
	}
	if _, err := kube.CoreV1().Secrets(a.Namespace).Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(pod.Name, pod.Annotations["k8s.aliyun.com/eci-spot-strategy"])

	// Later, the informer shows ECI out of stock.
	pod.Status.Phase = corev1.PodFailed
	pod.Status.Reason = "ProviderFailed"
	pod.Status.Message = "NoStock: the requested resource is sold out"
	f := eci.Classify(pod, nil, t.ClassifyOptions(time.Now(), false))
	fmt.Println(f.Reason, f.Retryable, f.Fallback)

	// So the next attempt uses fallback level 1: on-demand.
	if f.Retryable && a.Attempt < t.Retry.MaxAttempts {
		next := a
		next.Attempt++
		next.Name = eci.AgentName(next.QueueID, next.Attempt)
		if f.Fallback {
			next.Fallback++
		}
		pod := eci.Render(t, next)
		fmt.Println(pod.Name, pod.Annotations["k8s.aliyun.com/eci-spot-strategy"] == "", t.Retry.Delay(next.Attempt))
	}
	// Output:
	// ferry-agent-42-1 SpotAsPriceGo
	// NoStock true true
	// ferry-agent-42-2 true 5s
}
