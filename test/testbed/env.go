// Package testbed gives integration tests the local test bed that
// test/bed/bed.sh starts (make testbed-up): a real Kubernetes control plane
// whose ECI-like virtual nodes are simulated by kwok, redis-server and a
// Distribution registry, all on loopback.
//
// The bed writes its addresses and credentials to an env file
// (test/.bed/env, or the path in FERRY_TESTBED_ENV). The helpers here read it
// and hand a test what it needs: clientsets for the admin and for ferry's own
// less-privileged identity, a fresh namespace, Redis and registry addresses.
// When the bed is missing, a test run with -short is skipped with a message
// naming what is missing; without -short it fails with the same message, so
// an integration tier never passes by skipping silently.
package testbed

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// EnvFileVar names the environment variable that points to the bed's env
// file; when unset, the file is test/.bed/env in the repository holding the
// working directory.
const EnvFileVar = "FERRY_TESTBED_ENV"

// Keys of the env file written by test/bed/bed.sh up.
const (
	KeyKubeconfigAdmin  = "KUBECONFIG_ADMIN"
	KeyKubeconfigFerry  = "KUBECONFIG_FERRY"
	KeyAPIServerURL     = "KUBE_APISERVER_URL"
	KeyCAFile           = "KUBE_CA_FILE"
	KeyAdminToken       = "KUBE_ADMIN_TOKEN"
	KeyFerryUser        = "KUBE_FERRY_USER"
	KeyFerryToken       = "KUBE_FERRY_TOKEN"
	KeyFerryNamespace   = "FERRY_NAMESPACE"
	KeyVirtualNodes     = "VIRTUAL_NODES"
	KeyVirtualNodeZones = "VIRTUAL_NODE_ZONES"
	KeyRedisAddr        = "REDIS_ADDR"
	KeyRegistryAddr     = "REGISTRY_ADDR"
	KeyLogDir           = "TESTBED_LOG_DIR"
)

// upHint ends every "bed missing" message.
const upHint = "start the test bed with `make testbed-up` (test/bed/bed.sh up)"

// Env is the content of the bed's env file.
type Env struct {
	// Path is the file the values were read from.
	Path string
	vars map[string]string
}

// Get returns the value of key, or "" when the file does not set it.
func (e *Env) Get(key string) string { return e.vars[key] }

// Lookup returns the value of key and whether the file sets it.
func (e *Env) Lookup(key string) (string, bool) {
	v, ok := e.vars[key]
	return v, ok
}

// Require returns the values of keys, or an error naming every key the file
// does not set.
func (e *Env) Require(keys ...string) ([]string, error) {
	vals := make([]string, len(keys))
	var missing []string
	for i, k := range keys {
		v, ok := e.vars[k]
		if !ok || v == "" {
			missing = append(missing, k)
			continue
		}
		vals[i] = v
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s does not set %s", e.Path, strings.Join(missing, ", "))
	}
	return vals, nil
}

// ParseEnv reads KEY=VALUE lines; blank lines and lines starting with # are
// ignored, values are taken verbatim (the bed writes no quotes).
func ParseEnv(path string, data []byte) (*Env, error) {
	env := &Env{Path: path, vars: map[string]string{}}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		key, val, ok := strings.Cut(line, "=")
		if !ok || key == "" || strings.ContainsAny(key, " \t") {
			return nil, fmt.Errorf("parse %s line %d: want KEY=VALUE, got %q", path, n, line)
		}
		env.vars[key] = val
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return env, nil
}

// LoadEnv reads the env file at path.
func LoadEnv(path string) (*Env, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read test bed env file: %w", err)
	}
	return ParseEnv(path, data)
}

// EnvPath returns the env file's path: $FERRY_TESTBED_ENV, or test/.bed/env
// under the directory holding go.mod, found by walking up from the working
// directory.
func EnvPath() (string, error) {
	if p := os.Getenv(EnvFileVar); p != "" {
		return p, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find test bed env file: %w", err)
	}
	root, err := moduleRoot(wd)
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "test", ".bed", "env"), nil
}

// moduleRoot walks up from dir to the first directory with a go.mod.
func moduleRoot(dir string) (string, error) {
	for d := dir; ; {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("find test bed env file: no go.mod above %s; set %s", dir, EnvFileVar)
		}
		d = parent
	}
}

// Load returns the bed's env file, or skips (-short) or fails the test when
// the bed is not up.
func Load(t testing.TB) *Env {
	t.Helper()
	path, err := EnvPath()
	if err != nil {
		Unavailable(t, "%v", err)
	}
	env, err := LoadEnv(path)
	if errors.Is(err, os.ErrNotExist) {
		Unavailable(t, "no env file at %s (the bed is down)", path)
	}
	if err != nil {
		Unavailable(t, "%v", err)
	}
	return env
}

// Unavailable reports that a part of the bed is missing: under -short it
// skips the test, otherwise it fails it, with a message that names what is
// missing and how to start the bed.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := unavailableMessage(fmt.Sprintf(format, args...), testing.Short())
	if testing.Short() {
		t.Skip(msg)
	}
	t.Fatal(msg)
}

func unavailableMessage(what string, short bool) string {
	tail := "integration tests need it (run with -short to skip them)"
	if short {
		tail = "skipped under -short"
	}
	return fmt.Sprintf("test bed unavailable: %s; %s; %s", what, upHint, tail)
}

// RedisAddr returns the host:port of the bed's redis-server after checking
// that it accepts connections.
func RedisAddr(t testing.TB) string {
	t.Helper()
	return service(t, "Redis", KeyRedisAddr)
}

// RegistryAddr returns the host:port of the bed's registry (plain HTTP on
// loopback, which go-containerregistry uses for 127.0.0.1 addresses) after
// checking that it accepts connections.
func RegistryAddr(t testing.TB) string {
	t.Helper()
	return service(t, "registry", KeyRegistryAddr)
}

func service(t testing.TB, name, key string) string {
	t.Helper()
	env := Load(t)
	vals, err := env.Require(key)
	if err != nil {
		Unavailable(t, "%s: %v", name, err)
	}
	addr := vals[0]
	conn, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		Unavailable(t, "%s at %s does not answer: %v", name, addr, err)
	}
	_ = conn.Close()
	return addr
}
