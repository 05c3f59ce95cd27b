// Package knative stands in for Knative Serving on the test bed: Install
// puts the serving.knative.dev/v1 Service, Revision and Route CRDs
// (serving-crds.yaml, cut from knative/serving's) into the bed's API
// server, and Controller plays Knative's controller for the Services of a
// namespace: it stamps out a Revision <service>-0000N for each new
// template, makes it Ready (or failed, as the test says), and writes the
// Service's status as Knative does: observedGeneration,
// latestCreatedRevisionName, latestReadyRevisionName, traffic resolved to
// revision names, and the ConfigurationsReady, RoutesReady and Ready
// conditions.
//
// What it does not prove: that a real Knative (its webhook's defaulting
// and validation, its autoscaler, activator and networking layer)
// behaves the same, nor that requests are actually split — there are no
// pods and no ingress; only the Knative API objects are real.
package knative

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"
)

//go:embed serving-crds.yaml
var crds string

var (
	crdGVR      = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	ServiceGVR  = schema.GroupVersionResource{Group: "serving.knative.dev", Version: "v1", Resource: "services"}
	RevisionGVR = schema.GroupVersionResource{Group: "serving.knative.dev", Version: "v1", Resource: "revisions"}
)

// Install creates the CRDs unless they exist and waits until they are
// established. They are left in place: the bed is shared, and other runs
// may use them.
func Install(t testing.TB, dyn dynamic.Interface) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, doc := range strings.Split(crds, "\n---\n") {
		raw, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatalf("knative CRDs: %v", err)
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(raw); err != nil {
			t.Fatalf("knative CRDs: %v", err)
		}
		_, err = dyn.Resource(crdGVR).Create(ctx, obj, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("create CRD %s: %v", obj.GetName(), err)
		}
		for {
			got, err := dyn.Resource(crdGVR).Get(ctx, obj.GetName(), metav1.GetOptions{})
			if err == nil && condition(got, "Established") == "True" {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("CRD %s never established: %v", obj.GetName(), err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func condition(obj *unstructured.Unstructured, typ string) string {
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		if m, _ := c.(map[string]any); m["type"] == typ {
			s, _ := m["status"].(string)
			return s
		}
	}
	return ""
}

// Controller plays Knative Serving's controller in one namespace.
type Controller struct {
	Dyn       dynamic.Interface
	Namespace string
	// Fail says why a Revision of image fails ("" : it becomes Ready).
	Fail func(image string) string

	mu      sync.Mutex
	history map[string][]map[string]int64 // service -> every status.traffic written
}

// History is every traffic split (revision to percent) the Service's
// status showed, in order.
func (c *Controller) History(service string) []map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]map[string]int64(nil), c.history[service]...)
}

