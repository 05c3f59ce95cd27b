package promote

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

	"github.com/ferryci/ferry/pkg/store"
)

// Exit codes of `ferry promote`, for pipelines.
const (
	ExitOK       = 0 // done (or accepted, without --wait)
	ExitFailed   = 1 // the promotion failed or was rejected
	ExitUsage    = 2 // bad flags, or the API refused the request
	ExitTimedOut = 3 // --wait ran out of --timeout
)

// CLIUsage describes `ferry promote`.
const CLIUsage = `usage: ferry promote <command> [flags]

commands:
  create    --app A --image IMG [--commit SHA] [--build-url U] [--version V] [--wait] [--timeout 30m]
  status    ID [--json]
  wait      ID [--timeout 30m] [--until-approval]
  approve   ID [--env E] [--as NAME]
  reject    ID [--env E] [--as NAME] [--reason TEXT]
  rollback  --app A --env E [--to PROMOTION-ID] [--wait]
  list      [--app A]

Every command takes --server (ferry's URL, env FERRY_URL); the API token
comes from FERRY_PROMOTION_API_TOKEN (never a flag: flags show in process
lists). --wait and wait print one line per step and exit 0 when the
promotion succeeded, 1 when it failed or was rejected, 3 on timeout.
TRACEPARENT, BUILD_URL and GIT_COMMIT from the environment are used when
the flags are not given (Jenkins sets the last two).

rollback without --to restores the newest earlier promotion that succeeded
in the environment with a different digest than it runs now; rollbacks are
skipped, so rolling back again goes further back (C -> B -> A), unlike
kubectl rollout undo, which flips between the last two.
`

// RunCLI runs `ferry promote args…` and returns the exit code.
func RunCLI(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if getenv == nil {
		getenv = os.Getenv
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, CLIUsage)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	cmd, rest := args[0], args[1:]
	fs := flag.NewFlagSet("ferry promote "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", getenv("FERRY_URL"), "ferry's URL [env FERRY_URL]")
	app := fs.String("app", "", "app name")
	image := fs.String("image", "", "source image, tag or digest")
	commit := fs.String("commit", getenv("GIT_COMMIT"), "commit SHA [env GIT_COMMIT]")
	buildURL := fs.String("build-url", getenv("BUILD_URL"), "build URL [env BUILD_URL]")
	version := fs.String("version", "", "version (tags the target)")
	wait := fs.Bool("wait", false, "wait for the outcome")
	untilApproval := fs.Bool("until-approval", false, "stop waiting when the promotion waits for approval")
	timeout := fs.Duration("timeout", 30*time.Minute, "how long to wait")
	env := fs.String("env", "", "environment")
	as := fs.String("as", firstNonEmpty(getenv("BUILD_USER_ID"), getenv("USER"), "cli"), "who acts (recorded in the audit trail)")
	reason := fs.String("reason", "", "why")
	to := fs.String("to", "", "promotion whose digest a rollback restores")
	asJSON := fs.Bool("json", false, "print the promotion as JSON")
	// Flags may come after the positional id.
	var pos []string
	for len(rest) > 0 {
		if err := fs.Parse(rest); err != nil {
			return ExitUsage
		}
		rest = fs.Args()
		if len(rest) > 0 {
			pos, rest = append(pos, rest[0]), rest[1:]
		}
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "ferry promote %s: %s\n", cmd, fmt.Sprintf(format, a...))
		return ExitUsage
	}
	if *server == "" {
		return usage("--server (or FERRY_URL) is required")
	}
	token := getenv("FERRY_PROMOTION_API_TOKEN")
	if token == "" {
		return usage("FERRY_PROMOTION_API_TOKEN is not set")
	}
	c := &Client{BaseURL: *server, Token: token}
	id := ""
	if len(pos) > 0 {
		id = pos[0]
	}
	needID := func() bool { return id != "" }
	logf := func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) }
	apiErr := func(err error) int {
		fmt.Fprintf(stderr, "ferry promote %s: %v\n", cmd, err)
		return ExitUsage
	}
	follow := func(p store.Promotion) int {
		logf("promotion %s: %s %s", p.ID, p.App, p.SourceDigest)
		wctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		p, err := c.Wait(wctx, p.ID, 2*time.Second, *untilApproval, func(a store.AuditEntry) {
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
			logf("%s", line)
		})
		if errors.Is(err, context.DeadlineExceeded) {
			logf("promotion %s still %s after %s", p.ID, p.State, *timeout)
			return ExitTimedOut
		}
		if err != nil {
			return apiErr(err)
		}
		return outcome(p, logf)
	}

	switch cmd {
	case "create":
		if *app == "" || *image == "" {
			return usage("--app and --image are required")
		}
		p, err := c.Create(ctx, Request{App: *app, Image: *image, Commit: *commit, BuildURL: *buildURL, Version: *version,
			RequestedBy: *as, TraceParent: getenv("TRACEPARENT")})
		if err != nil {
			return apiErr(err)
		}
		if *wait {
			return follow(p)
		}
		logf("promotion %s created: %s %s -> %s", p.ID, p.App, p.Source, p.SourceDigest)
		return ExitOK
	case "wait":
		if !needID() {
			return usage("a promotion id is required")
		}
		return follow(store.Promotion{ID: id})
	case "status":
		if !needID() {
			return usage("a promotion id is required")
		}
		p, err := c.Get(ctx, id)
		if err != nil {
			return apiErr(err)
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			_ = enc.Encode(p)
			return ExitOK
		}
		printPromotion(stdout, p)
		return ExitOK
	case "approve", "reject":
		if !needID() {
			return usage("a promotion id is required")
		}
		d := Decision{Environment: *env, Approver: *as, Reason: *reason}
		var (
			p   store.Promotion
			err error
		)
		if cmd == "approve" {
			p, err = c.Approve(ctx, id, d)
		} else {
			p, err = c.Reject(ctx, id, d)
		}
		if err != nil {
			return apiErr(err)
		}
		logf("promotion %s %sd by %s: now %s", p.ID, cmd, *as, p.State)
		return ExitOK
	case "rollback":
		if *app == "" || *env == "" {
			return usage("--app and --env are required")
		}
		p, err := c.Rollback(ctx, RollbackRequest{App: *app, Environment: *env, To: *to, RequestedBy: *as, Reason: *reason})
		if err != nil {
			return apiErr(err)
		}
		logf("rollback %s of %s to %s (promotion %s)", p.ID, *env, p.Target, p.RollbackOf)
		if *wait {
			return follow(p)
		}
		return ExitOK
	case "list":
		ps, err := c.List(ctx, *app)
		if err != nil {
			return apiErr(err)
		}
		for _, p := range ps {
			logf("%s  %-8s %-16s %-10s %s", p.ID, p.App, p.State, p.Kind, firstNonEmpty(p.Target, p.Source))
		}
		return ExitOK
	}
	fmt.Fprint(stderr, CLIUsage)
	return usage("unknown command")
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
