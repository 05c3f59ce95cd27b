package promote

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/store"
)

// Knative Service targets (serving.knative.dev/v1), through the dynamic
// client. The Service's spec.template names the image: setting it by
// digest makes Knative stamp out a new Revision (<service>-0000N), whose
// Ready condition says whether it runs. spec.traffic routes requests by
// percentage between Revisions; status.traffic is what the Route does.
//
// What an environment runs (current) is the Revision status.traffic sends
// the most traffic to, and its image: a rollback routes 100% to it again,
// leaving the template alone (so no third Revision is made). A rollout
// sets the template's image and routes 100% to the latest Revision
// (latestRevision: true, Knative's default); canary steps first make the
// new Revision while keeping 100% on the previous one, then split
// spec.traffic between the two by revisionName.

var (
	knativeServiceGVR  = schema.GroupVersionResource{Group: "serving.knative.dev", Version: "v1", Resource: "services"}
	knativeRevisionGVR = schema.GroupVersionResource{Group: "serving.knative.dev", Version: "v1", Resource: "revisions"}
)

// knativeServices is an environment of Knative Services.
type knativeServices struct {
	dyn  dynamic.Interface
	env  config.PromotionEnvironment
	poll time.Duration
}

// route is one spec.traffic entry.
type route struct {
	Revision string // "" with Latest
	Latest   bool
	Percent  int64
}

func (r route) object() map[string]any {
	m := map[string]any{"percent": r.Percent, "latestRevision": r.Latest}
	if r.Revision != "" {
		m["revisionName"] = r.Revision
	}
	return m
}

func (t knativeServices) services(ns string) dynamic.ResourceInterface {
	return t.dyn.Resource(knativeServiceGVR).Namespace(ns)
}

// containerIndex picks the promoted container of a container list: the
// one named want, else the only one, else the one named like the Service.
func containerIndex(cs []any, want, svc string) (int, error) {
	name := func(c any) string {
		m, _ := c.(map[string]any)
		n, _ := m["name"].(string)
		return n
	}
	if want != "" {
		for i, c := range cs {
			if name(c) == want {
				return i, nil
			}
		}
		return -1, fmt.Errorf("has no container %q", want)
	}
	if len(cs) == 1 {
		return 0, nil
	}
	for i, c := range cs {
		if name(c) == svc {
			return i, nil
		}
	}
	return -1, fmt.Errorf("has %d containers and none is named like it: set the environment's container", len(cs))
}

func containerImage(obj *unstructured.Unstructured, path []string, want, svc string) (string, string, error) {
	cs, _, _ := unstructured.NestedSlice(obj.Object, path...)
	i, err := containerIndex(cs, want, svc)
	if err != nil {
		return "", "", err
	}
	c, _ := cs[i].(map[string]any)
	img, _ := c["image"].(string)
	n, _ := c["name"].(string)
	return n, img, nil
}

var templateContainers = []string{"spec", "template", "spec", "containers"}

// servingRevision is the Revision status.traffic sends most traffic to.
func servingRevision(svc *unstructured.Unstructured) string {
	best, pct := "", int64(-1)
	for _, r := range statusTraffic(svc) {
		if r.Percent > pct {
			best, pct = r.Revision, r.Percent
		}
	}
	return best
}

func statusTraffic(svc *unstructured.Unstructured) []route {
	list, _, _ := unstructured.NestedSlice(svc.Object, "status", "traffic")
	var out []route
	for _, e := range list {
		m, _ := e.(map[string]any)
		r := route{}
		r.Revision, _ = m["revisionName"].(string)
		r.Latest, _ = m["latestRevision"].(bool)
		r.Percent, _ = m["percent"].(int64)
		out = append(out, r)
	}
	return out
}

// conditionOf is the status and message of obj's condition typ
// ("Unknown" when absent).
func conditionOf(obj *unstructured.Unstructured, typ string) (string, string) {
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == typ {
			st, _ := m["status"].(string)
			reason, _ := m["reason"].(string)
			msg, _ := m["message"].(string)
			return st, strings.TrimSpace(reason + ": " + msg)
		}
	}
	return "Unknown", "no " + typ + " condition yet"
}

// observed reports whether Knative's controller has seen obj's spec.
func observed(obj *unstructured.Unstructured) bool {
	g, _, _ := unstructured.NestedInt64(obj.Object, "status", "observedGeneration")
	return g >= obj.GetGeneration()
}