// Run reconciles until ctx ends.
func (c *Controller) Run(ctx context.Context, t testing.TB) {
	for ctx.Err() == nil {
		list, err := c.Dyn.Resource(ServiceGVR).Namespace(c.Namespace).List(ctx, metav1.ListOptions{})
		if err == nil {
			for i := range list.Items {
				if err := c.reconcile(ctx, &list.Items[i]); err != nil && ctx.Err() == nil && !apierrors.IsConflict(err) {
					t.Logf("knative controller: %s: %v", list.Items[i].GetName(), err)
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

const (
	labelService    = "serving.knative.dev/service"
	labelConfig     = "serving.knative.dev/configuration"
	labelConfigGen  = "serving.knative.dev/configurationGeneration"
	templateMemo    = "test.ferry.dev/template" // the Service template a Revision was stamped from
	conditionsReady = "Ready"
)

func (c *Controller) revisions(ctx context.Context, svc string) ([]unstructured.Unstructured, error) {
	list, err := c.Dyn.Resource(RevisionGVR).Namespace(c.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labelService + "=" + svc})
	if err != nil {
		return nil, err
	}
	revs := list.Items
	sort.Slice(revs, func(i, j int) bool { return revs[i].GetName() < revs[j].GetName() })
	return revs, nil
}

func (c *Controller) reconcile(ctx context.Context, svc *unstructured.Unstructured) error {
	name := svc.GetName()
	revs, err := c.revisions(ctx, name)
	if err != nil {
		return err
	}
	// Revisions: a new one is Unknown until the next pass makes it Ready
	// or failed (the Revision reconciler, the pods starting).
	for i := range revs {
		r := &revs[i]
		if condition(r, conditionsReady) != "Unknown" {
			continue
		}
		cs, _, _ := unstructured.NestedSlice(r.Object, "spec", "containers")
		image := ""
		if len(cs) > 0 {
			image, _ = cs[0].(map[string]any)["image"].(string)
		}
		status := map[string]any{"observedGeneration": int64(1), "actualReplicas": int64(1), "desiredReplicas": int64(1),
			"containerStatuses": []any{map[string]any{"name": "user-container", "imageDigest": image}}}
		if why := c.fail(image); why != "" {
			status["conditions"] = conditions(map[string][3]string{
				"ContainerHealthy": {"False", "ExitCode1", why}, "ResourcesAvailable": {"True"}, conditionsReady: {"False", "ExitCode1", why}})
			status["actualReplicas"] = int64(0)
		} else {
			status["conditions"] = conditions(map[string][3]string{"ContainerHealthy": {"True"}, "ResourcesAvailable": {"True"}, conditionsReady: {"True"}})
		}
		r.Object["status"] = status
		if _, err := c.Dyn.Resource(RevisionGVR).Namespace(c.Namespace).UpdateStatus(ctx, r, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	// Configuration: a template unlike the last Revision's stamps out
	// <service>-<configuration generation, 5 digits>.
	tmpl, _, _ := unstructured.NestedMap(svc.Object, "spec", "template")
	memo, _ := json.Marshal(tmpl)
	if len(revs) == 0 || revs[len(revs)-1].GetAnnotations()[templateMemo] != string(memo) {
		gen := len(revs) + 1
		spec, _, _ := unstructured.NestedMap(tmpl, "spec")
		rev := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "serving.knative.dev/v1", "kind": "Revision",
			"metadata": map[string]any{
				"name": fmt.Sprintf("%s-%05d", name, gen), "namespace": c.Namespace,
				"labels":      map[string]any{labelService: name, labelConfig: name, labelConfigGen: fmt.Sprint(gen)},
				"annotations": map[string]any{templateMemo: string(memo)},
			},
			"spec": spec,
		}}
		created, err := c.Dyn.Resource(RevisionGVR).Namespace(c.Namespace).Create(ctx, rev, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		created.Object["status"] = map[string]any{"observedGeneration": int64(1),
			"conditions": conditions(map[string][3]string{conditionsReady: {"Unknown", "Deploying"}})}
		if _, err := c.Dyn.Resource(RevisionGVR).Namespace(c.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return err
		}
		revs = append(revs, *created)
		revs[len(revs)-1].Object["status"] = created.Object["status"]
	}
	latestCreated, latestReady := revs[len(revs)-1].GetName(), ""
	ready := map[string]string{}
	for _, r := range revs {
		ready[r.GetName()] = condition(&r, conditionsReady)
		if ready[r.GetName()] == "True" {
			latestReady = r.GetName()
		}
	}
	cfg := [3]string{"True"}
	switch ready[latestCreated] {
	case "False":
		cfg = [3]string{"False", "RevisionFailed", fmt.Sprintf("Revision %q failed with message: %s.", latestCreated, "the container failed")}
	case "Unknown", "":
		cfg = [3]string{"Unknown", "RevisionMissing", fmt.Sprintf("Configuration %q is waiting for a Revision to become ready.", name)}
	}
	// Route: spec.traffic resolved to revision names; a target that is not
	// Ready keeps the traffic the route had.
	spec, found, _ := unstructured.NestedSlice(svc.Object, "spec", "traffic")
	if !found || len(spec) == 0 {
		spec = []any{map[string]any{"latestRevision": true, "percent": int64(100)}}
	}
	var resolved []any
	split := map[string]int64{}
	route := [3]string{"True"}
	var sum int64
	for _, e := range spec {
		m, _ := e.(map[string]any)
		rev, _ := m["revisionName"].(string)
		latest, _ := m["latestRevision"].(bool)
		pct, _ := m["percent"].(int64)
		sum += pct
		if latest {
			rev = latestReady
		}
		if rev == "" || ready[rev] != "True" {
			route = [3]string{"False", "RevisionMissing", fmt.Sprintf("Revision %q referenced in traffic not found or not ready.", rev)}
			continue
		}
		resolved = append(resolved, map[string]any{"revisionName": rev, "latestRevision": latest, "percent": pct})
		split[rev] += pct
	}
	if sum != 100 && route[0] == "True" {
		route = [3]string{"False", "InvalidTraffic", fmt.Sprintf("traffic percentages add up to %d, not 100", sum)}
	}
	status, _, _ := unstructured.NestedMap(svc.Object, "status")
	if status == nil {
		status = map[string]any{}
	}
	if route[0] == "True" {
		status["traffic"] = resolved
		c.record(name, split)
	}
	readyAll := "True"
	for _, s := range []string{cfg[0], route[0]} {
		if s == "False" {
			readyAll = "False"
		} else if s != "True" && readyAll == "True" {
			readyAll = "Unknown"
		}
	}
	readyCond := [3]string{readyAll}
	if readyAll != "True" {
		readyCond = cfg
		if cfg[0] == "True" {
			readyCond = route
		}
	}
	status["observedGeneration"] = svc.GetGeneration()
	status["latestCreatedRevisionName"] = latestCreated
	if latestReady != "" {
		status["latestReadyRevisionName"] = latestReady
	}
	status["url"] = fmt.Sprintf("http://%s.%s.example.com", name, c.Namespace)
	status["address"] = map[string]any{"url": fmt.Sprintf("http://%s.%s.svc.cluster.local", name, c.Namespace)}
	status["conditions"] = conditions(map[string][3]string{"ConfigurationsReady": cfg, "RoutesReady": route, conditionsReady: readyCond})
	old, _, _ := unstructured.NestedMap(svc.Object, "status")
	if statusEqual(old, status) {
		return nil
	}
	svc.Object["status"] = status
	_, err = c.Dyn.Resource(ServiceGVR).Namespace(c.Namespace).UpdateStatus(ctx, svc, metav1.UpdateOptions{})
	return err
}

func (c *Controller) fail(image string) string {
	if c.Fail == nil {
		return ""
	}
	return c.Fail(image)
}

func (c *Controller) record(svc string, split map[string]int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.history == nil {
		c.history = map[string][]map[string]int64{}
	}
	h := c.history[svc]
	if len(h) > 0 && maps.Equal(h[len(h)-1], split) {
		return
	}
	c.history[svc] = append(h, maps.Clone(split))
}

func statusEqual(a, b map[string]any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return errors.Join(err1, err2) == nil && string(ja) == string(jb)
}

// conditions writes Knative conditions: type -> status, reason, message.
func conditions(cs map[string][3]string) []any {
	types := make([]string, 0, len(cs))
	for t := range cs {
		types = append(types, t)
	}
	sort.Strings(types)
	out := make([]any, 0, len(cs))
	for _, t := range types {
		c := map[string]any{"type": t, "status": cs[t][0], "lastTransitionTime": "2026-01-01T00:00:00Z"}
		if cs[t][1] != "" {
			c["reason"] = cs[t][1]
		}
		if cs[t][2] != "" {
			c["message"] = cs[t][2]
		}
		out = append(out, c)
	}
	return out
}
