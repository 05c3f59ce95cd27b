package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/pkg/jenkins"
)

// Agent Secrets are made in batches: the agents whose JNLP secrets are
// ready at the same moment share one Secret (a key per agent), created
// before their pods and then owned by all of them. A burst of N agents
// thus costs about N pod creations plus two calls per batch instead of
// three calls per agent, which is what bounds a burst under the client's
// QPS limit; a lone agent is a batch of one and waits for nobody.
const (
	// maxBatch bounds the agents of one Secret.
	maxBatch = 64
	// maxFlushes bounds the batches being made at once.
	maxFlushes = 2
)

// podReq is one agent waiting for its Secret and pod.
type podReq struct {
	agent    eci.Agent
	template string
	secret   string
	item     jenkins.QueueItem
	err      error
	done     chan struct{}
}

// batcher groups podReqs into batches (see maxBatch).
type batcher struct {
	p        *Provisioner
	mu       sync.Mutex
	pending  []*podReq
	flushing int
	// making holds the Secrets whose batches are being made: no pod reads
	// them yet, and the collector must leave them alone.
	making map[string]bool
	// pods bounds the pod creations in flight across batches.
	pods chan struct{}
}

func newBatcher(p *Provisioner) *batcher {
	return &batcher{p: p, making: map[string]bool{}, pods: make(chan struct{}, p.cfg.Parallelism)}
}

// submit makes r's Secret and pod, in a batch with whatever other agents
// are ready, and returns when its pod exists (or could not be made).
func (b *batcher) submit(ctx context.Context, r *podReq) error {
	r.done = make(chan struct{})
	b.mu.Lock()
	b.pending = append(b.pending, r)
	b.mu.Unlock()
	b.start(ctx)
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// start flushes pending requests while fewer than maxFlushes run.
func (b *batcher) start(ctx context.Context) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.flushing < maxFlushes && len(b.pending) > 0 {
		n := min(len(b.pending), maxBatch)
		batch := append([]*podReq(nil), b.pending[:n]...)
		b.pending = append(b.pending[:0], b.pending[n:]...)
		b.flushing++
		go func() {
			b.flush(ctx, batch)
			b.mu.Lock()
			b.flushing--
			b.mu.Unlock()
			b.start(ctx)
		}()
	}
}

// makingNow returns the Secrets whose batches are still making their pods.
func (b *batcher) makingNow() map[string]bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return maps.Clone(b.making)
}

// flush makes one batch: its Secret, then its pods, then hands the Secret
// to them.
func (b *batcher) flush(ctx context.Context, batch []*podReq) {
	p := b.p
	defer func() {
		for _, r := range batch {
			close(r.done)
		}
	}()
	ctx, span := p.tracer.Start(ctx, "provision.create_secret", trace.WithAttributes(attribute.Int("ferry.batch_size", len(batch))))
	secrets := make(map[string]string, len(batch))
	for _, r := range batch {
		secrets[r.agent.Name] = r.secret
	}
	created, err := p.cfg.Kube.CoreV1().Secrets(p.cfg.Namespace).Create(ctx,
		eci.RenderSecret(p.cfg.Namespace, p.cfg.PodLabels, secrets), metav1.CreateOptions{})
	if err != nil {
		if isQuota(err) {
			p.pauseKube(err)
		}
		err = fmt.Errorf("create the Secret of %d agents' JNLP secrets: %w", len(batch), err)
		endSpan(span, err)
		for _, r := range batch {
			r.err = err
		}
		return
	}
	span.SetAttributes(attribute.String("ferry.secret", created.Name))
	b.mu.Lock()
	b.making[created.Name] = true
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.making, created.Name)
		b.mu.Unlock()
	}()

	pods := make([]*corev1.Pod, len(batch))
	var wg sync.WaitGroup
	for i, r := range batch {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case b.pods <- struct{}{}:
			case <-ctx.Done():
				r.err = ctx.Err()
				return
			}
			defer func() { <-b.pods }()
			r.agent.SecretName = created.Name
			pods[i], r.err = p.makePod(ctx, r)
		}()
	}
	wg.Wait()

	var owners []*corev1.Pod
	for _, pod := range pods {
		if pod != nil {
			owners = append(owners, pod)
		}
	}
	if len(owners) == 0 {
		// No pod reads it: the collector deletes it after GCGrace.
		endSpan(span, errors.New("no pod of the batch was created"))
		return
	}
	err = p.ownSecret(ctx, created, owners)
	if err != nil {
		// The pods run; the Secret is collected once none reads it.
		p.log.Warn("could not hand an agent Secret to its pods; it is collected once they are gone", "secret", created.Name, "error", err)
	}
	endSpan(span, err)
}

// ownSecret makes pods the owners of secret (see eci.OwnSecret).
func (p *Provisioner) ownSecret(ctx context.Context, secret *corev1.Secret, pods []*corev1.Pod) error {
	if err := eci.OwnSecret(secret, pods...); err != nil {
		return err
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"ownerReferences": secret.OwnerReferences}})
	if err != nil {
		return fmt.Errorf("hand agent secret %s to its pods: %w", secret.Name, err)
	}
	if _, err := p.cfg.Kube.CoreV1().Secrets(p.cfg.Namespace).Patch(ctx, secret.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("hand agent secret %s to its pods: %w", secret.Name, err)
	}
	return nil
}

// makePod creates r's pod, reading its secret from r.agent.SecretName; an
// existing pod of that name is the one made before.
func (p *Provisioner) makePod(ctx context.Context, r *podReq) (*corev1.Pod, error) {
	pods := p.cfg.Kube.CoreV1().Pods(p.cfg.Namespace)
	pod, err := pods.Create(ctx, eci.Render(p.cfg.Templates[r.template], r.agent), metav1.CreateOptions{})
	if err == nil || apierrors.IsAlreadyExists(err) {
		p.podMadeNow(r.agent.Name)
	}
	switch {
	case apierrors.IsAlreadyExists(err):
		if pod, err = pods.Get(ctx, r.agent.Name, metav1.GetOptions{}); err != nil {
			return nil, fmt.Errorf("read agent pod %s: %w", r.agent.Name, err)
		}
		return pod, nil
	case err != nil:
		if isQuota(err) {
			p.pauseKube(err)
		}
		return nil, fmt.Errorf("create agent pod %s: %w", r.agent.Name, err)
	}
	p.kubeOK()
	attrs := metric.WithAttributes(attribute.String("template", r.template))
	p.m.created.Add(ctx, 1, attrs)
	if !r.item.InQueueSince.IsZero() {
		p.m.step.Record(ctx, max(0, p.clock.Since(r.item.InQueueSince).Seconds()), metric.WithAttributes(
			attribute.String("template", r.template), attribute.String("step", stepPodCreated)))
	}
	p.log.Debug("agent pod created", "agent", r.agent, "template", r.template, "secret", r.agent.SecretName)
	return pod, nil
}

// deleteSecret deletes an agent Secret no pod reads (see decideSecrets).
func (p *Provisioner) deleteSecret(name string) action {
	return func(ctx context.Context) error {
		err := p.cfg.Kube.CoreV1().Secrets(p.cfg.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete unread agent secret %s: %w", name, err)
		}
		p.m.gc.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", "secret")))
		p.log.Info("collected an agent Secret no pod reads", "secret", name)
		return nil
	}
}
