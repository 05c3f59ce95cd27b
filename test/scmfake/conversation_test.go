package scmfake_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/event"
	"github.com/ferryci/ferry/pkg/scm"
	"github.com/ferryci/ferry/test/scmfake"
)

// The conversation and membership endpoints, driven by ferry's own clients
// (go-github for GitHub), answer as the real APIs do.

func gitHubClient(t *testing.T, f *scmfake.GitHub, token string) *scm.GitHub {
	t.Helper()
	c, err := scm.NewGitHub(scm.GitHubConfig{Token: token, BaseURL: f.EnterpriseURL(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func statusOf(err error) int {
	var e *scm.Error
	if errors.As(err, &e) {
		return e.StatusCode
	}
	return 0
}

func TestGitHubMembership(t *testing.T) {
	t.Parallel()
	f := scmfake.NewGitHub(t)
	f.AddRepo("acme/app")
	f.AddOrgMember("acme", "mia")
	f.AddPublicOrgMember("acme", "pat")
	f.SetPermission("acme/app", "wes", "maintain")
	f.SetPermission("acme/app", "rita", "triage")
	f.AddTeamMember("acme", "release", "tom")
	c := gitHubClient(t, f, scmfake.GitHubToken)
	ctx := context.Background()

	for user, want := range map[string]bool{"mia": true, "pat": true, "eve": false} {
		if got, err := c.IsOrgMember(ctx, "acme", user); err != nil || got != want {
			t.Errorf("IsOrgMember(%s) = %v, %v; want %v", user, got, err, want)
		}
	}
	for user, want := range map[string]string{"wes": "write", "rita": "read", "eve": "none"} {
		if got, err := c.Permission(ctx, "acme/app", user); err != nil || got != want {
			t.Errorf("Permission(%s) = %q, %v; want %q", user, got, err, want)
		}
	}
	if got, err := c.IsTeamMember(ctx, "acme", "release", "tom"); err != nil || !got {
		t.Errorf("IsTeamMember(tom) = %v, %v", got, err)
	}
	if got, err := c.IsTeamMember(ctx, "acme", "release", "mia"); err != nil || got {
		t.Errorf("IsTeamMember(mia) = %v, %v; want false (404)", got, err)
	}

	// A token whose user is outside the org is redirected (302) to the
	// public membership check: a private member looks like none.
	f.TokenOutsideOrg("acme")
	if got, err := c.IsOrgMember(ctx, "acme", "mia"); err != nil || got {
		t.Errorf("IsOrgMember(private member) for an outsider = %v, %v; want false", got, err)
	}
	if got, err := c.IsOrgMember(ctx, "acme", "pat"); err != nil || !got {
		t.Errorf("IsOrgMember(public member) for an outsider = %v, %v; want true", got, err)
	}
	codes := map[int]int{}
	for _, call := range f.Calls() {
		codes[call.Code]++
	}
	if codes[http.StatusFound] != 2 {
		t.Errorf("want two 302 redirects to public_members, calls answered %v", codes)
	}
}

func TestGitHubConversationErrors(t *testing.T) {
	t.Parallel()
	f := scmfake.NewGitHub(t)
	f.AddRepo("acme/app")
	ctx := context.Background()
	bad := gitHubClient(t, f, "ghp_wrong")
	if _, err := bad.IsOrgMember(ctx, "acme", "mia"); statusOf(err) != http.StatusUnauthorized || scm.IsRetryable(err) {
		t.Errorf("bad token: %v; want a permanent 401", err)
	}
	c := gitHubClient(t, f, scmfake.GitHubToken)
	f.FailNext(1, http.StatusForbidden) // primary rate limit
	if _, err := c.Permission(ctx, "acme/app", "x"); !scm.IsRetryable(err) {
		t.Errorf("rate limited: %v; want retryable", err)
	}
	// go-github refuses locally until a primary limit resets: a new client.
	c = gitHubClient(t, f, scmfake.GitHubToken)
	f.SecondaryRateLimitNext(1, 30*time.Second)
	_, err := c.IsOrgMember(ctx, "acme", "x")
	if after, ok := scm.RetryAfter(err); !scm.IsRetryable(err) || !ok || after != 30*time.Second {
		t.Errorf("secondary limit: %v (retry after %v); want retryable after 30s", err, after)
	}
	c = gitHubClient(t, f, scmfake.GitHubToken)
	if _, err := c.Permission(ctx, "acme/unknown", "x"); err != nil {
		t.Errorf("unknown repository: %v; want none (404)", err)
	}
}

func TestGitHubReactionsAndReplies(t *testing.T) {
	t.Parallel()
	f := scmfake.NewGitHub(t)
	f.AddRepo("acme/app")
	id := f.AddComment("acme/app", 7, "/ok-to-test")
	c := gitHubClient(t, f, scmfake.GitHubToken)
	ctx := context.Background()
	ev := event.Event{Provider: event.GitHub, Repo: "acme/app", Number: 7, CommentID: id}
	for range 2 { // the same reaction again answers 200, not an error
		if err := c.React(ctx, ev, "+1"); err != nil {
			t.Fatalf("React: %v", err)
		}
	}
	if got := f.Reactions(); len(got) != 1 || got[0] != (scmfake.Reaction{Repo: "acme/app", CommentID: id, Content: "+1"}) {
		t.Errorf("reactions = %+v", got)
	}
	if err := c.React(ctx, ev, "thumbsup"); statusOf(err) != http.StatusUnprocessableEntity {
		t.Errorf("unknown content: %v; want 422", err)
	}
	missing := ev
	missing.CommentID = id + 100
	if err := c.React(ctx, missing, "+1"); statusOf(err) != http.StatusNotFound {
		t.Errorf("unknown comment: %v; want 404", err)
	}
	if err := c.Reply(ctx, ev, "ferry: closed"); err != nil {
		t.Fatalf("Reply: %v", err)
	}
	if got := f.Comments(); len(got) != 2 || got[1].Body != "ferry: closed" || got[1].Number != 7 {
		t.Errorf("comments = %+v", got)
	}
}

func gitLabClient(t *testing.T, f *scmfake.GitLab, token string) *scm.GitLab {
	t.Helper()
	c, err := scm.NewGitLab(scm.GitLabConfig{Token: token, BaseURL: f.BaseURL(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestGitLabMembersNotesAwards(t *testing.T) {
	t.Parallel()
	f := scmfake.NewGitLab(t)
	f.AddProject(15, "platform/infra/terraform")
	f.AddMember(15, 1, scmfake.GitLabReporter)
	f.AddGroupMember(15, 1, scmfake.GitLabMaintainer) // inherited, higher
	f.AddMember(15, 2, scmfake.GitLabReporter)
	c := gitLabClient(t, f, scmfake.GitLabToken)
	ctx := context.Background()
	for user, want := range map[int64]int{1: scmfake.GitLabMaintainer, 2: scmfake.GitLabReporter, 3: 0} {
		if got, err := c.AccessLevel(ctx, "platform/infra/terraform", user); err != nil || got != want {
			t.Errorf("AccessLevel(%d) = %d, %v; want %d", user, got, err, want)
		}
	}
	if _, err := c.AccessLevel(ctx, "platform/nope", 1); statusOf(err) != http.StatusNotFound {
		t.Errorf("unknown project: %v; want 404", err)
	}
	note := f.AddNote(15, 3, "/retest")
	ev := event.Event{Provider: event.GitLab, Repo: "platform/infra/terraform", ProjectID: 15, Number: 3, CommentID: note}
	for range 2 { // GitLab's 404 "already been taken" for the same emoji is success
		if err := c.React(ctx, ev, "thumbsup"); err != nil {
			t.Fatalf("React: %v", err)
		}
	}
	if got := f.Awards(); len(got) != 1 || got[0].Name != "thumbsup" || got[0].NoteID != note {
		t.Errorf("awards = %+v", got)
	}
	missing := ev
	missing.CommentID = note + 1
	if err := c.React(ctx, missing, "thumbsup"); statusOf(err) != http.StatusNotFound {
		t.Errorf("unknown note: %v; want 404", err)
	}
	if err := c.Reply(ctx, ev, "ferry: closed"); err != nil {
		t.Fatalf("Reply: %v", err)
	}
	if got := f.Notes(); len(got) != 2 || got[1].Body != "ferry: closed" {
		t.Errorf("notes = %+v", got)
	}
	if _, err := gitLabClient(t, f, "glpat-wrong").AccessLevel(ctx, "15", 1); statusOf(err) != http.StatusUnauthorized || scm.IsRetryable(err) {
		t.Errorf("bad token: %v; want a permanent 401", err)
	}
	f.FailNext(1, http.StatusTooManyRequests)
	if _, err := c.AccessLevel(ctx, "15", 1); !scm.IsRetryable(err) {
		t.Errorf("rate limited: %v; want retryable", err)
	}
}
