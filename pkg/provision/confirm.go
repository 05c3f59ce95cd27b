package provision

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferryci/ferry/pkg/eci"
)

// confirmTimeout bounds each read that confirms a pod is gone.
const confirmTimeout = 5 * time.Second

// confirmGone reads from the API server itself the pod of every agent
// whose Jenkins node exists but whose pod the informer's cache lacks,
// unless ferry deleted it. The cache can lag behind the cluster: its
// watch breaks while the API server restarts, and a create whose answer
// was lost (the server saved the pod, then went away) made a pod ferry
// never saw. Declaring such an agent's pod gone would delete an agent
// whose build runs and re-run the build. A pod found is put in the world;
// one the server says does not exist stays gone; and when the server
// cannot answer, the cycle decides nothing (the error), since nothing can
// be decided on pods ferry cannot see.
func (p *Provisioner) confirmGone(ctx context.Context, w *world) error {
	for _, name := range w.names {
		a := w.agents[name]
		if a.node == nil || a.pod != nil {
			continue
		}
		if _, ok := w.deleted[name]; ok {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, confirmTimeout)
		pod, err := p.cfg.Kube.CoreV1().Pods(p.cfg.Namespace).Get(rctx, name, metav1.GetOptions{})
		cancel()
		switch {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			return fmt.Errorf("confirm that the pod of agent %s is gone (the informer's cache lacks it): %w", name, err)
		case pod.Labels[eci.LabelManagedBy] != eci.ManagedBy:
			continue // not ferry's pod: ferry's is gone
		}
		p.log.Info("the informer's cache lacked a pod the API server has; using the server's", "agent", name)
		w.pods = append(w.pods, pod)
		a.pod = pod
		if t := pod.Labels[eci.LabelTemplate]; t != "" {
			a.template = t
		}
		w.events[name] = p.events.of(name)
	}
	return nil
}
