package promote_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/promote"
	"github.com/ferryci/ferry/pkg/promote/api"
	"github.com/ferryci/ferry/pkg/scm"
	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/pkg/store/memstore"
	"github.com/ferryci/ferry/test/testbed"
)

const (
	patience = 3 * time.Minute
	apiToken = "test-token-0123456789"
	oldImage = "registry.example/web:v0"
)

func suffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// recorder counts what ferry sends to the registry: blob bytes streamed,
// and cross-repository mounts.
type recorder struct {
	next         http.RoundTripper
	uploadBytes  atomic.Int64
	uploads      atomic.Int64 // PATCH/PUT carrying blob bytes
	mounts       atomic.Int64
	manifestPuts atomic.Int64
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	p := req.URL.Path
	switch {
	case strings.Contains(p, "/blobs/uploads/") && req.Method == http.MethodPost && req.URL.Query().Get("mount") != "":
		r.mounts.Add(1)
	case strings.Contains(p, "/blobs/uploads/") && (req.Method == http.MethodPatch || req.Method == http.MethodPut) && req.Body != nil && req.ContentLength != 0:
		r.uploads.Add(1)
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		r.uploadBytes.Add(int64(len(body)))
		req.Body = io.NopCloser(strings.NewReader(string(body)))
	case strings.Contains(p, "/manifests/") && req.Method == http.MethodPut:
		r.manifestPuts.Add(1)
	}
	return r.next.RoundTrip(req)
}

// bed is one app with a test and a production environment on the bed.
type bed struct {
	t          *testing.T
	kube       kubernetes.Interface
	admin      kubernetes.Interface
	reg        string
	source     string // repository builds push to
	target     string
	nsTest     string
	nsProd     string
	store      store.Store
	rec        *recorder
	app        config.PromotionApp
	health     map[string]*atomic.Int32 // env -> status code the check answers
	healthSrv  *httptest.Server
	api        *httptest.Server
	promoter   *promote.Promoter
	deployer   scm.Deployer
	dynamic    dynamic.Interface // for Knative Services; nil: none
	stopRunner func()
}

func newBed(t *testing.T, st store.Store) *bed {
	t.Helper()
	b := &bed{
		t: t, kube: testbed.FerryClientset(t), admin: testbed.Clientset(t), reg: testbed.RegistryAddr(t),
		nsTest: testbed.Namespace(t), nsProd: testbed.Namespace(t), store: st,
		health: map[string]*atomic.Int32{"test": {}, "production": {}},
	}
	for _, h := range b.health {
		h.Store(http.StatusOK)
	}
	id := suffix()
	b.source = b.reg + "/ci/" + id + "/web"
	b.target = b.reg + "/release/" + id + "/web"
	b.healthSrv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(b.health[strings.TrimPrefix(r.URL.Path, "/")].Load()))
	}))
	t.Cleanup(b.healthSrv.Close)
	check := func(env string) config.Verification {
		return config.Verification{HTTP: config.HTTPCheck{
			URL: b.healthSrv.URL + "/" + env, Successes: 2, Interval: config.Duration{Duration: 50 * time.Millisecond},
			FailureThreshold: 2, Timeout: config.Duration{Duration: 30 * time.Second},
		}}
	}
	b.app = config.PromotionApp{
		Name: "web", Source: b.source, Target: b.target, Tags: []string{"{{version}}", "{{short_commit}}"},
		Environments: []config.PromotionEnvironment{
			{Name: "test", Namespace: b.nsTest, Deployments: []string{"web"}, RolloutTimeout: config.Duration{Duration: 2 * time.Minute}, Verify: check("test")},
			{Name: "production", Namespace: b.nsProd, Deployments: []string{"web"}, Approval: true, RolloutTimeout: config.Duration{Duration: 2 * time.Minute}, Verify: check("production")},
		},
	}
	b.rec = &recorder{next: remote.DefaultTransport}
	return b
}

// start builds a promoter (as a restarted ferry would) and runs it with
// the API in front.
func (b *bed) start() {
	b.t.Helper()
	p, err := promote.New(promote.Config{
		Store: b.store, Apps: []config.PromotionApp{b.app}, Deployer: b.deployer,
		Registry: promote.NewRegistry(promote.RegistryConfig{Transport: b.rec}),
		Kube:     func(string) (kubernetes.Interface, error) { return b.kube, nil },
		Dynamic:  func(string) (dynamic.Interface, error) { return b.dynamic, nil },
		Resync:   200 * time.Millisecond, Poll: 200 * time.Millisecond,
	})
	if err != nil {
		b.t.Fatalf("promote.New: %v", err)
	}
	b.promoter = p
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = p.Run(ctx)
	}()
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	var people []config.PromotionToken
	for _, n := range []string{"alice", "bob", "carol", "dave"} {
		people = append(people, config.PromotionToken{Name: n, SHA256: sha256Hex(personToken(n)),
			Roles: []config.PromotionRole{{Apps: []string{"*"}, Environments: []string{"*"}, Verbs: config.PromotionVerbs}}})
	}
	auth, err := api.NewAuth(api.AuthConfig{PipelineToken: apiToken, Auth: config.PromotionAuth{Tokens: people}})
	if err != nil {
		b.t.Fatal(err)
	}
	api.New(api.Config{Promoter: p, Auth: auth}).Register(e)
	b.api = httptest.NewServer(e)
	b.stopRunner = func() {
		cancel()
		wg.Wait()
		b.api.Close()
	}
	b.t.Cleanup(b.stop)
}