func (t knativeServices) current(ctx context.Context) ([]store.DeploymentImage, error) {
	out := make([]store.DeploymentImage, 0, len(t.env.KnativeServices))
	for _, name := range t.env.KnativeServices {
		svc, err := t.services(t.env.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("read knative service %s/%s: %w", t.env.Namespace, name, err)
		}
		rev := servingRevision(svc)
		if rev == "" {
			return nil, fmt.Errorf("%w: knative service %s/%s routes no traffic to a revision yet: deploy it once before promoting", errRollout, t.env.Namespace, name)
		}
		r, err := t.dyn.Resource(knativeRevisionGVR).Namespace(t.env.Namespace).Get(ctx, rev, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("read knative revision %s/%s: %w", t.env.Namespace, rev, err)
		}
		c, img, err := containerImage(r, []string{"spec", "containers"}, t.env.Container, name)
		if err != nil {
			return nil, fmt.Errorf("%w: knative revision %s/%s %w", errRollout, t.env.Namespace, rev, err)
		}
		out = append(out, store.DeploymentImage{Namespace: t.env.Namespace, Deployment: name, Container: c, Image: img, Revision: rev})
	}
	return out, nil
}

// update changes a Service with change, retrying on conflicts; a change
// that returns false leaves it alone.
func (t knativeServices) update(ctx context.Context, ns, name string, change func(*unstructured.Unstructured) (bool, error)) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		svc, err := t.services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		changed, err := change(svc)
		if err != nil || !changed {
			return err
		}
		_, err = t.services(ns).Update(ctx, svc, metav1.UpdateOptions{FieldManager: "ferry"})
		return err
	})
	if err != nil {
		return fmt.Errorf("update knative service %s/%s: %w", ns, name, err)
	}
	return nil
}

// setTemplateImage sets the template's image; when it changed, traffic
// (if given) is set in the same update, so the new Revision gets no more
// than it says.
func setTemplateImage(svc *unstructured.Unstructured, di store.DeploymentImage, traffic []route) (bool, error) {
	cs, _, _ := unstructured.NestedSlice(svc.Object, templateContainers...)
	i, err := containerIndex(cs, di.Container, svc.GetName())
	if err != nil {
		return false, fmt.Errorf("%w: knative service %s/%s %w", errRollout, svc.GetNamespace(), svc.GetName(), err)
	}
	c, _ := cs[i].(map[string]any)
	if c["image"] == di.Image {
		return false, nil
	}
	c["image"] = di.Image
	if err := unstructured.SetNestedSlice(svc.Object, cs, templateContainers...); err != nil {
		return false, err
	}
	if traffic != nil {
		return true, setTraffic(svc, traffic)
	}
	return true, nil
}

func setTraffic(svc *unstructured.Unstructured, traffic []route) error {
	list := make([]any, len(traffic))
	for i, r := range traffic {
		list[i] = r.object()
	}
	return unstructured.SetNestedSlice(svc.Object, list, "spec", "traffic")
}

// sameTraffic compares spec.traffic with want.
func sameTraffic(svc *unstructured.Unstructured, want []route) bool {
	list, _, _ := unstructured.NestedSlice(svc.Object, "spec", "traffic")
	if len(list) != len(want) {
		return false
	}
	for i, e := range list {
		m, _ := e.(map[string]any)
		rev, _ := m["revisionName"].(string)
		latest, _ := m["latestRevision"].(bool)
		pct, _ := m["percent"].(int64)
		if rev != want[i].Revision || latest != want[i].Latest || pct != want[i].Percent {
			return false
		}
	}
	return true
}

func (t knativeServices) route(ctx context.Context, di store.DeploymentImage, traffic []route) error {
	return t.update(ctx, di.Namespace, di.Deployment, func(svc *unstructured.Unstructured) (bool, error) {
		if sameTraffic(svc, traffic) {
			return false, nil
		}
		return true, setTraffic(svc, traffic)
	})
}

