package chaos

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/test/jenkinsemu"
	"github.com/ferryci/ferry/test/redisserver"
)

// The repository, job and pipeline every cluster builds.
const (
	Repo     = "acme/app"
	Job      = "acme/app"
	Pipeline = "app"
	// WebhookSecret signs the deliveries.
	WebhookSecret = "chaos-github-secret"
)

// Options describe a cluster; zero values get the defaults in brackets.
type Options struct {
	// Replicas is the number of ferry processes, named ferry-0, ferry-1, …
	// [1].
	Replicas int
	// TriggerDelay is how long the proxy holds each answer to a trigger
	// after Jenkins queued the build [0: answers pass at once].
	TriggerDelay time.Duration
	// Workers is dispatch.workers [8, ferry's default].
	Workers int
	// ReclaimAfter is dispatch.reclaimAfter [60s, ferry's default].
	ReclaimAfter time.Duration
	// SeedBuilds builds of the job are run before ferry starts, so the job
	// has a long history [0].
	SeedBuilds int
	// Executors of Jenkins' built-in node [4].
	Executors int
	// BuildDuration of every build [0: a build ends as soon as it starts].
	BuildDuration time.Duration
	// Senders is how many deliveries are sent at once [4].
	Senders int
	// RedeliverFor is how long a delivery that got no answer or a 5xx is
	// sent again, with the same delivery id, as an operator redelivers it
	// from GitHub [2m].
	RedeliverFor time.Duration
	// NoConsumerFlag starts ferry without --consumer, for a ferry that
	// predates the flag [set by FERRY_CHAOS_NO_CONSUMER_FLAG=1].
	NoConsumerFlag bool
	// ExtraYAML is appended to each process's configuration: top-level
	// sections the harness does not write (agents, promotion).
	ExtraYAML string
	// LogLevel is telemetry.logLevel [info]; debug logs every agent
	// created and deleted.
	LogLevel string
	// Sentinel runs Redis as a primary (Cluster.Redis) with one replica
	// (Cluster.RedisReplica) under three redis-sentinels, and points ferry
	// at the sentinels with waitReplicas: 1 [false: one redis-server].
	Sentinel bool
}

// SentinelMaster is the name the sentinels monitor with Options.Sentinel.
const SentinelMaster = "ferry"

func (o *Options) defaults() {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.ReclaimAfter <= 0 {
		o.ReclaimAfter = 60 * time.Second
	}
	if o.Executors <= 0 {
		o.Executors = 4
	}
	if o.Senders <= 0 {
		o.Senders = 4
	}
	if o.RedeliverFor <= 0 {
		o.RedeliverFor = 2 * time.Minute
	}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
	if os.Getenv("FERRY_CHAOS_NO_CONSUMER_FLAG") == "1" {
		o.NoConsumerFlag = true
	}
}

// Cluster is ferry as it runs in production, on one machine: real
// `ferry serve` processes sharing a real redis-server, in front of the
// Jenkins emulator behind a Proxy that can hold trigger answers.
type Cluster struct {
	t    testing.TB
	opts Options
	dir  string

	binary string

	// Redis is the store every process shares (with Options.Sentinel, the
	// first primary).
	Redis *redisserver.Server
	// RedisReplica and Sentinels exist with Options.Sentinel.
	RedisReplica *redisserver.Server
	Sentinels    []*redisserver.Server
	// Jenkins is the emulated controller; ferry reaches it through Proxy.
	Jenkins *jenkinsemu.Server
	// Proxy holds trigger answers for Options.TriggerDelay.
	Proxy *Proxy

	rdb     *redis.Client
	ferries []*Ferry
	client  *http.Client

	// baseline is the number of builds the job had when ferry started.
	baseline int

	mu         sync.Mutex
	next       int // round-robin over the processes
	seq        int // deliveries sent so far
	deliveries []Delivery
}

