package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/go-github/v60/github"

	"github.com/ferryci/ferry/pkg/event"
)

// gitHubCommitLimit is how many commits GitHub lists in a push payload;
// with that many, the list (and so the changed paths) may be cut short.
const gitHubCommitLimit = 20

type gitHub struct{ secrets [][]byte }

func newGitHub(secrets []string) *gitHub {
	g := &gitHub{}
	for _, s := range secrets {
		g.secrets = append(g.secrets, []byte(s))
	}
	return g
}

func (*gitHub) name() event.Provider { return event.GitHub }

func (*gitHub) eventType(h http.Header) string { return h.Get(github.EventTypeHeader) }

func (*gitHub) deliveryID(h http.Header) string { return h.Get(github.DeliveryIDHeader) }

// verify checks X-Hub-Signature-256 against every configured secret.
// The SHA-1 X-Hub-Signature is not accepted.
func (g *gitHub) verify(h http.Header, body []byte) error {
	sig := h.Get(github.SHA256SignatureHeader)
	if sig == "" {
		return fmt.Errorf("%w: missing %s header; set a secret on the GitHub webhook", errUnauthorized, github.SHA256SignatureHeader)
	}
	if !strings.HasPrefix(sig, "sha256=") {
		return fmt.Errorf("%w: %s must start with sha256=", errUnauthorized, github.SHA256SignatureHeader)
	}
	for _, s := range g.secrets {
		if github.ValidateSignature(sig, body, s) == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: signature does not match any configured secret", errUnauthorized)
}

func (g *gitHub) parse(h http.Header, body []byte) (outcome, error) {
	payload := body
	if ct := h.Get("Content-Type"); strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return outcome{}, fmt.Errorf("%w: form body: %w", errBadPayload, err)
		}
		if !form.Has("payload") {
			return outcome{}, fmt.Errorf("%w: the form body has no payload field", errBadPayload)
		}
		payload = []byte(form.Get("payload"))
	}
	typ := g.eventType(h)
	switch typ {
	case "push", "create", "pull_request", "ping", "issue_comment":
	case "":
		return outcome{}, fmt.Errorf("%w: missing %s header", errBadPayload, github.EventTypeHeader)
	default:
		return outcome{ignore: fmt.Sprintf("GitHub %q events are not built", printable(typ))}, nil
	}
	switch typ {
	case "ping":
		return outcome{pong: true}, nil
	case "push":
		var e ghPush
		if err := decode(payload, &e); err != nil {
			return outcome{}, fmt.Errorf("%w: push event: %w", errBadPayload, err)
		}
		return gitHubPush(e)
	case "create":
		var e ghCreate
		if err := decode(payload, &e); err != nil {
			return outcome{}, fmt.Errorf("%w: create event: %w", errBadPayload, err)
		}
		if e.RefType == "tag" {
			// A tag also arrives as a push, which carries the commit SHA;
			// building from both would build the tag twice.
			return outcome{ignore: "tags are built from their push event, which carries the commit SHA"}, nil
		}
		return outcome{ignore: fmt.Sprintf("creating a %s is not built; its pushes are", printable(e.RefType))}, nil
	case "issue_comment":
		var e ghIssueComment
		if err := decode(payload, &e); err != nil {
			return outcome{}, fmt.Errorf("%w: issue_comment event: %w", errBadPayload, err)
		}
		return gitHubComment(e)
	default: // pull_request
		var e ghPullRequest
		if err := decode(payload, &e); err != nil {
			return outcome{}, fmt.Errorf("%w: pull_request event: %w", errBadPayload, err)
		}
		return gitHubPullRequest(e)
	}
}

// Strings go-json decodes share one copy of the whole payload: keeping any
// of them keeps all of it. The event built from them lives only until it
// is stored (marshalled), so that costs nothing here; do not keep decoded
// payload strings for long.
//
// The payload types hold only the fields ferry reads. go-github's event
// types describe every field, and decoding a whole push into them cost
// ~110 µs of the receiver's ~150 µs per request; these decode in a
// fraction of that (field names as in go-github and GitHub's docs).
type ghRepo struct {
	FullName string `json:"full_name"`
	CloneURL string `json:"clone_url"`
}

type ghUser struct {
	Login string `json:"login"`
}

type ghCommit struct {
	ID       string   `json:"id"`
	Message  string   `json:"message"`
	Added    []string `json:"added"`
	Removed  []string `json:"removed"`
	Modified []string `json:"modified"`
}

