package main

import (
	"context"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/ferryci/ferry/pkg/eci"
)

// podTimes is what the bench's watch saw of one pod, on the local clock.
type podTimes struct {
	queueID  int64
	seen     time.Time
	running  time.Time
	deleting time.Time
	gone     time.Time
}

// observer watches the agent pods of a namespace with the admin's client
// (not counted as ferry's) and notes when each appears, runs and goes; with
// onRunning set it also plays the agent, once per pod.
type observer struct {
	onRunning func(name string)

	mu       sync.Mutex
	pods     map[string]*podTimes
	queueIDs map[int64]bool
	live     int
	peakLive int
	lastSeen time.Time
	lastGone time.Time
}

// watchPods starts an observer; it stops when ctx ends (stop waits for it).
func watchPods(ctx context.Context, admin kubernetes.Interface, ns string, onRunning func(string)) (*observer, func(), error) {
	o := &observer{onRunning: onRunning, pods: map[string]*podTimes{}, queueIDs: map[int64]bool{}}
	factory := informers.NewSharedInformerFactoryWithOptions(admin, 0, informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) { lo.LabelSelector = eci.ManagedSelector }))
	inf := factory.Core().V1().Pods().Informer()
	// Keep only what the bench reads, so that its cache weighs little next
	// to ferry's in the process's memory.
	if err := inf.SetTransform(stripPod); err != nil {
		return nil, nil, err
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { o.update(obj) },
		UpdateFunc: func(_, obj any) { o.update(obj) },
		DeleteFunc: o.deleted,
	}); err != nil {
		return nil, nil, err
	}
	ictx, cancel := context.WithCancel(ctx)
	factory.Start(ictx.Done())
	stop := func() { cancel(); factory.Shutdown() }
	for _, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			stop()
			return nil, nil, ctx.Err()
		}
	}
	return o, stop, nil
}

func stripPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
			DeletionTimestamp: p.DeletionTimestamp, Labels: map[string]string{eci.LabelQueueID: p.Labels[eci.LabelQueueID]}},
		Status: corev1.PodStatus{Phase: p.Status.Phase},
	}, nil
}

func (o *observer) update(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	now := time.Now()
	o.mu.Lock()
	t := o.pods[p.Name]
	if t == nil {
		q, _ := strconv.ParseInt(p.Labels[eci.LabelQueueID], 10, 64)
		t = &podTimes{queueID: q, seen: now}
		o.pods[p.Name] = t
		o.queueIDs[q] = true
		o.live++
		o.peakLive = max(o.peakLive, o.live)
		o.lastSeen = now
	}
	if p.DeletionTimestamp != nil && t.deleting.IsZero() {
		t.deleting = now
	}
	connect := false
	if p.Status.Phase == corev1.PodRunning && t.running.IsZero() {
		t.running = now
		connect = p.DeletionTimestamp == nil && o.onRunning != nil
	}
	o.mu.Unlock()
	if connect {
		// Off the informer's goroutine: a slow agent (the emulator holds
		// its lock while it schedules) must not delay what the watch sees.
		go o.onRunning(p.Name)
	}
}

func (o *observer) deleted(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	if t := o.pods[p.Name]; t != nil && t.gone.IsZero() {
		t.gone = now
		if t.deleting.IsZero() {
			t.deleting = now
		}
		o.live--
		o.lastGone = now
	}
}

// counts returns the distinct queue ids that got a pod, the pods alive and
// the most alive at once.
func (o *observer) counts() (queueIDs, live, peak int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.queueIDs), o.live, o.peakLive
}

// snapshot copies every pod's times.
func (o *observer) snapshot() map[string]podTimes {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := make(map[string]podTimes, len(o.pods))
	for k, v := range o.pods {
		m[k] = *v
	}
	return m
}

// firstPodOf returns, per queue id, the earliest time one of its pods was
// seen.
func firstPodOf(pods map[string]podTimes) map[int64]time.Time {
	m := map[int64]time.Time{}
	for _, p := range pods {
		if t, ok := m[p.queueID]; !ok || p.seen.Before(t) {
			m[p.queueID] = p.seen
		}
	}
	return m
}
