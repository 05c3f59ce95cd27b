package chaos

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long a ferry process may take to answer /healthz.
const startTimeout = 30 * time.Second

var build struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Binary returns the path of a ferry binary built from this module's
// cmd/ferry, building it on the first call of the test binary's run, with
// -race when the tests run with it (FERRY_CHAOS_BINARY names a prebuilt
// one instead). Main removes it.
func Binary(tb testing.TB) string {
	tb.Helper()
	build.once.Do(func() {
		if p := os.Getenv("FERRY_CHAOS_BINARY"); p != "" {
			build.path = p
			return
		}
		root, err := moduleRoot()
		if err != nil {
			build.err = err
			return
		}
		if build.dir, err = os.MkdirTemp("", "ferry-chaos-"); err != nil {
			build.err = fmt.Errorf("make a directory for the ferry binary: %w", err)
			return
		}
		build.path = filepath.Join(build.dir, "ferry")
		args := []string{"build", "-o", build.path}
		if raceBuild {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./cmd/ferry")...)
		cmd.Dir = root
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build ./cmd/ferry in %s: %w\n%s", root, err, out)
			return
		}
		fmt.Fprintf(os.Stderr, "chaos: built ferry in %s\n", time.Since(start).Round(100*time.Millisecond))
	})
	if build.err != nil {
		tb.Fatalf("ferry binary: %v", build.err)
	}
	return build.path
}

// Main runs the tests of a package that uses the harness and removes the
// ferry binary afterwards: call os.Exit(chaos.Main(m)) from TestMain.
func Main(m *testing.M) int {
	code := m.Run()
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
	return code
}

// moduleRoot is the directory of the go.mod above the working directory
// (a test runs in its package's directory).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: run the tests with go test inside the module")
		}
		dir = parent
	}
}

// Ferry is one `ferry serve` process of a cluster. It keeps its name (its
// queue identity), its address and its configuration across restarts; each
// start writes a log file of its own.
type Ferry struct {
	c    *Cluster
	name string
	// addr is where it listens; it changes only when the port was taken
	// at a start (see Start).
	addr   atomic.Pointer[string]
	config string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	starts int
	logs   []string
}

// PID is the process id of the running process, 0 when it is not running.
// ferry's leader-election identity is "<hostname>-<pid>".
func (f *Ferry) PID() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.runningLocked() {
		return 0
	}
	return f.cmd.Process.Pid
}

// Name is the process's consumer name (ferry-0, ferry-1, …).
func (f *Ferry) Name() string { return f.name }

// URL is where the process serves webhooks, without a trailing slash.
func (f *Ferry) URL() string { return "http://" + *f.addr.Load() }

// Running reports whether the process is up (a stopped one counts as up).
func (f *Ferry) Running() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.runningLocked()
}

func (f *Ferry) runningLocked() bool {
	if f.cmd == nil {
		return false
	}
	select {
	case <-f.done:
		return false
	default:
		return true
	}
}

