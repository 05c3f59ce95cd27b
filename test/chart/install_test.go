package chart

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"github.com/ferryci/ferry/test/testbed"
)

// TestInstallOnBed installs the chart into a fresh namespace of the test
// bed's real apiserver (which validates every object), checks with
// `kubectl auth can-i` that ferry's ServiceAccount holds every right the
// provisioner and the promoter need, where they need it, and no more: no
// part's rights where only another part works (no pods or Secrets in an
// environment's namespace, no Deployments in the agents namespace),
// nothing cluster-wide; and that `helm uninstall` removes everything. The
// bed has no container runtime: ferry's pods never run, and the test does
// not wait for them.
func TestInstallOnBed(t *testing.T) {
	if testing.Short() {
		t.Skip("installs the chart on the test bed (Kubernetes); skipped under -short")
	}
	env := testbed.Kube(t)
	vals, err := env.Require(testbed.KeyKubeconfigAdmin)
	if err != nil {
		testbed.Unavailable(t, "%v", err)
	}
	kubeconfig := vals[0]
	kubectl := tool(t, "kubectl", "")
	cs := testbed.Clientset(t)
	ns := testbed.Namespace(t)
	agentsNS, testNS, prodNS := ns+"-agents", ns+"-test", ns+"-prod"
	for _, n := range []string{testNS, prodNS} {
		createNamespace(t, cs, n)
	}
	t.Cleanup(func() { deleteNamespace(t, cs, agentsNS) })

	values := writeValues(t, fmt.Sprintf(`
config:
  agents:
    enabled: true
    namespace: %s
    templates:
      - name: default
        image: jenkins/inbound-agent:latest
        labels: [ferry-agent]
  promotion:
    enabled: true
    apps:
      - name: web
        source: registry.example.com/ci/web
        target: registry.example.com/release/web
        environments:
          - {name: test, namespace: %s, deployments: [web]}
          - {name: production, namespace: %s, deployments: [web], approval: true}
secrets:
  jenkinsApiToken: jenkins-token
  promotionApiToken: promotion-token
  githubWebhookSecrets: [hook-secret]
`, agentsNS, testNS, prodNS))
	kenv := []string{"KUBECONFIG=" + kubeconfig}
	const release = "ferry"
	installed := false
	t.Cleanup(func() {
		if installed && t.Failed() {
			_, _, _ = helmEnv(t, kenv, "uninstall", release, "--namespace", ns)
		}
	})
	out, stderr, err := helmEnv(t, kenv, "install", release, chartDir(t), "--namespace", ns,
		"--values", values, "--wait=false", "--timeout", "2m")
	if err != nil {
		t.Fatalf("%v\n%s%s", err, out, stderr)
	}
	installed = true
	if !strings.Contains(out, "/hooks/github") {
		t.Errorf("install notes do not name the webhook URL:\n%s", out)
	}
	got, stderr, err := helmEnv(t, kenv, "get", "manifest", release, "--namespace", ns)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	m := decode(t, got)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dep, err := cs.AppsV1().Deployments(ns).Get(ctx, release, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the Deployment is not in the cluster: %v", err)
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 3 {
		t.Errorf("replicas = %v, want 3", dep.Spec.Replicas)
	}
	// The chart's crds/ installed the AgentPool CRD, served with its scale
	// subresource (helm leaves an existing one alone: the bed is shared).
	err = pollUntil(ctx, 200*time.Millisecond, func() (bool, error) {
		l, err := cs.Discovery().ServerResourcesForGroupVersion("ferry.dev/v1alpha1")
		if err != nil {
			return false, nil
		}
		return slices.ContainsFunc(l.APIResources, func(r metav1.APIResource) bool { return r.Name == "agentpools/scale" }), nil
	})
	if err != nil {
		t.Errorf("agentpools.ferry.dev with a scale subresource is not served after install: %v", err)
	}
	sa := "system:serviceaccount:" + ns + ":" + dep.Spec.Template.Spec.ServiceAccountName
	canI := func(args ...string) (bool, error) {
		return kubectlCanI(ctx, kubectl, kubeconfig, sa, args...)
	}

	// Where each part of ferry must get its rights (and no other part's).
	where := map[string][]string{
		agentsNS: {partAgents},
		testNS:   {partPromotion},
		prodNS:   {partPromotion},
		ns:       {partLease},
	}
	bed := bedRBAC(t)

	// The RBAC authorizer sees new bindings through an informer: wait until
	// a right of each binding is in effect.
	for n, ps := range where {
		a := expand(bed[ps[0]])[0]
		err = pollUntil(ctx, 200*time.Millisecond, func() (bool, error) { return canI(append(canIArgs(a), "-n", n)...) })
		if err != nil {
			t.Fatalf("ferry's rights never took effect in %s (%s): %v", n, a, err)
		}
	}

	type check struct {
		what string
		args []string
		want bool
	}
	var checks []check
	// Every right of every part, in every namespace: granted where that
	// part works, refused elsewhere.
	var every []access
	for _, p := range parts {
		for _, a := range expand(bed[p]) {
			if !slices.Contains(every, a) {
				every = append(every, a)
			}
		}
	}
	for n, ps := range where {
		own := rulesOf(bed, ps)
		for _, a := range every {
			want := allows(own, a)
			checks = append(checks, check{fmt.Sprintf("%s in %s (%v)", a, n, ps), append(canIArgs(a), "-n", n), want})
		}
	}
	// What ferry must not be able to do anywhere.
	checks = append(checks, []check{
		{"update another Lease in the agents namespace", []string{"update", "leases.coordination.k8s.io/other", "-n", agentsNS}, false},
		{"update another Lease in the release namespace", []string{"update", "leases.coordination.k8s.io/other", "-n", ns}, false},
		{"create pods in the release namespace", []string{"create", "pods", "-n", ns}, false},
		{"read secrets in the release namespace", []string{"get", "secrets", "-n", ns}, false},
		{"read secrets in kube-system", []string{"get", "secrets", "-n", "kube-system"}, false},
		{"list secrets cluster-wide", []string{"list", "secrets", "--all-namespaces"}, false},
		{"create pods in default", []string{"create", "pods", "-n", "default"}, false},
		{"update deployments in default", []string{"update", "deployments.apps", "-n", "default"}, false},
		{"list nodes", []string{"list", "nodes"}, false},
		{"list namespaces", []string{"list", "namespaces"}, false},
		{"delete namespaces", []string{"delete", "namespaces"}, false},
		{"create nodes", []string{"create", "nodes"}, false},
		{"create clusterrolebindings", []string{"create", "clusterrolebindings.rbac.authorization.k8s.io"}, false},
		{"bind roles in the agents namespace", []string{"create", "rolebindings.rbac.authorization.k8s.io", "-n", agentsNS}, false},
	}...)

	t.Run("can-i", func(t *testing.T) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		sem := make(chan struct{}, 4)
		for _, c := range checks {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				ok, err := canI(c.args...)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					t.Errorf("%s: %v", c.what, err)
				case ok != c.want:
					t.Errorf("ferry can %s: %v, want %v (kubectl auth can-i %s --as %s)", c.what, ok, c.want, strings.Join(c.args, " "), sa)
				}
			}()
		}
		wg.Wait()
	})

	t.Run("uninstall", func(t *testing.T) {
		out, stderr, err := helmEnv(t, kenv, "uninstall", release, "--namespace", ns, "--timeout", "2m")
		if err != nil {
			t.Fatalf("%v\n%s%s", err, out, stderr)
		}
		installed = false
		var left []string
		err = pollUntil(ctx, 250*time.Millisecond, func() (bool, error) {
			left = left[:0]
			for _, o := range m.objects {
				gone, err := deleted(ctx, cs, o)
				if err != nil {
					return false, err
				}
				if !gone {
					left = append(left, kindName(o))
				}
			}
			return len(left) == 0, nil
		})
		if err != nil {
			t.Fatalf("after helm uninstall, still there: %v (%v)", left, err)
		}
		if ok, err := canI("create", "pods", "-n", agentsNS); err != nil || ok {
			t.Errorf("after helm uninstall ferry can still create pods in %s (%v)", agentsNS, err)
		}
		list, _, err := helmEnv(t, kenv, "list", "--namespace", ns, "--short")
		if err != nil || strings.TrimSpace(list) != "" {
			t.Errorf("helm list after uninstall: %q (%v)", list, err)
		}
	})
}