func (b *bed) stop() {
	if b.stopRunner != nil {
		b.stopRunner()
		b.stopRunner = nil
	}
}

// client is the pipeline's: it may create and read promotions.
func (b *bed) client() *api.Client {
	return &api.Client{BaseURL: b.api.URL, Token: apiToken}
}

// as is a person's client (alice, bob, carol or dave: every right).
func (b *bed) as(person string) *api.Client {
	return &api.Client{BaseURL: b.api.URL, Token: personToken(person)}
}

func personToken(name string) string { return name + "-token-0123456789abcdef" }

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// image builds an image of the given layers.
func image(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func layers(t *testing.T, n int, size int64) []v1.Layer {
	t.Helper()
	out := make([]v1.Layer, n)
	for i := range out {
		l, err := random.Layer(size, "application/vnd.oci.image.layer.v1.tar+gzip")
		if err != nil {
			t.Fatal(err)
		}
		out[i] = l
	}
	return out
}

func push(t *testing.T, ref string, img v1.Image) v1.Hash {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// deploy creates Deployment web with oldImage and waits until it runs.
func (b *bed) deploy(ns string, mutateFn func(*appsv1.Deployment)) {
	b.t.Helper()
	replicas := int32(2)
	labels := map[string]string{"app": "web"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{
				MaxSurge: ptr(intstr.FromInt32(1)), MaxUnavailable: ptr(intstr.FromInt32(0)),
			}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{testbed.StartDelayAnnotation: "200ms"}},
				Spec: corev1.PodSpec{
					NodeSelector: testbed.VirtualNodeSelector(),
					Tolerations:  []corev1.Toleration{testbed.VirtualNodeToleration()},
					Containers:   []corev1.Container{{Name: "web", Image: oldImage}, {Name: "sidecar", Image: "registry.example/proxy:1"}},
				},
			},
		},
	}
	if mutateFn != nil {
		mutateFn(d)
	}
	ctx := context.Background()
	if _, err := b.admin.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		b.t.Fatalf("create deployment %s/web: %v", ns, err)
	}
	b.waitDeployment(ns, oldImage)
}

func ptr[T any](v T) *T { return &v }

// waitDeployment waits until web in ns runs image, rolled out by kubectl's rules.
func (b *bed) waitDeployment(ns, image string) *appsv1.Deployment {
	b.t.Helper()
	var last *appsv1.Deployment
	deadline := time.Now().Add(patience)
	for time.Now().Before(deadline) {
		d, err := b.kube.AppsV1().Deployments(ns).Get(context.Background(), "web", metav1.GetOptions{})
		if err == nil {
			last = d
			done, _, _ := promote.RolloutStatus(d)
			if done && d.Spec.Template.Spec.Containers[0].Image == image {
				return d
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Fatalf("deployment %s/web did not roll out %s; last: %+v", ns, image, last.Status)
	return nil
}

func (b *bed) deployment(ns string) *appsv1.Deployment {
	b.t.Helper()
	d, err := b.kube.AppsV1().Deployments(ns).Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		b.t.Fatalf("read deployment %s/web: %v", ns, err)
	}
	return d
}

// waitState waits until the promotion's state satisfies ok.
func (b *bed) waitFor(id string, what string, ok func(store.Promotion) bool) store.Promotion {
	b.t.Helper()
	var p store.Promotion
	deadline := time.Now().Add(patience)
	for time.Now().Before(deadline) {
		var err error
		p, err = b.store.GetPromotion(context.Background(), id)
		if err == nil && ok(p) {
			return p
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Fatalf("promotion %s never reached %s; last: state %s reason %q envs %+v", id, what, p.State, p.Reason, p.Environments)
	return p
}

func (b *bed) waitState(id, state string) store.Promotion {
	b.t.Helper()
	return b.waitFor(id, state, func(p store.Promotion) bool { return p.State == state })
}

func memStore(t *testing.T) store.Store {
	t.Helper()
	s, err := memstore.New(memstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func actions(p store.Promotion, action, env string) int {
	n := 0
	for _, a := range p.Audit {
		if a.Action == action && a.Environment == env {
			n++
		}
	}
	return n
}
