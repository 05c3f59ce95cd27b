// Package cli is `ferry promote`: the command pipelines and people use to
// create, follow, approve, reject and roll back promotions through the
// promotion API (package api). Each subcommand is one function with its own
// flags; exit codes tell a pipeline the outcome.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ferryci/ferry/pkg/promote"
	"github.com/ferryci/ferry/pkg/promote/api"
	"github.com/ferryci/ferry/pkg/store"
)

// Exit codes of `ferry promote`, for pipelines.
const (
	ExitOK       = 0 // done (or accepted, without --wait)
	ExitFailed   = 1 // the promotion failed or was rejected
	ExitUsage    = 2 // bad flags, or the API refused the request
	ExitTimedOut = 3 // --wait ran out of --timeout
)

// Usage describes `ferry promote`.
const Usage = `usage: ferry promote <command> [flags]

commands:
  create    --app A --image IMG [--commit SHA] [--build-url U] [--version V]
            [--idempotency-key K] [--wait] [--timeout 30m]
  status    ID [--json]
  wait      ID [--timeout 30m] [--until-approval]
  approve   ID [--env E]
  reject    ID [--env E] [--reason TEXT]
  rollback  --app A --env E [--to PROMOTION-ID] [--reason TEXT] [--wait]
  list      [--app A]

Every command takes --server (ferry's URL, env FERRY_URL). The credential
is never a flag (flags show in process lists); the first of:
  FERRY_TOKEN                 a person's token (promotion.auth.tokens)
  FERRY_PROMOTION_API_TOKEN   the pipelines' token: create and read only
  kubeconfig                  like kubectl: $KUBECONFIG or ~/.kube/config,
                              its current context (or --context): its
                              token, token file or exec credential plugin
The audit trail records who ferry verified the credential as; there is
no --as. --wait and wait print one line per step and exit 0 when the
promotion succeeded, 1 when it failed or was rejected, 3 on timeout.
TRACEPARENT, BUILD_URL and GIT_COMMIT from the environment are used when
the flags are not given (Jenkins sets the last two).

create sends an Idempotency-Key (default: derived from BUILD_URL, app and
image), so a retried create returns the first promotion instead of
starting a second one.

rollback without --to restores the newest earlier promotion that succeeded
in the environment with a different digest than it runs now; rollbacks are
skipped, so rolling back again goes further back (C -> B -> A), unlike
kubectl rollout undo, which flips between the last two.
`

// subcommands run one subcommand on its arguments (after its name).
var subcommands = map[string]func(*command, []string) int{
	"create":   create,
	"status":   status,
	"wait":     wait,
	"approve":  decide,
	"reject":   decide,
	"rollback": rollback,
	"list":     list,
}

// Run runs `ferry promote args…` and returns the exit code.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if getenv == nil {
		getenv = os.Getenv
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, Usage)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	c := newCommand(ctx, args[0], getenv, stdout, stderr)
	run, ok := subcommands[args[0]]
	if !ok {
		fmt.Fprint(stderr, Usage)
		return c.usage("unknown command")
	}
	return run(c, args[1:])
}

// command is one run of a subcommand: its flags, the flags every
// subcommand shares, and where it writes.
type command struct {
	ctx            context.Context
	name           string
	getenv         func(string) string
	stdout, stderr io.Writer
	fs             *flag.FlagSet
	server         *string
	kubeContext    *string
	pos            []string
}

