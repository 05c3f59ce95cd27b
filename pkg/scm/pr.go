package scm

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/google/go-github/v60/github"

	"github.com/ferryci/ferry/pkg/event"
)

// The calls below serve the pull request trust gate and comment commands
// (package trust, package dispatch). Tokens need, on GitHub: read access
// to organization members (classic PAT: read:org; fine-grained: the
// organization's "Members: read") and to the repository's collaborators
// and metadata, plus "Issues: write"/"Pull requests: write" (classic: repo
// or public_repo) to react and reply; on GitLab: the api scope (read_api
// is enough for the membership check, not for award emoji and notes).

// IsOrgMember reports whether user is a member of the GitHub organization
// org (GET /orgs/{org}/members/{user}): 204 yes, 404 no. When the token's
// owner is not a member of org, GitHub answers 302 to the public members
// check, which the client follows: only public membership is seen then.
// A user account as owner (not an organization) answers 404.
func (g *GitHub) IsOrgMember(ctx context.Context, org, user string) (bool, error) {
	ctx, cancel := withTimeout(ctx, g.timeout)
	defer cancel()
	ok, _, err := g.client.Organizations.IsMember(ctx, org, user)
	if err != nil {
		return false, g.classifyOp(err, org, "check github organization membership")
	}
	return ok, nil
}

// Permission returns user's permission on the repository "owner/name"
// (GET /repos/{owner}/{repo}/collaborators/{user}/permission): admin,
// write, read or none (maintain is reported as write, triage as read). A
// user GitHub does not know answers 404, returned as "none".
func (g *GitHub) Permission(ctx context.Context, repo, user string) (string, error) {
	owner, name, ok := strings.Cut(repo, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		return "", fmt.Errorf("check github permission: %w: repository %q is not owner/name", ErrInvalidEvent, repo)
	}
	ctx, cancel := withTimeout(ctx, g.timeout)
	defer cancel()
	lvl, _, err := g.client.Repositories.GetPermissionLevel(ctx, owner, name, user)
	if err != nil {
		var re *github.ErrorResponse
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode == http.StatusNotFound {
			return "none", nil
		}
		return "", g.classifyOp(err, repo, "check github collaborator permission")
	}
	return lvl.GetPermission(), nil
}

// IsTeamMember reports whether user is an active member of the team
// org/slug (GET /orgs/{org}/teams/{slug}/memberships/{user}); 404 and a
// pending invitation are no.
func (g *GitHub) IsTeamMember(ctx context.Context, org, slug, user string) (bool, error) {
	ctx, cancel := withTimeout(ctx, g.timeout)
	defer cancel()
	m, _, err := g.client.Teams.GetTeamMembershipBySlug(ctx, org, slug, user)
	if err != nil {
		var re *github.ErrorResponse
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode == http.StatusNotFound {
			return false, nil
		}
		return false, g.classifyOp(err, org+"/"+slug, "check github team membership")
	}
	return m.GetState() == "active", nil
}

// React acknowledges the comment ev.CommentID with a reaction
// (POST /repos/{owner}/{repo}/issues/comments/{id}/reactions; 201 new,
// 200 when the token's user had reacted so already).
func (g *GitHub) React(ctx context.Context, ev event.Event, content string) error {
	owner, name, ok := strings.Cut(ev.Repo, "/")
	if !ok || ev.CommentID <= 0 {
		return fmt.Errorf("react on github comment: %w: repository %q, comment %d", ErrInvalidEvent, ev.Repo, ev.CommentID)
	}
	ctx, cancel := withTimeout(ctx, g.timeout)
	defer cancel()
	if _, _, err := g.client.Reactions.CreateIssueCommentReaction(ctx, owner, name, ev.CommentID, content); err != nil {
		return g.classifyOp(err, ev.Repo, "react on github comment")
	}
	return nil
}

