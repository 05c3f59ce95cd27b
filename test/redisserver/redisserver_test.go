package redisserver_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ferryci/ferry/test/redisserver"
)

// do sends one command over a raw connection and returns the first reply
// line (enough for SET/GET of short values and PING).
func do(t *testing.T, addr string, args ...string) (string, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSpace(line)
	if strings.HasPrefix(line, "$") && line != "$-1" {
		val, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(val), nil
	}
	return line, nil
}

func TestStopStartKeepsPortAndData(t *testing.T) {
	s := redisserver.Run(t, redisserver.Options{})
	addr := s.Addr()
	if got, err := do(t, addr, "SET", "k", "v1"); err != nil || got != "+OK" {
		t.Fatalf("SET = %q, %v; want +OK", got, err)
	}

	tests := []struct {
		name string
		down func() error
	}{
		{"graceful stop", s.Stop},
		{"kill", s.Kill},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.down(); err != nil {
				t.Fatalf("down: %v", err)
			}
			if s.Running() {
				t.Fatalf("Running() = true after %s", tc.name)
			}
			if _, err := do(t, addr, "PING"); err == nil {
				t.Fatalf("PING succeeded while the server is down")
			}
			if err := s.Start(); err != nil {
				t.Fatalf("Start: %v", err)
			}
			if s.Addr() != addr {
				t.Errorf("Addr after restart = %s, want %s", s.Addr(), addr)
			}
			if got, err := do(t, addr, "GET", "k"); err != nil || got != "v1" {
				t.Errorf("GET after restart = %q, %v; want v1", got, err)
			}
		})
	}
}

func TestRestart(t *testing.T) {
	s := redisserver.Run(t, redisserver.Options{})
	if got, err := do(t, s.Addr(), "SET", "k", "v"); err != nil || got != "+OK" {
		t.Fatalf("SET = %q, %v", got, err)
	}
	if err := s.Restart(); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if got, err := do(t, s.Addr(), "GET", "k"); err != nil || got != "v" {
		t.Errorf("GET after restart = %q, %v; want v", got, err)
	}
	if err := s.Start(); err == nil {
		t.Errorf("Start of a running server succeeded, want an error")
	}
}

func TestPassword(t *testing.T) {
	s := redisserver.Run(t, redisserver.Options{Password: "s3cret"})
	got, err := do(t, s.Addr(), "GET", "k")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	if !strings.HasPrefix(got, "-NOAUTH") {
		t.Errorf("GET without AUTH = %q, want -NOAUTH", got)
	}
}

func TestTwoServersGetDifferentPorts(t *testing.T) {
	a := redisserver.Run(t, redisserver.Options{})
	b := redisserver.Run(t, redisserver.Options{})
	if a.Addr() == b.Addr() {
		t.Fatalf("both servers on %s", a.Addr())
	}
}

func TestMissingBinary(t *testing.T) {
	_, err := redisserver.Start(redisserver.Options{Binary: "no-such-redis-server-binary"})
	if !errors.Is(err, redisserver.ErrNotInstalled) {
		t.Fatalf("Start with a missing binary: err = %v, want ErrNotInstalled", err)
	}
	if !strings.Contains(err.Error(), "apt-get install redis-server") {
		t.Errorf("error %q does not say how to install redis-server", err)
	}
}
