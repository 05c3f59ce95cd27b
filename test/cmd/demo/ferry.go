package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// server is the `ferry serve` process the demo runs: the built binary, its
// log in a file.
type server struct {
	cmd  *exec.Cmd
	done chan struct{}
	url  string
	log  string
}

// startServer runs `ferry serve --config config` listening on addr and
// waits until it answers /readyz (its store and Kubernetes are reachable).
func startServer(ctx context.Context, binary, config, addr, logPath string) (*server, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create ferry's log: %w", err)
	}
	cmd := exec.Command(binary, "serve", "--config", config)
	cmd.Env = childEnv(nil)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	detach(cmd)
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start %s serve: %w", binary, err)
	}
	s := &server{cmd: cmd, done: make(chan struct{}), url: "http://" + addr, log: logPath}
	go func() {
		_ = cmd.Wait()
		_ = logFile.Close()
		close(s.done)
	}()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := client.Get(s.url + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("ferry exited at start; its log ends:\n%s", tail(logPath, 15))
		case <-ctx.Done():
			_ = s.stop()
			return nil, fmt.Errorf("wait for ferry to be ready: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = s.stop()
			return nil, fmt.Errorf("ferry did not answer /readyz within a minute; its log ends:\n%s", tail(logPath, 15))
		}
	}
}

// stop ends the process as Kubernetes would (SIGTERM, then SIGKILL after
// ferry's shutdown allowance) and waits until it is gone.
func (s *server) stop() error {
	select {
	case <-s.done:
		return nil
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop ferry (pid %d): %w", s.cmd.Process.Pid, err)
	}
	select {
	case <-s.done:
		return nil
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		return fmt.Errorf("ferry (pid %d) did not stop within 20s of SIGTERM and was killed", s.cmd.Process.Pid)
	}
}

// pid is the server's process id.
func (s *server) pid() int { return s.cmd.Process.Pid }

// cli runs the ferry binary as a pipeline step or a person would, with
// env added to a clean environment, and returns what it printed.
type cli struct {
	binary string
	env    []string // FERRY_URL and the like, for every command
}

// run runs `ferry args…` with extra environment and returns its standard
// output; a non-zero exit is an error carrying what it printed.
func (c cli) run(ctx context.Context, extra []string, args ...string) (string, error) {
	cmd := c.command(ctx, extra, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("ferry %s: %w: %s", strings.Join(args, " "), err, oneLine(errOut.String()+" "+out.String()))
	}
	return out.String(), nil
}

// command is `ferry args…`, not started.
func (c cli) command(ctx context.Context, extra []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.binary, args...)
	cmd.Env = childEnv(append(append([]string(nil), c.env...), extra...))
	detach(cmd)
	return cmd
}

// background is a command started and waited for in the background.
type background struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startBackground starts cmd; done closes when it has exited.
func startBackground(cmd *exec.Cmd) (*background, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	b := &background{cmd: cmd, done: make(chan struct{})}
	go func() {
		b.err = cmd.Wait()
		close(b.done)
	}()
	return b, nil
}

// wait waits for the command to exit and returns how it ended.
func (b *background) wait() error {
	<-b.done
	return b.err
}

// childEnv is the demo's environment without ferry's own variables (a
// developer's FERRY_* must not change what the demo runs), plus extra.
func childEnv(extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FERRY_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