// set rolls out a new image (template, then 100% to the latest
// Revision), or, for an image current recorded (with its Revision),
// routes 100% back to that Revision.
func (t knativeServices) set(ctx context.Context, images []store.DeploymentImage) error {
	for _, di := range images {
		if di.Revision != "" {
			if err := t.route(ctx, di, []route{{Revision: di.Revision, Percent: 100}}); err != nil {
				return err
			}
			continue
		}
		all := []route{{Latest: true, Percent: 100}}
		err := t.update(ctx, di.Namespace, di.Deployment, func(svc *unstructured.Unstructured) (bool, error) {
			changed, err := setTemplateImage(svc, di, nil)
			if err != nil {
				return false, err
			}
			if !sameTraffic(svc, all) {
				changed = true
				if err := setTraffic(svc, all); err != nil {
					return false, err
				}
			}
			return changed, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// KnativeState is how far a Service is from what was asked of it.
type KnativeState int

// The states.
const (
	// KnativeWaiting: the controller has not caught up yet.
	KnativeWaiting KnativeState = iota
	// KnativeDone: what was asked is in effect.
	KnativeDone
	// KnativeFailed: it will not come about (a Revision failed, someone
	// else changed the Service).
	KnativeFailed
)

// KnativeObservation is what the waits read of a Service and the
// Revision concerned.
type KnativeObservation struct {
	Observed bool // status.observedGeneration caught up with the spec
	// LatestCreated, LatestReady: status.latest{Created,Ready}RevisionName.
	LatestCreated, LatestReady string
	// RevisionImage is the image of LatestCreated (or of the Revision
	// waited for); RevisionReady and RevisionMessage its Ready condition.
	RevisionImage   string
	RevisionReady   string
	RevisionMessage string
	// RoutesReady and RoutesMessage: the Service's RoutesReady condition
	// (its Route serves status.traffic). Not Ready: a Service whose latest
	// Revision failed stays not Ready while its route serves an older one.
	RoutesReady, RoutesMessage string
	// Traffic is status.traffic, revision to percent.
	Traffic map[string]int64
}

// JudgeRevision decides whether the new Revision of image is up: made by
// the controller from the current spec, with image, and Ready.
func JudgeRevision(o KnativeObservation, image string) (KnativeState, string) {
	switch {
	case !o.Observed || o.LatestCreated == "":
		return KnativeWaiting, "waiting for the controller to observe the new generation"
	case o.RevisionImage != image:
		return KnativeFailed, fmt.Sprintf("the latest revision %s runs %s: the service was changed by someone else", o.LatestCreated, o.RevisionImage)
	case o.RevisionReady == "False":
		return KnativeFailed, fmt.Sprintf("revision %s failed: %s", o.LatestCreated, o.RevisionMessage)
	case o.RevisionReady != "True" || o.LatestReady != o.LatestCreated:
		return KnativeWaiting, fmt.Sprintf("revision %s is not ready yet (%s)", o.LatestCreated, o.RevisionMessage)
	}
	return KnativeDone, "revision " + o.LatestCreated + " is ready"
}

// JudgeTraffic decides whether status.traffic routes as want (revision to
// percent) and the Service is Ready.
func JudgeTraffic(o KnativeObservation, want map[string]int64) (KnativeState, string) {
	got := map[string]int64{}
	for r, p := range o.Traffic {
		if p > 0 {
			got[r] = p
		}
	}
	switch {
	case !o.Observed:
		return KnativeWaiting, "waiting for the controller to observe the new traffic"
	case o.RoutesReady == "False":
		return KnativeFailed, "its route is not ready: " + o.RoutesMessage
	case !equalTraffic(got, want):
		return KnativeWaiting, fmt.Sprintf("traffic is %v, want %v", got, want)
	case o.RoutesReady != "True":
		return KnativeWaiting, "its route is not ready yet: " + o.RoutesMessage
	}
	return KnativeDone, fmt.Sprintf("traffic %v", want)
}

func equalTraffic(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// observe reads a Service and a Revision of it (LatestCreated when rev is
// empty).
func (t knativeServices) observe(ctx context.Context, ns, name, rev, container string) (KnativeObservation, error) {
	svc, err := t.services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return KnativeObservation{}, fmt.Errorf("read knative service %s/%s: %w", ns, name, err)
	}
	o := KnativeObservation{Observed: observed(svc), Traffic: map[string]int64{}}
	o.LatestCreated, _, _ = unstructured.NestedString(svc.Object, "status", "latestCreatedRevisionName")
	o.LatestReady, _, _ = unstructured.NestedString(svc.Object, "status", "latestReadyRevisionName")
	o.RoutesReady, o.RoutesMessage = conditionOf(svc, "RoutesReady")
	for _, r := range statusTraffic(svc) {
		o.Traffic[r.Revision] += r.Percent
	}
	if rev == "" {
		rev = o.LatestCreated
	}
	if rev == "" {
		return o, nil
	}
	r, err := t.dyn.Resource(knativeRevisionGVR).Namespace(ns).Get(ctx, rev, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		o.RevisionReady, o.RevisionMessage = "Unknown", "revision "+rev+" does not exist yet"
		return o, nil
	}
	if err != nil {
		return o, fmt.Errorf("read knative revision %s/%s: %w", ns, rev, err)
	}
	_, o.RevisionImage, _ = containerImage(r, []string{"spec", "containers"}, container, name)
	o.RevisionReady, o.RevisionMessage = conditionOf(r, "Ready")
	return o, nil
}

// waitFor polls judge until it is done, fails (errRollout) or timeout.
func (t knativeServices) waitFor(ctx context.Context, di store.DeploymentImage, rev string, timeout time.Duration, judge func(KnativeObservation) (KnativeState, string)) (KnativeObservation, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := ""
	for {
		o, err := t.observe(ctx, di.Namespace, di.Deployment, rev, di.Container)
		if err == nil {
			var st KnativeState
			st, last = judge(o)
			switch st {
			case KnativeDone:
				return o, nil
			case KnativeFailed:
				return o, fmt.Errorf("%w: knative service %s/%s: %s", errRollout, di.Namespace, di.Deployment, last)
			}
		} else if ctx.Err() == nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return o, fmt.Errorf("%w: knative service %s/%s not rolled out within %s (%s)", errRollout, di.Namespace, di.Deployment, timeout, last)
			}
			return o, ctx.Err()
		case <-time.After(t.poll):
		}
	}
}

func (t knativeServices) wait(ctx context.Context, images []store.DeploymentImage, timeout time.Duration) error {
	for _, di := range images {
		if di.Revision != "" {
			if _, err := t.waitFor(ctx, di, di.Revision, timeout, func(o KnativeObservation) (KnativeState, string) {
				return JudgeTraffic(o, map[string]int64{di.Revision: 100})
			}); err != nil {
				return err
			}
			continue
		}
		o, err := t.waitFor(ctx, di, "", timeout, func(o KnativeObservation) (KnativeState, string) { return JudgeRevision(o, di.Image) })
		if err != nil {
			return err
		}
		rev := o.LatestCreated
		if _, err := t.waitFor(ctx, di, rev, timeout, func(o KnativeObservation) (KnativeState, string) {
			return JudgeTraffic(o, map[string]int64{rev: 100})
		}); err != nil {
			return err
		}
	}
	return nil
}

func (t knativeServices) healthy(ctx context.Context, images []store.DeploymentImage) error {
	for _, di := range images {
		o, err := t.observe(ctx, di.Namespace, di.Deployment, "", di.Container)
		if err != nil {
			return err
		}
		if st, msg := JudgeRevision(o, di.Image); st != KnativeDone {
			return fmt.Errorf("%w: knative service %s/%s changed during the soak: %s", errRollout, di.Namespace, di.Deployment, msg)
		}
		if st, msg := JudgeTraffic(o, map[string]int64{o.LatestCreated: 100}); st != KnativeDone {
			return fmt.Errorf("%w: knative service %s/%s changed during the soak: %s", errRollout, di.Namespace, di.Deployment, msg)
		}
	}
	return nil
}

// setWeight makes the new Revision (keeping all traffic on the previous
// one while it starts), then splits traffic between the two.
func (t knativeServices) setWeight(ctx context.Context, _ string, want, previous []store.DeploymentImage, weight int, timeout time.Duration) (string, error) {
	var parts []string
	for j, di := range want {
		prev := previous[j]
		hold := []route{{Revision: prev.Revision, Percent: 100}}
		err := t.update(ctx, di.Namespace, di.Deployment, func(svc *unstructured.Unstructured) (bool, error) {
			return setTemplateImage(svc, di, hold)
		})
		if err != nil {
			return "", err
		}
		o, err := t.waitFor(ctx, di, "", timeout, func(o KnativeObservation) (KnativeState, string) { return JudgeRevision(o, di.Image) })
		if err != nil {
			return "", err
		}
		rev := o.LatestCreated
		if rev == prev.Revision {
			return "", fmt.Errorf("%w: knative service %s/%s made no new revision for %s", errRollout, di.Namespace, di.Deployment, di.Image)
		}
		w := int64(weight)
		split := []route{{Revision: prev.Revision, Percent: 100 - w}, {Revision: rev, Percent: w}}
		if err := t.route(ctx, di, split); err != nil {
			return "", err
		}
		if _, err := t.waitFor(ctx, di, rev, timeout, func(o KnativeObservation) (KnativeState, string) {
			return JudgeTraffic(o, map[string]int64{prev.Revision: 100 - w, rev: w})
		}); err != nil {
			return "", err
		}
		parts = append(parts, fmt.Sprintf("%s: %d%% of requests to %s, %d%% to %s", di.Deployment, w, rev, 100-w, prev.Revision))
	}
	return strings.Join(parts, "; "), nil
}

// removeCanary has nothing to remove: the new Revision stays (Knative
// keeps Revisions; its garbage collector retires old ones), and traffic
// is set by set.
func (t knativeServices) removeCanary(context.Context, []store.DeploymentImage) ([]string, error) {
	return nil, nil
}
