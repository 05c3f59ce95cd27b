package chart

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// access is one right: a verb on a resource (with subresource) of a group,
// on the object named name, or on any when name is empty.
type access struct{ group, resource, name, verb string }

func (a access) String() string {
	s := a.verb + " " + a.resource
	if a.group != "" {
		s += "." + a.group
	}
	if a.name != "" {
		s += "/" + a.name
	}
	return s
}

// expand lists every right a set of rules grants by name (wildcards are
// kept as "*", and allows treats them as such); a rule with resourceNames
// grants its verbs on each of them.
func expand(rules []rbacv1.PolicyRule) []access {
	var out []access
	for _, r := range rules {
		names := r.ResourceNames
		if len(names) == 0 {
			names = []string{""}
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, n := range names {
					for _, v := range r.Verbs {
						out = append(out, access{g, res, n, v})
					}
				}
			}
		}
	}
	return out
}

// allows reports whether rules grant a, the way the RBAC authorizer
// matches rules: a rule with resourceNames grants only those objects.
func allows(rules []rbacv1.PolicyRule, a access) bool {
	match := func(list []string, v string) bool { return slices.Contains(list, v) || slices.Contains(list, "*") }
	for _, r := range rules {
		if len(r.ResourceNames) > 0 && !slices.Contains(r.ResourceNames, a.name) {
			continue
		}
		if match(r.APIGroups, a.group) && match(r.Resources, a.resource) && match(r.Verbs, a.verb) {
			return true
		}
	}
	return false
}

// ferry's parts, named as in test/bed/rbac-ferry.yaml: what each needs is
// the ClusterRole of that name there.
const (
	partAgents    = "ferry-agents"            // the provisioner
	partPromotion = "ferry-promotion"         // the promoter
	partLease     = "ferry-promotion-lease"   // the promoter's Lease
	partReviews   = "ferry-promotion-reviews" // the promotion API's Kubernetes identities
)

var parts = []string{partAgents, partPromotion, partLease, partReviews}

// bedRBAC returns the rules of each part in test/bed/rbac-ferry.yaml, the
// rights ferry is tested with.
func bedRBAC(t testing.TB) map[string][]rbacv1.PolicyRule {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "test", "bed", "rbac-ferry.yaml"))
	if err != nil {
		t.Fatalf("read the bed's RBAC: %v", err)
	}
	m := decode(t, string(data))
	out := map[string][]rbacv1.PolicyRule{}
	for _, cr := range all[*rbacv1.ClusterRole](m) {
		if slices.Contains(parts, cr.Name) {
			out[cr.Name] = cr.Rules
		}
	}
	for _, p := range parts {
		if len(out[p]) == 0 {
			t.Fatalf("test/bed/rbac-ferry.yaml: ClusterRole %s not found", p)
		}
	}
	if n := len(all[*rbacv1.ClusterRoleBinding](m)); n != 0 {
		t.Fatalf("test/bed/rbac-ferry.yaml has %d ClusterRoleBindings; ferry is tested with no cluster-wide rights", n)
	}
	return out
}

// rulesOf joins the bed's rules of some parts.
func rulesOf(bed map[string][]rbacv1.PolicyRule, ps []string) []rbacv1.PolicyRule {
	var out []rbacv1.PolicyRule
	for _, p := range ps {
		out = append(out, bed[p]...)
	}
	return out
}