func newCommand(ctx context.Context, name string, getenv func(string) string, stdout, stderr io.Writer) *command {
	fs := flag.NewFlagSet("ferry promote "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return &command{ctx: ctx, name: name, getenv: getenv, stdout: stdout, stderr: stderr, fs: fs,
		server:      fs.String("server", getenv("FERRY_URL"), "ferry's URL [env FERRY_URL]"),
		kubeContext: fs.String("context", "", "kubeconfig context whose credential is sent (without FERRY_TOKEN)")}
}

// waiting are the flags of following a promotion to its outcome.
type waiting struct {
	timeout       *time.Duration
	untilApproval *bool
}

func (c *command) waiting() waiting {
	return waiting{
		timeout:       c.fs.Duration("timeout", 30*time.Minute, "how long to wait"),
		untilApproval: c.fs.Bool("until-approval", false, "stop waiting when the promotion waits for approval"),
	}
}

// start parses args (flags may come after the positional id) and returns
// the API client; without one, the exit code to return.
func (c *command) start(args []string) (*api.Client, int) {
	for len(args) > 0 {
		if err := c.fs.Parse(args); err != nil {
			return nil, ExitUsage
		}
		args = c.fs.Args()
		if len(args) > 0 {
			c.pos, args = append(c.pos, args[0]), args[1:]
		}
	}
	if *c.server == "" {
		return nil, c.usage("--server (or FERRY_URL) is required")
	}
	cl, err := credential(c.getenv, *c.kubeContext)
	if err != nil {
		return nil, c.usage(err.Error())
	}
	cl.BaseURL = *c.server
	return cl, ExitOK
}

// id is the promotion id given as the first positional argument.
func (c *command) id() string {
	if len(c.pos) == 0 {
		return ""
	}
	return c.pos[0]
}

func (c *command) usage(msg string) int {
	fmt.Fprintf(c.stderr, "ferry promote %s: %s\n", c.name, msg)
	return ExitUsage
}

func (c *command) apiErr(err error) int {
	fmt.Fprintf(c.stderr, "ferry promote %s: %v\n", c.name, err)
	return ExitUsage
}

func (c *command) logf(format string, a ...any) { fmt.Fprintf(c.stdout, format+"\n", a...) }

// follow prints a promotion's steps until it is over (or waits for
// approval, with --until-approval) and returns the exit code of its outcome.
func (c *command) follow(cl *api.Client, p store.Promotion, w waiting) int {
	c.logf("promotion %s: %s %s", p.ID, p.App, p.SourceDigest)
	wctx, cancel := context.WithTimeout(c.ctx, *w.timeout)
	defer cancel()
	p, err := cl.Wait(wctx, p.ID, 2*time.Second, *w.untilApproval, func(a store.AuditEntry) {
		line := fmt.Sprintf("%s %s", a.At.Format(time.RFC3339), a.Action)
		if a.Environment != "" {
			line += " [" + a.Environment + "]"
		}
		if a.Actor != "ferry" {
			line += " by " + a.Actor
		}
		if a.Detail != "" {
			line += ": " + a.Detail
		}
		c.logf("%s", line)
	})
	if errors.Is(err, context.DeadlineExceeded) {
		c.logf("promotion %s still %s after %s", p.ID, p.State, *w.timeout)
		return ExitTimedOut
	}
	if err != nil {
		return c.apiErr(err)
	}
	return outcome(p, c.logf)
}

func create(c *command, args []string) int {
	app := c.fs.String("app", "", "app name")
	image := c.fs.String("image", "", "source image, tag or digest")
	commit := c.fs.String("commit", c.getenv("GIT_COMMIT"), "commit SHA [env GIT_COMMIT]")
	buildURL := c.fs.String("build-url", c.getenv("BUILD_URL"), "build URL [env BUILD_URL]")
	version := c.fs.String("version", "", "version (tags the target)")
	key := c.fs.String("idempotency-key", "", "makes a repeated create return the first promotion (default: from build URL, app and image)")
	follow := c.fs.Bool("wait", false, "wait for the outcome")
	w := c.waiting()
	cl, code := c.start(args)
	if cl == nil {
		return code
	}
	if *app == "" || *image == "" {
		return c.usage("--app and --image are required")
	}
	if *key == "" {
		*key = IdempotencyKey(*buildURL, *app, *image)
	}
	p, err := cl.CreateIdempotent(c.ctx, *key, promote.Request{App: *app, Image: *image, Commit: *commit, BuildURL: *buildURL,
		Version: *version, TraceParent: c.getenv("TRACEPARENT")})
	if err != nil {
		return c.apiErr(err)
	}
	if *follow {
		return c.follow(cl, p, w)
	}
	c.logf("promotion %s created: %s %s -> %s", p.ID, p.App, p.Source, p.SourceDigest)
	return ExitOK
}

func wait(c *command, args []string) int {
	w := c.waiting()
	cl, code := c.start(args)
	if cl == nil {
		return code
	}
	if c.id() == "" {
		return c.usage("a promotion id is required")
	}
	return c.follow(cl, store.Promotion{ID: c.id()}, w)
}

func status(c *command, args []string) int {
	asJSON := c.fs.Bool("json", false, "print the promotion as JSON")
	cl, code := c.start(args)
	if cl == nil {
		return code
	}
	if c.id() == "" {
		return c.usage("a promotion id is required")
	}
	p, err := cl.Get(c.ctx, c.id())
	if err != nil {
		return c.apiErr(err)
	}
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(p)
		return ExitOK
	}
	printPromotion(c.stdout, p)
	return ExitOK
}

