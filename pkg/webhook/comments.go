package webhook

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/ferryci/ferry/pkg/event"
	"github.com/ferryci/ferry/pkg/trust"
)

// Comment commands (/ok-to-test, /retest, /cancel) arrive as GitHub
// issue_comment and GitLab Note Hook deliveries. Only the command found in
// the body is kept in the event, never the body; a comment without one is
// ignored here, so the queue only carries comments that may act. Whether
// the commenter is trusted is decided by the dispatcher (package trust),
// which may have to ask the Git host.

type ghIssueComment struct {
	Action string `json:"action"`
	Issue  *struct {
		Number      int    `json:"number"`
		State       string `json:"state"`
		PullRequest *struct {
			URL string `json:"url"`
		} `json:"pull_request"`
	} `json:"issue"`
	Comment *struct {
		ID                int64  `json:"id"`
		Body              string `json:"body"`
		User              ghUser `json:"user"`
		AuthorAssociation string `json:"author_association"`
	} `json:"comment"`
	Repository ghRepo `json:"repository"`
	Sender     ghUser `json:"sender"`
}

// commandIn returns the command of a comment body, or why it has none.
func commandIn(body string) (trust.Command, string) {
	if n := utf8.RuneCountInString(body); n > trust.MaxCommentChars {
		return trust.None, fmt.Sprintf("the comment body has %d characters, more than the %d a comment may have; it is not read for commands", n, trust.MaxCommentChars)
	}
	cmd := trust.ParseCommand(body)
	if cmd == trust.None {
		return cmd, "the comment has no ferry command (/ok-to-test, /retest, /cancel) on a line of its own outside code and quotes"
	}
	return cmd, ""
}

func gitHubComment(e ghIssueComment) (outcome, error) {
	if e.Action != "created" {
		return outcome{ignore: fmt.Sprintf("comment action %q is not read for commands; only new comments are", printable(e.Action))}, nil
	}
	if e.Issue == nil || e.Comment == nil {
		return outcome{}, errors.Join(errBadPayload, errors.New("issue_comment event has no issue or comment"))
	}
	if e.Issue.PullRequest == nil {
		return outcome{ignore: "a comment on an issue, not on a pull request"}, nil
	}
	cmd, why := commandIn(e.Comment.Body)
	if cmd == trust.None {
		return outcome{ignore: why}, nil
	}
	return outcome{ev: event.Event{
		Kind:        event.Comment,
		Repo:        e.Repository.FullName,
		Ref:         fmt.Sprintf("refs/pull/%d/head", e.Issue.Number),
		Number:      e.Issue.Number,
		Sender:      e.Sender.Login,
		Author:      e.Comment.User.Login,
		Association: e.Comment.AuthorAssociation,
		Command:     string(cmd),
		CommentID:   e.Comment.ID,
		Closed:      e.Issue.State != "open",
	}}, nil
}

type glNote struct {
	ObjectKind string `json:"object_kind"`
	User       struct {
		ID       int64  `json:"id"`
		Username string `json:"username"`
	} `json:"user"`
	ProjectID        int64     `json:"project_id"`
	Project          glProject `json:"project"`
	ObjectAttributes struct {
		ID           int64  `json:"id"`
		Note         string `json:"note"`
		NoteableType string `json:"noteable_type"` //nolint:misspell // GitLab spells it so
		Action       string `json:"action"`
	} `json:"object_attributes"`
	MergeRequest *struct {
		IID          int      `json:"iid"`
		State        string   `json:"state"`
		TargetBranch string   `json:"target_branch"`
		LastCommit   glCommit `json:"last_commit"`
	} `json:"merge_request"`
}

func gitLabNote(n glNote) (outcome, error) {
	a := n.ObjectAttributes
	if a.NoteableType != "MergeRequest" {
		return outcome{ignore: fmt.Sprintf("a note on a %s, not on a merge request", printable(a.NoteableType))}, nil
	}
	// GitLab 15+ sends action create/update; older versions send none.
	if a.Action != "" && a.Action != "create" {
		return outcome{ignore: fmt.Sprintf("note action %q is not read for commands; only new notes are", printable(a.Action))}, nil
	}
	if n.MergeRequest == nil || n.Project.PathWithNamespace == "" {
		return outcome{}, errors.Join(errBadPayload, errors.New("note hook on a merge request lacks merge_request or project.path_with_namespace"))
	}
	cmd, why := commandIn(a.Note)
	if cmd == trust.None {
		return outcome{ignore: why}, nil
	}
	pid := n.ProjectID
	if pid == 0 {
		pid = n.Project.ID
	}
	mr := n.MergeRequest
	return outcome{ev: event.Event{
		Kind:      event.Comment,
		Repo:      n.Project.PathWithNamespace,
		ProjectID: pid,
		Ref:       fmt.Sprintf("refs/merge-requests/%d/head", mr.IID),
		SHA:       mr.LastCommit.ID,
		BaseRef:   mr.TargetBranch,
		Number:    mr.IID,
		Sender:    n.User.Username,
		Author:    n.User.Username,
		AuthorID:  n.User.ID,
		Command:   string(cmd),
		CommentID: a.ID,
		Closed:    mr.State != "opened",
	}}, nil
}
