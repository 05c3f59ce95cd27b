package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/event"
	"github.com/ferryci/ferry/pkg/jenkins"
	"github.com/ferryci/ferry/pkg/scm"
	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/pkg/trust"
)

// The trust gate and the cancellation of superseded builds.
//
// Each pull request (and each branch of a pipeline that cancels superseded
// pushes) has a store.RefState: its newest head, which pipelines hold that
// head for a trusted /ok-to-test, and the approvals. The dispatcher
//
//  1. notes the event's head in it, unless a newer one is known
//     (noteHead; the newest ReceivedAt wins, with a revision check);
//  2. per pipeline, decides with trust.Gate whether the head builds now
//     (admit); a held head gets a pending status naming what is awaited;
//  3. after recording a trigger, re-reads the newest head and cancels the
//     pipeline's builds of the ref for any other commit (supersede). Each
//     trigger does step 3 after its own record is written, so of two
//     racing pushes the later one to finish sees the other's build.
//
// Comment commands (command) are decided by trust.Act.

// PRHost acknowledges and answers comment commands on one Git host
// (scm.GitHub, scm.GitLab).
type PRHost interface {
	React(ctx context.Context, ev event.Event, content string) error
	Reply(ctx context.Context, ev event.Event, body string) error
}

// Ends of builds ferry cancelled itself (Build.Result).
const (
	resultSuperseded = "FERRY_SUPERSEDED"
	resultCommand    = "FERRY_CANCEL_COMMAND"
)

// tracksHead reports whether ev's ref needs a RefState for p.
func tracksHead(ev event.Event, p config.Pipeline) bool {
	switch ev.Kind {
	case event.PullRequest:
		return true
	case event.Push:
		return p.CancelSupersededPushes
	}
	return false
}

// cancelsSuperseded reports whether a newer head cancels p's older builds.
func cancelsSuperseded(ev event.Event, p config.Pipeline) bool {
	switch ev.Kind {
	case event.PullRequest:
		return p.CancelSupersededPRs()
	case event.Push:
		return p.CancelSupersededPushes
	}
	return false
}

func refKey(ev event.Event) string { return store.RefKey(ev.Provider, ev.Repo, ev.Ref) }

// updateRef applies change to the ref's state and writes it, again on a
// concurrent change; change returns false to write nothing. Store failures
// are retried until ctx ends.
func (d *Dispatcher) updateRef(ctx context.Context, key string, log *slog.Logger, change func(*store.RefState) bool) (store.RefState, error) {
	b := d.backoff()
	for {
		st, err := d.cfg.Store.GetRef(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			st, err = store.RefState{Key: key}, nil
		}
		if err == nil {
			if !change(&st) {
				return st, nil
			}
			st.UpdatedAt = d.cfg.Now()
			var put store.RefState
			put, err = d.cfg.Store.PutRef(ctx, st)
			if err == nil {
				return put, nil
			}
			if errors.Is(err, store.ErrConflict) {
				continue
			}
		}
		if ctx.Err() != nil {
			return store.RefState{}, ctx.Err()
		}
		wait := b.next()
		log.Warn("could not update the pull request's record; retrying", "ref_key", key, "error", err, "retry_in", wait)
		if !sleep(ctx, wait) {
			return store.RefState{}, ctx.Err()
		}
	}
}

// noteHead records ev as its ref's head unless a newer head is known, and
// returns the ref's state (zero when no pipeline tracks it).
func (d *Dispatcher) noteHead(ctx context.Context, ev event.Event, pipes []config.Pipeline, log *slog.Logger) (store.RefState, error) {
	tracked := false
	for _, p := range pipes {
		tracked = tracked || tracksHead(ev, p)
	}
	if !tracked {
		return store.RefState{}, nil
	}
	return d.updateRef(ctx, refKey(ev), log, func(st *store.RefState) bool {
		if st.Head.SHA == ev.SHA || st.Head.ReceivedAt.After(ev.ReceivedAt) {
			return false
		}
		st.Head = ev
		st.Held = nil // held flags are for the head they were set for
		return true
	})
}

