package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ferryci/ferry/pkg/app"
	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/test/redisserver"
)

// Options configure a benchmark run; DefaultOptions gives the issue's
// settings.
type Options struct {
	// Concurrency is the number of closed-loop clients.
	Concurrency int
	// Duration is the length of each measured closed-loop round and of
	// each open-loop run.
	Duration time.Duration
	// Requests, when above 0, ends a closed-loop round after that many
	// requests (or Duration, whichever comes first).
	Requests int
	// Rounds is how many times the closed loop runs bare then ferry.
	Rounds int
	// Rate is the open loop's requests per second; 0 skips it.
	Rate float64
	// OpenRounds is how many times the open loop runs bare then ferry.
	OpenRounds int
	// MaxInFlight bounds the open loop's concurrent requests.
	MaxInFlight int
	// Warmup is a closed-loop run of each target before measuring.
	Warmup time.Duration
	// Timeout bounds one request.
	Timeout time.Duration
	// PayloadFile is the GitHub push payload; "" finds
	// pkg/webhook/testdata/github_push.json above the working directory.
	PayloadFile string
	// RedisBinary is the redis-server executable.
	RedisBinary string
	// RedisDir is where Redis' temporary data directory is made; "" is
	// the system temp dir.
	RedisDir string
	// AppendFsync is Redis' appendfsync policy.
	AppendFsync string
	// CPUProfile, if set, receives a CPU profile taken during ferry's
	// first closed-loop round.
	CPUProfile string
	// Progress receives one line per finished run (nil: none).
	Progress io.Writer
	// Command and Settings are copied into the report.
	Command  string
	Settings []string
}

// DefaultOptions are the settings.
func DefaultOptions() Options {
	return Options{
		Concurrency: 32,
		Duration:    10 * time.Second,
		Rounds:      2,
		Rate:        1000,
		OpenRounds:  1,
		MaxInFlight: 512,
		Warmup:      time.Second,
		Timeout:     10 * time.Second,
		RedisBinary: "redis-server",
		AppendFsync: "always",
	}
}

// Limits keep a run bounded in time and memory (one latency sample is 8
// bytes).
const (
	maxConcurrency = 1024
	maxDuration    = 10 * time.Minute
	maxRounds      = 20
	maxRequests    = 10_000_000
	maxRate        = 100_000
)

func (o Options) check() error {
	var errs []error
	if o.Concurrency < 1 || o.Concurrency > maxConcurrency {
		errs = append(errs, fmt.Errorf("-c %d: must be within 1..%d", o.Concurrency, maxConcurrency))
	}
	if o.Duration <= 0 || o.Duration > maxDuration {
		errs = append(errs, fmt.Errorf("-d %s: must be within (0, %s]", o.Duration, maxDuration))
	}
	if o.Requests < 0 || o.Requests > maxRequests {
		errs = append(errs, fmt.Errorf("-n %d: must be within 0..%d", o.Requests, maxRequests))
	}
	if o.Rounds < 1 || o.Rounds > maxRounds {
		errs = append(errs, fmt.Errorf("-rounds %d: must be within 1..%d", o.Rounds, maxRounds))
	}
	if o.Rate < 0 || o.Rate > maxRate {
		errs = append(errs, fmt.Errorf("-rate %g: must be within 0..%d", o.Rate, maxRate))
	}
	if o.Rate > 0 && o.Rate*o.Duration.Seconds() > maxRequests {
		errs = append(errs, fmt.Errorf("-rate × -d is %.0f requests: at most %d", o.Rate*o.Duration.Seconds(), maxRequests))
	}
	if o.OpenRounds < 1 || o.OpenRounds > maxRounds {
		errs = append(errs, fmt.Errorf("-open-rounds %d: must be within 1..%d", o.OpenRounds, maxRounds))
	}
	if o.MaxInFlight < 1 || o.MaxInFlight > 10*maxConcurrency {
		errs = append(errs, fmt.Errorf("-max-inflight %d: must be within 1..%d", o.MaxInFlight, 10*maxConcurrency))
	}
	if o.Warmup < 0 || o.Warmup > maxDuration {
		errs = append(errs, fmt.Errorf("-warmup %s: must be within [0, %s]", o.Warmup, maxDuration))
	}
	if o.Timeout <= 0 || o.Timeout > time.Minute {
		errs = append(errs, fmt.Errorf("-timeout %s: must be within (0, 1m]", o.Timeout))
	}
	switch o.AppendFsync {
	case "always", "everysec", "no":
	default:
		errs = append(errs, fmt.Errorf("-appendfsync %q: use always, everysec or no", o.AppendFsync))
	}
	return errors.Join(errs...)
}

