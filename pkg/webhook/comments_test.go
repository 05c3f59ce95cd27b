package webhook

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/ferryci/ferry/pkg/event"
)

func ghComment(action, body, state string, onPR bool) []byte {
	issue := map[string]any{"number": 7, "state": state}
	if onPR {
		issue["pull_request"] = map[string]any{"url": "https://api.github.com/repos/acme/app/pulls/7"}
	}
	b, _ := json.Marshal(map[string]any{
		"action": action, "issue": issue,
		"comment":    map[string]any{"id": 99, "body": body, "user": map[string]any{"login": "mia"}, "author_association": "MEMBER"},
		"repository": map[string]any{"full_name": "acme/app", "clone_url": "https://github.com/acme/app.git"},
		"sender":     map[string]any{"login": "mia"},
	})
	return b
}

func glNoteBody(typ, note, state string) []byte {
	b, _ := json.Marshal(map[string]any{
		"object_kind": "note", "user": map[string]any{"id": 42, "username": "dev"}, "project_id": 15,
		"project":           map[string]any{"id": 15, "path_with_namespace": "platform/infra/terraform", "git_http_url": "https://gitlab.example.com/platform/infra/terraform.git"},
		"object_attributes": map[string]any{"id": 501, "note": note, "noteable_type": typ, "action": "create"}, //nolint:misspell // GitLab spells it so
		"merge_request": map[string]any{"iid": 3, "state": state, "target_branch": "main",
			"last_commit": map[string]any{"id": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"}},
	})
	return b
}

func TestCommentCommands(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		req        func() *http.Request
		wantStatus string
		reason     string
		check      func(t *testing.T, ev event.Event)
	}{
		{"github command", func() *http.Request {
			return githubReq("issue_comment", "c1", ghSecret, ghComment("created", "thanks\n/ok-to-test", "open", true))
		}, "accepted", "", func(t *testing.T, ev event.Event) {
			if ev.Kind != event.Comment || ev.Command != "ok-to-test" || ev.Number != 7 || ev.CommentID != 99 ||
				ev.Author != "mia" || ev.Association != "MEMBER" || ev.Closed || ev.Ref != "refs/pull/7/head" || ev.SHA != "" {
				t.Errorf("event = %+v", ev)
			}
		}},
		{"github closed PR still queued, answered later", func() *http.Request {
			return githubReq("issue_comment", "c2", ghSecret, ghComment("created", "/retest", "closed", true))
		}, "accepted", "", func(t *testing.T, ev event.Event) {
			if !ev.Closed || ev.Command != "retest" {
				t.Errorf("event = %+v", ev)
			}
		}},
		{"github fenced", func() *http.Request {
			return githubReq("issue_comment", "c3", ghSecret, ghComment("created", "```\n/ok-to-test\n```", "open", true))
		}, "ignored", "no ferry command", nil},
		{"github quoted", func() *http.Request {
			return githubReq("issue_comment", "c4", ghSecret, ghComment("created", "> /ok-to-test", "open", true))
		}, "ignored", "no ferry command", nil},
		{"github edited", func() *http.Request {
			return githubReq("issue_comment", "c5", ghSecret, ghComment("edited", "/ok-to-test", "open", true))
		}, "ignored", "only new comments", nil},
		{"github issue, not PR", func() *http.Request {
			return githubReq("issue_comment", "c6", ghSecret, ghComment("created", "/ok-to-test", "open", false))
		}, "ignored", "not on a pull request", nil},
		{"github 10 MB comment", func() *http.Request {
			return githubReq("issue_comment", "c7", ghSecret, ghComment("created", "/ok-to-test\n"+strings.Repeat("a", 10<<20), "open", true))
		}, "ignored", "not read for commands", nil},
		{"gitlab command", func() *http.Request {
			return gitlabReq("Note Hook", "n1", glToken, glNoteBody("MergeRequest", "/cancel", "opened"))
		}, "accepted", "", func(t *testing.T, ev event.Event) {
			if ev.Kind != event.Comment || ev.Command != "cancel" || ev.Number != 3 || ev.CommentID != 501 || ev.AuthorID != 42 ||
				ev.ProjectID != 15 || ev.Closed || ev.Ref != "refs/merge-requests/3/head" {
				t.Errorf("event = %+v", ev)
			}
		}},
		{"gitlab merged MR", func() *http.Request {
			return gitlabReq("Note Hook", "n2", glToken, glNoteBody("MergeRequest", "/retest", "merged"))
		}, "accepted", "", func(t *testing.T, ev event.Event) {
			if !ev.Closed {
				t.Errorf("a note on a merged MR is not marked closed: %+v", ev)
			}
		}},
		{"gitlab note on an issue", func() *http.Request {
			return gitlabReq("Note Hook", "n3", glToken, glNoteBody("Issue", "/retest", "opened"))
		}, "ignored", "not on a merge request", nil},
		{"gitlab indented", func() *http.Request {
			return gitlabReq("Note Hook", "n4", glToken, glNoteBody("MergeRequest", "    /retest", "opened"))
		}, "ignored", "no ferry command", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := &fakeStore{}
			code, a := do(newServer(t, st, 0), tt.req())
			if a.Status != tt.wantStatus || !strings.Contains(a.Reason, tt.reason) {
				t.Fatalf("answer %d %+v, want %s (%q)", code, a, tt.wantStatus, tt.reason)
			}
			got := st.stored()
			if tt.check == nil {
				if len(got) != 0 {
					t.Fatalf("stored %d events for an ignored comment", len(got))
				}
				return
			}
			if code != http.StatusAccepted || len(got) != 1 {
				t.Fatalf("answer %d, %d events stored; want 202 and one", code, len(got))
			}
			tt.check(t, got[0])
		})
	}
}

func TestCommentBodyOverTheCapIs413(t *testing.T) {
	t.Parallel()
	code, a := do(newServer(t, &fakeStore{}, 1<<20), githubReq("issue_comment", "big", ghSecret,
		ghComment("created", "/ok-to-test\n"+strings.Repeat("a", 2<<20), "open", true)))
	if code != http.StatusRequestEntityTooLarge {
		t.Fatalf("answer %d %+v, want 413", code, a)
	}
}

func TestPullRequestAuthorAndFork(t *testing.T) {
	t.Parallel()
	st := &fakeStore{}
	h := newServer(t, st, 0)
	if code, a := do(h, githubReq("pull_request", "pr1", ghSecret, fixture(t, "github_pull_request_opened.json"))); code != http.StatusAccepted {
		t.Fatalf("answer %d %+v", code, a)
	}
	if code, a := do(h, gitlabReq("Merge Request Hook", "mr1", glToken, fixture(t, "gitlab_merge_request_open.json"))); code != http.StatusAccepted {
		t.Fatalf("answer %d %+v", code, a)
	}
	got := st.stored()
	if len(got) != 2 {
		t.Fatalf("%d events stored", len(got))
	}
	if gh := got[0]; !gh.Fork || gh.Author != "octo-dev" {
		t.Errorf("GitHub PR from octo-dev/app into acme/app: fork=%v author=%q", gh.Fork, gh.Author)
	}
	if gl := got[1]; gl.Fork {
		t.Errorf("GitLab MR within project 15 marked as a fork: %+v", gl)
	}
}