// canIArgs turns a right into `kubectl auth can-i` arguments.
func canIArgs(a access) []string {
	res, sub, _ := strings.Cut(a.resource, "/")
	if a.group != "" {
		res += "." + a.group
	}
	if a.name != "" {
		res += "/" + a.name
	}
	args := []string{a.verb, res}
	if sub != "" {
		args = append(args, "--subresource="+sub)
	}
	return args
}

// kubectlCanI runs `kubectl auth can-i ARGS --as AS` as the bed's admin;
// it answers yes (exit 0) or no (exit 1).
func kubectlCanI(ctx context.Context, kubectl, kubeconfig, as string, args ...string) (bool, error) {
	full := append([]string{"--kubeconfig", kubeconfig, "auth", "can-i"}, args...)
	full = append(full, "--as", as)
	cmd := exec.CommandContext(ctx, kubectl, full...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	answer := strings.TrimSpace(out.String())
	var exit *exec.ExitError
	switch {
	case err == nil && answer == "yes":
		return true, nil
	case errors.As(err, &exit) && exit.ExitCode() == 1 && strings.HasPrefix(answer, "no"):
		return false, nil
	default:
		return false, fmt.Errorf("kubectl %s: %q %q: %w", strings.Join(full[2:], " "), answer, strings.TrimSpace(stderr.String()), err)
	}
}

func pollUntil(ctx context.Context, every time.Duration, cond func() (bool, error)) error {
	tick := time.NewTicker(every)
	defer tick.Stop()
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("%w (last error: %w)", ctx.Err(), last)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func createNamespace(t testing.TB, cs kubernetes.Interface, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: name, Labels: map[string]string{"testbed.ferry.dev/test": "true"},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() { deleteNamespace(t, cs, name) })
}

func deleteNamespace(t testing.TB, cs kubernetes.Interface, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := cs.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("delete namespace %s: %v", name, err)
	}
}

