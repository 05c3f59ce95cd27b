// Package event holds ferry's normalized description of a Git change: what the
// webhook receiver produces and the dispatcher consumes. It is provider
// neutral; GitHub- and GitLab-specific payloads are turned into an Event by
// package webhook.
package event

import (
	"fmt"
	json "github.com/goccy/go-json"
	"strings"
	"time"
)

// Provider names the Git host that sent an event.
type Provider string

// Known providers.
const (
	GitHub Provider = "github"
	GitLab Provider = "gitlab"
)

// Kind says what happened in the repository.
type Kind string

// Kinds that ferry builds.
const (
	Push        Kind = "push"         // commits pushed to a branch
	Tag         Kind = "tag"          // a tag pushed or created
	PullRequest Kind = "pull_request" // a PR/MR opened, reopened or updated
	// Comment is a command (/ok-to-test, /retest, /cancel) in a comment
	// on a PR/MR; it is never built itself, it acts on the PR's builds.
	Comment Kind = "comment"
)

// Event is one buildable change, normalized across providers.
type Event struct {
	// ID is ferry's own identifier of the event; it is stable for one
	// delivery (provider + delivery id), so a redelivery maps to the same ID.
	ID string `json:"id"`
	// Provider is the Git host.
	Provider Provider `json:"provider"`
	// DeliveryID is the provider's id of the delivery (GitHub
	// X-GitHub-Delivery, GitLab Idempotency-Key or X-Gitlab-Webhook-UUID).
	DeliveryID string `json:"delivery_id"`
	// Kind is push, tag or pull_request.
	Kind Kind `json:"kind"`
	// Action is the provider's action for pull requests (opened,
	// synchronize, reopened; GitLab open, update, reopen).
	Action string `json:"action,omitempty"`
	// Repo is the repository's full path, "owner/name" (GitLab: the
	// namespace path, which may have several segments).
	Repo string `json:"repo"`
	// RepoURL is the clone URL that Jenkins should fetch from.
	RepoURL string `json:"repo_url"`
	// ProjectID is GitLab's numeric project id (0 for GitHub).
	ProjectID int64 `json:"project_id,omitempty"`
	// Ref is the full Git ref: refs/heads/main, refs/tags/v1.0,
	// refs/pull/7/head (GitHub) or refs/merge-requests/7/head (GitLab).
	Ref string `json:"ref"`
	// SHA is the exact commit to build.
	SHA string `json:"sha"`
	// Before is the previous tip of the ref for pushes (may be empty).
	Before string `json:"before,omitempty"`
	// BaseRef is the target branch of a pull request.
	BaseRef string `json:"base_ref,omitempty"`
	// Number is the pull/merge request number.
	Number int `json:"number,omitempty"`
	// Message is the head commit's message (or the PR title).
	Message string `json:"message,omitempty"`
	// ChangedPaths lists the files the push touched, when the payload says.
	ChangedPaths []string `json:"changed_paths,omitempty"`
	// Sender is the login of whoever caused the event.
	Sender string `json:"sender,omitempty"`
	// Author is the login of the PR's author (pull_request) or of the
	// comment's author (comment); AuthorID is GitLab's numeric user id.
	Author   string `json:"author,omitempty"`
	AuthorID int64  `json:"author_id,omitempty"`
	// Association is GitHub's author_association of Author with the
	// repository (OWNER, MEMBER, COLLABORATOR, CONTRIBUTOR, NONE…).
	Association string `json:"association,omitempty"`
	// Fork is set for a PR whose head is in another repository.
	Fork bool `json:"fork,omitempty"`
	// Command is the PR command a comment carries (ok-to-test, retest,
	// cancel); CommentID is the comment's (GitHub) or note's (GitLab) id.
	Command   string `json:"command,omitempty"`
	CommentID int64  `json:"comment_id,omitempty"`
	// Closed is set for a comment on a PR/MR that is closed or merged.
	Closed bool `json:"closed,omitempty"`
	// ReceivedAt is when ferry accepted the delivery.
	ReceivedAt time.Time `json:"received_at"`
	// TraceParent is the W3C traceparent of the span that received the
	// event, so the dispatch and the build join the same trace.
	TraceParent string `json:"traceparent,omitempty"`
	// Rerun is set on the copy of an event that ferry queues again to
	// re-run one pipeline's build lost to infrastructure (see
	// dispatch.RequestRerun); nil for a webhook's event.
	Rerun *Rerun `json:"rerun,omitempty"`
}

// Rerun says which pipeline of an event is built again, as which attempt,
// and why.
type Rerun struct {
	// Pipeline is the one pipeline built again.
	Pipeline string `json:"pipeline"`
	// Attempt is the build's attempt, 2 for the first re-run; it is the
	// "#2" of the correlation id (config.RerunTriggerID).
	Attempt int `json:"attempt"`
	// Reason is the stable reason (spot_reclaimed, pod_deleted, …), Cause
	// the words put on the commit ("spot instance reclaimed").
	Reason string `json:"reason"`
	Cause  string `json:"cause"`
	// Of is the URL of the build that was lost.
	Of string `json:"of,omitempty"`
}

// Branch returns the branch name for branch refs and "" otherwise.
func (e Event) Branch() string {
	if b, ok := strings.CutPrefix(e.Ref, "refs/heads/"); ok {
		return b
	}
	return ""
}

// TagName returns the tag for tag refs and "" otherwise.
func (e Event) TagName() string {
	if t, ok := strings.CutPrefix(e.Ref, "refs/tags/"); ok {
		return t
	}
	return ""
}

// Validate checks that the fields the dispatcher relies on are present.
func (e Event) Validate() error {
	var missing []string
	for name, v := range map[string]string{
		"id": e.ID, "provider": string(e.Provider), "kind": string(e.Kind),
		"repo": e.Repo, "ref": e.Ref, "sha": e.SHA,
	} {
		if v == "" && (name != "sha" || e.Kind != Comment) {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("event is missing %s", strings.Join(missing, ", "))
	}
	return nil
}

// Marshal encodes the event for the durable queue.
func (e Event) Marshal() ([]byte, error) { return json.Marshal(e) }

// Unmarshal decodes an event written by Marshal.
func Unmarshal(b []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return Event{}, fmt.Errorf("decode event: %w", err)
	}
	return e, nil
}
