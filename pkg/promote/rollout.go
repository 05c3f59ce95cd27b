package promote

import (
	"context"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/store"
)

// errRollout marks a rollout that failed for good (it cannot progress or
// did not finish in time), as opposed to an API error worth retrying.
var errRollout = errors.New("rollout failed")

// containerOf picks the container whose image is promoted.
func containerOf(d *appsv1.Deployment, want string) (string, error) {
	cs := d.Spec.Template.Spec.Containers
	if want != "" {
		for _, c := range cs {
			if c.Name == want {
				return c.Name, nil
			}
		}
		return "", fmt.Errorf("deployment %s/%s has no container %q", d.Namespace, d.Name, want)
	}
	if len(cs) == 1 {
		return cs[0].Name, nil
	}
	for _, c := range cs {
		if c.Name == d.Name {
			return c.Name, nil
		}
	}
	return "", fmt.Errorf("deployment %s/%s has %d containers and none is named like it: set the environment's container", d.Namespace, d.Name, len(cs))
}

// currentImages reads what the environment's Deployments run now.
func currentImages(ctx context.Context, kube kubernetes.Interface, env config.PromotionEnvironment) ([]store.DeploymentImage, error) {
	out := make([]store.DeploymentImage, 0, len(env.Deployments))
	for _, name := range env.Deployments {
		d, err := kube.AppsV1().Deployments(env.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("read deployment %s/%s: %w", env.Namespace, name, err)
		}
		c, err := containerOf(d, env.Container)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errRollout, err)
		}
		out = append(out, store.DeploymentImage{Namespace: env.Namespace, Deployment: name, Container: c, Image: imageOf(d, c)})
	}
	return out, nil
}

func imageOf(d *appsv1.Deployment, container string) string {
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == container {
			return c.Image
		}
	}
	return ""
}

// setImage sets one container's image; it changes nothing when the image
// is already set, so repeating it after a restart is harmless.
func setImage(ctx context.Context, kube kubernetes.Interface, di store.DeploymentImage) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := kube.AppsV1().Deployments(di.Namespace).Get(ctx, di.Deployment, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Spec.Paused {
			return fmt.Errorf("%w: deployment %s/%s is paused; resume it (kubectl rollout resume) and promote again", errRollout, di.Namespace, di.Deployment)
		}
		changed := false
		for i := range d.Spec.Template.Spec.Containers {
			c := &d.Spec.Template.Spec.Containers[i]
			if c.Name == di.Container && c.Image != di.Image {
				c.Image, changed = di.Image, true
			}
		}
		if !changed {
			return nil
		}
		_, err = kube.AppsV1().Deployments(di.Namespace).Update(ctx, d, metav1.UpdateOptions{FieldManager: "ferry"})
		return err
	})
	if err != nil {
		return fmt.Errorf("set image of %s/%s container %s: %w", di.Namespace, di.Deployment, di.Container, err)
	}
	return nil
}

// RolloutStatus applies kubectl's rollout status rules to a Deployment:
// done, or a message saying what it waits for; an error wrapping
// errRollout when the rollout cannot progress.
func RolloutStatus(d *appsv1.Deployment) (bool, string, error) {
	if d.Generation > d.Status.ObservedGeneration {
		return false, "waiting for the controller to observe the new generation", nil
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" {
			return false, "", fmt.Errorf("%w: deployment %s/%s exceeded its progress deadline: %s", errRollout, d.Namespace, d.Name, c.Message)
		}
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := d.Status
	switch {
	case st.UpdatedReplicas < want:
		return false, fmt.Sprintf("%d of %d new replicas updated", st.UpdatedReplicas, want), nil
	case st.Replicas > st.UpdatedReplicas:
		return false, fmt.Sprintf("%d old replicas pending termination", st.Replicas-st.UpdatedReplicas), nil
	case st.AvailableReplicas < st.UpdatedReplicas:
		return false, fmt.Sprintf("%d of %d updated replicas available", st.AvailableReplicas, st.UpdatedReplicas), nil
	}
	return true, "rolled out", nil
}

// waitRollout waits until every Deployment of images runs its image
// (kubectl's rules), up to timeout. A timeout or a stuck rollout is an
// error wrapping errRollout.
func waitRollout(ctx context.Context, kube kubernetes.Interface, images []store.DeploymentImage, timeout, poll time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, di := range images {
		last := ""
		for {
			d, err := kube.AppsV1().Deployments(di.Namespace).Get(ctx, di.Deployment, metav1.GetOptions{})
			if err == nil {
				if imageOf(d, di.Container) != di.Image {
					return fmt.Errorf("%w: deployment %s/%s was changed to %s by someone else", errRollout, di.Namespace, di.Deployment, imageOf(d, di.Container))
				}
				var done bool
				done, last, err = RolloutStatus(d)
				if err != nil {
					return err
				}
				if done {
					break
				}
			}
			select {
			case <-ctx.Done():
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					return fmt.Errorf("%w: deployment %s/%s not rolled out within %s (%s)", errRollout, di.Namespace, di.Deployment, timeout, last)
				}
				return ctx.Err()
			case <-time.After(poll):
			}
		}
	}
	return nil
}

// rolledOut reports whether every Deployment still runs its image, fully
// available (used after the soak time).
func rolledOut(ctx context.Context, kube kubernetes.Interface, images []store.DeploymentImage) error {
	for _, di := range images {
		d, err := kube.AppsV1().Deployments(di.Namespace).Get(ctx, di.Deployment, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("read deployment %s/%s: %w", di.Namespace, di.Deployment, err)
		}
		if imageOf(d, di.Container) != di.Image {
			return fmt.Errorf("%w: deployment %s/%s was changed to %s during the soak", errRollout, di.Namespace, di.Deployment, imageOf(d, di.Container))
		}
		done, msg, err := RolloutStatus(d)
		if err != nil {
			return err
		}
		if !done {
			return fmt.Errorf("%w: deployment %s/%s became unhealthy during the soak: %s", errRollout, di.Namespace, di.Deployment, msg)
		}
	}
	return nil
}

// podEnv is what a verification Job learns about the promotion.
func podEnv(p store.Promotion, env string) []corev1.EnvVar {
	return []corev1.EnvVar{
		{Name: "FERRY_IMAGE", Value: p.Target},
		{Name: "FERRY_DIGEST", Value: p.SourceDigest},
		{Name: "FERRY_ENVIRONMENT", Value: env},
		{Name: "FERRY_PROMOTION", Value: p.ID},
	}
}
