package trust

// Verdict is what is known of one user's trust under one policy.
type Verdict int

// Verdicts.
const (
	// Unasked: nobody looked yet; a decision that needs it says Ask.
	Unasked Verdict = iota
	// Trusted: the association or the Git host proved trust.
	Trusted
	// Untrusted: the Git host said the user is none of what the policy
	// trusts.
	Untrusted
	// Unknown: the Git host could not be asked (down, rate limited);
	// asking again later may tell.
	Unknown
)

func (v Verdict) String() string {
	return [...]string{"unasked", "trusted", "untrusted", "unknown"}[v]
}

// Decision is what to do with a pull request's head for one pipeline.
type Decision int

// Decisions of Gate.
const (
	// Build the head now.
	Build Decision = iota
	// Hold it: record it, set a pending status naming what is awaited,
	// build it on /ok-to-test.
	Hold
	// AskAuthor: find out whether the author is trusted, then decide again.
	AskAuthor
	// RetryLater: the author's trust could not be established; keep the
	// event queued and decide again.
	RetryLater
)

func (d Decision) String() string {
	return [...]string{"build", "hold", "ask_author", "retry_later"}[d]
}

// GateFacts are the facts Gate decides on.
type GateFacts struct {
	// Approved: a trusted /ok-to-test covers this head for this pipeline
	// (see config.PullRequests.ApproveEachHead).
	Approved bool
	// Fork: the head is in another repository.
	Fork bool
	// TrustForkAuthors: the policy builds fork PRs of trusted authors.
	TrustForkAuthors bool
	// Author is the author's verdict (Unasked until asked).
	Author Verdict
}

// Gate decides whether a pull request's head builds now. An approved PR
// builds; a fork PR is held unless the policy trusts fork authors and the
// author is trusted; any other PR builds when its author is trusted.
func Gate(f GateFacts) (Decision, string) {
	switch {
	case f.Approved:
		return Build, "approved with /ok-to-test"
	case f.Fork && !f.TrustForkAuthors:
		return Hold, "the pull request comes from a fork"
	}
	switch f.Author {
	case Unasked:
		return AskAuthor, ""
	case Trusted:
		return Build, "the author is trusted"
	case Unknown:
		return RetryLater, "the author's trust could not be checked"
	default:
		if f.Fork {
			return Hold, "the pull request comes from a fork and its author is not trusted"
		}
		return Hold, "the author is not trusted"
	}
}

// Action is what a comment command does for one pipeline.
type Action int

// Actions of Act.
const (
	// Nothing: the comment changes nothing (the reason says why).
	Nothing Action = iota
	// AskCommenter: find out whether the commenter is trusted, then
	// decide again.
	AskCommenter
	// RetryCommand: the commenter's trust could not be established; keep
	// the comment queued and decide again.
	RetryCommand
	// AnswerClosed: reply that the PR is closed; do nothing else.
	AnswerClosed
	// AnswerNoHead: reply that ferry has not seen the PR's head yet.
	AnswerNoHead
	// AnswerHeld: reply that the PR needs /ok-to-test before /retest.
	AnswerHeld
	// Approve: record the approval; the head was built already.
	Approve
	// ApproveAndBuild: record the approval and build the held head.
	ApproveAndBuild
	// BuildAgain: build the head again under a new correlation id.
	BuildAgain
	// CancelBuilds: cancel the PR's queued and running builds.
	CancelBuilds
)

func (a Action) String() string {
	return [...]string{"nothing", "ask_commenter", "retry_command", "answer_closed", "answer_no_head",
		"answer_held", "approve", "approve_and_build", "build_again", "cancel_builds"}[a]
}

// ActFacts are the facts Act decides on, for one pipeline.
type ActFacts struct {
	Command Command
	// Closed: the PR is closed or merged.
	Closed bool
	// Commenter is the commenter's verdict (Unasked until asked).
	Commenter Verdict
	// HeadKnown: ferry recorded the PR's head.
	HeadKnown bool
	// Held: the head waits for /ok-to-test on this pipeline.
	Held bool
}

// Act decides what a comment command does. Only a trusted user's command
// acts; a command on a closed PR is answered and not acted on.
func Act(f ActFacts) (Action, string) {
	if f.Command == None {
		return Nothing, "the comment has no command"
	}
	switch f.Commenter {
	case Unasked:
		return AskCommenter, ""
	case Unknown:
		return RetryCommand, "the commenter's trust could not be checked"
	case Untrusted:
		return Nothing, "the commenter is not trusted by the pipeline's policy"
	}
	if f.Closed {
		return AnswerClosed, "the pull request is closed"
	}
	if f.Command == Cancel {
		return CancelBuilds, "cancel requested"
	}
	if !f.HeadKnown {
		return AnswerNoHead, "ferry has not recorded this pull request's head"
	}
	switch f.Command {
	case OkToTest:
		if f.Held {
			return ApproveAndBuild, "approved"
		}
		return Approve, "approved; the head was built already"
	default: // Retest
		if f.Held {
			return AnswerHeld, "the pull request waits for /ok-to-test"
		}
		return BuildAgain, "retest requested"
	}
}
