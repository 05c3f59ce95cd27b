package redisserver

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ErrSentinelNotInstalled says that no redis-sentinel binary was found.
var ErrSentinelNotInstalled = errors.New("redis-sentinel not found on PATH: install redis-sentinel (apt-get install redis-sentinel)")

// topologyTimeout bounds waiting for sentinels to see the primary and for a
// cluster to cover every slot.
const topologyTimeout = 30 * time.Second

// SentinelOptions configure RunSentinels.
type SentinelOptions struct {
	// MasterName is the name the sentinels monitor; default "ferry".
	MasterName string
	// N is the number of sentinels; default 3 (quorum 2).
	N int
	// DownAfter is how long the primary must be unreachable before a
	// sentinel considers it down; default 1s (Redis' default is 30s).
	DownAfter time.Duration
	// Password, when set, is required from the sentinels' own clients.
	Password string
}

// RunSentinels starts redis-sentinel processes monitoring primary (a
// Server) and returns them once every one of them knows the primary and
// its replicas (if any) and the other sentinels. They stop when the test
// ends. Without redis-sentinel it skips under -short and fails otherwise.
func RunSentinels(tb testing.TB, primary *Server, opts SentinelOptions) []*Server {
	tb.Helper()
	if opts.MasterName == "" {
		opts.MasterName = "ferry"
	}
	if opts.N <= 0 {
		opts.N = 3
	}
	if opts.DownAfter <= 0 {
		opts.DownAfter = time.Second
	}
	if _, err := exec.LookPath("redis-sentinel"); err != nil {
		if testing.Short() {
			tb.Skipf("skipping: %v", ErrSentinelNotInstalled)
		}
		tb.Fatalf("sentinels for test: %v", ErrSentinelNotInstalled)
	}
	quorum := opts.N/2 + 1
	conf := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d %[3]d\n"+
		"sentinel down-after-milliseconds %[1]s %[4]d\n"+
		"sentinel failover-timeout %[1]s 10000\n"+
		"sentinel parallel-syncs %[1]s 1\n",
		opts.MasterName, primary.Port(), quorum, opts.DownAfter.Milliseconds())
	if primary.opts.Password != "" {
		conf += fmt.Sprintf("sentinel auth-pass %s %s\n", opts.MasterName, primary.opts.Password)
	}
	out := make([]*Server, opts.N)
	for i := range out {
		out[i] = Run(tb, Options{Binary: "redis-sentinel", Config: conf, Password: opts.Password})
	}
	deadline := time.Now().Add(topologyTimeout)
	for _, s := range out {
		for {
			reply, err := Command(s.Port(), opts.Password, "SENTINEL", "MASTER", opts.MasterName)
			if err == nil && field(reply, "num-other-sentinels") == strconv.Itoa(opts.N-1) && field(reply, "flags") == "master" {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("sentinel on port %d did not see primary %s and %d other sentinels within %s: %v %q",
					s.Port(), opts.MasterName, opts.N-1, topologyTimeout, err, reply)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return out
}

// MasterAddr asks a sentinel which server is the primary of name now.
func MasterAddr(sentinel *Server, password, name string) (string, error) {
	reply, err := Command(sentinel.Port(), password, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
	if err != nil {
		return "", err
	}
	lines := strings.Fields(reply)
	if len(lines) != 2 {
		return "", fmt.Errorf("sentinel on port %d does not know primary %q: %q", sentinel.Port(), name, reply)
	}
	return lines[0] + ":" + lines[1], nil
}

// RunCluster starts n (at least 3) redis-server processes as a Redis
// Cluster of n primaries without replicas, and returns them once every node
// reports every slot covered (cluster_state:ok). They stop when the test
// ends.
func RunCluster(tb testing.TB, n int) []*Server {
	tb.Helper()
	if n < 3 {
		tb.Fatalf("a Redis Cluster needs at least 3 primaries, not %d", n)
	}
	nodes := make([]*Server, n)
	create := []string{"--cluster", "create"}
	for i := range nodes {
		nodes[i] = Run(tb, Options{Args: []string{
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
		}})
		create = append(create, nodes[i].Addr())
	}
	create = append(create, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), topologyTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "redis-cli", create...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli %s: %v\n%s", strings.Join(create, " "), err, out)
	}
	deadline := time.Now().Add(topologyTimeout)
	for _, s := range nodes {
		for {
			reply, err := Command(s.Port(), "", "CLUSTER", "INFO")
			if err == nil && field(reply, "cluster_state") == "ok" && field(reply, "cluster_known_nodes") == strconv.Itoa(n) {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("cluster node on port %d not ready within %s: %v %q", s.Port(), topologyTimeout, err, reply)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nodes
}

// Command runs one command with redis-cli against the server on port and
// returns its raw output.
func Command(port int, password string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cli := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(port)}
	cmd := exec.CommandContext(ctx, "redis-cli", append(cli, args...)...)
	if password != "" {
		// REDISCLI_AUTH keeps the password out of the process list.
		cmd.Env = append(cmd.Environ(), "REDISCLI_AUTH="+password)
	}
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("redis-cli -p %d %s: %w", port, args[0], err)
	}
	return strings.TrimSpace(string(out)), nil
}

// field reads a value from "name:value" lines (INFO) or alternating
// name/value lines (SENTINEL MASTER).
func field(reply, name string) string {
	lines := strings.Split(reply, "\n")
	for i, l := range lines {
		l = strings.TrimSpace(l)
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			return v
		}
		if l == name && i+1 < len(lines) {
			return strings.TrimSpace(lines[i+1])
		}
	}
	return ""
}