// admit decides whether p builds ev now. A held pull request gets a
// pending status saying what it waits for; a head that a newer one
// superseded before it was built is not built and says so.
func (d *Dispatcher) admit(ctx context.Context, ev event.Event, p config.Pipeline, head store.RefState, log *slog.Logger) (bool, error) {
	if !tracksHead(ev, p) {
		return true, nil
	}
	log = log.With("pipeline", p.Name)
	if cancelsSuperseded(ev, p) && head.Head.SHA != "" && head.Head.SHA != ev.SHA {
		by := shortSHA(head.Head.SHA)
		log.Info("not building a head already superseded", "superseded_by", by)
		_ = d.report(ctx, ev, p.Name, scm.Status{State: scm.StateCanceled, Description: "canceled: superseded by " + by}, "")
		return false, nil
	}
	if ev.Kind != event.PullRequest {
		return true, nil
	}
	pol := p.PullRequests
	a, approved := head.Approved[p.Name]
	f := trust.GateFacts{
		Approved:         approved && (!pol.ApproveEachHead || a.SHA == ev.SHA),
		Fork:             ev.Fork,
		TrustForkAuthors: pol.Trust.TrustsForkAuthors(),
	}
	b := d.backoff()
	why := ""
	for {
		dec, reason := trust.Gate(f)
		switch dec {
		case trust.AskAuthor:
			f.Author, why = d.cfg.Trust.Check(ctx, authorOf(ev), pol.Trust)
			continue
		case trust.RetryLater:
			wait := b.next()
			log.Warn("could not check whether the pull request's author is trusted; retrying", "author", ev.Author, "why", why, "retry_in", wait)
			if !sleep(ctx, wait) {
				return false, ctx.Err()
			}
			f.Author = trust.Unasked
			continue
		case trust.Build:
			log.Info("pull request admitted", "reason", reason, "author", ev.Author, "trust", why)
			return true, nil
		}
		// Hold.
		if _, err := d.updateRef(ctx, refKey(ev), log, func(st *store.RefState) bool {
			if st.Head.SHA != ev.SHA || st.Held[p.Name] {
				return false
			}
			if st.Held == nil {
				st.Held = map[string]bool{}
			}
			st.Held[p.Name] = true
			return true
		}); err != nil {
			return false, err
		}
		desc := trust.Awaited(ev.Repo, pol.Trust, ev.Provider)
		log.Info("pull request held for a trusted go-ahead", "reason", reason, "author", ev.Author, "trust", why, "fork", ev.Fork, "awaiting", desc)
		_ = d.report(ctx, ev, p.Name, scm.Status{State: scm.StatePending, Description: desc}, "")
		return false, nil
	}
}

// authorOf is the PR author as the trust check asks about them. On GitLab
// the membership asked is the target project's (the path; the event's
// project id is the source project's).
func authorOf(ev event.Event) trust.Subject {
	return trust.Subject{Provider: ev.Provider, Repo: ev.Repo, Login: ev.Author, UserID: ev.AuthorID, Association: ev.Association}
}

// supersede cancels p's builds of ev's ref for any commit but the ref's
// newest head, when p asks for it. Failures are logged: the builds then
// run to their end.
func (d *Dispatcher) supersede(ctx context.Context, ev event.Event, p config.Pipeline, log *slog.Logger) error {
	if !cancelsSuperseded(ev, p) {
		return nil
	}
	st, err := d.cfg.Store.GetRef(ctx, refKey(ev))
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Warn("could not read the newest head; older builds are not cancelled", "error", err)
		return nil
	}
	head := st.Head.SHA
	if head == "" {
		return nil
	}
	d.cancelBuilds(ctx, ev, p, func(b store.Build) bool { return b.Event.SHA != head },
		resultSuperseded, shortSHA(head), log)
	return nil
}

