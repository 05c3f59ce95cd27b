package chart

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestAgentPoolCRD: the chart ships the AgentPool CRD (crds/, installed
// once by helm install) with the scale subresource an HPA, KEDA, kubectl
// scale and ACK's CronHPA drive, and ferry may read AgentPools and write
// their status in the agents namespace, nothing more.
func TestAgentPoolCRD(t *testing.T) {
	m := render(t, nil, "--include-crds", "--set", "config.agents.enabled=true")
	var crd *unstructured.Unstructured
	for _, u := range all[*unstructured.Unstructured](m) {
		if u.GetKind() == "CustomResourceDefinition" && u.GetName() == "agentpools.ferry.dev" {
			crd = u
		}
	}
	if crd == nil {
		t.Fatal("no agentpools.ferry.dev CustomResourceDefinition rendered with --include-crds")
	}
	str := func(path ...string) string {
		v, _, _ := unstructured.NestedString(crd.Object, path...)
		return v
	}
	for _, c := range []struct{ got, want string }{
		{str("spec", "group"), "ferry.dev"},
		{str("spec", "scope"), "Namespaced"},
		{str("spec", "names", "kind"), "AgentPool"},
	} {
		if c.got != c.want {
			t.Errorf("CRD field = %q, want %q", c.got, c.want)
		}
	}
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	if len(versions) != 1 {
		t.Fatalf("%d versions, want v1alpha1 alone", len(versions))
	}
	v := versions[0].(map[string]any)
	if v["name"] != "v1alpha1" || v["served"] != true || v["storage"] != true {
		t.Errorf("version %v %v %v, want v1alpha1 served and stored", v["name"], v["served"], v["storage"])
	}
	scale, _, _ := unstructured.NestedStringMap(v, "subresources", "scale")
	want := map[string]string{"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"}
	for k, w := range want {
		if scale[k] != w {
			t.Errorf("scale subresource %s = %q, want %q", k, scale[k], w)
		}
	}
	if _, ok, _ := unstructured.NestedMap(v, "subresources", "status"); !ok {
		t.Error("no status subresource: ferry's status writes would need update on the whole object")
	}
	if min, _, _ := unstructured.NestedInt64(v, "schema", "openAPIV3Schema", "properties", "spec", "properties", "replicas", "minimum"); min != 0 {
		t.Errorf("spec.replicas minimum %d, want 0", min)
	}

	rules := grantedIn(m, "ferry-agents")
	for _, a := range []access{
		{"ferry.dev", "agentpools", "", "list"}, {"ferry.dev", "agentpools", "", "watch"},
		{"ferry.dev", "agentpools/status", "", "update"},
	} {
		if !allows(rules, a) {
			t.Errorf("ferry may not %s in the agents namespace", a)
		}
	}
	for _, a := range []access{
		{"ferry.dev", "agentpools", "", "update"}, {"ferry.dev", "agentpools", "", "create"}, {"ferry.dev", "agentpools", "", "delete"},
	} {
		if allows(rules, a) {
			t.Errorf("ferry may %s: it only reads AgentPools and writes their status", a)
		}
	}
}
