package chart

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// access is one right: a verb on a resource (with subresource) of a group.
type access struct{ group, resource, verb string }

func (a access) String() string {
	if a.group == "" {
		return a.verb + " " + a.resource
	}
	return a.verb + " " + a.resource + "." + a.group
}

// expand lists every right a set of rules grants by name (wildcards are
// kept as "*", and allows treats them as such).
func expand(rules []rbacv1.PolicyRule) []access {
	var out []access
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					out = append(out, access{g, res, v})
				}
			}
		}
	}
	return out
}

// allows reports whether rules grant a, the way the RBAC authorizer
// matches a rule without resourceNames.
func allows(rules []rbacv1.PolicyRule, a access) bool {
	match := func(list []string, v string) bool { return slices.Contains(list, v) || slices.Contains(list, "*") }
	for _, r := range rules {
		if len(r.ResourceNames) > 0 {
			continue
		}
		if match(r.APIGroups, a.group) && match(r.Resources, a.resource) && match(r.Verbs, a.verb) {
			return true
		}
	}
	return false
}

// bedRBAC returns the rules of test/bed/rbac-ferry.yaml: ferry's
// namespaced rights (ClusterRole ferry) and its cluster-wide reads.
func bedRBAC(t testing.TB) (namespaced, cluster []rbacv1.PolicyRule) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "test", "bed", "rbac-ferry.yaml"))
	if err != nil {
		t.Fatalf("read the bed's RBAC: %v", err)
	}
	m := decode(t, string(data))
	for _, cr := range all[*rbacv1.ClusterRole](m) {
		switch cr.Name {
		case "ferry":
			namespaced = cr.Rules
		case "ferry-cluster-reader":
			cluster = cr.Rules
		}
	}
	if len(namespaced) == 0 || len(cluster) == 0 {
		t.Fatalf("test/bed/rbac-ferry.yaml: ClusterRoles ferry and ferry-cluster-reader not found")
	}
	return namespaced, cluster
}

// workloadRole is the chart's ClusterRole bound per namespace.
func workloadRole(t testing.TB, m *manifest) *rbacv1.ClusterRole {
	t.Helper()
	var found *rbacv1.ClusterRole
	for _, rb := range all[*rbacv1.RoleBinding](m) {
		if rb.RoleRef.Kind != "ClusterRole" {
			continue
		}
		for _, cr := range all[*rbacv1.ClusterRole](m) {
			if cr.Name == rb.RoleRef.Name {
				if found != nil && found.Name != cr.Name {
					t.Fatalf("RoleBindings refer to two ClusterRoles: %s and %s", found.Name, cr.Name)
				}
				found = cr
			}
		}
	}
	if found == nil {
		t.Fatalf("no ClusterRole bound by a RoleBinding; rendered: %v", kindsNamed(m))
	}
	return found
}

// bindingNamespaces lists the namespaces where a RoleBinding grants the
// ClusterRole role to the chart's ServiceAccount, sorted.
func bindingNamespaces(m *manifest, role string) []string {
	var out []string
	for _, rb := range all[*rbacv1.RoleBinding](m) {
		if rb.RoleRef.Kind == "ClusterRole" && rb.RoleRef.Name == role && bindsServiceAccount(m, rb.Subjects) {
			out = append(out, rb.Namespace)
		}
	}
	sort.Strings(out)
	return out
}

func bindsServiceAccount(m *manifest, subjects []rbacv1.Subject) bool {
	for _, sa := range serviceAccountNames(m) {
		for _, s := range subjects {
			if s.Kind == rbacv1.ServiceAccountKind && s.Name == sa && s.Namespace == releaseNamespace {
				return true
			}
		}
	}
	return false
}

func serviceAccountNames(m *manifest) []string {
	var out []string
	for _, d := range all[*appsv1.Deployment](m) {
		out = append(out, d.Spec.Template.Spec.ServiceAccountName)
	}
	return out
}