// chartRole is the chart's ClusterRole of a part ("agents", "promotion"),
// named <release namespace>-<fullname>-<part>.
func chartRole(t testing.TB, m *manifest, part string) *rbacv1.ClusterRole {
	t.Helper()
	for _, cr := range all[*rbacv1.ClusterRole](m) {
		if strings.HasSuffix(cr.Name, "-"+part) {
			return cr
		}
	}
	t.Fatalf("no ClusterRole of %s; rendered: %v", part, kindsNamed(m))
	return nil
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

// grantingNamespaces lists the namespaces where any RoleBinding of the
// chart grants its ServiceAccount something, sorted.
func grantingNamespaces(m *manifest) []string {
	var out []string
	for _, b := range all[*rbacv1.RoleBinding](m) {
		if bindsServiceAccount(m, b.Subjects) && !slices.Contains(out, b.Namespace) {
			out = append(out, b.Namespace)
		}
	}
	sort.Strings(out)
	return out
}

// onlyWhere are rights of a part that a namespace must not grant unless
// that part works there: the point of splitting the rights (an
// environment's namespace holds no Secrets or pods of ferry's, the agents
// namespace no Deployments it may change).
var onlyWhere = map[string][]access{
	partAgents: {
		{"", "pods", "", "create"}, {"", "pods", "", "delete"},
		{"", "secrets", "", "create"}, {"", "secrets", "", "list"}, {"", "secrets", "", "get"},
		{"", "events", "", "create"},
	},
	partPromotion: {
		{"apps", "deployments", "", "update"}, {"apps", "deployments", "", "get"},
		{"batch", "jobs", "", "create"},
	},
}

// checkNamespace compares what the chart grants in ns with what the parts
// working there need (the bed's rules): all of it, and nothing more.
func checkNamespace(t *testing.T, bed map[string][]rbacv1.PolicyRule, got []rbacv1.PolicyRule, ns string, ps []string) {
	t.Helper()
	want := rulesOf(bed, ps)
	for _, a := range expand(want) {
		if !allows(got, a) {
			t.Errorf("ferry may not %s in namespace %s (needed by %v)", a, ns, ps)
		}
	}
	for _, a := range expand(got) {
		if !allows(want, a) {
			t.Errorf("ferry may %s in namespace %s, which %v do not need", a, ns, ps)
		}
		if a.verb == "*" || a.resource == "*" || a.group == "*" {
			t.Errorf("namespace %s grants a wildcard: %s", ns, a)
		}
	}
	for p, rights := range onlyWhere {
		if slices.Contains(ps, p) {
			continue
		}
		for _, a := range rights {
			if allows(got, a) {
				t.Errorf("ferry may %s in namespace %s, where only %v work", a, ns, ps)
			}
		}
	}
}

// rbacCase is a way of installing the chart and the parts of ferry that
// must get their rights in each namespace (no other namespace gets any).
type rbacCase struct {
	name   string
	values []string
	extra  []string
	rbac   map[string][]string
}

func rbacCases(t testing.TB) []rbacCase {
	var out []rbacCase
	for _, tc := range renderCases(t) {
		out = append(out, rbacCase{tc.name, tc.values, tc.extra, tc.rbac})
	}
	full := []string{fullValues(t)}
	return append(out,
		rbacCase{
			name: "extra namespaces only", extra: []string{"--set", "rbac.extraNamespaces={ops}"},
			rbac: map[string][]string{"ops": {partAgents, partPromotion}},
		},
		rbacCase{
			name: "kubernetes approvers", values: full, extra: []string{"--set", "config.promotion.auth.kubernetes.enabled=true"},
			rbac: map[string][]string{
				"ci-agents": {partAgents}, "web-extra": {partAgents, partPromotion}, "web-prod": {partPromotion}, "web-test": {partPromotion},
				releaseNamespace: {partLease}, "": {partReviews},
			},
		},
		rbacCase{
			name: "promoter off", values: full, extra: []string{"--set", "config.promotion.enabled=false"},
			rbac: map[string][]string{"ci-agents": {partAgents}, "web-extra": {partAgents, partPromotion}},
		},
		rbacCase{
			name: "provisioner off", values: full, extra: []string{"--set", "config.agents.enabled=false"},
			rbac: map[string][]string{
				"web-extra": {partAgents, partPromotion}, "web-prod": {partPromotion}, "web-test": {partPromotion},
				releaseNamespace: {partLease},
			},
		},
		rbacCase{
			// Image builds run kaniko pods with the provisioner's rights,
			// in their own namespace when they name one.
			name: "image builds without the provisioner", values: full,
			extra: []string{"--set", "config.agents.enabled=false", "--set", "config.images.enabled=true",
				"--set", "config.images.namespace=ci-builds", "--set", "config.images.pushSecret=registry-push"},
			rbac: map[string][]string{
				"ci-builds": {partAgents}, "web-extra": {partAgents, partPromotion}, "web-prod": {partPromotion},
				"web-test": {partPromotion}, releaseNamespace: {partLease},
			},
		},
		rbacCase{
			name: "agents and an environment share a namespace", values: full,
			extra: []string{"--set", "config.agents.namespace=web-test", "--set", "rbac.extraNamespaces=null"},
			rbac: map[string][]string{
				"web-test": {partAgents, partPromotion}, "web-prod": {partPromotion}, releaseNamespace: {partLease},
			},
		},
	)
}

// TestRBAC checks the rendered RBAC against the rights ferry is tested
// with on the bed (test/bed/rbac-ferry.yaml), part by part: each
// namespace gets exactly the rights of the parts working there (the
// provisioner's in the agents namespace, the promoter's in each
// environment's namespace, its Lease in the lease namespace, both in
// rbac.extraNamespaces), no other namespace gets any, and nothing is
// granted cluster-wide.
func TestRBAC(t *testing.T) {
	bed := bedRBAC(t)
	for _, tc := range rbacCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			m := render(t, tc.values, tc.extra...)
			for ns, ps := range tc.rbac {
				if ns == "" {
					t.Run("cluster-wide", func(t *testing.T) {
						checkNamespace(t, bed, grantedIn(m, ""), "(cluster-wide)", ps)
					})
					continue
				}
				t.Run("namespace "+ns, func(t *testing.T) {
					checkNamespace(t, bed, grantedIn(m, ns), ns, ps)
				})
			}
			t.Run("no other namespace", func(t *testing.T) {
				var want []string
				for ns := range tc.rbac {
					if ns != "" {
						want = append(want, ns)
					}
				}
				sort.Strings(want)
				if got := grantingNamespaces(m); !slices.Equal(got, want) {
					t.Errorf("ferry gets rights in %v, want %v", got, want)
				}
			})
			t.Run("nothing cluster-wide", func(t *testing.T) {
				if _, reviews := tc.rbac[""]; reviews {
					if n := len(all[*rbacv1.ClusterRoleBinding](m)); n != 1 {
						t.Errorf("%d ClusterRoleBindings rendered, want the reviews' one", n)
					}
					return
				}
				if got := grantedIn(m, ""); len(got) != 0 {
					t.Errorf("ferry gets rights cluster-wide: %v", expand(got))
				}
				if n := len(all[*rbacv1.ClusterRoleBinding](m)); n != 0 {
					t.Errorf("%d ClusterRoleBindings rendered", n)
				}
			})
			t.Run("every role bound", func(t *testing.T) {
				for _, cr := range all[*rbacv1.ClusterRole](m) {
					if len(bindingNamespaces(m, cr.Name)) == 0 && !strings.HasSuffix(cr.Name, "-promotion-reviews") {
						t.Errorf("ClusterRole %s is bound nowhere", cr.Name)
					}
				}
			})
		})
	}
}

