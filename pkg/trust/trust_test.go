package trust

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/event"
	"github.com/ferryci/ferry/pkg/scm"
)

func TestParseCommand(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body string
		want       Command
	}{
		{"alone", "/ok-to-test", OkToTest},
		{"spaces and text after", "  /retest please\n", Retest},
		{"case", "/Cancel", Cancel},
		{"among prose", "Looks fine.\n\n/ok-to-test\nthanks", OkToTest},
		{"crlf", "lgtm\r\n/retest\r\n", Retest},
		{"mid-line is no command", "please /ok-to-test this", None},
		{"unknown", "/lgtm", None},
		{"prefix of a word", "/retesting", None},
		{"fenced", "```\n/ok-to-test\n```", None},
		{"fenced tilde", "~~~sh\n/retest\n~~~", None},
		{"after the fence closes", "```\ncode\n```\n/retest", Retest},
		{"unclosed fence", "```\n/ok-to-test", None},
		{"longer fence not closed by shorter", "````\n```\n/ok-to-test\n````", None},
		{"indented code", "text\n\n    /ok-to-test", None},
		{"tab indented", "\t/retest", None},
		{"quoted", "> /ok-to-test", None},
		{"nested quote", ">> /cancel", None},
		{"quoted then own", "> /cancel\n/retest", Retest},
		{"empty", "", None},
		{"too long", "/ok-to-test\n" + strings.Repeat("x", MaxCommentChars), None},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := ParseCommand(tt.body); got != tt.want {
				t.Errorf("ParseCommand(%q) = %q, want %q", tt.body, got, tt.want)
			}
		})
	}
}

func TestGate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		f    GateFacts
		want Decision
	}{
		{"approved fork builds", GateFacts{Approved: true, Fork: true}, Build},
		{"fork held without asking", GateFacts{Fork: true}, Hold},
		{"fork of trusted author held by default", GateFacts{Fork: true, Author: Trusted}, Hold},
		{"fork asks when fork authors may be trusted", GateFacts{Fork: true, TrustForkAuthors: true}, AskAuthor},
		{"fork of trusted author builds when allowed", GateFacts{Fork: true, TrustForkAuthors: true, Author: Trusted}, Build},
		{"fork of untrusted author held", GateFacts{Fork: true, TrustForkAuthors: true, Author: Untrusted}, Hold},
		{"same repo asks", GateFacts{}, AskAuthor},
		{"same repo trusted builds", GateFacts{Author: Trusted}, Build},
		{"same repo untrusted held", GateFacts{Author: Untrusted}, Hold},
		{"unknown retries", GateFacts{Author: Unknown}, RetryLater},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, why := Gate(tt.f)
			if got != tt.want {
				t.Errorf("Gate(%+v) = %s (%s), want %s", tt.f, got, why, tt.want)
			}
			if got != AskAuthor && why == "" {
				t.Errorf("Gate(%+v) gives no reason", tt.f)
			}
		})
	}
}

func TestAct(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		f    ActFacts
		want Action
	}{
		{"no command", ActFacts{}, Nothing},
		{"asks first", ActFacts{Command: OkToTest}, AskCommenter},
		{"untrusted does nothing", ActFacts{Command: OkToTest, Commenter: Untrusted, HeadKnown: true, Held: true}, Nothing},
		{"untrusted on closed does nothing", ActFacts{Command: Retest, Commenter: Untrusted, Closed: true}, Nothing},
		{"unknown retries", ActFacts{Command: OkToTest, Commenter: Unknown}, RetryCommand},
		{"closed answered", ActFacts{Command: OkToTest, Commenter: Trusted, Closed: true, HeadKnown: true, Held: true}, AnswerClosed},
		{"closed cancel answered", ActFacts{Command: Cancel, Commenter: Trusted, Closed: true}, AnswerClosed},
		{"ok-to-test on held builds", ActFacts{Command: OkToTest, Commenter: Trusted, HeadKnown: true, Held: true}, ApproveAndBuild},
		{"ok-to-test on built approves", ActFacts{Command: OkToTest, Commenter: Trusted, HeadKnown: true}, Approve},
		{"ok-to-test without head", ActFacts{Command: OkToTest, Commenter: Trusted}, AnswerNoHead},
		{"retest builds again", ActFacts{Command: Retest, Commenter: Trusted, HeadKnown: true}, BuildAgain},
		{"retest on held answered", ActFacts{Command: Retest, Commenter: Trusted, HeadKnown: true, Held: true}, AnswerHeld},
		{"cancel", ActFacts{Command: Cancel, Commenter: Trusted}, CancelBuilds},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got, why := Act(tt.f); got != tt.want {
				t.Errorf("Act(%+v) = %s (%s), want %s", tt.f, got, why, tt.want)
			}
		})
	}
}

// fakeHosts answers the Checker's questions from maps and counts them.
type fakeHosts struct {
	members map[string]bool   // login
	perms   map[string]string // login → permission
	teams   map[string]bool   // org/slug/login
	levels  map[int64]int
	err     error
	asked   int
}

func (f *fakeHosts) IsOrgMember(_ context.Context, _, user string) (bool, error) {
	f.asked++
	return f.members[user], f.err
}

func (f *fakeHosts) Permission(_ context.Context, _, user string) (string, error) {
	f.asked++
	if f.err != nil {
		return "", f.err
	}
	if p, ok := f.perms[user]; ok {
		return p, nil
	}
	return "none", nil
}

