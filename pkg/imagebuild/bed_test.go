package imagebuild

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ferryci/ferry/test/testbed"
)

// A build on the test bed: ferry's identity creates the kaniko pod on a
// virtual node; the test plays kaniko — it pushes an image to the bed's
// real registry and has kwok end the pod with that digest as its
// termination message — and ferry checks the digest at the registry.
func TestImageBuildOnTheTestBed(t *testing.T) {
	ns := testbed.Namespace(t, testbed.AgentsRole)
	reg := testbed.RegistryAddr(t)
	admin := testbed.Clientset(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{reg: map[string]string{"auth": "cHVzaDpwdXNo"}}})
	if _, err := admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "registry-push"}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: cfg},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{Kube: testbed.FerryClientset(t), Namespace: ns, PushSecret: "registry-push",
		Destinations: []string{reg + "/ferry-image-test/*"}, KanikoImage: "kaniko.invalid/executor:v1"})
	if err != nil {
		t.Fatal(err)
	}
	repo := reg + "/ferry-image-test/" + strings.ToLower(ns)

	build := func(sha string) Status {
		st, err := b.Start(ctx, Request{GitURL: "https://github.com/acme/web.git", Ref: "refs/heads/main", SHA: sha, Destination: repo + ":" + sha[:12]})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	// finish waits for the pod to run, then ends it as kaniko would, with
	// message in its termination log.
	finish := func(id, message string) Status {
		for {
			p, err := admin.CoreV1().Pods(ns).Get(ctx, id, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if p.Status.Phase == corev1.PodRunning {
				break
			}
			wait(ctx, t, "pod "+id+" to run on a virtual node")
		}
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
			"testbed.ferry.dev/termination-message": message, "testbed.ferry.dev/complete": "true"}}})
		if _, err := admin.CoreV1().Pods(ns).Patch(ctx, id, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		for {
			st, err := b.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if st.Done() {
				return st
			}
			wait(ctx, t, "build "+id+" to end")
		}
	}

	sha := strings.Repeat("a1", 20)
	st := build(sha)
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag(repo + ":" + sha[:12])
	if err := remote.Write(tag, img); err != nil {
		t.Fatalf("push %s: %v", tag, err)
	}
	d, _ := img.Digest()
	got := finish(st.ID, d.String())
	if got.State != StateSucceeded || got.Image != repo+"@"+d.String() {
		t.Fatalf("build: %+v", got)
	}

	// kaniko's word is checked: a digest the registry lacks fails the build.
	st = build(strings.Repeat("b2", 20))
	got = finish(st.ID, "sha256:"+strings.Repeat("0", 64))
	if got.State != StateFailed || !strings.Contains(got.Reason, "the registry does not have it") {
		t.Fatalf("a digest the registry lacks: %+v", got)
	}
}

func wait(ctx context.Context, t *testing.T, what string) {
	t.Helper()
	select {
	case <-ctx.Done():
		t.Fatalf("timed out waiting for %s", what)
	case <-time.After(200 * time.Millisecond):
	}
}
