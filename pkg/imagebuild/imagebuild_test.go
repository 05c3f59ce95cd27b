package imagebuild

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

const (
	sha    = "0123456789abcdef0123456789abcdef01234567"
	digest = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
)

func request() Request {
	return Request{GitURL: "https://github.com/acme/web.git", Ref: "refs/heads/main", SHA: sha,
		Destination: "registry.example.com/ci/web:0123456789ab", BuildArgs: map[string]string{"VERSION": "1.2.3"}}
}

type fixture struct {
	b        *Builder
	kube     *fake.Clientset
	now      time.Time
	verifies []string
	verify   error
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{kube: fake.NewClientset(), now: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)}
	// The API server stamps what it creates; the fake does not.
	f.kube.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		a.(k8stesting.CreateAction).GetObject().(*corev1.Pod).CreationTimestamp = metav1.NewTime(f.now)
		return false, nil, nil
	})
	_, err := f.kube.CoreV1().Secrets("ci").Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "registry-push", Namespace: "ci"}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"registry.example.com":{"auth":"dTpw"}}}`)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.b, err = New(Config{Kube: f.kube, Namespace: "ci", PushSecret: "registry-push", Destinations: []string{"registry.example.com/ci/*"},
		Now: func() time.Time { return f.now },
		Verify: func(_ context.Context, ref name.Digest, cfg []byte) error {
			f.verifies = append(f.verifies, ref.String()+" with "+string(cfg))
			return f.verify
		}})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) pod(t *testing.T, id string) *corev1.Pod {
	t.Helper()
	p, err := f.kube.CoreV1().Pods("ci").Get(context.Background(), id, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// finish plays kubelet: the kaniko container ended with code and message.
func (f *fixture) finish(t *testing.T, id string, phase corev1.PodPhase, code int32, message string) {
	t.Helper()
	p := f.pod(t, id)
	p.Status.Phase = phase
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "kaniko", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: code, Message: message, FinishedAt: metav1.NewTime(f.now)}}}}
	if _, err := f.kube.CoreV1().Pods("ci").UpdateStatus(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestValidateRefusesWhatCannotBeBuiltSafely(t *testing.T) {
	f := newFixture(t)
	for _, tt := range []struct {
		name string
		edit func(*Request)
		want string
	}{
		{"ok", func(*Request) {}, ""},
		{"ssh url", func(r *Request) { r.GitURL = "git@github.com:acme/web.git" }, "give the repository's https URL"},
		{"credentials in url", func(r *Request) { r.GitURL = "https://user:pw@github.com/acme/web.git" }, "without credentials"},
		{"short sha", func(r *Request) { r.SHA = "0123456" }, "give the full commit SHA"},
		{"bad ref", func(r *Request) { r.Ref = "main" }, "give the full ref"},
		{"ref with ..", func(r *Request) { r.Ref = "refs/heads/../x" }, "give the full ref"},
		{"dockerfile outside", func(r *Request) { r.Dockerfile = "../Dockerfile" }, "dockerfile \"../Dockerfile\": give a path inside the repository"},
		{"absolute context", func(r *Request) { r.ContextPath = "/etc" }, "contextPath \"/etc\""},
		{"digest destination", func(r *Request) { r.Destination = "registry.example.com/ci/web@" + digest }, "give repository:tag"},
		{"foreign destination", func(r *Request) { r.Destination = "docker.io/acme/web:1" }, "ferry pushes only to registry.example.com/ci/*"},
		{"prefix is not a match", func(r *Request) { r.Destination = "registry.example.com/cix/web:1" }, "ferry pushes only to"},
		{"bad arg name", func(r *Request) { r.BuildArgs = map[string]string{"A-B": "x"} }, `buildArgs "A-B"`},
		{"multi-line arg", func(r *Request) { r.BuildArgs = map[string]string{"A": "x\ny"} }, "one line"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := request()
			tt.edit(&r)
			_, err := f.b.Validate(r)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want a ValidationError containing %q", err, tt.want)
			}
		})
	}
}

func TestStartMakesOneKanikoPodThatAloneHoldsTheCredentials(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	st, err := f.b.Start(ctx, request())
	if err != nil {
		t.Fatal(err)
	}
	again, err := f.b.Start(ctx, request())
	if err != nil || again.ID != st.ID {
		t.Fatalf("a repeated request is another build: %v %v", again.ID, err)
	}
	pods, _ := f.kube.CoreV1().Pods("ci").List(ctx, metav1.ListOptions{})
	if len(pods.Items) != 1 {
		t.Fatalf("%d pods, want 1", len(pods.Items))
	}
	other := request()
	other.SHA = strings.Repeat("f", 40)
	if ID(other) == st.ID {
		t.Fatal("another commit has the same build id")
	}
	p := pods.Items[0]
	c := p.Spec.Containers[0]
	want := []string{"--context=git://github.com/acme/web.git#refs/heads/main#" + sha, "--dockerfile=Dockerfile",
		"--destination=registry.example.com/ci/web:0123456789ab", "--digest-file=/dev/termination-log", "--build-arg=VERSION=1.2.3"}
	if strings.Join(c.Args, " ") != strings.Join(want, " ") {
		t.Errorf("args\n got %q\nwant %q", c.Args, want)
	}
	if c.TerminationMessagePath != "/dev/termination-log" || c.TerminationMessagePolicy != corev1.TerminationMessageReadFile {
		t.Error("the digest must come back through the termination message file, never the log")
	}
	if v := p.Spec.Volumes[0]; v.Secret == nil || v.Secret.SecretName != "registry-push" || c.VolumeMounts[0].MountPath != "/kaniko/.docker" {
		t.Errorf("push credentials not mounted for kaniko: %+v %+v", v, c.VolumeMounts)
	}
	if *p.Spec.AutomountServiceAccountToken || p.Spec.NodeSelector["type"] != "virtual-kubelet" || *p.Spec.ActiveDeadlineSeconds != 1800 {
		t.Errorf("pod spec: token %v selector %v deadline %v", *p.Spec.AutomountServiceAccountToken, p.Spec.NodeSelector, *p.Spec.ActiveDeadlineSeconds)
	}
	for _, e := range c.Env {
		if strings.Contains(e.Value, "dTpw") {
			t.Error("a credential reached the pod spec")
		}
	}
}

func TestStatusReadsTheDigestAndChecksItAtTheRegistry(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name      string
		phase     corev1.PodPhase
		code      int32
		message   string
		verify    error
		state     string
		reason    string
		verifyRan bool
	}{
		{"pushed", corev1.PodSucceeded, 0, digest + "\n", nil, StateSucceeded, "", true},
		{"registry lacks it", corev1.PodSucceeded, 0, digest, &transport.Error{StatusCode: http.StatusNotFound}, StateFailed, "the registry does not have it", true},
		{"registry unreachable", corev1.PodSucceeded, 0, digest, errors.New("dial tcp: connection refused"), StateSucceeded, "", true},
		{"no digest", corev1.PodSucceeded, 0, "", nil, StateFailed, "without writing the pushed image's digest", false},
		{"garbage digest", corev1.PodSucceeded, 0, "sha256:xyz", nil, StateFailed, "without writing", false},
		{"build failed", corev1.PodFailed, 1, "", nil, StateFailed, "kaniko exited with code 1", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.verify = tt.verify
			st, err := f.b.Start(ctx, request())
			if err != nil || st.State != StatePending {
				t.Fatalf("start: %+v %v", st, err)
			}
			f.finish(t, st.ID, tt.phase, tt.code, tt.message)
			got, err := f.b.Get(ctx, st.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.State != tt.state || !strings.Contains(got.Reason, tt.reason) {
				t.Fatalf("state %s (%s), want %s (%s)", got.State, got.Reason, tt.state, tt.reason)
			}
			if tt.state == StateSucceeded && got.Image != "registry.example.com/ci/web@"+digest {
				t.Errorf("image %q", got.Image)
			}
			if tt.verifyRan != (len(f.verifies) > 0) {
				t.Errorf("verified %v", f.verifies)
			}
			if tt.verifyRan && !strings.Contains(f.verifies[0], `"auth":"dTpw"`) {
				t.Errorf("verification did not use the push Secret's credentials: %v", f.verifies)
			}
		})
	}
}

func TestDeadlineAndSweep(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	st, _ := f.b.Start(ctx, request())
	p := f.pod(t, st.ID)
	p.Status.Phase, p.Status.Reason = corev1.PodFailed, "DeadlineExceeded"
	if _, err := f.kube.CoreV1().Pods("ci").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, _ := f.b.Get(ctx, st.ID)
	if got.State != StateFailed || !strings.Contains(got.Reason, "longer than its timeout (30m0s)") {
		t.Fatalf("%+v", got)
	}
	running := request()
	running.SHA = strings.Repeat("e", 40)
	r2, _ := f.b.Start(ctx, running)

	f.now = f.now.Add(DefaultKeep - time.Second)
	if err := f.b.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.b.Get(ctx, st.ID); err != nil {
		t.Fatal("swept before keep ran out")
	}
	f.now = f.now.Add(2 * time.Second)
	if err := f.b.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.b.Get(ctx, st.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("finished build not swept: %v", err)
	}
	if _, err := f.b.Get(ctx, r2.ID); err != nil {
		t.Fatalf("a running build was swept: %v", err)
	}
	if _, err := f.b.Get(ctx, "some-pod"); !errors.Is(err, ErrNotFound) {
		t.Fatal("Get reads pods that are not image builds")
	}
}

func TestAPIAndCLI(t *testing.T) {
	f := newFixture(t)
	gin.SetMode(gin.TestMode)
	e := gin.New()
	NewServer(f.b, "pipeline-token").Register(e)
	srv := httptest.NewServer(e)
	defer srv.Close()

	post := func(token, body string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/images", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	if code, _ := post("wrong", "{}"); code != http.StatusUnauthorized {
		t.Errorf("wrong token: %d", code)
	}
	if code, out := post("pipeline-token", `{"gitURL":"x"}`); code != http.StatusBadRequest || out["problems"] == nil {
		t.Errorf("bad request: %d %v", code, out)
	}
	if code, out := post("pipeline-token", `{"nope":1}`); code != http.StatusBadRequest || !strings.Contains(out["error"].(string), "unknown field") {
		t.Errorf("unknown field: %d %v", code, out)
	}

	// The CLI, with the build finishing while it waits.
	env := map[string]string{"FERRY_URL": srv.URL, "FERRY_PROMOTION_API_TOKEN": "pipeline-token",
		"FERRY_GIT_URL": "https://github.com/acme/web.git", "FERRY_GIT_REF": "refs/heads/main", "FERRY_GIT_SHA": sha}
	go func() {
		id := ID(Request{GitURL: env["FERRY_GIT_URL"], Ref: env["FERRY_GIT_REF"], SHA: sha, Dockerfile: "Dockerfile", Destination: "registry.example.com/ci/web:1"})
		for {
			if _, err := f.kube.CoreV1().Pods("ci").Get(context.Background(), id, metav1.GetOptions{}); err == nil {
				f.finish(t, id, corev1.PodSucceeded, 0, digest)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	var out, errOut bytes.Buffer
	code := Run(context.Background(), []string{"build", "--destination", "registry.example.com/ci/web:1", "--timeout", "1m"},
		func(k string) string { return env[k] }, &out, &errOut)
	if code != ExitOK || !strings.HasSuffix(strings.TrimSpace(out.String()), "registry.example.com/ci/web@"+digest) {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	code = Run(context.Background(), []string{"build", "--destination", "docker.io/x/y:1"}, func(k string) string { return env[k] }, &out, &errOut)
	if code != ExitUsage || !strings.Contains(errOut.String(), "ferry pushes only to") {
		t.Fatalf("a refused request: exit %d, %s", code, errOut.String())
	}
}