// grantedIn collects the rules the chart grants its ServiceAccount in a
// namespace (Roles and ClusterRoles bound there); ns "" means cluster-wide
// (ClusterRoleBindings).
func grantedIn(m *manifest, ns string) []rbacv1.PolicyRule {
	var rules []rbacv1.PolicyRule
	role := func(kind, name, roleNS string) []rbacv1.PolicyRule {
		if kind == "ClusterRole" {
			for _, cr := range all[*rbacv1.ClusterRole](m) {
				if cr.Name == name {
					return cr.Rules
				}
			}
			return nil
		}
		for _, r := range all[*rbacv1.Role](m) {
			if r.Name == name && r.Namespace == roleNS {
				return r.Rules
			}
		}
		return nil
	}
	if ns == "" {
		for _, b := range all[*rbacv1.ClusterRoleBinding](m) {
			if bindsServiceAccount(m, b.Subjects) {
				rules = append(rules, role(b.RoleRef.Kind, b.RoleRef.Name, "")...)
			}
		}
		return rules
	}
	for _, b := range all[*rbacv1.RoleBinding](m) {
		if b.Namespace == ns && bindsServiceAccount(m, b.Subjects) {
			rules = append(rules, role(b.RoleRef.Kind, b.RoleRef.Name, ns)...)
		}
	}
	return rules
}

// TestRBAC checks the rendered RBAC against the rights ferry is tested
// with on the bed (test/bed/rbac-ferry.yaml): every one of them is granted
// in the agents namespace and in each promotion environment's namespace,
// the cluster-wide reads are granted, the promoter's Lease rights are in
// the release namespace, and the chart grants nothing beyond them.
func TestRBAC(t *testing.T) {
	namespaced, cluster := bedRBAC(t)
	leases := []access{}
	for _, v := range []string{"get", "list", "watch", "create", "update", "patch", "delete"} {
		leases = append(leases, access{"coordination.k8s.io", "leases", v})
	}
	for _, tc := range renderCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			m := render(t, tc.values, tc.extra...)
			for _, ns := range tc.workloadNS {
				t.Run("namespace "+ns, func(t *testing.T) {
					got := grantedIn(m, ns)
					for _, a := range expand(namespaced) {
						if !allows(got, a) {
							t.Errorf("ferry may not %s in namespace %s", a, ns)
						}
					}
				})
			}
			t.Run("cluster", func(t *testing.T) {
				got := grantedIn(m, "")
				for _, a := range expand(cluster) {
					if !allows(got, a) {
						t.Errorf("ferry may not %s cluster-wide", a)
					}
				}
			})
			t.Run("promoter lease", func(t *testing.T) {
				got := grantedIn(m, releaseNamespace)
				for _, a := range leases {
					if !allows(got, a) {
						t.Errorf("ferry may not %s in the release namespace %s", a, releaseNamespace)
					}
				}
			})
			t.Run("least privilege", func(t *testing.T) {
				for _, cr := range all[*rbacv1.ClusterRole](m) {
					for _, a := range expand(cr.Rules) {
						if !allows(namespaced, a) && !allows(cluster, a) {
							t.Errorf("ClusterRole %s grants %s, which ferry is not tested with", cr.Name, a)
						}
						if a.verb == "*" || a.resource == "*" || a.group == "*" {
							t.Errorf("ClusterRole %s grants a wildcard: %s", cr.Name, a)
						}
					}
				}
				for _, r := range all[*rbacv1.Role](m) {
					for _, a := range expand(r.Rules) {
						if !slices.Contains(leases, a) {
							t.Errorf("Role %s/%s grants %s beyond the Lease rights", r.Namespace, r.Name, a)
						}
					}
				}
				for _, b := range all[*rbacv1.ClusterRoleBinding](m) {
					for _, cr := range all[*rbacv1.ClusterRole](m) {
						if cr.Name == b.RoleRef.Name {
							for _, a := range expand(cr.Rules) {
								if !allows(cluster, a) {
									t.Errorf("ClusterRoleBinding %s grants %s cluster-wide", b.Name, a)
								}
							}
						}
					}
				}
			})
		})
	}
}
