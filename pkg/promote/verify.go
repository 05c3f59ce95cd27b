package promote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ferryci/ferry/pkg/config"
)

// errVerify marks a failed verification.
var errVerify = errors.New("verification failed")

// httpCheck GETs the URL until it answers 2xx Successes times in a row; it
// fails after FailureThreshold failures in a row or when Timeout passes.
func httpCheck(ctx context.Context, client *http.Client, c config.HTTPCheck) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout.Duration)
	defer cancel()
	ok, bad := 0, 0
	last := ""
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL, nil)
		if err != nil {
			return fmt.Errorf("%w: GET %s: %w", errVerify, c.URL, err)
		}
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			_ = resp.Body.Close()
			if resp.StatusCode >= 200 && resp.StatusCode < 300 {
				ok, bad = ok+1, 0
			} else {
				ok, bad, last = 0, bad+1, resp.Status
			}
		} else if ctx.Err() == nil {
			ok, bad, last = 0, bad+1, err.Error()
		}
		switch {
		case ok >= c.Successes:
			return nil
		case bad >= c.FailureThreshold:
			return fmt.Errorf("%w: GET %s failed %d times in a row (last: %s)", errVerify, c.URL, bad, last)
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%w: GET %s did not answer 2xx %d times in a row within %s (last: %s)", errVerify, c.URL, c.Successes, c.Timeout, last)
			}
			return ctx.Err()
		case <-time.After(c.Interval.Duration):
		}
	}
}

// jobCheck runs a Job from the template and waits for it to succeed. The
// Job's name is derived from the promotion, so after a restart the same
// Job is found and waited for instead of started again.
func jobCheck(ctx context.Context, kube kubernetes.Interface, ns, name string, c config.JobCheck, env []corev1.EnvVar, poll time.Duration) error {
	spec := c.Template.DeepCopy()
	for i := range spec.Template.Spec.Containers {
		spec.Template.Spec.Containers[i].Env = append(spec.Template.Spec.Containers[i].Env, env...)
	}
	if spec.Template.Spec.RestartPolicy == "" {
		spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app.kubernetes.io/managed-by": "ferry"}},
		Spec:       *spec,
	}
	_, err := kube.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{FieldManager: "ferry"})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create verification job %s/%s: %w", ns, name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout.Duration)
	defer cancel()
	for {
		j, err := kube.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			for _, cond := range j.Status.Conditions {
				if cond.Status != corev1.ConditionTrue {
					continue
				}
				switch cond.Type {
				case batchv1.JobComplete:
					return nil
				case batchv1.JobFailed:
					return fmt.Errorf("%w: job %s/%s failed: %s %s", errVerify, ns, name, cond.Reason, strings.TrimSpace(cond.Message))
				}
			}
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%w: job %s/%s did not finish within %s", errVerify, ns, name, c.Timeout)
			}
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

// deleteJob deletes a finished verification Job and, in the background,
// its pods. A Job already gone is not an error: deleting is repeated
// after a restart that came between deleting and recording it.
func deleteJob(ctx context.Context, kube kubernetes.Interface, ns, name string) (gone bool, err error) {
	bg := metav1.DeletePropagationBackground
	err = kube.BatchV1().Jobs(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &bg})
	switch {
	case err == nil:
		return false, nil
	case apierrors.IsNotFound(err):
		return true, nil
	}
	return false, fmt.Errorf("delete verification job %s/%s: %w", ns, name, err)
}
