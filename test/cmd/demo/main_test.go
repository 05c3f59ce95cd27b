package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferryci/ferry/test/chaos"
	"github.com/ferryci/ferry/test/testbed"
)

// TestMain removes the ferry binary chaos.Binary builds.
func TestMain(m *testing.M) { os.Exit(chaos.Main(m)) }

// lockedBuffer is the demo's output, read while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// demoOptions are the options of a demo run on the bed with the ferry
// binary built from this module; it skips under -short or without the bed.
func demoOptions(t *testing.T) (Options, *lockedBuffer) {
	t.Helper()
	if testing.Short() {
		t.Skip("the demo: skipped under -short (it builds ferry and runs on the test bed's API server, Redis and registry)")
	}
	env := testbed.Kube(t)
	testbed.RedisAddr(t)
	testbed.RegistryAddr(t)
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	return Options{Ferry: chaos.Binary(t), Root: root, EnvFile: env.Path, Out: out, Dir: t.TempDir()}, out
}

// TestDemo runs the demo as `make demo` does, bounded, on the shared bed:
// every stage is seen and printed, in order; then nothing it started is
// left.
func TestDemo(t *testing.T) {
	o, out := demoOptions(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := Run(ctx, o)
	t.Logf("the demo's output:\n%s", out)
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	if res.BedStarted {
		t.Error("the demo started a bed that was up")
	}

	var got []Stage
	for _, s := range res.Seen {
		got = append(got, s.Stage)
	}
	if want := Stages(); !slices.Equal(got, want) {
		t.Errorf("stages seen %v, want %v", got, want)
	}
	// Each stage's line was printed, in order, and the timeline after them.
	text, at := out.String(), 0
	for _, s := range res.Seen {
		i := strings.Index(text[at:], s.Line())
		if i < 0 {
			t.Fatalf("line of stage %q not printed after the previous stage's: %q", s.Stage, s.Line())
		}
		at += i + len(s.Line())
	}
	for _, want := range []string{"timeline (since the push was sent):", "ferry why --repo acme/app --commit " + res.SHA,
		"final commit status success", "ferry_builds_finished_total", "/metrics"} {
		if !strings.Contains(text[at:], want) {
			t.Errorf("after the stages, the output lacks %q", want)
		}
	}
	checkNothingLeft(t, res)
}

// TestDemoInterrupted ends the demo's context while a build runs, as
// Ctrl-C does: it stops, says so, and leaves nothing behind.
func TestDemoInterrupted(t *testing.T) {
	o, out := demoOptions(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	o.OnSeen = func(s Seen) {
		if s.Stage == StageBuildRunning {
			cancel()
		}
	}
	res, err := Run(ctx, o)
	t.Logf("the demo's output:\n%s", out)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("an interrupted demo returned %v, want context.Canceled", err)
	}
	if n := len(res.Seen); n == 0 || res.Seen[n-1].Stage != StageBuildRunning {
		t.Errorf("stages seen %v: want the last to be %q", res.Seen, StageBuildRunning)
	}
	checkNothingLeft(t, res)
}

// checkNothingLeft fails the test for anything of the run that is left:
// the ferry process, a listener of ferry, the emulator or the fake, a
// namespace of the run, a key of its Redis prefix.
func checkNothingLeft(t *testing.T, res *Result) {
	t.Helper()
	if res.FerryPID == 0 {
		t.Fatal("the run has no ferry process")
	}
	if err := syscall.Kill(res.FerryPID, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("ferry (pid %d) is still there: kill -0 answered %v", res.FerryPID, err)
	}
	for _, addr := range res.Listeners {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.Close()
			t.Errorf("%s still accepts connections", addr)
		}
	}
	admin := testbed.Clientset(t)
	ns, err := admin.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{LabelSelector: labelDemo + "=" + res.RunID})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Namespaces) != 3 {
		t.Errorf("the run made namespaces %v, want 3 (agents, test, production)", res.Namespaces)
	}
	for _, n := range ns.Items {
		t.Errorf("namespace %s of the run is left (phase %s)", n.Name, n.Status.Phase)
	}
	rdb := redis.NewClient(&redis.Options{Addr: res.RedisAddr})
	defer rdb.Close()
	iter := rdb.Scan(context.Background(), 0, res.RedisPrefix+"*", 1000).Iterator()
	for iter.Next(context.Background()) {
		t.Errorf("ferry's key %s is left in Redis", iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
}
