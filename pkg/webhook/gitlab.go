package webhook

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/ferryci/ferry/pkg/event"
)

// GitLab's webhook headers.
const (
	gitLabEventHeader       = "X-Gitlab-Event"
	gitLabTokenHeader       = "X-Gitlab-Token" //nolint:gosec // a header name, not a credential
	gitLabIdempotencyHeader = "Idempotency-Key"
	gitLabUUIDHeader        = "X-Gitlab-Webhook-UUID"
)

// gitLabCommitLimit is how many commits GitLab lists in a push payload.
const gitLabCommitLimit = 20

type gitLab struct{ tokens [][sha256.Size]byte }

func newGitLab(tokens []string) *gitLab {
	g := &gitLab{}
	for _, t := range tokens {
		g.tokens = append(g.tokens, sha256.Sum256([]byte(t)))
	}
	return g
}

func (*gitLab) name() event.Provider { return event.GitLab }

func (*gitLab) eventType(h http.Header) string { return h.Get(gitLabEventHeader) }

// deliveryID prefers Idempotency-Key, which stays the same across GitLab's
// retries of one delivery; X-Gitlab-Webhook-UUID is unique per request.
func (*gitLab) deliveryID(h http.Header) string {
	if k := h.Get(gitLabIdempotencyHeader); k != "" {
		return k
	}
	return h.Get(gitLabUUIDHeader)
}

// verify compares X-Gitlab-Token with each configured token in constant
// time; hashing first makes the comparison independent of the lengths.
func (g *gitLab) verify(h http.Header, _ []byte) error {
	tok := h.Get(gitLabTokenHeader)
	if tok == "" {
		return fmt.Errorf("%w: missing %s header; set a secret token on the GitLab webhook", errUnauthorized, gitLabTokenHeader)
	}
	got := sha256.Sum256([]byte(tok))
	ok := 0
	for _, want := range g.tokens {
		ok |= subtle.ConstantTimeCompare(got[:], want[:])
	}
	if ok != 1 {
		return fmt.Errorf("%w: token does not match any configured token", errUnauthorized)
	}
	return nil
}

type glProject struct {
	ID                int64  `json:"id"`
	PathWithNamespace string `json:"path_with_namespace"`
	GitHTTPURL        string `json:"git_http_url"`
}

type glCommit struct {
	ID       string   `json:"id"`
	Message  string   `json:"message"`
	Added    []string `json:"added"`
	Modified []string `json:"modified"`
	Removed  []string `json:"removed"`
}

type glPush struct {
	ObjectKind        string     `json:"object_kind"`
	Ref               string     `json:"ref"`
	Before            string     `json:"before"`
	After             string     `json:"after"`
	CheckoutSHA       *string    `json:"checkout_sha"`
	UserUsername      string     `json:"user_username"`
	ProjectID         int64      `json:"project_id"`
	Project           glProject  `json:"project"`
	Commits           []glCommit `json:"commits"`
	TotalCommitsCount int        `json:"total_commits_count"`
}

type glMergeRequest struct {
	ObjectKind string `json:"object_kind"`
	User       struct {
		Username string `json:"username"`
	} `json:"user"`
	Project          glProject `json:"project"`
	ObjectAttributes struct {
		IID             int       `json:"iid"`
		AuthorID        int64     `json:"author_id"`
		TargetProjectID int64     `json:"target_project_id"`
		Action          string    `json:"action"`
		OldRev          string    `json:"oldrev"`
		Title           string    `json:"title"`
		SourceBranch    string    `json:"source_branch"`
		TargetBranch    string    `json:"target_branch"`
		SourceProjectID int64     `json:"source_project_id"`
		Source          glProject `json:"source"`
		LastCommit      glCommit  `json:"last_commit"`
	} `json:"object_attributes"`
}

func (g *gitLab) parse(h http.Header, body []byte) (outcome, error) {
	typ := g.eventType(h)
	switch typ {
	case "Push Hook", "Tag Push Hook":
		var p glPush
		if err := decode(body, &p); err != nil {
			return outcome{}, fmt.Errorf("%w: %s: %w", errBadPayload, typ, err)
		}
		return gitLabPush(typ, p)
	case "Merge Request Hook":
		var m glMergeRequest
		if err := decode(body, &m); err != nil {
			return outcome{}, fmt.Errorf("%w: %s: %w", errBadPayload, typ, err)
		}
		return gitLabMergeRequest(m)
	case "Note Hook":
		var n glNote
		if err := decode(body, &n); err != nil {
			return outcome{}, fmt.Errorf("%w: %s: %w", errBadPayload, typ, err)
		}
		return gitLabNote(n)
	case "":
		return outcome{}, fmt.Errorf("%w: missing %s header", errBadPayload, gitLabEventHeader)
	default:
		return outcome{ignore: fmt.Sprintf("GitLab %q events are not built", printable(typ))}, nil
	}
}