// TestLeaseNames: the Lease rights name the Leases ferry is configured
// with, and are left out when leader election is off.
func TestLeaseNames(t *testing.T) {
	cases := []struct {
		name                  string
		set                   []string
		provisioner, promoter string // "" means no right on any Lease
	}{
		{name: "defaults", provisioner: "ferry-provisioner", promoter: "ferry-promoter"},
		{
			name:        "renamed",
			set:         []string{"config.agents.leaderElection.leaseName=ci-prov", "config.promotion.leaderElection.leaseName=ci-prom"},
			provisioner: "ci-prov", promoter: "ci-prom",
		},
		{
			name: "leader election off",
			set:  []string{"config.agents.leaderElection.enabled=false", "config.promotion.leaderElection.enabled=false"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"--set", "config.agents.enabled=true", "--set", "config.promotion.enabled=true",
				"--set", "config.promotion.leaseNamespace=leases"}
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			m := render(t, nil, args...)
			for _, c := range []struct {
				ns, lease string
				rules     []rbacv1.PolicyRule
			}{
				{"ferry-agents", tc.provisioner, grantedIn(m, "ferry-agents")},
				{"leases", tc.promoter, grantedIn(m, "leases")},
			} {
				for _, v := range []string{"get", "update", "create"} {
					a := access{"coordination.k8s.io", "leases", c.lease, v}
					if c.lease == "" {
						a.name = "any"
					}
					if got := allows(c.rules, a); got != (c.lease != "") {
						t.Errorf("ferry may %s in %s: %v, want %v", a, c.ns, got, c.lease != "")
					}
				}
				if c.lease != "" && allows(c.rules, access{"coordination.k8s.io", "leases", "other", "update"}) {
					t.Errorf("ferry may update any Lease in %s, not only %s", c.ns, c.lease)
				}
			}
		})
	}
}