// cancelBuilds ends p's live builds of ev's ref that match: the record
// first gets its end (so the tracker reports it, not Jenkins' ABORTED),
// then the queue item is cancelled or the build stopped, and the end is
// reported. A build still being triggered (no queue item yet) is left to
// its own worker, which checks the head after it records the trigger.
func (d *Dispatcher) cancelBuilds(ctx context.Context, ev event.Event, p config.Pipeline, match func(store.Build) bool, result, by string, log *slog.Logger) int {
	builds, err := d.cfg.Store.ListBuilds(ctx)
	if err != nil {
		log.Warn("could not list builds to cancel", "error", err)
		return 0
	}
	n := 0
	for _, b := range builds {
		if b.Pipeline != p.Name || b.Result != "" || b.Pending() || b.Event.Provider != ev.Provider ||
			b.Event.Repo != ev.Repo || b.Event.Ref != ev.Ref || !match(b) {
			continue
		}
		l := log.With("key", b.Key, "sha", b.Event.SHA, "queue_id", b.QueueID, "number", b.Number)
		b.Result, b.CanceledBy, b.UpdatedAt = result, by, d.cfg.Now()
		if err := d.cfg.Store.PutBuild(ctx, b); err != nil {
			l.Warn("could not record the cancellation; the build runs on", "error", err)
			continue
		}
		if err := d.stop(ctx, b); err != nil {
			l.Warn("could not cancel the build in Jenkins; its status says cancelled all the same", "error", err)
		} else {
			l.Info("cancelled a build", "result", result, "by", by)
		}
		n++
		if err := d.reportEnd(ctx, b); err != nil {
			l.Debug("the cancellation's status is retried by the tracker", "error", err)
		}
	}
	return n
}

// stop cancels a queue item, or stops its build once it started.
// Jenkins answers an item that already left the queue with 404; its build
// is then found through the (left) item and stopped. Stopping a build that
// ended is a no-op in Jenkins.
func (d *Dispatcher) stop(ctx context.Context, b store.Build) error {
	number := b.Number
	if number == 0 {
		err := d.cfg.Jenkins.CancelQueueItem(ctx, b.QueueID)
		if err == nil {
			return nil
		}
		if !errors.Is(err, jenkins.ErrNotFound) && !errors.Is(err, jenkins.ErrNotCancellable) {
			return err
		}
		item, qerr := d.cfg.Jenkins.QueueItem(ctx, b.QueueID)
		if qerr != nil {
			return fmt.Errorf("%w; then %w", err, qerr)
		}
		if item.Cancelled {
			return nil
		}
		if number = item.Executable.Number; number == 0 {
			return err
		}
	}
	return d.cfg.Jenkins.StopBuild(ctx, b.Job, number)
}

func shortSHA(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}

// command carries out a comment command for every pipeline that builds
// the pull request, then acknowledges it on the Git host. It returns an
// error only when ctx ended first.
func (d *Dispatcher) command(ctx context.Context, e store.Entry, log *slog.Logger) error {
	ev := e.Event
	cmd := trust.Command(ev.Command)
	log = log.With("command", "/"+ev.Command, "commenter", ev.Author, "number", ev.Number)
	pipes, reason := d.cfg.Matcher.Match(ev)
	if len(pipes) == 0 {
		log.Info("no pipeline builds this pull request; the command does nothing", "reason", reason)
		return nil
	}
	var st store.RefState
	known := false
	b := d.backoff()
	for {
		var err error
		st, err = d.cfg.Store.GetRef(ctx, refKey(ev))
		if err == nil || errors.Is(err, store.ErrNotFound) {
			known = err == nil && st.Head.SHA != ""
			break
		}
		wait := b.next()
		log.Warn("could not read the pull request's record; retrying", "error", err, "retry_in", wait)
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
	}
	replies := map[string]bool{}
	acted := false
	for _, p := range pipes {
		l := log.With("pipeline", p.Name)
		f := trust.ActFacts{Command: cmd, Closed: ev.Closed, HeadKnown: known, Held: st.Held[p.Name]}
		why := ""
		retry := d.backoff()
		var act trust.Action
		for {
			var reason string
			act, reason = trust.Act(f)
			if act == trust.AskCommenter {
				f.Commenter, why = d.cfg.Trust.Check(ctx, commenterOf(ev), p.PullRequests.Trust)
				continue
			}
			if act == trust.RetryCommand {
				wait := retry.next()
				l.Warn("could not check whether the commenter is trusted; retrying", "why", why, "retry_in", wait)
				if !sleep(ctx, wait) {
					return ctx.Err()
				}
				f.Commenter = trust.Unasked
				continue
			}
			if why != "" {
				reason += " (" + why + ")"
			}
			l = l.With("action", act.String(), "reason", reason)
			break
		}
		switch act {
		case trust.Nothing:
			l.Info("comment command changes nothing")
		case trust.AnswerClosed:
			l.Info("comment command on a closed pull request answered, not acted on")
			replies["ferry: `/"+ev.Command+"` was not acted on: this pull request is closed."] = true
		case trust.AnswerNoHead:
			l.Info("comment command answered: no head recorded")
			replies["ferry: `/"+ev.Command+"` was not acted on: ferry has not seen this pull request's head yet; push a commit to it."] = true
		case trust.AnswerHeld:
			l.Info("comment command answered: the pull request waits for /ok-to-test")
			replies["ferry: `/retest` needs an `/ok-to-test` from a trusted user first."] = true
		case trust.Approve, trust.ApproveAndBuild:
			if act == trust.ApproveAndBuild {
				if err := d.buildHead(ctx, e, st.Head, p, l); err != nil {
					return err
				}
			}
			if err := d.approve(ctx, ev, st.Head.SHA, p, l); err != nil {
				return err
			}
			acted = true
		case trust.BuildAgain:
			if err := d.buildHead(ctx, e, st.Head, p, l); err != nil {
				return err
			}
			acted = true
		case trust.CancelBuilds:
			n := d.cancelBuilds(ctx, ev, p, func(store.Build) bool { return true }, resultCommand, "/cancel from @"+ev.Author, l)
			l.Info("cancelled the pull request's builds on command", "builds", n)
			acted = true
		}
	}
	d.answer(ctx, ev, acted, replies, log)
	return nil
}

