// Command jenkins-emulator runs the Jenkins emulator (test/jenkinsemu) as a
// standalone server, for trying ferry against it by hand or from scripts.
//
//	jenkins-emulator -listen 127.0.0.1:8080 -jobs 'app=ferry-agent:SHA,REF;team/lib=linux' -duration 30s
//
// Each job is PATH[=LABEL[:PARAM,PARAM…]]; a job whose label starts with
// "pipeline+" behaves like a Pipeline job waiting in a node block.
// Agents created through the REST API come online only through the
// emulator's Go API (ConnectAgent), so a standalone emulator with
// -builtin-executors 0 leaves labelled builds queued, as a Jenkins without
// its agents would.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ferryci/ferry/test/jenkinsemu"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "jenkins-emulator:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("jenkins-emulator", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8080", "address to listen on")
	user := fs.String("user", jenkinsemu.DefaultUser.Name, "user name")
	token := fs.String("token", jenkinsemu.DefaultUser.Token, "API token of the user (crumb-exempt)")
	password := fs.String("password", jenkinsemu.DefaultUser.Password, "password of the user (needs crumbs)")
	jobs := fs.String("jobs", "", "jobs to create: PATH[=LABEL[:PARAM,…]] separated by ';'")
	duration := fs.Duration("duration", 10*time.Second, "build duration (-1ns: until stopped)")
	result := fs.String("result", string(jenkinsemu.Success), "build result: SUCCESS, UNSTABLE, FAILURE, ABORTED, NOT_BUILT")
	quiet := fs.Duration("quiet-period", 0, "quiet period of triggers without delay (Jenkins' default is 5s)")
	builtIn := fs.Int("builtin-executors", 0, "executors of the built-in node")
	createDelay := fs.Duration("create-node-delay", 0, "time spent in each (serialized) node creation")
	locale := fs.String("locale", "en", "controller's default locale for requests without Accept-Language: en, zh_CN, ja, zh_TW")
	forceLocale := fs.Bool("ignore-accept-language", false, "answer every request in -locale and send X-Jenkins-Language, as the Locale plugin forcing a language does")
	debug := fs.Bool("debug", false, "log every state change")
	if err := fs.Parse(args); err != nil {
		return err
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	srv := jenkinsemu.New(jenkinsemu.Options{
		Addr:                 *listen,
		Users:                []jenkinsemu.User{{Name: *user, Password: *password, Token: *token}},
		QuietPeriod:          *quiet,
		BuiltInExecutors:     *builtIn,
		CreateNodeDelay:      *createDelay,
		Locale:               *locale,
		IgnoreAcceptLanguage: *forceLocale,
		Logger:               log,
	})
	defer srv.Close()
	for _, spec := range strings.Split(*jobs, ";") {
		if strings.TrimSpace(spec) == "" {
			continue
		}
		path, js, err := parseJob(spec)
		if err != nil {
			return err
		}
		js.Duration, js.Result = *duration, jenkinsemu.Result(*result)
		if err := srv.AddJob(path, js); err != nil {
			return fmt.Errorf("create job: %w", err)
		}
	}
	log.Info("jenkins emulator listening", "component", "jenkins-emulator", "url", srv.URL(), "user", *user)
	<-ctx.Done()
	if err := ctx.Err(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func parseJob(spec string) (string, jenkinsemu.JobSpec, error) {
	var js jenkinsemu.JobSpec
	path, rest, _ := strings.Cut(strings.TrimSpace(spec), "=")
	if path == "" {
		return "", js, fmt.Errorf("job spec %q: empty path", spec)
	}
	label, params, _ := strings.Cut(rest, ":")
	if after, ok := strings.CutPrefix(label, "pipeline+"); ok {
		js.Pipeline, label = true, after
	}
	js.Label = label
	for _, p := range strings.Split(params, ",") {
		if p = strings.TrimSpace(p); p != "" {
			js.Params = append(js.Params, jenkinsemu.Param{Name: p})
		}
	}
	return path, js, nil
}
