// Command webhook-bench measures ferry's webhook receiver against a bare
// net/http handler that only checks the HMAC, in the same run and on the
// same loopback, and prints both side by side.
//
//	go run ./test/cmd/webhook-bench [-c 32] [-d 10s] [-rounds 2] [-rate 1000] [-json]
//
// It starts a redis-server (append-only file on, appendfsync always, as
// test/redisserver runs it) in a temporary directory, ferry through pkg/app
// with the dispatcher off, and the bare server; then it sends signed ~7 KB
// GitHub push payloads (pkg/webhook/testdata/github_push.json, compacted),
// each with a unique X-GitHub-Delivery:
//
//   - closed loop: -c clients send back to back for -d (or -n requests),
//     bare and ferry alternately for -rounds rounds; medians are reported;
//   - open loop: -rate requests/s on a fixed schedule for -d, latency
//     measured from each request's scheduled send time, so a slow answer
//     delays nothing it should not (no coordinated omission).
//
// Only 202 answers count as accepted. At the end it checks that the Redis
// stream holds exactly as many entries as ferry answered 202.
//
// The load generator runs in the same process as ferry and the bare server
// and shares the machine's CPUs with them and with redis-server: figures
// compare the two targets, they are not a capacity rating.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "webhook-bench:", err)
		}
		stop()
		os.Exit(1)
	}
}

// run parses the flags, runs the benchmark and prints its report (a table,
// or JSON with -json) on stdout; progress goes to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("webhook-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := DefaultOptions()
	fs.IntVar(&o.Concurrency, "c", o.Concurrency, "closed loop: concurrent clients")
	fs.DurationVar(&o.Duration, "d", o.Duration, "duration of each measured run (closed-loop round and open-loop run)")
	fs.IntVar(&o.Requests, "n", o.Requests, "closed loop: stop a round after this many requests (0: run for -d)")
	fs.IntVar(&o.Rounds, "rounds", o.Rounds, "closed loop: rounds, each running bare then ferry; medians are reported")
	fs.Float64Var(&o.Rate, "rate", o.Rate, "open loop: requests per second (0: skip the open loop)")
	fs.IntVar(&o.OpenRounds, "open-rounds", o.OpenRounds, "open loop: rounds, each running bare then ferry")
	fs.IntVar(&o.MaxInFlight, "max-inflight", o.MaxInFlight, "open loop: most requests in flight at once; later ones wait (and their wait counts as latency)")
	fs.DurationVar(&o.Warmup, "warmup", o.Warmup, "closed-loop warm-up of each target before measuring (0: none)")
	fs.DurationVar(&o.Timeout, "timeout", o.Timeout, "timeout of one request")
	fs.StringVar(&o.PayloadFile, "payload", o.PayloadFile, "GitHub push payload (default: pkg/webhook/testdata/github_push.json of the checkout)")
	fs.StringVar(&o.RedisBinary, "redis-server", o.RedisBinary, "redis-server executable")
	fs.StringVar(&o.RedisDir, "redis-dir", o.RedisDir, "directory under which Redis' temporary data directory is made (default: the system temp dir)")
	fs.StringVar(&o.AppendFsync, "appendfsync", o.AppendFsync, "Redis appendfsync: always (production, as test/redisserver), everysec or no")
	fs.StringVar(&o.CPUProfile, "cpuprofile", o.CPUProfile, "write a CPU profile of the process during ferry's first closed-loop round to this file")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	quiet := fs.Bool("q", false, "no progress on stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if !*quiet {
		o.Progress = stderr
	}
	o.Command = commandLine(args)
	fs.VisitAll(func(f *flag.Flag) { o.Settings = append(o.Settings, "-"+f.Name+"="+f.Value.String()) })

	rep, err := Bench(ctx, o)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return fmt.Errorf("write the JSON report: %w", err)
		}
	} else {
		rep.WriteTable(stdout)
	}
	if !rep.Durability.OK {
		return fmt.Errorf("durability check failed: %s", rep.Durability.Detail)
	}
	return nil
}

// commandLine renders the invocation so it can be pasted back into a shell.
func commandLine(args []string) string {
	parts := []string{filepath.Base(os.Args[0])}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\$`*?[]{}()<>|&;#~") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}
