package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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

// demoOptions are the options of a demo run on the shared bed with the
// ferry binary built from this module; it skips under -short, and without
// the bed (failing instead without -short, as every bed test does).
func demoOptions(t *testing.T) (Options, *lockedBuffer) {
	t.Helper()
	skipShort(t)
	env := testbed.Kube(t)
	testbed.RedisAddr(t)
	testbed.RegistryAddr(t)
	o, out := baseOptions(t)
	o.EnvFile = env.Path
	return o, out
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("the demo: skipped under -short (it builds ferry and runs on the test bed's API server, Redis and registry)")
	}
}

// baseOptions are the options every run shares: this module, a ferry
// built from it, the output kept.
func baseOptions(t *testing.T) (Options, *lockedBuffer) {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	return Options{Ferry: chaos.Binary(t), Root: root, Out: out, Dir: t.TempDir()}, out
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

// TestDemoStartsAndStopsTheBed runs the demo as on a fresh machine: no bed
// is up, so it starts one (test/bed/bed.sh up into a directory of its own)
// and stops it at the end. It starts a second control plane on the shared
// machine, so it runs only with FERRY_DEMO_FRESH_BED=1 and the bed's
// binaries built (make testbed-tools; TESTBED_TOOLS_BIN names another
// directory of them).
func TestDemoStartsAndStopsTheBed(t *testing.T) {
	if os.Getenv("FERRY_DEMO_FRESH_BED") != "1" {
		t.Skip("starts a test bed of its own: set FERRY_DEMO_FRESH_BED=1 to run it (make testbed-tools first)")
	}
	skipShort(t)
	o, out := baseOptions(t)
	dir := t.TempDir()
	t.Setenv("TESTBED_DIR", dir) // bed.sh's state, logs and env file
	o.EnvFile, o.StartBed = filepath.Join(dir, "env"), true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res, err := Run(ctx, o)
	t.Logf("the demo's output:\n%s", out)
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	if !res.BedStarted {
		t.Fatal("the demo did not start a bed, though none was up")
	}
	if pids, _ := filepath.Glob(filepath.Join(dir, "run", "*.pid")); len(pids) > 0 {
		t.Errorf("bed processes left: %v", pids)
	}
	if err := exec.Command("bash", filepath.Join(o.Root, "test", "bed", "bed.sh"), "status").Run(); err == nil {
		t.Error("bed.sh status says the bed the demo started is still up")
	}
	if len(res.Seen) != int(numStages) {
		t.Errorf("stages seen %v", res.Seen)
	}
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