// Target names.
const (
	targetBare  = "bare"
	targetFerry = "ferry"
)

// Phase names.
const (
	phaseClosed = "closed"
	phaseOpen   = "open"
)

// benchSecret signs every request; it is a benchmark's, not a secret.
const benchSecret = "webhook-bench-secret"

// streamKey is where redisstore queues events with the default prefix
// ("ferry:" + "events", see pkg/store/redisstore).
const streamKey = "ferry:events"

// pipelinesYAML builds acme/app, the repository of the push payload.
const pipelinesYAML = `
pipelines:
  - name: app
    repo: acme/app
    events: [push]
    job: app
`

// target is one server under test and the client that loads it.
type target struct {
	name   string
	url    string
	client *http.Client
}

// Bench runs the whole benchmark and returns its report. It stops
// everything it started before returning, on error and on ctx's end too.
func Bench(ctx context.Context, o Options) (rep *Report, err error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	payload, payloadFile, err := loadPayload(o.PayloadFile)
	if err != nil {
		return nil, err
	}
	gen, err := newGenerator(payload, benchSecret)
	if err != nil {
		return nil, err
	}

	// Redis, with its data in a directory of this run.
	if _, err := redisserver.LookPath(o.RedisBinary); err != nil {
		return nil, err
	}
	dataDir, err := os.MkdirTemp(o.RedisDir, "webhook-bench-redis-")
	if err != nil {
		return nil, fmt.Errorf("make the Redis data directory: %w", err)
	}
	defer os.RemoveAll(dataDir)
	rs, err := redisserver.Start(redisserver.Options{
		Binary: o.RedisBinary, Dir: dataDir, Args: []string{"--appendfsync", o.AppendFsync},
	})
	if err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	defer func() {
		if cerr := rs.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("stop redis-server: %w", cerr)
		}
	}()
	rc := redis.NewClient(&redis.Options{Addr: rs.Addr(), DialTimeout: 5 * time.Second})
	defer rc.Close()

	// ferry, receiving only.
	ferryURL, stopFerry, err := startFerry(ctx, rs.Addr())
	if err != nil {
		return nil, err
	}
	defer func() {
		if serr := stopFerry(); serr != nil && err == nil {
			err = serr
		}
	}()

	// The bare handler, on its own server.
	bareURL, stopBare, err := startBare(benchSecret, config.Default().Server.MaxBodyBytes)
	if err != nil {
		return nil, err
	}
	defer stopBare()

	conns := max(o.Concurrency, o.MaxInFlight)
	bare := &target{name: targetBare, url: bareURL, client: newClient(conns, o.Timeout)}
	ferry := &target{name: targetFerry, url: ferryURL, client: newClient(conns, o.Timeout)}
	defer bare.client.CloseIdleConnections()
	defer ferry.client.CloseIdleConnections()

	rep = &Report{
		Command:  o.Command,
		Settings: o.Settings,
		Machine:  machineFacts(ctx, rc, dataDir),
		Payload: PayloadInfo{
			File: payloadFile, Bytes: len(payload),
			Description: "compacted GitHub push, signed X-Hub-Signature-256, unique X-GitHub-Delivery per request",
		},
		Notes: []string{
			fmt.Sprintf("the load generator, ferry, the bare server and redis-server share these %d CPUs (one process for the first three, so they share its GC as well); figures compare the two targets, they are not a capacity rating", runtime.NumCPU()),
			"latency is per request, any answer or failure included, from the send (closed loop) or the scheduled send (open loop) to the end of the answer's body",
		},
	}
	var ferryAccepted int64 // every 202 of ferry, warm-up included

	if o.Warmup > 0 {
		for _, t := range []*target{bare, ferry} {
			res, err := closedLoop(ctx, t, gen, o.Concurrency, o.Warmup, 0)
			if err != nil {
				return nil, err
			}
			if t == ferry {
				ferryAccepted += res.Accepted
			}
			fmt.Fprintf(progress, "warm-up %-5s %s\n", t.name, res.line())
		}
	}

	var closed, open []Result
	for round := 1; round <= o.Rounds; round++ {
		for _, t := range []*target{bare, ferry} {
			var stopProfile func() error
			if t == ferry && round == 1 && o.CPUProfile != "" {
				if stopProfile, err = startCPUProfile(o.CPUProfile); err != nil {
					return nil, err
				}
			}
			before := snapshot(ctx, rc)
			res, err := closedLoop(ctx, t, gen, o.Concurrency, o.Duration, o.Requests)
			account(&res, before, snapshot(ctx, rc))
			if stopProfile != nil {
				if perr := stopProfile(); perr != nil && err == nil {
					err = perr
				}
			}
			if err != nil {
				return nil, err
			}
			res.Round = round
			closed = append(closed, res)
			if t == ferry {
				ferryAccepted += res.Accepted
			}
			fmt.Fprintf(progress, "closed round %d/%d %-5s %s\n", round, o.Rounds, t.name, res.line())
		}
	}
	if o.Rate > 0 {
		for round := 1; round <= o.OpenRounds; round++ {
			for _, t := range []*target{bare, ferry} {
				before := snapshot(ctx, rc)
				res, err := openLoop(ctx, t, gen, o.Rate, o.Duration, o.MaxInFlight)
				account(&res, before, snapshot(ctx, rc))
				if err != nil {
					return nil, err
				}
				res.Round = round
				open = append(open, res)
				if t == ferry {
					ferryAccepted += res.Accepted
				}
				fmt.Fprintf(progress, "open round %d/%d %-5s %s\n", round, o.OpenRounds, t.name, res.line())
			}
		}
	}

	rep.Rounds = append(closed, open...)
	for _, runs := range [][]Result{closed, open} {
		for _, name := range []string{targetBare, targetFerry} {
			var mine []Result
			for _, r := range runs {
				if r.Target == name {
					mine = append(mine, r)
				}
			}
			if len(mine) > 0 {
				rep.Results = append(rep.Results, median(mine))
			}
		}
	}
	rep.Durability = checkDurability(ctx, rc, ferryAccepted)
	rep.Machine.AOFRewrites = aofRewrites(ctx, rc)
	rep.judge(o.Rate)
	return rep, nil
}

