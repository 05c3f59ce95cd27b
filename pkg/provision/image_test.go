package provision

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/pkg/jenkins"
	"github.com/ferryci/ferry/test/jenkinsemu"
	"github.com/ferryci/ferry/test/testbed"
)

func withImageCheck(c *Config) { c.ImageCheck = true }

func TestDecideChecksTheImageBeforeThePod(t *testing.T) {
	verdict := func(r imageResult, age time.Duration) map[string]imageCheck {
		return map[string]imageCheck{"linux": {result: r, message: "answer", at: t0.Add(-age)}}
	}
	runDecideCases(t, []decideCase{{
		name:    "never checked: the item waits for the check, no pod",
		cfg:     withImageCheck,
		scene:   scene{queue: []jenkins.QueueItem{item(5), item(6)}},
		acts:    []string{"check image of linux"},
		waiting: tally{{"linux", "image_check"}: 2},
	}, {
		name:   "found: created",
		cfg:    withImageCheck,
		scene:  scene{queue: []jenkins.QueueItem{item(5)}, images: verdict(imageFound, time.Second)},
		acts:   []string{"create " + a51 + " fallback 0"},
		agents: linux("creating", 1),
	}, {
		name:   "found long ago: created while the verdict is refreshed",
		cfg:    withImageCheck,
		scene:  scene{queue: []jenkins.QueueItem{item(5)}, images: verdict(imageFound, imageTTL)},
		acts:   []string{"check image of linux", "create " + a51 + " fallback 0"},
		agents: linux("creating", 1),
	}, {
		name:  "missing: the item is given up at once with the reason, no pod",
		cfg:   withImageCheck,
		scene: scene{queue: []jenkins.QueueItem{item(5)}, images: verdict(imageMissing, time.Second)},
		acts:  []string{"give up 5 after " + a51 + ": ImagePull"},
		then:  func(t *testing.T, d *decision) { wantItem(t, d, 5, itemMemory{gaveUp: true}) },
	}, {
		name:  "denied: given up at once",
		cfg:   withImageCheck,
		scene: scene{queue: []jenkins.QueueItem{item(5)}, images: verdict(imageDenied, time.Second)},
		acts:  []string{"give up 5 after " + a51 + ": ImagePull"},
		then:  func(t *testing.T, d *decision) { wantItem(t, d, 5, itemMemory{gaveUp: true}) },
	}, {
		name:   "unreachable registry: does not block, the pod's pull decides",
		cfg:    withImageCheck,
		scene:  scene{queue: []jenkins.QueueItem{item(5)}, images: verdict(imageUnreachable, time.Second)},
		acts:   []string{"create " + a51 + " fallback 0"},
		agents: linux("creating", 1),
	}, {
		name:   "check off: created without a check",
		scene:  scene{queue: []jenkins.QueueItem{item(5)}},
		acts:   []string{"create " + a51 + " fallback 0"},
		agents: linux("creating", 1),
	}})
}

