package chaos

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
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

// apiServerStart bounds how long a kube-apiserver may take to answer
// /readyz (a cold start on a loaded machine builds its watch caches).
const apiServerStart = 2 * time.Minute

// APIServer is a kube-apiserver of the test's own, sharing the test bed's
// etcd under the same prefix: what it serves is the bed's cluster — the
// bed's controller-manager, scheduler and kwok (watching the bed's own
// API server) play the pods created through it — but killing it touches
// nobody else's tests. Point ferry at Kubeconfig and kill and restart this
// one to test an API-server restart.
type APIServer struct {
	t      testing.TB
	binary string
	args   []string
	port   int
	dir    string
	ca     *x509.CertPool

	mu    sync.Mutex
	cmd   *exec.Cmd
	done  chan struct{}
	start int
}

// BedSettings are the test bed's values an APIServer needs (test/.bed/env).
type BedSettings struct {
	// ToolsBin holds kube-apiserver; Dir holds pki/ and tokens.csv.
	ToolsBin, Dir string
	// Etcd is the bed's etcd URL.
	Etcd string
	// FerryKubeconfig is the bed's kubeconfig of the ferry identity; the
	// APIServer's Kubeconfig is a copy pointing at it.
	FerryKubeconfig string
}

// StartAPIServer starts a kube-apiserver on a free loopback port with the
// test bed's certificates, tokens and etcd, waits until it is ready, and
// kills it when the test ends.
func StartAPIServer(t testing.TB, bed BedSettings) *APIServer {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	pki := filepath.Join(bed.Dir, "pki")
	caPEM, err := os.ReadFile(filepath.Join(pki, "ca.crt"))
	if err != nil {
		t.Fatalf("read the bed's CA: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	a := &APIServer{t: t, binary: filepath.Join(bed.ToolsBin, "kube-apiserver"), port: port, dir: t.TempDir(), ca: pool}
	// The bed's flags (test/bed/bed.sh), on another port.
	a.args = []string{
		"--etcd-servers=" + bed.Etcd,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + filepath.Join(pki, "apiserver.crt"),
		"--tls-private-key-file=" + filepath.Join(pki, "apiserver.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + filepath.Join(pki, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(pki, "sa.key"),
		"--token-auth-file=" + filepath.Join(bed.Dir, "tokens.csv"),
		"--client-ca-file=" + filepath.Join(pki, "client-ca.crt"),
		"--authorization-mode=RBAC",
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--profiling=false",
	}
	kc, err := os.ReadFile(bed.FerryKubeconfig)
	if err != nil {
		t.Fatalf("read the bed's ferry kubeconfig: %v", err)
	}
	var out []string
	for _, line := range strings.Split(string(kc), "\n") {
		if k, _, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == "server" {
			line = line[:strings.Index(line, "server:")] + "server: " + a.URL()
		}
		out = append(out, line)
	}
	if err := os.WriteFile(a.Kubeconfig(), []byte(strings.Join(out, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Kill() })
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	return a
}

// URL is the server's address.
func (a *APIServer) URL() string { return "https://127.0.0.1:" + strconv.Itoa(a.port) }

// Kubeconfig is the bed's ferry kubeconfig pointed at this server.
func (a *APIServer) Kubeconfig() string { return filepath.Join(a.dir, "ferry.kubeconfig") }

// Start starts the server (again, on the same port) and waits until it
// answers /readyz.
func (a *APIServer) Start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.start++
	log, err := os.Create(filepath.Join(a.dir, fmt.Sprintf("kube-apiserver.%d.log", a.start)))
	if err != nil {
		return err
	}
	cmd := exec.Command(a.binary, a.args...)
	cmd.Stdout, cmd.Stderr = log, log
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		return fmt.Errorf("start kube-apiserver: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = log.Close()
		close(done)
	}()
	a.cmd, a.done = cmd, done
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: a.ca}}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(apiServerStart)
	for {
		select {
		case <-done:
			return fmt.Errorf("kube-apiserver exited at start: %s", tail(log.Name(), 10))
		default:
		}
		resp, err := client.Get(a.URL() + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver not ready within %s: %s", apiServerStart, tail(log.Name(), 10))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Kill ends the server with SIGKILL, as a crashed control-plane node
// would, and waits for it to be gone.
func (a *APIServer) Kill() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil {
		return nil
	}
	select {
	case <-a.done:
		return nil
	default:
	}
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill kube-apiserver: %w", err)
	}
	<-a.done
	return nil
}