// loadPayload reads the push payload and compacts it as GitHub sends it.
func loadPayload(file string) ([]byte, string, error) {
	if file == "" {
		var err error
		if file, err = findUp(filepath.Join("pkg", "webhook", "testdata", "github_push.json")); err != nil {
			return nil, "", err
		}
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, "", fmt.Errorf("read the payload: %w", err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, "", fmt.Errorf("compact the payload %s: %w", file, err)
	}
	return buf.Bytes(), file, nil
}

// findUp looks for rel in the working directory and its parents, so the
// command finds the repository's test data from anywhere in the checkout.
func findUp(rel string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find %s: %w", rel, err)
	}
	for {
		p := filepath.Join(dir, rel)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("%s not found in the working directory or above: run from the ferry checkout or pass -payload", rel)
		}
		dir = parent
	}
}

// startFerry runs ferry's receiver on a free loopback port against Redis at
// redisAddr and returns its GitHub hook URL and a function that stops it.
func startFerry(ctx context.Context, redisAddr string) (string, func() error, error) {
	cfg, err := config.Parse([]byte(pipelinesYAML))
	if err != nil {
		return "", nil, fmt.Errorf("ferry config: %w", err)
	}
	cfg.Server.Listen = "127.0.0.1:0"
	cfg.Store.Redis.Addr = redisAddr
	cfg.GitHub.WebhookSecrets = []string{benchSecret}
	cfg.Jenkins.URL = "http://127.0.0.1:1/" // never called: the dispatcher is off
	if err := cfg.Validate(); err != nil {
		return "", nil, fmt.Errorf("ferry config: %w", err)
	}
	a, err := app.New(ctx, app.Options{Config: cfg, Version: "webhook-bench", DisableDispatch: true})
	if err != nil {
		return "", nil, fmt.Errorf("start ferry: %w", err)
	}
	// ferry runs on a context of its own, so it is stopped (drained,
	// store closed) by stop and not torn down mid-request by ctx.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	stop := func() error {
		cancel()
		if err := <-done; err != nil {
			return fmt.Errorf("ferry: %w", err)
		}
		return nil
	}
	base := "http://" + a.Addr()
	if err := waitReady(ctx, base+"/readyz"); err != nil {
		_ = stop()
		return "", nil, err
	}
	return base + "/hooks/github", stop, nil
}