func gitLabPush(typ string, p glPush) (outcome, error) {
	if isZeroSHA(p.After) {
		return outcome{ignore: "deleting " + printable(p.Ref) + " is not built"}, nil
	}
	if p.Project.PathWithNamespace == "" {
		return outcome{}, errors.Join(errBadPayload, errors.New(typ+" has no project.path_with_namespace"))
	}
	ev := event.Event{
		Ref:       p.Ref,
		SHA:       p.After,
		Before:    p.Before,
		Repo:      p.Project.PathWithNamespace,
		RepoURL:   p.Project.GitHTTPURL,
		ProjectID: p.ProjectID,
		Sender:    p.UserUsername,
	}
	if ev.ProjectID == 0 {
		ev.ProjectID = p.Project.ID
	}
	// checkout_sha is the commit; for an annotated tag "after" is the tag
	// object.
	if p.CheckoutSHA != nil && *p.CheckoutSHA != "" {
		ev.SHA = *p.CheckoutSHA
	}
	switch {
	case typ == "Tag Push Hook" || strings.HasPrefix(p.Ref, "refs/tags/"):
		ev.Kind = event.Tag
	case strings.HasPrefix(p.Ref, "refs/heads/"):
		ev.Kind = event.Push
	default:
		return outcome{ignore: "ref " + printable(p.Ref) + " is neither a branch nor a tag"}, nil
	}
	for _, c := range p.Commits {
		if c.ID == ev.SHA {
			ev.Message = c.Message
		}
	}
	if n := len(p.Commits); n > 0 && n < gitLabCommitLimit && p.TotalCommitsCount <= n {
		seen := map[string]bool{}
		for _, c := range p.Commits {
			for _, list := range [][]string{c.Added, c.Modified, c.Removed} {
				for _, f := range list {
					if !seen[f] {
						seen[f] = true
						ev.ChangedPaths = append(ev.ChangedPaths, f)
					}
				}
			}
		}
	}
	return outcome{ev: ev}, nil
}

// GitLab MR actions that bring new code. "update" counts only when it
// carries oldrev, i.e. new commits (not a title or label change).
func gitLabMergeRequest(m glMergeRequest) (outcome, error) {
	a := m.ObjectAttributes
	switch {
	case a.Action == "open" || a.Action == "reopen":
	case a.Action == "update" && a.OldRev != "":
	case a.Action == "update":
		return outcome{ignore: "merge request update without new commits is not built"}, nil
	default:
		return outcome{ignore: fmt.Sprintf("merge request action %q is not built", printable(a.Action))}, nil
	}
	if a.LastCommit.ID == "" || m.Project.PathWithNamespace == "" {
		return outcome{}, errors.Join(errBadPayload, errors.New("merge request hook lacks object_attributes.last_commit.id or project.path_with_namespace"))
	}
	repoURL, urlRepo := a.Source.GitHTTPURL, a.Source.PathWithNamespace
	if repoURL == "" {
		repoURL, urlRepo = m.Project.GitHTTPURL, ""
	}
	pid := a.SourceProjectID
	if pid == 0 {
		pid = m.Project.ID
	}
	target := a.TargetProjectID
	if target == 0 {
		target = m.Project.ID
	}
	fork := a.SourceProjectID != 0 && a.SourceProjectID != target
	return outcome{urlRepo: urlRepo, ev: event.Event{
		Kind:      event.PullRequest,
		Action:    a.Action,
		Repo:      m.Project.PathWithNamespace,
		RepoURL:   repoURL,
		ProjectID: pid,
		Ref:       fmt.Sprintf("refs/merge-requests/%d/head", a.IID),
		SHA:       a.LastCommit.ID,
		BaseRef:   a.TargetBranch,
		Number:    a.IID,
		Message:   a.LastCommit.Message,
		Sender:    m.User.Username,

		Author:   m.User.Username,
		AuthorID: a.AuthorID,
		Fork:     fork,
	}}, nil
}
