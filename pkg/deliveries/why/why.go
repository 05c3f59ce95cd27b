// Package why is `ferry why`: for a repository and commit, or a delivery
// id, it prints what became of each delivery — delivery → answer →
// Jenkins queue item → build → agent pod → commit status, each with its
// time — as the delivery API assembles it. It only renders; the chain is
// put together by ferry (package deliveries).
package why

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/ferryci/ferry/pkg/deliveries"
	"github.com/ferryci/ferry/pkg/store"
)

// Exit codes of `ferry why`.
const (
	ExitOK       = 0 // deliveries found and shown
	ExitNotFound = 1 // no delivery recorded for the question
	ExitUsage    = 2 // bad flags, or the API refused or failed
)

// Usage describes `ferry why`.
const Usage = `usage: ferry why --repo OWNER/NAME --commit SHA [--ref REF] [--limit N] [--json]
       ferry why --delivery ID [--json]

Prints what became of each webhook delivery for a commit (or the delivery
with that id): ferry's answer and, for an accepted event, its Jenkins queue
item, build, agent pod and commit status, each with its time.

--server is ferry's URL (env FERRY_URL); the API token comes from
FERRY_DELIVERIES_API_TOKEN, else FERRY_PROMOTION_API_TOKEN (never a flag:
flags show in process lists). Deliveries are kept for deliveries.retention
(default 7 days). Exit 0 when something was found, 1 when nothing was, 2 on
bad flags or an API error.
`

// Run runs `ferry why args…` and returns the exit code.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ferry why", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, Usage) }
	server := fs.String("server", getenv("FERRY_URL"), "ferry's URL [env FERRY_URL]")
	repo := fs.String("repo", "", "repository, OWNER/NAME (GitLab: the project path)")
	commit := fs.String("commit", "", "full commit SHA")
	ref := fs.String("ref", "", "only this ref (refs/heads/main, or a branch name)")
	delivery := fs.String("delivery", "", "a delivery id (X-GitHub-Delivery, GitLab's Idempotency-Key)")
	limit := fs.Int("limit", 20, "at most this many deliveries")
	asJSON := fs.Bool("json", false, "print the API's answer as JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	usage := func(msg string) int {
		fmt.Fprintf(stderr, "ferry why: %s\n\n%s", msg, Usage)
		return ExitUsage
	}
	switch {
	case fs.NArg() > 0:
		return usage("unexpected arguments: " + strings.Join(fs.Args(), " "))
	case *server == "":
		return usage("--server (or FERRY_URL) is required")
	case *delivery == "" && (*repo == "" || *commit == ""):
		return usage("give --repo and --commit, or --delivery")
	}
	q := store.DeliveryQuery{Repo: *repo, SHA: *commit, DeliveryID: *delivery, Limit: *limit}
	if *ref != "" {
		q.Ref = *ref
		if !strings.HasPrefix(q.Ref, "refs/") {
			q.Ref = "refs/heads/" + q.Ref
		}
	}
	token := getenv("FERRY_DELIVERIES_API_TOKEN")
	if token == "" {
		token = getenv("FERRY_PROMOTION_API_TOKEN")
	}
	c := &deliveries.Client{BaseURL: *server, Token: token}
	page, err := c.List(ctx, q)
	if err != nil {
		fmt.Fprintln(stderr, "ferry why:", err)
		return ExitUsage
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(page)
	} else {
		Render(stdout, q, page)
	}
	if len(page.Deliveries) == 0 {
		return ExitNotFound
	}
	return ExitOK
}

const stamp = "2006-01-02 15:04:05Z"

// Render writes the chains of a page for people, newest delivery first.
func Render(w io.Writer, q store.DeliveryQuery, page deliveries.Page) {
	if len(page.Deliveries) == 0 {
		what := "delivery " + q.DeliveryID
		if q.DeliveryID == "" {
			what = q.Repo + " at " + short(q.SHA)
		}
		fmt.Fprintf(w, "no delivery recorded for %s within deliveries.retention.\n"+
			"The Git host may not have sent one: check the webhook's recent deliveries, that the repository\n"+
			"(or its organization or group) has a webhook pointing at ferry, and that the push happened.\n", what)
		return
	}
	for i, ch := range page.Deliveries {
		if i > 0 {
			fmt.Fprintln(w)
		}
		renderOne(w, ch)
	}
	if page.Next != "" {
		fmt.Fprintf(w, "\n(more deliveries: --limit, or the API's after=%s)\n", page.Next)
	}
}

func renderOne(w io.Writer, ch deliveries.Chain) {
	d := ch.Delivery
	fmt.Fprintf(w, "delivery %s  %s %s  %s\n", orDash(d.DeliveryID), d.Provider, orDash(d.Event), d.ReceivedAt.UTC().Format(stamp))
	answer := fmt.Sprintf("%d %s", d.Status, d.Outcome)
	switch {
	case d.Outcome == store.DeliveryAccepted:
		answer += ": builds " + strings.Join(d.Pipelines, ", ")
	case d.Reason != "":
		answer += ": " + d.Reason
	}
	fmt.Fprintf(w, "  answer    %s\n", answer)
	if d.Repo != "" {
		fmt.Fprintf(w, "  event     %s %s %s @ %s\n", orDash(d.EventID), d.Repo, d.Ref, short(d.SHA))
	}
	switch d.Outcome {
	case store.DeliveryRejected:
		fmt.Fprintln(w, "  next      nothing was stored; fix what the answer says, then redeliver it from the webhook's recent deliveries")
		return
	case store.DeliveryIgnored, store.DeliverySkipped, store.DeliveryPong:
		fmt.Fprintln(w, "  next      nothing was built")
		return
	}
	if len(ch.Builds) == 0 {
		fmt.Fprintln(w, "  next      no build record yet: the dispatcher has not triggered Jenkins (or the record has expired)")
		return
	}
	for _, l := range ch.Builds {
		fmt.Fprintf(w, "  pipeline  %s (Jenkins job %s)\n", l.Pipeline, l.Job)
		for _, s := range l.Steps {
			fmt.Fprintf(w, "    %s  %-9s %s\n", s.At.UTC().Format(stamp), s.Step, s.Detail)
			if s.Step == "started" && l.AgentPod != "" {
				fmt.Fprintf(w, "    %s  %-9s %s (named after queue item %d; a retry adds -2, -3)\n", strings.Repeat(" ", len(stamp)), "agent pod", l.AgentPod, l.QueueID)
			}
		}
		if l.Status != "" {
			st := l.Status
			if l.StatusDetail != "" {
				st += ": " + l.StatusDetail
			}
			fmt.Fprintf(w, "    commit status  %s\n", st)
		}
	}
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return orDash(sha)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
