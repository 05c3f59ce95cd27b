package testbed

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Role names a ClusterRole of test/bed/rbac-ferry.yaml holding the rights
// of one part of ferry in the namespaces it works in.
type Role string

// ferry's parts, each with the rights its code uses (test/bed/rbac-ferry.yaml).
const (
	// AgentsRole is the provisioner's: agent pods, their Secrets and
	// Events, its Lease.
	AgentsRole Role = "ferry-agents"
	// PromotionRole is the promoter's: Deployments and verification Jobs
	// of an environment.
	PromotionRole Role = "ferry-promotion"
	// PromotionLeaseRole is the promoter's Lease, in its lease namespace.
	PromotionLeaseRole Role = "ferry-promotion-lease"
)

// FerryClusterRole is the provisioner's ClusterRole.
//
// Deprecated: ferry's rights are split by part; use AgentsRole (or
// Namespace with the roles a test needs).
const FerryClusterRole = string(AgentsRole)

// probes holds, per Role, one right it grants: Namespace waits until the
// RBAC authorizer grants it, i.e. has seen the RoleBinding.
var probes = map[Role]authorizationv1.ResourceAttributes{
	AgentsRole:         {Verb: "create", Resource: "pods"},
	PromotionRole:      {Verb: "update", Group: "apps", Resource: "deployments"},
	PromotionLeaseRole: {Verb: "create", Group: "coordination.k8s.io", Resource: "leases"},
}

// readyAPIServers remembers the apiserver URLs that answered /readyz in this
// process, so each test does not ask again.
var readyAPIServers sync.Map

// Kube returns the bed's env after checking that its Kubernetes apiserver
// answers /readyz; it skips (-short) or fails the test otherwise.
func Kube(t testing.TB) *Env {
	t.Helper()
	env := Load(t)
	cfg, err := restConfig(env, KeyAdminToken)
	if err != nil {
		Unavailable(t, "Kubernetes: %v", err)
	}
	if _, ok := readyAPIServers.Load(cfg.Host); ok {
		return env
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := CheckReady(ctx, env); err != nil {
		Unavailable(t, "%v", err)
	}
	return env
}

// CheckReady returns an error unless the bed's Kubernetes apiserver
// answers /readyz with ok. Programs (test/cmd/…) use it where tests use
// Kube.
func CheckReady(ctx context.Context, env *Env) error {
	cfg, err := restConfig(env, KeyAdminToken)
	if err != nil {
		return fmt.Errorf("the bed's Kubernetes: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("build a client for the Kubernetes apiserver at %s: %w", cfg.Host, err)
	}
	body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("the Kubernetes apiserver at %s does not answer /readyz: %w", cfg.Host, err)
	}
	if string(body) != "ok" {
		return fmt.Errorf("the Kubernetes apiserver at %s is not ready: %s", cfg.Host, body)
	}
	readyAPIServers.Store(cfg.Host, true)
	return nil
}

// Clientsets returns the bed's admin clientset and one acting as ferry's
// identity, for programs; tests use Clientset and FerryClientset.
func Clientsets(env *Env) (admin, ferry kubernetes.Interface, err error) {
	for _, c := range []struct {
		key string
		out *kubernetes.Interface
	}{{KeyAdminToken, &admin}, {KeyFerryToken, &ferry}} {
		cfg, err := restConfig(env, c.key)
		if err != nil {
			return nil, nil, fmt.Errorf("the bed's Kubernetes: %w", err)
		}
		if *c.out, err = kubernetes.NewForConfig(cfg); err != nil {
			return nil, nil, fmt.Errorf("build clientset for %s: %w", cfg.Host, err)
		}
	}
	return admin, ferry, nil
}

// RESTConfig returns a client config for the bed's admin (system:masters).
func RESTConfig(t testing.TB) *rest.Config {
	t.Helper()
	return mustRESTConfig(t, KeyAdminToken)
}

// FerryRESTConfig returns a client config for ferry's own identity: it has
// the rights of the Roles bound in a namespace (all of them in the bed's
// FERRY_NAMESPACE, those Namespace was given in a test's namespace) and
// none cluster-wide.
func FerryRESTConfig(t testing.TB) *rest.Config {
	t.Helper()
	return mustRESTConfig(t, KeyFerryToken)
}

// Clientset returns an admin clientset for the bed.
func Clientset(t testing.TB) kubernetes.Interface {
	t.Helper()
	return mustClientset(t, RESTConfig(t))
}

// FerryClientset returns a clientset acting as ferry's identity.
func FerryClientset(t testing.TB) kubernetes.Interface {
	t.Helper()
	return mustClientset(t, FerryRESTConfig(t))
}

func mustRESTConfig(t testing.TB, tokenKey string) *rest.Config {
	t.Helper()
	cfg, err := restConfig(Kube(t), tokenKey)
	if err != nil {
		Unavailable(t, "Kubernetes: %v", err)
	}
	return cfg
}

func mustClientset(t testing.TB, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("build clientset for %s: %v", cfg.Host, err)
	}
	return cs
}