// commenterOf is the commenter as the trust check asks about them.
func commenterOf(ev event.Event) trust.Subject {
	return trust.Subject{Provider: ev.Provider, Repo: ev.Repo, Login: ev.Author, UserID: ev.AuthorID, Association: ev.Association}
}

// buildHead triggers p for the pull request's recorded head under the
// comment's event id: a new correlation id, built exactly once however
// often the comment is redelivered or its entry reclaimed.
func (d *Dispatcher) buildHead(ctx context.Context, e store.Entry, head event.Event, p config.Pipeline, log *slog.Logger) error {
	build := head
	build.ID = e.Event.ID
	build.DeliveryID = e.Event.DeliveryID
	build.ReceivedAt = e.Event.ReceivedAt
	build.TraceParent = e.Event.TraceParent
	err := d.triggerOnce(ctx, store.Entry{ID: e.ID, Event: build, Deliveries: e.Deliveries}, p, log)
	if err != nil && !errors.Is(err, errGaveUp) {
		return err
	}
	log.Info("built the pull request's head on command", "sha", head.SHA, "build_event", build.ID)
	return d.supersede(ctx, build, p, log)
}

// approve records a trusted /ok-to-test for p and clears p's hold.
func (d *Dispatcher) approve(ctx context.Context, ev event.Event, sha string, p config.Pipeline, log *slog.Logger) error {
	_, err := d.updateRef(ctx, refKey(ev), log, func(st *store.RefState) bool {
		if st.Approved == nil {
			st.Approved = map[string]store.Approval{}
		}
		st.Approved[p.Name] = store.Approval{By: ev.Author, SHA: sha, At: d.cfg.Now()}
		if st.Head.SHA == sha && st.Held[p.Name] {
			st.Held = maps.Clone(st.Held)
			delete(st.Held, p.Name)
		}
		return true
	})
	if err == nil {
		log.Info("pull request approved", "approved_by", ev.Author, "sha", sha)
	}
	return err
}

// answer reacts to a command that acted and replies what did not; a Git
// host that refuses is logged, the command stands.
func (d *Dispatcher) answer(ctx context.Context, ev event.Event, acted bool, replies map[string]bool, log *slog.Logger) {
	h := d.cfg.PRHosts[ev.Provider]
	if h == nil {
		return
	}
	if acted {
		emoji := "+1"
		if ev.Provider == event.GitLab {
			emoji = "thumbsup"
		}
		if err := h.React(ctx, ev, emoji); err != nil {
			log.Warn("could not acknowledge the command with a reaction", "error", err)
		}
	}
	msgs := slices.Sorted(maps.Keys(replies)) // one reply, the same on every retry
	if len(msgs) == 0 {
		return
	}
	if err := h.Reply(ctx, ev, strings.Join(msgs, "\n\n")); err != nil {
		log.Warn("could not answer the command", "error", err)
	}
}
