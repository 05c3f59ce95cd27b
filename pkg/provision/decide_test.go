package provision

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/ferryci/ferry/pkg/jenkins"
)

// plan runs one cycle's decisions on a world made of these parts, and
// applies the memory they return, without acting.
func (p *Provisioner) plan(_ context.Context, now time.Time, comps []jenkins.Computer, items []jenkins.QueueItem, pods []*corev1.Pod, secrets []*corev1.Secret) *decision {
	w := &world{now: now, computers: comps, queue: items, pods: pods, secrets: secrets}
	p.join(w)
	agents := classify(p.rules, w, p.mem)
	d := decide(p.rules, w, agents, p.mem)
	p.remember(w, agents, d)
	return d
}