// Start brings a cluster up and stops it when the test ends. It skips the
// test under -short: it needs redis-server and builds ferry.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("fault suite: skipped under -short (it builds the ferry binary and runs real redis-server and ferry processes)")
	}
	opts.defaults()
	c := &Cluster{t: t, opts: opts, dir: t.TempDir()}
	c.binary = Binary(t)
	if opts.Sentinel {
		c.Redis = redisserver.Run(t, redisserver.Options{Args: []string{"--repl-diskless-sync-delay", "0"}})
		c.RedisReplica = redisserver.Run(t, redisserver.Options{Args: []string{
			"--replicaof", "127.0.0.1", strconv.Itoa(c.Redis.Port()), "--repl-diskless-sync-delay", "0"}})
		c.Sentinels = redisserver.RunSentinels(t, c.Redis, redisserver.SentinelOptions{MasterName: SentinelMaster})
		c.rdb = redis.NewFailoverClient(&redis.FailoverOptions{MasterName: SentinelMaster, SentinelAddrs: c.sentinelAddrs()})
	} else {
		c.Redis = redisserver.Run(t, redisserver.Options{})
		c.rdb = redis.NewClient(&redis.Options{Addr: c.Redis.Addr()})
	}
	t.Cleanup(func() { _ = c.rdb.Close() })

	c.Jenkins = jenkinsemu.New(jenkinsemu.Options{
		BuiltInExecutors: opts.Executors,
		Logger:           slog.New(slog.DiscardHandler),
	})
	t.Cleanup(c.Jenkins.Close)
	var params []jenkinsemu.Param
	for _, name := range config.ReservedParams {
		params = append(params, jenkinsemu.Param{Name: name})
	}
	if err := c.Jenkins.AddJob(Job, jenkinsemu.JobSpec{Duration: opts.BuildDuration, Params: params}); err != nil {
		t.Fatal(err)
	}
	if err := c.seed(opts.SeedBuilds); err != nil {
		t.Fatalf("seed %d builds of %s: %v", opts.SeedBuilds, Job, err)
	}
	c.baseline = len(c.Jenkins.Builds(Job))

	p, err := newProxy(c.Jenkins.URL(), opts.TriggerDelay)
	if err != nil {
		t.Fatalf("start the proxy in front of Jenkins: %v", err)
	}
	c.Proxy = p
	t.Cleanup(p.close)

	c.client = &http.Client{
		Timeout:   15 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: opts.Senders * 2},
	}
	t.Cleanup(c.client.CloseIdleConnections)

	for i := range opts.Replicas {
		f, err := c.newFerry(fmt.Sprintf("ferry-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		c.ferries = append(c.ferries, f)
	}
	t.Cleanup(func() {
		for _, f := range c.ferries {
			_ = f.Kill()
			for _, race := range f.Races() {
				t.Errorf("the race detector found a data race in %s:\n%s", f.name, race)
			}
		}
		if dir := os.Getenv("FERRY_CHAOS_KEEP_LOGS"); dir != "" {
			c.keepLogs(dir)
		}
		if t.Failed() {
			for _, f := range c.ferries {
				for n := 1; n <= f.Starts(); n++ {
					t.Logf("log of %s, start %d (%s), last lines:\n%s", f.name, n, f.LogPath(n), tail(f.LogPath(n), 15))
				}
			}
		}
	})
	for _, f := range c.ferries {
		if err := f.Start(); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// Ferry returns process i.
func (c *Cluster) Ferry(i int) *Ferry { return c.ferries[i] }

// Ferries returns every process.
func (c *Cluster) Ferries() []*Ferry { return c.ferries }

// Options returns the cluster's options, defaults filled in.
func (c *Cluster) Options() Options { return c.opts }

// Dir holds the configurations and logs.
func (c *Cluster) Dir() string { return c.dir }

func (c *Cluster) newFerry(name string) (*Ferry, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	f := &Ferry{c: c, name: name}
	f.addr.Store(&addr)
	f.config = filepath.Join(c.dir, name+".yaml")
	if err := os.WriteFile(f.config, []byte(c.configYAML(addr)), 0o600); err != nil {
		return nil, fmt.Errorf("write the configuration of %s: %w", name, err)
	}
	return f, nil
}

func (c *Cluster) sentinelAddrs() []string {
	var out []string
	for _, s := range c.Sentinels {
		out = append(out, s.Addr())
	}
	return out
}

// redisYAML is the store.redis section's way to Redis.
func (c *Cluster) redisYAML() string {
	if !c.opts.Sentinel {
		return "addr: " + c.Redis.Addr()
	}
	return fmt.Sprintf("waitReplicas: 1\n    sentinel:\n      masterName: %s\n      addrs: [%s]", SentinelMaster, strings.Join(c.sentinelAddrs(), ", "))
}

// configYAML is a process's configuration: ferry's defaults except where
// a test needs otherwise (short retries, a loopback address).
func (c *Cluster) configYAML(listen string) string {
	o := c.opts
	timeout := max(10*time.Second, 2*o.TriggerDelay)
	y := fmt.Sprintf(`server:
  listen: %s
  shutdownTimeout: 5s
store:
  redis:
    %s
jenkins:
  url: %s/
  user: %s
  apiToken: %s
  timeout: %s
github:
  webhookSecrets: [%s]
dispatch:
  workers: %d
  reclaimAfter: %s
  retryInitial: 100ms
  retryMax: 2s
telemetry:
  logLevel: %s
  logFormat: json
pipelines:
  - name: %s
    provider: github
    repo: %s
    events: [push]
    job: %s
`, listen, c.redisYAML(), c.Proxy.URL(), jenkinsemu.DefaultUser.Name, jenkinsemu.DefaultUser.Token,
		timeout, WebhookSecret, o.Workers, o.ReclaimAfter, o.LogLevel, Pipeline, Repo, Job)
	if o.ExtraYAML != "" {
		y += strings.TrimSpace(o.ExtraYAML) + "\n"
	}
	return y
}

// seed runs n builds of the job straight on the emulator, none of them
// ferry's, and waits until they have all finished.
func (c *Cluster) seed(n int) error {
	if n <= 0 {
		return nil
	}
	if c.opts.BuildDuration != 0 {
		return fmt.Errorf("seeding needs builds that end at once (BuildDuration 0), not %s", c.opts.BuildDuration)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	defer client.CloseIdleConnections()
	trigger := c.Jenkins.URL() + "/job/" + strings.ReplaceAll(Job, "/", "/job/") + "/buildWithParameters"
	work := make(chan int)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				form := url.Values{config.ParamTriggerID: {fmt.Sprintf("seed-%d/%s", i, Pipeline)}}
				req, err := http.NewRequest(http.MethodPost, trigger, strings.NewReader(form.Encode()))
				if err != nil {
					errs <- err
					return
				}
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth(jenkinsemu.DefaultUser.Name, jenkinsemu.DefaultUser.Token)
				resp, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					errs <- fmt.Errorf("trigger answered %s", resp.Status)
					return
				}
			}
		}()
	}
	var err error
feed:
	for i := range n {
		select {
		case work <- i:
		case err = <-errs:
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err != nil {
		return err
	}
	select {
	case err := <-errs:
		return err
	default:
	}
	deadline := time.Now().Add(time.Minute)
	for len(c.Jenkins.Builds(Job)) < n || len(c.Jenkins.QueueItems()) > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d seeded builds ran within a minute", len(c.Jenkins.Builds(Job)), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// queueQuiet reports whether ferry's queue has nothing left to do: every
// event was handed out and acknowledged.
func (c *Cluster) queueQuiet(ctx context.Context) (bool, string, error) {
	stream := "ferry:events"
	info, err := c.rdb.XInfoStream(ctx, stream).Result()
	if err != nil {
		if strings.Contains(err.Error(), "no such key") {
			return true, "", nil
		}
		return false, "", fmt.Errorf("read %s: %w", stream, err)
	}
	groups, err := c.rdb.XInfoGroups(ctx, stream).Result()
	if err != nil {
		return false, "", fmt.Errorf("read the consumer groups of %s: %w", stream, err)
	}
	for _, g := range groups {
		if g.Pending > 0 {
			return false, fmt.Sprintf("%d events pending in group %s", g.Pending, g.Name), nil
		}
		if g.LastDeliveredID != info.LastGeneratedID {
			return false, fmt.Sprintf("group %s has not read up to %s (at %s)", g.Name, info.LastGeneratedID, g.LastDeliveredID), nil
		}
	}
	if len(groups) == 0 && info.Length > 0 {
		return false, "no consumer group has read the queue yet", nil
	}
	return true, "", nil
}

// keepLogs copies every process's logs to dir/<test name>/.
func (c *Cluster) keepLogs(dir string) {
	dst := filepath.Join(dir, strings.NewReplacer("/", "_", " ", "_").Replace(c.t.Name()))
	if err := os.MkdirAll(dst, 0o755); err != nil {
		c.t.Errorf("keep logs: %v", err)
		return
	}
	for _, f := range c.ferries {
		for n := 1; n <= f.Starts(); n++ {
			src := f.LogPath(n)
			data, err := os.ReadFile(src)
			if err == nil {
				err = os.WriteFile(filepath.Join(dst, filepath.Base(src)), data, 0o644)
			}
			if err != nil {
				c.t.Errorf("keep logs: %v", err)
			}
		}
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