func TestClassifyImageError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want imageResult
	}{
		{nil, imageFound},
		{&transport.Error{StatusCode: 404}, imageMissing},
		{&transport.Error{StatusCode: 404, Errors: []transport.Diagnostic{{Code: transport.NameUnknownErrorCode}}}, imageMissing},
		{&transport.Error{StatusCode: 400, Errors: []transport.Diagnostic{{Code: transport.ManifestUnknownErrorCode}}}, imageMissing},
		{&transport.Error{StatusCode: 401}, imageDenied},
		{&transport.Error{StatusCode: 403, Errors: []transport.Diagnostic{{Code: transport.DeniedErrorCode}}}, imageDenied},
		{&transport.Error{StatusCode: 503}, imageUnreachable},
		{fmt.Errorf("dial tcp: connection refused"), imageUnreachable},
	} {
		if got := classifyImageError(tc.err); got != tc.want {
			t.Errorf("classifyImageError(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
}

// checkOnce runs a template's image check against a clientset holding
// secrets and returns the verdict.
func checkOnce(t *testing.T, image string, pullSecrets []string, secrets ...*corev1.Secret) imageCheck {
	t.Helper()
	p := deciding(t, func(c *Config) {
		c.Templates = testTemplate(func(tm *eci.Template) { tm.Image, tm.ImagePullSecrets = image, pullSecrets })
		c.Kube = fake.NewClientset()
		for _, s := range secrets {
			if _, err := c.Kube.CoreV1().Secrets(testNS).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	})
	if err := p.checkImage("linux")(context.Background()); err != nil {
		t.Fatal(err)
	}
	return p.imagesNow()["linux"]
}

func pushRandom(t *testing.T, ref string, opts ...remote.Option) {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, opts...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// The bed's registry (a real distribution registry): a missing image and
// a present one.
func TestImageCheckAgainstTheBedRegistry(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the test bed's registry (FERRY_TESTBED_ENV)")
	}
	addr := testbed.RegistryAddr(t)
	repo := fmt.Sprintf("%s/ferry-agents-imgcheck/agent-%d", addr, time.Now().UnixNano())
	if c := checkOnce(t, repo+":missing", nil); c.result != imageMissing {
		t.Errorf("missing image: %s (%s), want missing", c.result, c.message)
	}
	pushRandom(t, repo+":v1")
	if c := checkOnce(t, repo+":v1", nil); c.result != imageFound {
		t.Errorf("present image: %s (%s), want found", c.result, c.message)
	}
	if c := checkOnce(t, "127.0.0.1:1/none/agent:v1", nil); c.result != imageUnreachable {
		t.Errorf("closed port: %s (%s), want unreachable", c.result, c.message)
	}
}

// A registry that demands auth, as the distribution spec says: 401 with
// WWW-Authenticate. A pull secret with the right credentials passes; none
// or wrong ones are denied.
func TestImageCheckWithPullSecrets(t *testing.T) {
	const user, pass = "puller", "s3cret"
	reg := registry.New()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, pw, ok := r.BasicAuth(); !ok || u != user || pw != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="ferry-test"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`))
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	image := host + "/team/agent:v1"
	pushRandom(t, image, remote.WithAuth(&authn.Basic{Username: user, Password: pass}))

	secret := func(name, u, pw string) *corev1.Secret {
		auth := base64.StdEncoding.EncodeToString([]byte(u + ":" + pw))
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS}, Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"` + host + `":{"auth":"` + auth + `"}}}`)}}
	}
	if c := checkOnce(t, image, []string{"pull"}, secret("pull", user, pass)); c.result != imageFound {
		t.Errorf("with the pull secret: %s (%s), want found", c.result, c.message)
	}
	if c := checkOnce(t, image, []string{"pull"}, secret("pull", user, "wrong")); c.result != imageDenied {
		t.Errorf("wrong credentials: %s (%s), want denied", c.result, c.message)
	}
	if c := checkOnce(t, image, nil); c.result != imageDenied {
		t.Errorf("no pull secret: %s (%s), want denied", c.result, c.message)
	}
	if c := checkOnce(t, image, []string{"pull"}, secret("pull", user, pass)); strings.Contains(c.message, pass) {
		t.Errorf("the verdict's message carries the password: %q", c.message)
	}
}

// On the bed: a template whose image is missing from the bed's registry
// fails its build's queue item at once, with the reason, and no pod is
// ever made.
func TestBedMissingImageFailsTheItemWithNoPod(t *testing.T) {
	b := newBed(t)
	addr := testbed.RegistryAddr(t)
	repo := fmt.Sprintf("%s/ferry-agents-imgcheck/bed-%d", addr, time.Now().UnixNano())
	b.addJob(jenkinsemu.JobSpec{Duration: jenkinsemu.Forever})
	pw := b.watchPhases()
	cfg := b.config(bedTemplate(func(tm *eci.Template) { tm.Image = repo + ":missing" }))
	cfg.ImageCheck = true
	b.start(cfg)
	q := b.trigger(1)
	waitFor(t, "the item given up", func() bool { return len(b.failuresSeen()) > 0 })
	f := b.failuresSeen()[0]
	if f.QueueID != q || !f.Cancelled || f.Reason != eci.ReasonImagePull || !strings.Contains(f.Message, repo+":missing") ||
		!strings.Contains(f.Message, "does not exist") {
		t.Errorf("failure = %+v, want the item cancelled for its missing image", f)
	}
	if it, ok := b.emu.QueueItem(q); ok && !it.Cancelled {
		t.Errorf("queue item %d = %+v, want cancelled", q, it)
	}
	if pods := b.pods(); len(pods) != 0 {
		t.Errorf("%d agent pods exist, want none", len(pods))
	}
	pw.mu.Lock()
	seen := len(pw.pods)
	pw.mu.Unlock()
	if seen != 0 {
		t.Errorf("%d agent pods were made, want none", seen)
	}
}
