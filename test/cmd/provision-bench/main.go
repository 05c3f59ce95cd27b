// Command provision-bench measures ferry's provisioner on the test bed's
// real kube-apiserver against a bare client-go loop, in the same run, and
// prints both side by side with the goals of issue 4.
//
//	go run ./test/cmd/provision-bench [-n 100,1000] [-build 5s] [-qps 200 -burst 400] [-warm-builds 10 -warm-size 3 -warm-gap 1s]
//
// For each size N it runs, one after the other:
//
//   - bare: a client-go loop (-parallelism workers, the provisioner's
//     default) creating N pods rendered by eci.Render from the same template
//     in a fresh namespace, as ferry's identity with the same QPS/burst,
//     then deleting them;
//   - ferry: the Jenkins emulator (test/jenkinsemu) with one job whose
//     builds wait for the template's label and last -build; the provisioner
//     (pkg/provision, production defaults except MaxAgents = N) running in
//     this process against a fresh namespace; a burst of N triggers, each
//     followed by Kick as the dispatcher does. The bench plays the agents: an
//     informer sees each pod Running and connects its agent to the emulator.
//
// Measured: time until every pod exists and burst→pod-created p50/p99 (both
// as first seen by the bench's own pod watch, the same code for both), API
// calls per build (the emulator's per-route counters, the bench's triggers
// excluded; ferry's rest.Config wrapped with a counting transport), memory
// (this process's VmRSS and Go heap sampled every 50 ms — it also holds the
// emulator and the bench's watch, whose pod cache is stripped to a few
// fields), time from the last build's end until no agent pod or Jenkins
// agent node is left, and pod lifetime (first seen → gone) against build
// time.
//
// Then, in the same run, cold against warm (warm.go): the same builds,
// arriving one after another, on a template without and with a warm pool:
// queued → build started, and the pool's idle pod-seconds per build served.
//
// Everything runs on loopback; every namespace, provisioner and emulator
// the bench starts is stopped before it exits, also on -timeout or Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ferryci/ferry/pkg/provision"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "provision-bench:", err)
		}
		stop()
		os.Exit(1)
	}
}

// Options configure a benchmark run.
type Options struct {
	// Sizes are the burst sizes N, run in order.
	Sizes []int
	// Build is how long every build runs once it has its agent.
	Build time.Duration
	// QPS and Burst limit both ferry's and the bare loop's client.
	QPS   float32
	Burst int
	// Parallelism is ferry's action parallelism and the bare loop's
	// worker count.
	Parallelism int
	// MaxAgents caps ferry's agents in flight; 0 means N.
	MaxAgents int
	// CreateNodeDelay is the emulator's per node creation cost (serialized).
	CreateNodeDelay time.Duration
	// StartDelay sets the bed's pod start-delay annotation on the template;
	// "" keeps the bed's default (a random 1-2 s).
	StartDelay string
	// Timeout bounds each size (bare and ferry together).
	Timeout time.Duration
	// EnvFile is the test bed's env file; "" means testbed.EnvPath().
	EnvFile string
	// CPUProfile, if set, is where a CPU profile of ferry's run of each
	// size N goes (the name gets ".N" appended).
	CPUProfile string
	// Log receives progress and ferry's warnings; nil discards them.
	Log io.Writer
	// Verbose logs ferry at debug level.
	Verbose bool
	// WarmBuilds builds, one every WarmGap, are run cold and then with a
	// warm pool of WarmSize (see warm.go); 0 skips the comparison.
	WarmBuilds, WarmSize int
	WarmGap              time.Duration
}

// DefaultOptions are the flags' defaults.
func DefaultOptions() Options {
	return Options{
		Sizes:       []int{100, 1000},
		Build:       5 * time.Second,
		QPS:         200,
		Burst:       400,
		Parallelism: provision.DefaultParallelism,
		Timeout:     10 * time.Minute,
		WarmBuilds:  10,
		WarmSize:    3,
		WarmGap:     time.Second,
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("provision-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := DefaultOptions()
	sizes := fs.String("n", "100,1000", "burst sizes N, comma-separated, run in order")
	fs.DurationVar(&o.Build, "build", o.Build, "how long each build runs on its agent")
	qps := fs.Float64("qps", float64(o.QPS), "Kubernetes client QPS, ferry and bare loop alike")
	fs.IntVar(&o.Burst, "burst", o.Burst, "Kubernetes client burst, ferry and bare loop alike")
	fs.IntVar(&o.Parallelism, "parallelism", o.Parallelism, "ferry's concurrent create/delete actions and the bare loop's workers")
	fs.IntVar(&o.MaxAgents, "max-agents", o.MaxAgents, "ferry's cap on agents in flight (0: N)")
	fs.DurationVar(&o.CreateNodeDelay, "create-node-delay", o.CreateNodeDelay, "the emulator's serialized cost of each Jenkins node creation")
	fs.StringVar(&o.StartDelay, "start-delay", o.StartDelay, `kwok start delay of agent pods (a Go duration; "" keeps the bed's random 1-2s)`)
	fs.DurationVar(&o.Timeout, "timeout", o.Timeout, "bound on each size's run")
	fs.StringVar(&o.EnvFile, "env", o.EnvFile, "test bed env file (default: $FERRY_TESTBED_ENV or test/.bed/env)")
	fs.StringVar(&o.CPUProfile, "cpuprofile", o.CPUProfile, "write a CPU profile of the process during each ferry run to FILE.N")
	fs.IntVar(&o.WarmBuilds, "warm-builds", o.WarmBuilds, "builds of the cold vs warm comparison, one every -warm-gap (0: skip it)")
	fs.IntVar(&o.WarmSize, "warm-size", o.WarmSize, "the warm pool's size in the comparison")
	fs.DurationVar(&o.WarmGap, "warm-gap", o.WarmGap, "time between two builds of the comparison")
	quiet := fs.Bool("q", false, "no progress on stderr")
	fs.BoolVar(&o.Verbose, "v", false, "log ferry at debug level on stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	o.QPS = float32(*qps)
	o.Sizes = nil
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return fmt.Errorf("-n: %q is not a positive size", s)
		}
		o.Sizes = append(o.Sizes, n)
	}
	if !*quiet {
		o.Log = stderr
	}
	rep, err := Bench(ctx, o)
	if rep != nil {
		rep.Command = "go run ./test/cmd/provision-bench " + strings.Join(args, " ")
		rep.Print(stdout)
	}
	return err
}
