package store

import (
	"time"

	"github.com/ferryci/ferry/pkg/event"
)

// RefState is what ferry knows of one pull request (or, for pipelines that
// cancel superseded pushes, one branch): its newest head, which pipelines
// hold it for a trusted go-ahead, and who approved it. It is written with a
// revision check (PutRef), so replicas handling a push and a comment at
// once never lose each other's change, and it survives restarts.
type RefState struct {
	// Key is RefKey(provider, repo, ref).
	Key string `json:"key"`
	// Revision is the stored revision; PutRef checks and increments it.
	Revision int64 `json:"revision"`
	// Head is the newest event seen for the ref (by ReceivedAt).
	Head event.Event `json:"head"`
	// Held names the pipelines whose build of Head waits for /ok-to-test.
	Held map[string]bool `json:"held,omitempty"`
	// Approved holds, per pipeline, the /ok-to-test that approved the PR.
	Approved  map[string]Approval `json:"approved,omitempty"`
	UpdatedAt time.Time           `json:"updated_at"`
}

// Approval is one trusted /ok-to-test.
type Approval struct {
	By  string    `json:"by"`
	SHA string    `json:"sha"` // the head it was given for
	At  time.Time `json:"at"`
}

// RefKey names the RefState of a ref of a repository.
func RefKey(p event.Provider, repo, ref string) string {
	return string(p) + ":" + repo + ":" + ref
}