// decide approves or rejects, by the command's name.
func decide(c *command, args []string) int {
	env := c.fs.String("env", "", "environment")
	reason := c.fs.String("reason", "", "why")
	cl, code := c.start(args)
	if cl == nil {
		return code
	}
	if c.id() == "" {
		return c.usage("a promotion id is required")
	}
	d := api.Decision{Environment: *env, Reason: *reason}
	send, done := cl.Approve, "approved"
	if c.name == "reject" {
		send, done = cl.Reject, "rejected"
	}
	p, err := send(c.ctx, c.id(), d)
	if err != nil {
		return c.apiErr(err)
	}
	by := "?"
	if n := len(p.Audit); n > 0 {
		by = p.Audit[n-1].Actor
	}
	c.logf("promotion %s %s by %s: now %s", p.ID, done, by, p.State)
	return ExitOK
}

func rollback(c *command, args []string) int {
	app := c.fs.String("app", "", "app name")
	env := c.fs.String("env", "", "environment")
	to := c.fs.String("to", "", "promotion whose digest a rollback restores")
	reason := c.fs.String("reason", "", "why")
	follow := c.fs.Bool("wait", false, "wait for the outcome")
	w := c.waiting()
	cl, code := c.start(args)
	if cl == nil {
		return code
	}
	if *app == "" || *env == "" {
		return c.usage("--app and --env are required")
	}
	p, err := cl.Rollback(c.ctx, promote.RollbackRequest{App: *app, Environment: *env, To: *to, Reason: *reason})
	if err != nil {
		return c.apiErr(err)
	}
	c.logf("rollback %s of %s to %s (promotion %s)", p.ID, *env, p.Target, p.RollbackOf)
	if *follow {
		return c.follow(cl, p, w)
	}
	return ExitOK
}

func list(c *command, args []string) int {
	app := c.fs.String("app", "", "app name")
	cl, code := c.start(args)
	if cl == nil {
		return code
	}
	ps, err := cl.List(c.ctx, *app)
	if err != nil {
		return c.apiErr(err)
	}
	for _, p := range ps {
		c.logf("%s  %-8s %-16s %-10s %s", p.ID, p.App, p.State, p.Kind, firstNonEmpty(p.Target, p.Source))
	}
	return ExitOK
}

func outcome(p store.Promotion, logf func(string, ...any)) int {
	switch p.State {
	case store.PromotionSucceeded:
		logf("promotion %s succeeded: %s", p.ID, p.Target)
		return ExitOK
	case store.PromotionWaiting:
		logf("promotion %s waits for approval", p.ID)
		return ExitOK
	}
	logf("promotion %s %s: %s", p.ID, p.State, p.Reason)
	return ExitFailed
}

func printPromotion(w io.Writer, p store.Promotion) {
	fmt.Fprintf(w, "promotion %s (%s) of %s: %s\n", p.ID, p.Kind, p.App, p.State)
	fmt.Fprintf(w, "  source  %s\n  digest  %s\n  target  %s\n", p.Source, p.SourceDigest, p.Target)
	if p.Reason != "" {
		fmt.Fprintf(w, "  reason  %s\n", p.Reason)
	}
	for _, e := range p.Environments {
		line := fmt.Sprintf("  env %-12s %s", e.Name, e.Phase)
		if e.Phase == store.EnvCanary {
			line += fmt.Sprintf(" (step %d)", e.CanaryStep+1)
		}
		if e.Approver != "" {
			line += " (approved by " + e.Approver + ")"
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