func kindName(o runtime.Object) string {
	acc, err := metaOf(o)
	if err != nil {
		return fmt.Sprintf("%T", o)
	}
	return fmt.Sprintf("%s %s/%s", o.GetObjectKind().GroupVersionKind().Kind, acc.GetNamespace(), acc.GetName())
}

// deleted reports whether the object is gone from the cluster (a Namespace
// counts once it is terminating: its contents go with it).
func deleted(ctx context.Context, cs kubernetes.Interface, o runtime.Object) (bool, error) {
	acc, err := metaOf(o)
	if err != nil {
		return false, err
	}
	name, ns := acc.GetName(), acc.GetNamespace()
	opts := metav1.GetOptions{}
	switch o.(type) {
	case *corev1.Namespace:
		var got *corev1.Namespace
		got, err = cs.CoreV1().Namespaces().Get(ctx, name, opts)
		if err == nil && got.DeletionTimestamp != nil {
			return true, nil
		}
	case *corev1.ServiceAccount:
		_, err = cs.CoreV1().ServiceAccounts(ns).Get(ctx, name, opts)
	case *corev1.Secret:
		_, err = cs.CoreV1().Secrets(ns).Get(ctx, name, opts)
	case *corev1.ConfigMap:
		_, err = cs.CoreV1().ConfigMaps(ns).Get(ctx, name, opts)
	case *corev1.Service:
		_, err = cs.CoreV1().Services(ns).Get(ctx, name, opts)
	case *appsv1.Deployment:
		_, err = cs.AppsV1().Deployments(ns).Get(ctx, name, opts)
	case *policyv1.PodDisruptionBudget:
		_, err = cs.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, name, opts)
	case *rbacv1.ClusterRole:
		_, err = cs.RbacV1().ClusterRoles().Get(ctx, name, opts)
	case *rbacv1.ClusterRoleBinding:
		_, err = cs.RbacV1().ClusterRoleBindings().Get(ctx, name, opts)
	case *rbacv1.Role:
		_, err = cs.RbacV1().Roles(ns).Get(ctx, name, opts)
	case *rbacv1.RoleBinding:
		_, err = cs.RbacV1().RoleBindings(ns).Get(ctx, name, opts)
	default:
		return false, fmt.Errorf("%s: the test does not know how to look for it", kindName(o))
	}
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	return false, err
}