type ghPush struct {
	Ref        string     `json:"ref"`
	Before     string     `json:"before"`
	After      string     `json:"after"`
	Deleted    bool       `json:"deleted"`
	Repository *ghRepo    `json:"repository"`
	HeadCommit *ghCommit  `json:"head_commit"`
	Commits    []ghCommit `json:"commits"`
	Sender     ghUser     `json:"sender"`
}

type ghCreate struct {
	Ref     string `json:"ref"`
	RefType string `json:"ref_type"`
}

type ghPullRequest struct {
	Action      string `json:"action"`
	PullRequest *struct {
		Number            int    `json:"number"`
		Title             string `json:"title"`
		User              ghUser `json:"user"`
		AuthorAssociation string `json:"author_association"`
		Head              struct {
			SHA  string  `json:"sha"`
			Repo *ghRepo `json:"repo"`
		} `json:"head"`
		Base struct {
			Ref string `json:"ref"`
		} `json:"base"`
	} `json:"pull_request"`
	Repository ghRepo `json:"repository"`
	Sender     ghUser `json:"sender"`
}

func gitHubPush(e ghPush) (outcome, error) {
	ref := e.Ref
	if e.Deleted || isZeroSHA(e.After) {
		return outcome{ignore: "deleting " + printable(ref) + " is not built"}, nil
	}
	if e.Repository == nil || e.Repository.FullName == "" {
		return outcome{}, errors.Join(errBadPayload, errors.New("push event has no repository.full_name"))
	}
	ev := event.Event{
		Ref:     ref,
		SHA:     e.After,
		Before:  e.Before,
		Repo:    e.Repository.FullName,
		RepoURL: e.Repository.CloneURL,
		Sender:  e.Sender.Login,
	}
	if e.HeadCommit != nil {
		ev.Message = e.HeadCommit.Message
	}
	switch {
	case strings.HasPrefix(ref, "refs/heads/"):
		ev.Kind = event.Push
	case strings.HasPrefix(ref, "refs/tags/"):
		ev.Kind = event.Tag
		// For an annotated tag "after" is the tag object; the commit is
		// the head commit.
		if e.HeadCommit != nil && e.HeadCommit.ID != "" {
			ev.SHA = e.HeadCommit.ID
		}
	default:
		return outcome{ignore: "ref " + printable(ref) + " is neither a branch nor a tag"}, nil
	}
	if n := len(e.Commits); n > 0 && n < gitHubCommitLimit {
		ev.ChangedPaths = changedPaths(e.Commits)
	}
	return outcome{ev: ev}, nil
}

func changedPaths(commits []ghCommit) []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range commits {
		for _, list := range [][]string{c.Added, c.Modified, c.Removed} {
			for _, p := range list {
				if !seen[p] {
					seen[p] = true
					out = append(out, p)
				}
			}
		}
	}
	// No file listed at all says nothing (GitHub omits them for some
	// merges): nil means "unknown", which filters never skip.
	return out
}

var builtPRActions = map[string]bool{"opened": true, "synchronize": true, "reopened": true}

func gitHubPullRequest(e ghPullRequest) (outcome, error) {
	action := e.Action
	if !builtPRActions[action] {
		return outcome{ignore: fmt.Sprintf("pull request action %q is not built", printable(action))}, nil
	}
	pr := e.PullRequest
	if pr == nil || pr.Head.SHA == "" {
		return outcome{}, errors.Join(errBadPayload, errors.New("pull_request event has no pull_request.head.sha"))
	}
	repoURL, urlRepo := e.Repository.CloneURL, ""
	if pr.Head.Repo != nil && pr.Head.Repo.CloneURL != "" {
		repoURL, urlRepo = pr.Head.Repo.CloneURL, pr.Head.Repo.FullName
	}
	// A head repository that is gone (null) was a fork that was deleted.
	fork := pr.Head.Repo == nil || !strings.EqualFold(pr.Head.Repo.FullName, e.Repository.FullName)
	return outcome{urlRepo: urlRepo, ev: event.Event{
		Kind:    event.PullRequest,
		Action:  action,
		Repo:    e.Repository.FullName,
		RepoURL: repoURL,
		Ref:     fmt.Sprintf("refs/pull/%d/head", pr.Number),
		SHA:     pr.Head.SHA,
		BaseRef: pr.Base.Ref,
		Number:  pr.Number,
		Message: pr.Title,
		Sender:  e.Sender.Login,

		Author:      pr.User.Login,
		Association: pr.AuthorAssociation,
		Fork:        fork,
	}}, nil
}
