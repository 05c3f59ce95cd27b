package trust

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/event"
	"github.com/ferryci/ferry/pkg/scm"
)

// GitHubAPI is what the Checker asks GitHub (scm.GitHub implements it).
type GitHubAPI interface {
	IsOrgMember(ctx context.Context, org, user string) (bool, error)
	Permission(ctx context.Context, repo, user string) (string, error)
	IsTeamMember(ctx context.Context, org, slug, user string) (bool, error)
}

// GitLabAPI is what the Checker asks GitLab (scm.GitLab implements it).
type GitLabAPI interface {
	AccessLevel(ctx context.Context, project string, userID int64) (int, error)
}

// Subject is a user whose trust is asked, in one repository.
type Subject struct {
	Provider event.Provider
	// Repo is "owner/name" (GitLab: the project path); ProjectID is
	// GitLab's project id when known.
	Repo      string
	ProjectID int64
	// Login and, on GitLab, UserID name the user.
	Login  string
	UserID int64
	// Association is GitHub's author_association, when the payload had one.
	Association string
}

// Checker establishes a user's trust under a policy: the listed users,
// then author_association where it proves trust, then the Git host, whose
// answers it caches for TTL. Safe for concurrent use.
type Checker struct {
	GitHub GitHubAPI // nil: GitHub cannot be asked (no token)
	GitLab GitLabAPI // nil: GitLab cannot be asked (no token)
	TTL    time.Duration
	Now    func() time.Time

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	yes   bool
	until time.Time
}

// Check returns the subject's verdict under policy t and a reason fit for a
// log line. A Git host that fails in a way that may pass gives Unknown; one
// that refuses for good (bad token, forbidden) gives Untrusted with the
// error in the reason: a PR is never built because trust could not be
// checked.
func (c *Checker) Check(ctx context.Context, s Subject, t config.Trust) (Verdict, string) {
	for _, u := range t.Users {
		if strings.EqualFold(u, s.Login) && s.Login != "" {
			return Trusted, s.Login + " is listed in pullRequests.trust.users"
		}
	}
	switch s.Provider {
	case event.GitHub:
		return c.checkGitHub(ctx, s, t)
	case event.GitLab:
		return c.checkGitLab(ctx, s, t)
	}
	return Untrusted, fmt.Sprintf("provider %q has no trust check", s.Provider)
}

// AssociationProves reports whether GitHub's author_association alone
// proves trust under t.
func AssociationProves(assoc string, t config.Trust) bool {
	switch strings.ToUpper(assoc) {
	case "OWNER":
		return t.TrustsMembers() || t.TrustsCollaborators()
	case "MEMBER":
		return t.TrustsMembers()
	case "COLLABORATOR":
		return t.TrustsCollaborators()
	}
	return false
}

func (c *Checker) checkGitHub(ctx context.Context, s Subject, t config.Trust) (Verdict, string) {
	if s.Login == "" {
		return Untrusted, "the event names no user"
	}
	if AssociationProves(s.Association, t) {
		return Trusted, fmt.Sprintf("%s is %s of %s (author_association)", s.Login, strings.ToUpper(s.Association), s.Repo)
	}
	if c.GitHub == nil && (t.TrustsMembers() || t.TrustsCollaborators() || len(t.Teams) > 0) {
		return Untrusted, "no GitHub token is configured to check membership (github.token)"
	}
	owner, _, _ := strings.Cut(s.Repo, "/")
	var failed error
	if t.TrustsMembers() {
		yes, err := c.cachedAsk(ctx, "gh|org|"+owner+"|"+s.Login, func(ctx context.Context) (bool, error) {
			return c.GitHub.IsOrgMember(ctx, owner, s.Login)
		})
		if yes {
			return Trusted, fmt.Sprintf("%s is a member of %s", s.Login, owner)
		}
		failed = errors.Join(failed, err)
	}
	if t.TrustsCollaborators() {
		yes, err := c.cachedAsk(ctx, "gh|perm|"+s.Repo+"|"+s.Login, func(ctx context.Context) (bool, error) {
			p, err := c.GitHub.Permission(ctx, s.Repo, s.Login)
			return p == "admin" || p == "write" || p == "maintain", err
		})
		if yes {
			return Trusted, fmt.Sprintf("%s has write access to %s", s.Login, s.Repo)
		}
		failed = errors.Join(failed, err)
	}
	for _, team := range t.Teams {
		org, slug, _ := strings.Cut(team, "/")
		yes, err := c.cachedAsk(ctx, "gh|team|"+team+"|"+s.Login, func(ctx context.Context) (bool, error) {
			return c.GitHub.IsTeamMember(ctx, org, slug, s.Login)
		})
		if yes {
			return Trusted, fmt.Sprintf("%s is a member of team %s", s.Login, team)
		}
		failed = errors.Join(failed, err)
	}
	return verdictOf(failed, s.Login+" is none of what pullRequests.trust accepts")
}