// waitReady polls url until it answers 200.
func waitReady(ctx context.Context, url string) error {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(20 * time.Second)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("ferry did not become ready at %s: %w", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startBare serves the baseline: read the body (capped like ferry), check
// the HMAC, answer 202. It returns its URL and a function that stops it.
func startBare(secret string, maxBody int64) (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listen for the bare server: %w", err)
	}
	d := config.Default().Server
	srv := &http.Server{
		Handler:           bareHandler([]byte(secret), maxBody),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       d.ReadTimeout.Duration,
		WriteTimeout:      d.WriteTimeout.Duration,
	}
	go func() { _ = srv.Serve(l) }()
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
	}
	return "http://" + l.Addr().String() + "/hooks/github", stop, nil
}

// bareHandler is the least a webhook endpoint can do: read the capped body
// and compare X-Hub-Signature-256 in constant time.
func bareHandler(secret []byte, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		if r.ContentLength > maxBody {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		var buf bytes.Buffer
		if r.ContentLength > 0 {
			buf.Grow(int(r.ContentLength) + bytes.MinRead)
		}
		if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxBody)); err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				w.WriteHeader(http.StatusRequestEntityTooLarge)
				return
			}
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		sig := r.Header.Get("X-Hub-Signature-256")
		got, err := hex.DecodeString(sig[min(len(sig), len("sha256=")):])
		if err != nil || len(sig) < len("sha256=") || sig[:len("sha256=")] != "sha256=" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		m := hmac.New(sha256.New, secret)
		m.Write(buf.Bytes())
		if !hmac.Equal(got, m.Sum(nil)) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
}

// newClient is a keep-alive client holding up to conns connections to one
// target; it never uses a proxy.
func newClient(conns int, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     5 * time.Minute,
			DisableCompression:  true,
		},
	}
}

// newRunID makes delivery ids unique across runs against the same Redis.
func newRunID() (string, error) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make a run id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func startCPUProfile(file string) (func() error, error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, fmt.Errorf("create the CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start the CPU profile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return fmt.Errorf("write the CPU profile: %w", err)
		}
		return nil
	}, nil
}

// checkDurability compares the stream's length with ferry's 202s: the
// dispatcher is off, so every accepted event must still be queued.
func checkDurability(ctx context.Context, rc *redis.Client, accepted int64) Durability {
	d := Durability{Key: streamKey, Accepted: accepted}
	n, err := rc.XLen(ctx, streamKey).Result()
	if err != nil {
		d.Detail = fmt.Sprintf("XLEN %s: %v", streamKey, err)
		return d
	}
	d.StreamLen = n
	d.OK = n == accepted && accepted > 0
	switch {
	case d.OK:
		d.Detail = fmt.Sprintf("XLEN %s = %d = ferry's 202 answers", streamKey, n)
	case accepted == 0:
		d.Detail = "ferry accepted nothing, so nothing was shown to be written"
	default:
		d.Detail = fmt.Sprintf("XLEN %s = %d but ferry answered 202 %d times (a request that timed out on the client may still have been stored)", streamKey, n, accepted)
	}
	return d
}

func machineFacts(ctx context.Context, rc *redis.Client, dataDir string) Machine {
	m := Machine{
		GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU(),
		GoVersion: runtime.Version(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH,
		RedisDataFS: fsType(dataDir),
	}
	if info, err := rc.InfoMap(ctx, "server").Result(); err == nil {
		m.RedisVersion = info["Server"]["redis_version"]
	}
	if cfg, err := rc.ConfigGet(ctx, "append*").Result(); err == nil {
		m.RedisAppendOnly, m.RedisAppendFsync = cfg["appendonly"], cfg["appendfsync"]
	}
	return m
}

// aofRewrites counts Redis' AOF rewrites during the run (they compete for
// the disk and the CPUs).
func aofRewrites(ctx context.Context, rc *redis.Client) string {
	info, err := rc.InfoMap(ctx, "persistence").Result()
	if err != nil {
		return "unknown"
	}
	p := info["Persistence"]
	if v, ok := p["aof_rewrites"]; ok {
		return v
	}
	return "unknown"
}
