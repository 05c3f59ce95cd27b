package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ferryci/ferry/pkg/promote"
	"github.com/ferryci/ferry/test/testbed"
)

// undo is what the demo must take down, last first. It is an
// scmfake.Cleaner, so the fakes close with everything else.
type undo struct {
	fns []func()
	// failed counts what could not be taken down (see fail).
	failed int
}

// Cleanup adds f; run calls it before everything added earlier.
func (u *undo) Cleanup(f func()) { u.fns = append(u.fns, f) }

// fail says that something could not be taken down.
func (u *undo) fail(out io.Writer, format string, a ...any) {
	u.failed++
	fmt.Fprintf(out, "  "+format+"\n", a...)
}

func (u *undo) run() {
	for i := len(u.fns) - 1; i >= 0; i-- {
		u.fns[i]()
	}
	u.fns = nil
}

// bed is the test bed the demo runs on, and whether the demo started it.
type bed struct {
	env      *testbed.Env
	admin    kubernetes.Interface
	redis    string
	registry string
	started  bool
}

// openBed uses the bed when it is up; otherwise, with o.StartBed, starts it
// with test/bed/bed.sh up and registers its stop (bed.sh down) on u.
func openBed(ctx context.Context, o Options, u *undo, out io.Writer) (*bed, error) {
	path := o.EnvFile
	if path == "" {
		path = filepath.Join(o.Root, "test", ".bed", "env")
	}
	b, err := bedAt(ctx, path)
	if err == nil {
		fmt.Fprintf(out, "test bed: already up (%s); the demo uses it and leaves it running\n", path)
		return b, nil
	}
	if !o.StartBed {
		return nil, fmt.Errorf("test bed unavailable: %w; start it with `make testbed-up`", err)
	}
	fmt.Fprintf(out, "test bed: not up (%v)\ntest bed: starting it with test/bed/bed.sh up; the demo stops it at the end\n", err)
	script := filepath.Join(o.Root, "test", "bed", "bed.sh")
	// Registered before up: a bed half started (or interrupted) is stopped too.
	u.Cleanup(func() {
		fmt.Fprintln(out, "stopping the test bed the demo started (test/bed/bed.sh down)")
		cmd := exec.Command("bash", script, "down")
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Run(); err != nil {
			u.fail(out, "test/bed/bed.sh down: %v", err)
		}
	})
	cmd := exec.CommandContext(ctx, "bash", script, "up")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("start the test bed (test/bed/bed.sh up): %w", err)
	}
	if b, err = bedAt(ctx, path); err != nil {
		return nil, fmt.Errorf("the test bed started but %w", err)
	}
	b.started = true
	return b, nil
}

// bedAt reads the bed's env file and checks that its API server, Redis and
// registry answer.
func bedAt(ctx context.Context, path string) (*bed, error) {
	env, err := testbed.LoadEnv(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no env file at %s", path)
		}
		return nil, err
	}
	vals, err := env.Require(testbed.KeyRedisAddr, testbed.KeyRegistryAddr, testbed.KeyKubeconfigFerry)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := testbed.CheckReady(cctx, env); err != nil {
		return nil, err
	}
	for _, addr := range vals[:2] {
		conn, err := (&net.Dialer{Timeout: 3 * time.Second}).DialContext(cctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("%s does not answer: %w", addr, err)
		}
		_ = conn.Close()
	}
	admin, _, err := testbed.Clientsets(env)
	if err != nil {
		return nil, err
	}
	return &bed{env: env, admin: admin, redis: vals[0], registry: vals[1]}, nil
}

// namespaces creates the demo's namespaces, each with ferry's role in it,
// and registers their deletion, which waits until they are gone.
func (b *bed) namespaces(ctx context.Context, u *undo, out io.Writer, runID string, roles map[string]testbed.Role) error {
	var made []string
	u.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		errs := make(chan error, len(made))
		for _, name := range made {
			go func() { errs <- b.deleteNamespace(ctx, name) }()
		}
		ok := true
		for range made {
			if err := <-errs; err != nil {
				u.fail(out, "%v", err)
				ok = false
			}
		}
		if !ok {
			return
		}
		slices.Sort(made)
		fmt.Fprintf(out, "  deleted namespaces %s (and every pod in them)\n", strings.Join(made, ", "))
	})
	for name, role := range roles {
		created, err := testbed.CreateNamespace(ctx, b.env, name, map[string]string{labelDemo: runID}, role)
		if created {
			made = append(made, name)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// deleteNamespace deletes a namespace and waits until the API server no
// longer has it (its pods gone with it).
func (b *bed) deleteNamespace(ctx context.Context, name string) error {
	if err := testbed.DeleteNamespace(ctx, b.env, name); err != nil {
		return err
	}
	for {
		_, err := b.admin.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("namespace %s still there after its deletion: %w", name, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// pushImage pushes a small random image to ref on the bed's registry and
// returns its digest.
func pushImage(ctx context.Context, ref string) (v1.Hash, error) {
	tag, err := name.ParseReference(ref)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("image reference %q: %w", ref, err)
	}
	img, err := random.Image(2048, 2)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := remote.Write(tag, img, remote.WithContext(ctx)); err != nil {
		return v1.Hash{}, fmt.Errorf("push %s: %w", ref, err)
	}
	return img.Digest()
}

// registryDigest is the digest the registry answers for ref.
func registryDigest(ctx context.Context, ref string) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w", ref, err)
	}
	d, err := remote.Head(r, remote.WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("ask the registry for %s: %w", ref, err)
	}
	return d.Digest.String(), nil
}

// deployWeb creates Deployment web running image in ns, on the virtual
// nodes, and waits until it is rolled out: what a promotion replaces.
func (b *bed) deployWeb(ctx context.Context, ns, image string) error {
	d := testbed.VirtualNodeDeployment("web", image, 1)
	d.Spec.Template.Annotations = map[string]string{testbed.StartDelayAnnotation: "300ms"}
	if _, err := b.admin.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create Deployment %s/web: %w", ns, err)
	}
	for {
		got, err := b.admin.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err == nil {
			if done, _, _ := promote.RolloutStatus(got); done {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for Deployment %s/web to roll out: %w", ns, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// webImage is the image Deployment web in ns runs, once rolled out.
func (b *bed) webImage(ctx context.Context, ns string) (string, bool) {
	d, err := b.admin.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		return "", false
	}
	done, _, _ := promote.RolloutStatus(d)
	return d.Spec.Template.Spec.Containers[0].Image, done
}
