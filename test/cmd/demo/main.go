// Command demo shows a change going from a push to production through
// ferry, live, on the local test bed: `make demo`.
//
// It brings the test bed up (or uses the one that is up), starts the built
// ferry binary (the bed's Redis as its store) against the Jenkins emulator
// (test/jenkinsemu) and the GitHub fake (test/scmfake), has the fake
// deliver a signed push, and prints one line per stage when it sees that
// stage in the component that holds it:
//
//	accepted                 ferry's delivery log
//	queued in Jenkins        the emulator's queue
//	agent pod                the bed's API server: Running on a virtual node, its ECI annotations
//	build running            the emulator's builds
//	image built and pushed   `ferry image build`, then the registry's digest
//	promoted to test         the promotion API and the test Deployment
//	verified                 the promotion's audit trail (a verification Job)
//	waiting for approval     the promotion API
//	approved                 the audit trail: who, verified by ferry
//	production               the promotion API and the production Deployment
//	agent gone               the API server and the emulator's nodes
//	commit status, deployments  the GitHub fake's records
//
// The demo plays only what has no real counterpart here: the agent
// connecting to Jenkins, the Jenkinsfile's steps (pipelines/github:
// `ferry image build`, then `ferry promote create --wait`, run as the
// ferry binary with the build's parameters), kaniko pushing to the
// registry, and a person approving with their own token (`ferry promote
// approve`). It ends with a timeline and where to look next, then takes
// down everything it started — ferry, the emulator, the fake, its
// namespaces and Redis keys, and the bed if it started it — also on
// Ctrl-C and on failure.
//
//	go run ./test/cmd/demo -ferry bin/ferry [-env test/.bed/env] [-start-bed=false]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "demo:", err)
		}
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o Options
	fs.StringVar(&o.Ferry, "ferry", "bin/ferry", "the ferry binary (make build)")
	fs.StringVar(&o.EnvFile, "env", os.Getenv("FERRY_TESTBED_ENV"), "the test bed's env file (default: test/.bed/env)")
	fs.BoolVar(&o.StartBed, "start-bed", true, "start the test bed when it is not up, and stop it at the end")
	fs.StringVar(&o.Dir, "dir", "", "keep ferry's configuration and log here (default: a temporary directory, removed unless the run fails)")
	timeout := fs.Duration("timeout", 15*time.Minute, "give up after this long (the bed's start included)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	o.Root = root
	if o.Ferry, err = filepath.Abs(o.Ferry); err != nil {
		return err
	}
	if _, err := os.Stat(o.Ferry); err != nil {
		return fmt.Errorf("the ferry binary: %w (build it with make build, or pass -ferry)", err)
	}
	o.Out = stdout
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	_, err = Run(ctx, o)
	return err
}

// moduleRoot is the directory of the go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s: run the demo from the repository", dir)
		}
	}
}
