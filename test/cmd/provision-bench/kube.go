package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/ferryci/ferry/test/testbed"
)

// bed holds the test bed's clients: the admin's (setup, observation,
// cleanup; never counted) and how to build ferry's.
type bed struct {
	env   *testbed.Env
	admin kubernetes.Interface
	// ferryUser is bound to ClusterRole ferry in each namespace.
	ferryUser string
	version   string
}

func openBed(ctx context.Context, path string) (*bed, error) {
	if path == "" {
		p, err := testbed.EnvPath()
		if err != nil {
			return nil, err
		}
		path = p
	}
	env, err := testbed.LoadEnv(path)
	if err != nil {
		return nil, fmt.Errorf("test bed unavailable (start it with `make testbed-up`): %w", err)
	}
	rc, err := restConfig(env, testbed.KeyAdminToken, 200, 400)
	if err != nil {
		return nil, err
	}
	admin, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("admin client: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if body, err := admin.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err != nil || string(body) != "ok" {
		return nil, fmt.Errorf("test bed unavailable: apiserver at %s is not ready (%s, %w); start it with `make testbed-up`", rc.Host, body, err)
	}
	b := &bed{env: env, admin: admin, ferryUser: env.Get(testbed.KeyFerryUser)}
	if b.ferryUser == "" {
		b.ferryUser = "ferry"
	}
	if v, err := admin.Discovery().ServerVersion(); err == nil {
		b.version = v.GitVersion
	}
	return b, nil
}

// restConfig is a client config for the bed's apiserver with the token
// under tokenKey.
func restConfig(env *testbed.Env, tokenKey string, qps float32, burst int) (*rest.Config, error) {
	vals, err := env.Require(testbed.KeyAPIServerURL, testbed.KeyCAFile, tokenKey)
	if err != nil {
		return nil, fmt.Errorf("test bed unavailable: %w", err)
	}
	if !strings.HasPrefix(vals[0], "https://127.0.0.1:") && !strings.HasPrefix(vals[0], "https://localhost:") {
		return nil, fmt.Errorf("the bench runs on loopback only; apiserver is %s", vals[0])
	}
	return &rest.Config{
		Host:            vals[0],
		TLSClientConfig: rest.TLSClientConfig{CAFile: vals[1]},
		BearerToken:     vals[2],
		UserAgent:       "ferry-provision-bench",
		QPS:             qps,
		Burst:           burst,
	}, nil
}

// ferryClient is a clientset with ferry's identity, the given limits, and
// every request counted.
func (b *bed) ferryClient(qps float32, burst int) (kubernetes.Interface, *callCounter, error) {
	rc, err := restConfig(b.env, testbed.KeyFerryToken, qps, burst)
	if err != nil {
		return nil, nil, err
	}
	c := &callCounter{calls: map[string]int{}}
	rc.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return &countingTransport{next: rt, c: c} }
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, nil, fmt.Errorf("ferry client: %w", err)
	}
	return cs, c, nil
}

// namespace creates a fresh namespace, binds ClusterRole ferry to ferry's
// identity in it (as testbed.Namespace does for tests) and waits until
// pods can be created there as ferry.
func (b *bed) namespace(ctx context.Context, prefix string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	ns, err := b.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   prefix + "-" + randomSuffix(5),
		Labels: map[string]string{"testbed.ferry.dev/bench": "provision"},
	}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("create namespace: %w", err)
	}
	name := ns.Name
	_, err = b.admin.RbacV1().RoleBindings(name).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: string(testbed.AgentsRole)},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: string(testbed.AgentsRole)},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: b.ferryUser}},
	}, metav1.CreateOptions{})
	if err != nil {
		return name, fmt.Errorf("bind ClusterRole %s in %s: %w", string(testbed.AgentsRole), name, err)
	}
	ferry, _, err := b.ferryClient(50, 100)
	if err != nil {
		return name, err
	}
	for {
		_, err := b.admin.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			r, err := ferry.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
				Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
					Namespace: name, Verb: "create", Resource: "pods"}},
			}, metav1.CreateOptions{})
			if err != nil {
				return name, fmt.Errorf("check ferry's rights in %s: %w", name, err)
			}
			if r.Status.Allowed {
				return name, nil
			}
		} else if !apierrors.IsNotFound(err) {
			return name, fmt.Errorf("read default ServiceAccount of %s: %w", name, err)
		}
		select {
		case <-ctx.Done():
			return name, fmt.Errorf("wait for namespace %s to be usable: %w", name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// deleteNamespace deletes ns and waits (bounded) until it is gone.
func (b *bed) deleteNamespace(ns string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := b.admin.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete namespace %s: %w", ns, err)
	}
	for {
		if _, err := b.admin.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("namespace %s still terminating: %w", ns, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func randomSuffix(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	buf := make([]byte, n)
	_, _ = rand.Read(buf)
	for i := range buf {
		buf[i] = alphabet[int(buf[i])%len(alphabet)]
	}
	return string(buf)
}

// callCounter counts Kubernetes API requests by verb and resource, e.g.
// "create pods", "patch secrets", "watch pods".
type callCounter struct {
	mu    sync.Mutex
	calls map[string]int
}

func (c *callCounter) add(key string) {
	c.mu.Lock()
	c.calls[key]++
	c.mu.Unlock()
}

// snapshot returns the counts and their total.
func (c *callCounter) snapshot() (map[string]int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]int, len(c.calls))
	total := 0
	for k, v := range c.calls {
		m[k] = v
		total += v
	}
	return m, total
}

func (c *callCounter) reset() {
	c.mu.Lock()
	clear(c.calls)
	c.mu.Unlock()
}

type countingTransport struct {
	next http.RoundTripper
	c    *callCounter
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.c.add(requestKey(r))
	return t.next.RoundTrip(r)
}

// requestKey names a request by Kubernetes verb and resource:
// /api/v1/namespaces/NS/pods/NAME/status with PUT is "update pods/status".
func requestKey(r *http.Request) string {
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	// Drop the group/version prefix: api/v1 or apis/GROUP/VERSION.
	switch {
	case len(segs) >= 2 && segs[0] == "api":
		segs = segs[2:]
	case len(segs) >= 3 && segs[0] == "apis":
		segs = segs[3:]
	default:
		return strings.ToLower(r.Method) + " " + r.URL.Path
	}
	if len(segs) >= 2 && segs[0] == "namespaces" && len(segs) != 2 {
		segs = segs[2:]
	}
	if len(segs) == 0 {
		return strings.ToLower(r.Method) + " " + r.URL.Path
	}
	resource := segs[0]
	named := len(segs) >= 2
	if len(segs) >= 3 {
		resource += "/" + segs[2]
	}
	verb := ""
	switch r.Method {
	case http.MethodGet:
		switch {
		case r.URL.Query().Get("watch") == "true" || r.URL.Query().Get("watch") == "1":
			verb = "watch"
		case named:
			verb = "get"
		default:
			verb = "list"
		}
	case http.MethodPost:
		verb = "create"
	case http.MethodPut:
		verb = "update"
	case http.MethodPatch:
		verb = "patch"
	case http.MethodDelete:
		verb = "delete"
		if !named {
			verb = "deletecollection"
		}
	default:
		verb = strings.ToLower(r.Method)
	}
	return verb + " " + resource
}

// formatCalls lists counts as "create pods 100, patch secrets 100", most
// first.
func formatCalls(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