func restConfig(env *Env, tokenKey string) (*rest.Config, error) {
	vals, err := env.Require(KeyAPIServerURL, KeyCAFile, tokenKey)
	if err != nil {
		return nil, err
	}
	return &rest.Config{
		Host:            vals[0],
		TLSClientConfig: rest.TLSClientConfig{CAFile: vals[1]},
		BearerToken:     vals[2],
		UserAgent:       "ferry-testbed",
		// Tests create objects in bursts; the defaults (5 QPS) would make
		// them slow for no benefit on a private control plane.
		QPS:   100,
		Burst: 200,
	}, nil
}

// Namespace creates a namespace unique to this test, binds ferry's roles to
// the ferry identity in it (AgentsRole and PromotionRole when none are
// given: most tests run a part of ferry in one namespace), waits until its
// default ServiceAccount exists and ferry's rights are in effect, and
// deletes it when the test ends.
func Namespace(t testing.TB, roles ...Role) string {
	t.Helper()
	env := Kube(t)
	name := namespaceName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	created, err := CreateNamespace(ctx, env, name, map[string]string{"testbed.ferry.dev/test": "true"}, roles...)
	if created {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := DeleteNamespace(ctx, env, name); err != nil {
				t.Errorf("%v", err)
			}
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// CreateNamespace creates namespace name with labels, binds ferry's roles
// to the ferry identity in it (AgentsRole and PromotionRole when none are
// given), and waits until its default ServiceAccount exists and ferry's
// rights are in effect. created reports whether the namespace was made,
// so a caller deletes it (DeleteNamespace) even when a later step failed.
func CreateNamespace(ctx context.Context, env *Env, name string, labels map[string]string, roles ...Role) (created bool, err error) {
	if len(roles) == 0 {
		roles = []Role{AgentsRole, PromotionRole}
	}
	for _, r := range roles {
		if _, ok := probes[r]; !ok {
			return false, fmt.Errorf("create namespace %s: unknown role %q", name, r)
		}
	}
	cs, ferry, err := Clientsets(env)
	if err != nil {
		return false, err
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
	}, metav1.CreateOptions{}); err != nil {
		return false, fmt.Errorf("create namespace %s: %w", name, err)
	}

	ferryUser := env.Get(KeyFerryUser)
	if ferryUser == "" {
		ferryUser = "ferry"
	}
	for _, r := range roles {
		_, err = cs.RbacV1().RoleBindings(name).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: string(r)},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: string(r)},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: ferryUser}},
		}, metav1.CreateOptions{})
		if err != nil {
			return true, fmt.Errorf("bind ClusterRole %s to %s in namespace %s: %w", r, ferryUser, name, err)
		}
	}

	// The ServiceAccount admission plugin refuses pods until the namespace's
	// default ServiceAccount exists, and the RBAC authorizer sees a new
	// RoleBinding only after its informer caught up: wait for both.
	err = poll(ctx, 100*time.Millisecond, func() (bool, error) {
		if _, err := cs.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{}); err != nil {
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			return false, err
		}
		for _, r := range roles {
			attrs := probes[r]
			attrs.Namespace = name
			review, err := ferry.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
				Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attrs},
			}, metav1.CreateOptions{})
			if err != nil {
				return false, err
			}
			if !review.Status.Allowed {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return true, fmt.Errorf("wait for namespace %s (default ServiceAccount, ferry's RoleBindings %v): %w", name, roles, err)
	}
	return true, nil
}