func (c *Checker) checkGitLab(ctx context.Context, s Subject, t config.Trust) (Verdict, string) {
	if !t.TrustsMembers() && !t.TrustsCollaborators() {
		return Untrusted, s.Login + " is not listed in pullRequests.trust.users"
	}
	if c.GitLab == nil {
		return Untrusted, "no GitLab token is configured to check membership (gitlab.token)"
	}
	if s.UserID <= 0 {
		return Untrusted, "the event names no GitLab user id"
	}
	project := s.Repo
	if s.ProjectID != 0 {
		project = fmt.Sprint(s.ProjectID)
	}
	yes, err := c.cachedAsk(ctx, fmt.Sprintf("gl|member|%s|%d", project, s.UserID), func(ctx context.Context) (bool, error) {
		lvl, err := c.GitLab.AccessLevel(ctx, project, s.UserID)
		return lvl >= scm.GitLabDeveloper, err
	})
	if yes {
		return Trusted, fmt.Sprintf("%s is a member of %s with at least Developer access", s.Login, s.Repo)
	}
	return verdictOf(err, s.Login+" is not a member of "+s.Repo+" with at least Developer access")
}

// verdictOf turns the failures of the checks that did not prove trust
// into a verdict.
func verdictOf(failed error, no string) (Verdict, string) {
	if failed == nil {
		return Untrusted, no
	}
	if scm.IsRetryable(failed) {
		return Unknown, "could not ask the Git host: " + failed.Error()
	}
	return Untrusted, no + " (a check failed for good: " + failed.Error() + ")"
}

// cachedAsk answers from the cache or asks; only answers are cached, not
// failures.
func (c *Checker) cachedAsk(ctx context.Context, key string, ask func(context.Context) (bool, error)) (bool, error) {
	now := c.now()
	c.mu.Lock()
	if e, ok := c.cache[key]; ok && now.Before(e.until) {
		c.mu.Unlock()
		return e.yes, nil
	}
	c.mu.Unlock()
	yes, err := ask(ctx)
	if err != nil {
		return false, err
	}
	if c.TTL > 0 {
		c.mu.Lock()
		if c.cache == nil {
			c.cache = map[string]cached{}
		}
		for k, e := range c.cache { // keep the cache bounded by its TTL
			if !now.Before(e.until) {
				delete(c.cache, k)
			}
		}
		c.cache[key] = cached{yes: yes, until: now.Add(c.TTL)}
		c.mu.Unlock()
	}
	return yes, nil
}

func (c *Checker) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Awaited says, for a pending commit status, who may let a held pull
// request build: "waiting for /ok-to-test from a member of acme".
func Awaited(repo string, t config.Trust, provider event.Provider) string {
	owner, _, _ := strings.Cut(repo, "/")
	var who []string
	switch {
	case provider == event.GitLab && (t.TrustsMembers() || t.TrustsCollaborators()):
		who = append(who, "a Developer of "+repo)
	default:
		if t.TrustsMembers() {
			who = append(who, "a member of "+owner)
		}
		if t.TrustsCollaborators() {
			who = append(who, "a collaborator")
		}
		if len(t.Teams) > 0 {
			who = append(who, "a listed team")
		}
	}
	if len(t.Users) > 0 {
		who = append(who, "a listed user")
	}
	if len(who) == 0 {
		return "waiting for /ok-to-test from a trusted user"
	}
	return "waiting for /ok-to-test from " + strings.Join(who, " or ")
}