// Reply comments on the pull request ev.Number
// (POST /repos/{owner}/{repo}/issues/{number}/comments).
func (g *GitHub) Reply(ctx context.Context, ev event.Event, body string) error {
	owner, name, ok := strings.Cut(ev.Repo, "/")
	if !ok || ev.Number <= 0 {
		return fmt.Errorf("reply on github pull request: %w: repository %q, number %d", ErrInvalidEvent, ev.Repo, ev.Number)
	}
	ctx, cancel := withTimeout(ctx, g.timeout)
	defer cancel()
	if _, _, err := g.client.Issues.CreateComment(ctx, owner, name, ev.Number, &github.IssueComment{Body: github.String(body)}); err != nil {
		return g.classifyOp(err, ev.Repo, "reply on github pull request")
	}
	return nil
}

// classifyOp classifies like SetStatus and names the operation.
func (g *GitHub) classifyOp(err error, repo, op string) error {
	cerr := g.classify(err, event.Event{Provider: event.GitHub, Repo: repo})
	var e *Error
	if errors.As(cerr, &e) {
		e.Op = op
	}
	return cerr
}

// GitLabDeveloper is GitLab's access level of a Developer; the trust gate
// asks at least this much of a project member.
const GitLabDeveloper = 30

// AccessLevel returns userID's access level on the project (path or id),
// inherited group membership included
// (GET /projects/:id/members/all/:user_id); 0 when the user is not a
// member (404).
func (g *GitLab) AccessLevel(ctx context.Context, project string, userID int64) (int, error) {
	if project == "" || userID <= 0 {
		return 0, fmt.Errorf("check gitlab membership: %w: project %q, user %d", ErrInvalidEvent, project, userID)
	}
	var m struct {
		AccessLevel int    `json:"access_level"`
		State       string `json:"state"`
	}
	ref := DeploymentRef{Provider: event.GitLab, Repo: project}
	err := g.call(ctx, http.MethodGet, "/projects/"+url.PathEscape(project)+"/members/all/"+strconv.FormatInt(userID, 10),
		nil, &m, ref, "check gitlab project membership")
	var e *Error
	if errors.As(err, &e) && e.StatusCode == http.StatusNotFound && !strings.Contains(e.Message, "Project Not Found") {
		return 0, nil // "404 Not found": not a member
	}
	if err != nil {
		return 0, err
	}
	if m.State != "" && m.State != "active" {
		return 0, nil // blocked or awaiting approval
	}
	return m.AccessLevel, nil
}

// React acknowledges the note ev.CommentID on merge request ev.Number with
// an award emoji (POST /projects/:id/merge_requests/:iid/notes/:note_id/award_emoji).
// GitLab answers 404 when the token's user awarded the same emoji already;
// that is success here.
func (g *GitLab) React(ctx context.Context, ev event.Event, name string) error {
	project := gitlabProject(ev)
	if project == "" || ev.Number <= 0 || ev.CommentID <= 0 {
		return fmt.Errorf("award gitlab emoji: %w: project %q, merge request %d, note %d", ErrInvalidEvent, project, ev.Number, ev.CommentID)
	}
	path := fmt.Sprintf("/projects/%s/merge_requests/%d/notes/%d/award_emoji", url.PathEscape(project), ev.Number, ev.CommentID)
	err := g.call(ctx, http.MethodPost, path, map[string]string{"name": name}, nil,
		DeploymentRef{Provider: event.GitLab, Repo: project}, "award gitlab emoji")
	var e *Error
	if errors.As(err, &e) && e.StatusCode == http.StatusNotFound && strings.Contains(e.Message, "has already been taken") {
		return nil
	}
	return err
}

// Reply adds a note to merge request ev.Number
// (POST /projects/:id/merge_requests/:iid/notes).
func (g *GitLab) Reply(ctx context.Context, ev event.Event, body string) error {
	project := gitlabProject(ev)
	if project == "" || ev.Number <= 0 {
		return fmt.Errorf("reply on gitlab merge request: %w: project %q, merge request %d", ErrInvalidEvent, project, ev.Number)
	}
	path := fmt.Sprintf("/projects/%s/merge_requests/%d/notes", url.PathEscape(project), ev.Number)
	return g.call(ctx, http.MethodPost, path, map[string]string{"body": body}, nil,
		DeploymentRef{Provider: event.GitLab, Repo: project}, "reply on gitlab merge request")
}

func gitlabProject(ev event.Event) string {
	if ev.ProjectID != 0 {
		return strconv.FormatInt(ev.ProjectID, 10)
	}
	return ev.Repo
}
