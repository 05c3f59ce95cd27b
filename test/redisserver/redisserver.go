// Package redisserver runs a real redis-server process on a free loopback
// port for tests, with its data in a directory of its own and the append-only
// file on, so a test can stop, kill and start it again on the same port and
// data and see what survives ("Redis went down" tests).
//
// redis-server comes from the Debian package (apt-get install redis-server);
// Run skips the test under -short when it is missing and fails it otherwise.
package redisserver

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ErrNotInstalled says that no redis-server binary was found.
var ErrNotInstalled = errors.New("redis-server not found on PATH: install redis-server (apt-get install redis-server)")

// startTimeout bounds how long a start waits for the server to answer PING.
const startTimeout = 20 * time.Second

// stopTimeout bounds how long Stop waits for a graceful shutdown before it
// kills the process.
const stopTimeout = 20 * time.Second

// Options configure a server; the zero value is a plain server with AOF.
type Options struct {
	// Binary is the redis-server executable; default "redis-server" on PATH.
	Binary string
	// Dir holds the data (AOF) and the log; default a new temporary
	// directory that Close removes.
	Dir string
	// Password, when set, is required from clients (requirepass).
	Password string
	// Args are extra redis-server arguments, appended last so they override
	// the defaults, e.g. "--replicaof", "127.0.0.1 6380".
	Args []string
	// Config, when set, is written to redis.conf in Dir at the first start
	// and given as the configuration file; a restart keeps what the server
	// rewrote in it (Sentinel records its view of the primary there).
	Config string
}

// Server is one redis-server process, restartable on the same port and
// data directory.
type Server struct {
	binary  string
	dir     string
	ownsDir bool
	opts    Options

	mu   sync.Mutex
	port int
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// LookPath returns the redis-server executable to run or ErrNotInstalled.
func LookPath(binary string) (string, error) {
	if binary == "" {
		binary = "redis-server"
	}
	path, err := exec.LookPath(binary)
	if err != nil {
		return "", fmt.Errorf("%w (looked for %q)", ErrNotInstalled, binary)
	}
	return path, nil
}

// Run starts a server for a test or benchmark and stops it (removing its
// temporary data) when the test ends. Without redis-server it skips under
// -short and fails otherwise.
func Run(tb testing.TB, opts Options) *Server {
	tb.Helper()
	if _, err := LookPath(opts.Binary); err != nil {
		if testing.Short() {
			tb.Skipf("skipping: redis-server is not installed (apt-get install redis-server): %v", err)
		}
		tb.Fatalf("redis server for test: %v", err)
	}
	if opts.Dir == "" {
		opts.Dir = tb.TempDir()
	}
	s, err := Start(opts)
	if err != nil {
		tb.Fatalf("start redis-server: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("stop redis-server: %v", err)
		}
	})
	return s
}

// Start starts a server on a free loopback port. Call Close when done.
func Start(opts Options) (*Server, error) {
	binary, err := LookPath(opts.Binary)
	if err != nil {
		return nil, err
	}
	s := &Server{binary: binary, opts: opts, dir: opts.Dir}
	if s.dir == "" {
		dir, err := os.MkdirTemp("", "redisserver-")
		if err != nil {
			return nil, fmt.Errorf("make redis data dir: %w", err)
		}
		s.dir, s.ownsDir = dir, true
	}
	// Another process can take the free port between the probe and
	// redis-server's bind, so a few fresh ports are tried.
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			s.cleanupDir()
			return nil, err
		}
		s.port = port
		err = s.Start()
		if err == nil {
			return s, nil
		}
		if attempt >= 4 || !strings.Contains(err.Error(), "in use") {
			s.cleanupDir()
			return nil, err
		}
	}
}

// Addr is the server's host:port.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Port is the server's TCP port; it stays the same across restarts.
func (s *Server) Port() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.port
}

// Dir is the server's data directory (AOF and redis.log).
func (s *Server) Dir() string { return s.dir }

// Running reports whether the process is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runningLocked()
}

func (s *Server) runningLocked() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Start starts the server again on its port and data directory (Start
// after Stop or Kill). It returns once the server answers PING and has
// loaded its data.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runningLocked() {
		return fmt.Errorf("redis-server on port %d is already running", s.port)
	}
	logPath := filepath.Join(s.dir, "redis.log")
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--logfile", logPath,
		"--daemonize", "no",
		"--appendonly", "yes",
		"--appendfsync", "always",
		"--save", "",
	}
	if s.opts.Password != "" {
		args = append(args, "--requirepass", s.opts.Password)
	}
	args = append(args, s.opts.Args...)
	if s.opts.Config != "" {
		conf := filepath.Join(s.dir, "redis.conf")
		if _, err := os.Stat(conf); errors.Is(err, os.ErrNotExist) {
			if err := os.WriteFile(conf, []byte(s.opts.Config), 0o600); err != nil {
				return fmt.Errorf("write %s: %w", conf, err)
			}
		}
		args = append([]string{conf}, args...)
	}
	cmd := exec.Command(s.binary, args...)
	cmd.Dir = s.dir
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", s.binary, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done = cmd, done

	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-done:
			return fmt.Errorf("redis-server on port %d exited at start: %s", s.port, logTail(logPath))
		default:
		}
		if err := probe(s.port); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			s.killLocked()
			return fmt.Errorf("redis-server on port %d did not answer within %s: %w; log: %s",
				s.port, startTimeout, err, logTail(logPath))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop shuts the server down gracefully (SIGTERM: the AOF is flushed) and
// waits for the process to exit. Stopping a stopped server does nothing.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.runningLocked() {
		return nil
	}
	// Redis ignores a shutdown request while it writes its first AOF (as a
	// replica does right after syncing) and does not retry by itself, so
	// the signal is repeated until it exits.
	timeout := time.After(stopTimeout)
	for {
		if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("signal redis-server: %w", err)
		}
		select {
		case <-s.done:
			return nil
		case <-time.After(250 * time.Millisecond):
		case <-timeout:
			s.killLocked()
			return fmt.Errorf("redis-server on port %d did not stop within %s and was killed; log: %s",
				s.port, stopTimeout, logTail(filepath.Join(s.dir, "redis.log")))
		}
	}
}

// Kill ends the server abruptly (SIGKILL), as a crash would; with the
// default appendfsync always, every acknowledged write survives.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.runningLocked() {
		return nil
	}
	s.killLocked()
	return nil
}

func (s *Server) killLocked() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Restart stops the server gracefully and starts it again on the same port
// and data.
func (s *Server) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.Start()
}

// Close stops the server and removes its data directory when Start made it.
func (s *Server) Close() error {
	err := s.Stop()
	s.cleanupDir()
	return err
}

func (s *Server) cleanupDir() {
	if s.ownsDir {
		_ = os.RemoveAll(s.dir)
	}
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// probe sends PING over a raw connection; the server is ready when it
// answers PONG, or NOAUTH when it requires a password. LOADING (the AOF is
// still being read) is not ready.
func probe(port int) error {
	conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return err
	}
	if _, err := conn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	line = strings.TrimSpace(line)
	if line == "+PONG" || strings.HasPrefix(line, "-NOAUTH") {
		return nil
	}
	return fmt.Errorf("PING answered %q", line)
}

// logTail returns the last lines of the server log for error messages.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	return strings.Join(lines, " | ")
}