// Start starts the process and waits until it answers /healthz. A port
// picked free can be taken before ferry binds it (the kernel hands it to
// another process's connection as its local port): then the process is
// started again on a new port, up to three times, and URL follows.
func (f *Ferry) Start() error {
	for try := 1; ; try++ {
		err := f.start()
		if !errors.Is(err, errPortTaken) || try == 3 {
			return err
		}
		port, perr := freePort()
		if perr != nil {
			return perr
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if werr := os.WriteFile(f.config, []byte(f.c.configYAML(addr)), 0o600); werr != nil {
			return fmt.Errorf("write the configuration of %s: %w", f.name, werr)
		}
		f.addr.Store(&addr)
	}
}

// errPortTaken: the process could not bind its listen address.
var errPortTaken = errors.New("listen address already in use")

func (f *Ferry) start() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.runningLocked() {
		return fmt.Errorf("%s is already running", f.name)
	}
	f.starts++
	logPath := filepath.Join(f.c.dir, fmt.Sprintf("%s.%d.log", f.name, f.starts))
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("create the log of %s: %w", f.name, err)
	}
	args := []string{"serve", "--config", f.config}
	if !f.c.opts.NoConsumerFlag {
		args = append(args, "--consumer", f.name)
	}
	cmd := exec.Command(f.c.binary, args...)
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return fmt.Errorf("start %s: %w", f.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logFile.Close()
		close(done)
	}()
	f.cmd, f.done = cmd, done
	f.logs = append(f.logs, logPath)

	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-done:
			if log := tail(logPath, 3); strings.Contains(log, "address already in use") {
				return fmt.Errorf("%s: %w: %s", f.name, errPortTaken, log)
			}
			return fmt.Errorf("%s exited at start: %s", f.name, tail(logPath, 10))
		default:
		}
		resp, err := client.Get(f.URL() + "/healthz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("%s did not answer /healthz within %s: %s", f.name, startTimeout, tail(logPath, 10))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill ends the process with SIGKILL, as a crash or an OOM kill would, and
// waits for it to be gone.
func (f *Ferry) Kill() error { return f.end(syscall.SIGKILL, 0) }

// Stop ends the process with SIGTERM (a rolling update) and waits for it.
func (f *Ferry) Stop() error { return f.end(syscall.SIGTERM, startTimeout) }

func (f *Ferry) end(sig syscall.Signal, wait time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.runningLocked() {
		return nil
	}
	// A frozen process must be able to act on the signal.
	_ = f.cmd.Process.Signal(syscall.SIGCONT)
	if err := f.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s: %w", f.name, err)
	}
	if wait == 0 {
		<-f.done
		return nil
	}
	select {
	case <-f.done:
		return nil
	case <-time.After(wait):
		_ = f.cmd.Process.Kill()
		<-f.done
		return fmt.Errorf("%s did not stop within %s after %s and was killed", f.name, wait, sig)
	}
}

// Signal sends sig to the running process without waiting, e.g. SIGSTOP
// and SIGCONT to freeze and thaw it.
func (f *Ferry) Signal(sig syscall.Signal) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.runningLocked() {
		return fmt.Errorf("signal %s: not running", f.name)
	}
	return f.cmd.Process.Signal(sig)
}

// Restart starts the process again under the same name, address and
// configuration (after Kill or Stop; a running process is killed first).
func (f *Ferry) Restart() error {
	if err := f.Kill(); err != nil {
		return err
	}
	return f.Start()
}

// Starts is how often the process was started.
func (f *Ferry) Starts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.starts
}

// LogPath is the log file of start n (1 is the first start; 0 the latest).
func (f *Ferry) LogPath(n int) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n == 0 {
		n = len(f.logs)
	}
	if n < 1 || n > len(f.logs) {
		return ""
	}
	return f.logs[n-1]
}

// LogLine is one JSON log record of ferry.
type LogLine map[string]any

// Msg is the record's message.
func (l LogLine) Msg() string { s, _ := l["msg"].(string); return s }

// Int is a numeric attribute of the record (0 if absent).
func (l LogLine) Int(key string) int {
	n, _ := l[key].(float64)
	return int(n)
}

// Logs returns the records of start n (0: the latest) whose message
// contains msg; lines that are not JSON are skipped.
func (f *Ferry) Logs(n int, msg string) []LogLine {
	path := f.LogPath(n)
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []LogLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		if !bytes.Contains(sc.Bytes(), []byte(msg)) {
			continue
		}
		var l LogLine
		if json.Unmarshal(sc.Bytes(), &l) == nil && strings.Contains(l.Msg(), msg) {
			out = append(out, l)
		}
	}
	return out
}

// Races returns the data races the race detector reported in any start's
// log (a ferry built with -race).
func (f *Ferry) Races() []string {
	f.mu.Lock()
	logs := append([]string(nil), f.logs...)
	f.mu.Unlock()
	var out []string
	for _, path := range logs {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for _, chunk := range strings.Split(string(data), "==================")[1:] {
			if strings.Contains(chunk, "WARNING: DATA RACE") {
				out = append(out, path+":"+chunk)
			}
		}
	}
	return out
}

// childEnv is the test's environment without ferry's own variables, so a
// developer's FERRY_* or POD_NAME cannot change what the processes run.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "FERRY_") || strings.HasPrefix(kv, "POD_NAME=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// tail returns the last lines of a file, for error messages.
func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	all := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
