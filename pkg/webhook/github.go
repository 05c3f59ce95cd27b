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

// zeroSHA is the "after" of a push that deleted its ref.
const zeroSHA = "0000000000000000000000000000000000000000"

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
		payload = []byte(form.Get("payload"))
	}
	typ := g.eventType(h)
	switch typ {
	case "push", "create", "pull_request", "ping":
	case "":
		return outcome{}, fmt.Errorf("%w: missing %s header", errBadPayload, github.EventTypeHeader)
	default:
		return outcome{ignore: fmt.Sprintf("GitHub %q events are not built", typ)}, nil
	}
	raw, err := github.ParseWebHook(typ, payload)
	if err != nil {
		return outcome{}, fmt.Errorf("%w: %s event: %w", errBadPayload, typ, err)
	}
	switch e := raw.(type) {
	case *github.PingEvent:
		return outcome{pong: true}, nil
	case *github.PushEvent:
		return gitHubPush(e)
	case *github.CreateEvent:
		if e.GetRefType() == "tag" {
			// A tag also arrives as a push, which carries the commit SHA;
			// building from both would build the tag twice.
			return outcome{ignore: "tags are built from their push event, which carries the commit SHA"}, nil
		}
		return outcome{ignore: fmt.Sprintf("creating a %s is not built; its pushes are", e.GetRefType())}, nil
	case *github.PullRequestEvent:
		return gitHubPullRequest(e)
	}
	return outcome{}, fmt.Errorf("%w: unexpected %s payload", errBadPayload, typ)
}

func gitHubPush(e *github.PushEvent) (outcome, error) {
	ref := e.GetRef()
	if e.GetDeleted() || e.GetAfter() == zeroSHA {
		return outcome{ignore: "deleting " + ref + " is not built"}, nil
	}
	if e.Repo == nil || e.GetRepo().GetFullName() == "" {
		return outcome{}, errors.Join(errBadPayload, errors.New("push event has no repository.full_name"))
	}
	ev := event.Event{
		Ref:     ref,
		SHA:     e.GetAfter(),
		Before:  e.GetBefore(),
		Repo:    e.GetRepo().GetFullName(),
		RepoURL: e.GetRepo().GetCloneURL(),
		Sender:  e.GetSender().GetLogin(),
	}
	if hc := e.GetHeadCommit(); hc != nil {
		ev.Message = hc.GetMessage()
	}
	switch {
	case strings.HasPrefix(ref, "refs/heads/"):
		ev.Kind = event.Push
	case strings.HasPrefix(ref, "refs/tags/"):
		ev.Kind = event.Tag
		// For an annotated tag "after" is the tag object; the commit is
		// the head commit.
		if id := e.GetHeadCommit().GetID(); id != "" {
			ev.SHA = id
		}
	default:
		return outcome{ignore: "ref " + ref + " is neither a branch nor a tag"}, nil
	}
	if n := len(e.Commits); n > 0 && n < gitHubCommitLimit {
		ev.ChangedPaths = changedPaths(e.Commits)
	}
	return outcome{ev: ev}, nil
}

func changedPaths(commits []*github.HeadCommit) []string {
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

func gitHubPullRequest(e *github.PullRequestEvent) (outcome, error) {
	action := e.GetAction()
	if !builtPRActions[action] {
		return outcome{ignore: fmt.Sprintf("pull request action %q is not built", action)}, nil
	}
	pr := e.GetPullRequest()
	if pr == nil || pr.GetHead().GetSHA() == "" {
		return outcome{}, errors.Join(errBadPayload, errors.New("pull_request event has no pull_request.head.sha"))
	}
	repoURL := pr.GetHead().GetRepo().GetCloneURL()
	if repoURL == "" {
		repoURL = e.GetRepo().GetCloneURL()
	}
	return outcome{ev: event.Event{
		Kind:    event.PullRequest,
		Action:  action,
		Repo:    e.GetRepo().GetFullName(),
		RepoURL: repoURL,
		Ref:     fmt.Sprintf("refs/pull/%d/head", pr.GetNumber()),
		SHA:     pr.GetHead().GetSHA(),
		BaseRef: pr.GetBase().GetRef(),
		Number:  pr.GetNumber(),
		Message: pr.GetTitle(),
		Sender:  e.GetSender().GetLogin(),
	}}, nil
}