// DeleteNamespace deletes namespace name; one already gone is no error.
func DeleteNamespace(ctx context.Context, env *Env, name string) error {
	cs, _, err := Clientsets(env)
	if err != nil {
		return err
	}
	err = cs.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete namespace %s: %w", name, err)
	}
	return nil
}

// namespaceName derives a valid, unique namespace name from a test name.
func namespaceName(testName string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(testName) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
			dash = false
		case !dash && b.Len() > 0:
			b.WriteByte('-')
			dash = true
		}
	}
	base := strings.Trim(b.String(), "-")
	if len(base) > 45 {
		base = strings.TrimRight(base[:45], "-")
	}
	if base == "" {
		base = "test"
	}
	return "tb-" + base + "-" + RandomSuffix(6)
}

// RandomSuffix is n random characters of [a-z0-9], for names of objects a
// run makes on the shared bed.
func RandomSuffix(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	buf := make([]byte, n)
	_, _ = rand.Read(buf)
	for i := range buf {
		buf[i] = alphabet[int(buf[i])%len(alphabet)]
	}
	return string(buf)
}

// poll calls cond every interval until it returns true or an error, or ctx
// ends.
func poll(ctx context.Context, interval time.Duration, cond func() (bool, error)) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("condition not met: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// WaitForPod polls pod ns/name until cond holds and returns the pod; the test
// fails, showing the pod's last status, when timeout passes first.
func WaitForPod(t testing.TB, cs kubernetes.Interface, ns, name string, timeout time.Duration, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last *corev1.Pod
	var lastErr error
	err := poll(ctx, 100*time.Millisecond, func() (bool, error) {
		pod, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			lastErr = err
			return false, nil
		}
		last = pod
		return cond(pod), nil
	})
	if err != nil {
		if last == nil {
			t.Fatalf("wait for pod %s/%s: %v (last error: %v)", ns, name, err, lastErr)
		}
		t.Fatalf("wait for pod %s/%s: %v; last status: %s", ns, name, err, DescribePod(last))
	}
	return last
}

// WaitForEvent polls until an event with reason is recorded about the object
// named name in ns, and returns it.
func WaitForEvent(t testing.TB, cs kubernetes.Interface, ns, name, reason string, timeout time.Duration) *corev1.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var found *corev1.Event
	var seen []string
	err := poll(ctx, 200*time.Millisecond, func() (bool, error) {
		list, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("involvedObject.name", name).String(),
		})
		if err != nil {
			return false, nil
		}
		seen = seen[:0]
		for i := range list.Items {
			ev := &list.Items[i]
			seen = append(seen, ev.Type+"/"+ev.Reason)
			if ev.Reason == reason {
				found = ev
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("wait for event %s about %s/%s: %v; events seen: %v", reason, ns, name, err, seen)
	}
	return found
}

// PodPhase is a WaitForPod condition: the pod is in phase.
func PodPhase(phase corev1.PodPhase) func(*corev1.Pod) bool {
	return func(p *corev1.Pod) bool { return p.Status.Phase == phase }
}

// PodCondition returns the pod's condition of type ct, or nil.
func PodCondition(p *corev1.Pod, ct corev1.PodConditionType) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == ct {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// DescribePod summarizes a pod's status for failure messages.
func DescribePod(p *corev1.Pod) string {
	var b strings.Builder
	fmt.Fprintf(&b, "phase=%s node=%q", p.Status.Phase, p.Spec.NodeName)
	if p.Status.Reason != "" {
		fmt.Fprintf(&b, " reason=%s", p.Status.Reason)
	}
	for _, c := range p.Status.Conditions {
		fmt.Fprintf(&b, " %s=%s", c.Type, c.Status)
		if c.Reason != "" {
			fmt.Fprintf(&b, "(%s)", c.Reason)
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		switch s := cs.State; {
		case s.Waiting != nil:
			fmt.Fprintf(&b, " %s:waiting(%s)", cs.Name, s.Waiting.Reason)
		case s.Running != nil:
			fmt.Fprintf(&b, " %s:running", cs.Name)
		case s.Terminated != nil:
			fmt.Fprintf(&b, " %s:terminated(%s,%d)", cs.Name, s.Terminated.Reason, s.Terminated.ExitCode)
		}
	}
	return b.String()
}
