// Command ferry runs Jenkins as a serverless CI/CD system: it receives Git
// webhooks, triggers Jenkins exactly once per change and reports commit
// status.
//
//	ferry serve [--config FILE] [flags]   run the service
//	ferry check-config --config FILE      validate a configuration and exit
//	ferry render-pod --config FILE --template NAME
//	                                      print the agent pod ferry would create
//	ferry import kubernetes-plugin FILE   convert the plugin's pod templates
//	ferry image build --destination R:T   build the commit's image on ECI (from a pipeline)
//	ferry promote <command> [flags]       ask ferry to promote an image (from a pipeline)
//	ferry why --repo R --commit SHA       what became of a commit's webhook deliveries
//	ferry version                         print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	// The warm pools' time zones load in images without /usr/share/zoneinfo.
	_ "time/tzdata"

	"github.com/ferryci/ferry/pkg/app"
	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/deliveries/why"
	"github.com/ferryci/ferry/pkg/imagebuild"
	"github.com/ferryci/ferry/pkg/promote/cli"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] == "promote" {
		os.Exit(cli.Run(ctx, os.Args[2:], os.Getenv, os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "image" {
		os.Exit(imagebuild.Run(ctx, os.Args[2:], os.Getenv, os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "why" {
		os.Exit(why.Run(ctx, os.Args[2:], os.Getenv, os.Stdout, os.Stderr))
	}
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "ferry:", err)
		}
		os.Exit(2)
	}
}

const usage = `usage: ferry <command> [flags]

commands:
  serve          run ferry (webhooks, dispatcher, /healthz, /readyz, /metrics)
  check-config   validate a configuration file and print what ferry would use
  render-pod     print the exact agent pod ferry would create for a template
  import         convert the kubernetes plugin's pod templates (JCasC) into ferry's
  image          build the commit's image on ECI with kaniko (ferry image build -h)
  promote        create, wait for, approve, reject or roll back promotions (ferry promote -h)
  why            what became of a commit's (or a delivery's) webhook deliveries (ferry why -h)
  version        print the version

Run "ferry <command> -h" for the flags of a command.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "ferry", version)
		return nil
	case "promote":
		// main runs it directly to keep its exit codes; this path is for
		// embedding run.
		if code := cli.Run(ctx, args[1:], os.Getenv, stdout, stderr); code != cli.ExitOK {
			return fmt.Errorf("promote exited with code %d", code)
		}
		return nil
	case "render-pod":
		return renderPod(args[1:], stdout, stderr)
	case "import":
		return importTemplates(args[1:], stdout, stderr)
	case "why":
		if code := why.Run(ctx, args[1:], os.Getenv, stdout, stderr); code != why.ExitOK {
			return fmt.Errorf("why exited with code %d", code)
		}
		return nil
	case "serve", "check-config":
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
	fs := flag.NewFlagSet("ferry "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("config", os.Getenv("FERRY_CONFIG"), "YAML configuration file [env FERRY_CONFIG]")
	consumer := fs.String("consumer", firstSet(os.Getenv("FERRY_CONSUMER"), os.Getenv("POD_NAME")),
		"this replica's name in the event queue and in leader elections; one that survives restarts (the pod name) lets a restarted replica resume its unfinished events at once; must be unique among running replicas (default hostname-random) [env FERRY_CONSUMER, else POD_NAME]")
	flags := config.RegisterFlags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	cfg, err := config.Load(config.Sources{File: *file, Flags: flags})
	if err != nil {
		return err
	}
	if args[0] == "check-config" {
		fmt.Fprintf(stdout, "configuration is valid: store %s, %d pipeline(s), listening on %s\n",
			cfg.BackendName(), len(cfg.Pipelines), cfg.Server.Listen)
		for _, w := range cfg.Warnings() {
			fmt.Fprintln(stdout, "warning:", w)
		}
		return nil
	}
	return app.Run(ctx, app.Options{Config: cfg, Version: version, LogOutput: stderr, Consumer: *consumer})
}

func firstSet(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