func (f *fakeHosts) IsTeamMember(_ context.Context, org, slug, user string) (bool, error) {
	f.asked++
	return f.teams[org+"/"+slug+"/"+user], f.err
}

func (f *fakeHosts) AccessLevel(_ context.Context, _ string, id int64) (int, error) {
	f.asked++
	return f.levels[id], f.err
}

func TestChecker(t *testing.T) {
	t.Parallel()
	no := false
	membersOnly := config.Trust{Collaborators: &no}
	retryable := &scm.Error{StatusCode: 502, Retryable: true}
	permanent := &scm.Error{StatusCode: 401, Message: "Bad credentials"}
	hosts := func() *fakeHosts {
		return &fakeHosts{members: map[string]bool{"mia": true}, perms: map[string]string{"wes": "write", "rita": "read"},
			teams: map[string]bool{"acme/release/tom": true}, levels: map[int64]int{7: 30, 8: 20}}
	}
	gh := func(login, assoc string) Subject {
		return Subject{Provider: event.GitHub, Repo: "acme/app", Login: login, Association: assoc}
	}
	tests := []struct {
		name   string
		s      Subject
		policy config.Trust
		err    error
		want   Verdict
		asks   int
	}{
		{"MEMBER association proves", gh("x", "MEMBER"), config.Trust{}, nil, Trusted, 0},
		{"COLLABORATOR not for members-only", gh("x", "COLLABORATOR"), membersOnly, nil, Untrusted, 1},
		{"listed user", gh("Lee", "NONE"), config.Trust{Users: []string{"lee"}}, nil, Trusted, 0},
		{"org member by API", gh("mia", "CONTRIBUTOR"), config.Trust{}, nil, Trusted, 1},
		{"writer by API", gh("wes", "NONE"), config.Trust{}, nil, Trusted, 2},
		{"reader is not trusted", gh("rita", "NONE"), config.Trust{}, nil, Untrusted, 2},
		{"team member", gh("tom", "NONE"), config.Trust{Teams: []string{"acme/release"}}, nil, Trusted, 3},
		{"host down is unknown", gh("mia", "NONE"), config.Trust{}, retryable, Unknown, 2},
		{"bad token is untrusted", gh("mia", "NONE"), config.Trust{}, permanent, Untrusted, 2},
		{"gitlab developer", Subject{Provider: event.GitLab, Repo: "g/p", Login: "d", UserID: 7}, config.Trust{}, nil, Trusted, 1},
		{"gitlab reporter", Subject{Provider: event.GitLab, Repo: "g/p", Login: "r", UserID: 8}, config.Trust{}, nil, Untrusted, 1},
		{"gitlab non-member", Subject{Provider: event.GitLab, Repo: "g/p", Login: "n", UserID: 9}, config.Trust{}, nil, Untrusted, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := hosts()
			h.err = tt.err
			c := &Checker{GitHub: h, GitLab: h, TTL: time.Minute}
			got, why := c.Check(context.Background(), tt.s, tt.policy)
			if got != tt.want || h.asked != tt.asks {
				t.Errorf("Check = %s (%s) after %d questions, want %s after %d", got, why, h.asked, tt.want, tt.asks)
			}
		})
	}
}

func TestCheckerCachesAnswersNotFailures(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := &fakeHosts{members: map[string]bool{"mia": true}}
	c := &Checker{GitHub: h, TTL: time.Minute, Now: func() time.Time { return now }}
	s := Subject{Provider: event.GitHub, Repo: "acme/app", Login: "mia"}
	ctx := context.Background()
	for range 3 {
		if v, _ := c.Check(ctx, s, config.Trust{}); v != Trusted {
			t.Fatalf("Check = %s, want trusted", v)
		}
	}
	if h.asked != 1 {
		t.Errorf("asked %d times within the TTL, want 1", h.asked)
	}
	now = now.Add(2 * time.Minute)
	delete(h.members, "mia") // removed from the org
	if v, _ := c.Check(ctx, s, config.Trust{}); v != Untrusted {
		t.Errorf("after the TTL Check = %s, want untrusted", v)
	}
	h.err = errors.Join(&scm.Error{StatusCode: 503, Retryable: true})
	now = now.Add(2 * time.Minute)
	before := h.asked
	c.Check(ctx, s, config.Trust{})
	c.Check(ctx, s, config.Trust{})
	if h.asked-before != 4 {
		t.Errorf("failures were cached: %d questions for two checks, want 4", h.asked-before)
	}
}

func TestAwaited(t *testing.T) {
	t.Parallel()
	if got := Awaited("acme/app", config.Trust{}, event.GitHub); got != "waiting for /ok-to-test from a member of acme or a collaborator" {
		t.Errorf("Awaited = %q", got)
	}
	no := false
	if got := Awaited("acme/app", config.Trust{Collaborators: &no}, event.GitHub); got != "waiting for /ok-to-test from a member of acme" {
		t.Errorf("Awaited (members) = %q", got)
	}
	if got := Awaited("g/p", config.Trust{}, event.GitLab); len(got) > scm.GitHubDescriptionLimit || !strings.Contains(got, "Developer of g/p") {
		t.Errorf("Awaited (gitlab) = %q", got)
	}
}
