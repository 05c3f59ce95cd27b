package provision

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"go.opentelemetry.io/otel/trace"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
)

// AgentPools.
//
// An AgentPool (ferry.dev/v1alpha1, namespaced, shipped with the chart)
// sets a warm pool's size from outside ferry: a template's warmPool.poolRef
// names it, in the agents' namespace. Its spec.replicas, when the object
// exists and sets it, is the pool's size instead of the schedule's; its
// scale subresource (spec.replicas, status.replicas, status.selector) lets
// kubectl scale, an HPA, KEDA or ACK's kubernetes-cronhpa-controller set
// it. ferry writes status.replicas (the warm agents free to serve, made or
// being made) and status.selector (the warm agents' pods).
//
// The object wins over the schedule, not the larger of the two: whoever
// scales the object means that size, down as well as up (a schedule's
// window could otherwise never be undercut by kubectl scale), and a
// schedule the object should follow is ACK's CronHPA on the object.
// Without the object, or with spec.replicas unset, the schedule applies.

// AgentPoolResource is the AgentPool API resource.
var AgentPoolResource = schema.GroupVersionResource{Group: "ferry.dev", Version: "v1alpha1", Resource: "agentpools"}

// poolView is a template's AgentPool as the informer shows it.
type poolView struct {
	// replicas is spec.replicas; set is false when it is absent.
	replicas int
	set      bool
	// statusReplicas and selector are what status says now.
	statusReplicas int64
	selector       string
}

// poolSelector is the status.selector of a template's pool.
func poolSelector(template string) string { return LabelWarmPool + "=" + template }

// poolRefs returns the AgentPool each template names, by template.
func (p *Provisioner) poolRefs() map[string]string {
	out := map[string]string{}
	for t, s := range p.rules.warm {
		if s.PoolRef != "" {
			out[t] = s.PoolRef
		}
	}
	return out
}

// watchPools starts an informer on the AgentPools the templates name, if
// any and Config.Dynamic is set. It does not wait for the informer: with
// the CRD missing that would never end; until it has synced, the pools
// with a poolRef are left as they are (see poolsNow).
func (p *Provisioner) watchPools(ctx context.Context) error {
	refs := p.poolRefs()
	if len(refs) == 0 {
		return nil
	}
	if p.cfg.Dynamic == nil {
		p.log.Warn("warm pools name AgentPools but ferry has no dynamic client; their schedules apply", "pools", slices.Sorted(maps.Values(refs)))
		return nil
	}
	f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(p.cfg.Dynamic, 0, p.cfg.Namespace, nil)
	inf := f.ForResource(AgentPoolResource)
	kick := cache.ResourceEventHandlerFuncs{AddFunc: func(any) { p.Kick() }, UpdateFunc: func(_, _ any) { p.Kick() }, DeleteFunc: func(any) { p.Kick() }}
	if _, err := inf.Informer().AddEventHandler(kick); err != nil {
		return fmt.Errorf("watch agentpools: %w", err)
	}
	p.mu.Lock()
	p.poolLister, p.poolSynced = inf.Lister().ByNamespace(p.cfg.Namespace), inf.Informer().HasSynced
	p.mu.Unlock()
	f.Start(ctx.Done())
	return nil
}

// poolsNow returns each template's AgentPool as the informer shows it
// (absent: no such object), and the templates whose pool is not known yet.
func (p *Provisioner) poolsNow() (map[string]poolView, map[string]bool) {
	refs := p.poolRefs()
	pools, unknown := map[string]poolView{}, map[string]bool{}
	p.mu.Lock()
	lister, synced := p.poolLister, p.poolSynced
	p.mu.Unlock()
	if lister == nil {
		return pools, unknown
	}
	for t, name := range refs {
		if !synced() {
			unknown[t] = true
			continue
		}
		obj, err := lister.Get(name)
		if err != nil {
			continue
		}
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		var v poolView
		if n, found, err := unstructured.NestedInt64(u.Object, "spec", "replicas"); err == nil && found && n >= 0 {
			v.replicas, v.set = int(n), true
		}
		v.statusReplicas, _, _ = unstructured.NestedInt64(u.Object, "status", "replicas")
		v.selector, _, _ = unstructured.NestedString(u.Object, "status", "selector")
		pools[t] = v
	}
	return pools, unknown
}

// poolStatus decides the status of a template's AgentPool: replicas free
// warm agents, and the selector of its pods.
func (x *decider) poolStatus(template string, replicas int) {
	v, ok := x.w.pools[template]
	if !ok || (v.statusReplicas == int64(replicas) && v.selector == poolSelector(template)) {
		return
	}
	x.d.acts = append(x.d.acts, act{kind: actPoolStatus, agent: &agentView{template: template}, replicas: replicas})
}

// writePoolStatus writes an AgentPool's status.
func (p *Provisioner) writePoolStatus(template string, replicas int) action {
	name := p.rules.warm[template].PoolRef
	return func(ctx context.Context) (err error) {
		ctx, span := p.tracer.Start(ctx, "provision.pool_status", trace.WithAttributes(attrTemplate.String(template)))
		defer func() { endSpan(span, err) }()
		obj, err := p.poolLister.Get(name)
		if err != nil {
			return nil // gone: nothing to write
		}
		u := obj.(*unstructured.Unstructured).DeepCopy()
		if err := unstructured.SetNestedField(u.Object, int64(replicas), "status", "replicas"); err != nil {
			return fmt.Errorf("agentpool %s status: %w", name, err)
		}
		if err := unstructured.SetNestedField(u.Object, poolSelector(template), "status", "selector"); err != nil {
			return fmt.Errorf("agentpool %s status: %w", name, err)
		}
		_, err = p.cfg.Dynamic.Resource(AgentPoolResource).Namespace(p.cfg.Namespace).UpdateStatus(ctx, u, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return nil // a later cycle writes it on the newer object
		}
		if err != nil {
			return fmt.Errorf("update agentpool %s status: %w", name, err)
		}
		return nil
	}
}
