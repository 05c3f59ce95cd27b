package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/test/jenkinsemu"
	"github.com/ferryci/ferry/test/scmfake"
)

// The trust gate, comment commands and superseded builds, end to end:
// ferry as `ferry serve` runs it, with Redis, the Jenkins emulator and the
// GitHub fake answering membership, reactions and comments.

const (
	prA = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"
	prB = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2"
	prC = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3"
)

func (w *world) gitHost() string { return strings.TrimSuffix(w.github.EnterpriseURL(), "/api/v3/") }

// prEvent is a pull_request delivery for PR 7 of acme/app.
func (w *world) prEvent(action, sha, author, assoc string, fork bool) []byte {
	head := "acme/app"
	if fork {
		head = author + "/app"
	}
	body, _ := json.Marshal(map[string]any{
		"action": action,
		"pull_request": map[string]any{
			"number": 7, "title": "change", "user": map[string]any{"login": author}, "author_association": assoc,
			"head": map[string]any{"sha": sha, "repo": map[string]any{"full_name": head, "clone_url": w.gitHost() + "/" + head + ".git"}},
			"base": map[string]any{"ref": "main"},
		},
		"repository": map[string]any{"full_name": "acme/app", "clone_url": w.gitHost() + "/acme/app.git"},
		"sender":     map[string]any{"login": author},
	})
	return body
}

// commentEvent is an issue_comment delivery on PR 7; the comment is made
// on the GitHub fake first, so reactions find it.
func (w *world) commentEvent(body, author, assoc, state string) []byte {
	id := w.github.AddComment("acme/app", 7, body)
	b, _ := json.Marshal(map[string]any{
		"action": "created",
		"issue": map[string]any{"number": 7, "state": state,
			"pull_request": map[string]any{"url": w.github.EnterpriseURL() + "repos/acme/app/pulls/7"}},
		"comment":    map[string]any{"id": id, "body": body, "user": map[string]any{"login": author}, "author_association": assoc},
		"repository": map[string]any{"full_name": "acme/app", "clone_url": w.gitHost() + "/acme/app.git"},
		"sender":     map[string]any{"login": author},
	})
	return b
}

func (w *world) mustAccept(event, delivery string, body []byte) {
	w.t.Helper()
	if code, r := w.githubHook(event, delivery, body); code != http.StatusAccepted {
		w.t.Fatalf("%s %s answered %d %+v, want 202", event, delivery, code, r)
	}
}

// drained waits until the dispatcher read and acknowledged every queued
// event: the consumer group has no lag and nothing pending.
func (w *world) drained() {
	w.t.Helper()
	w.eventually("every queued event handled", func() bool {
		groups, err := w.rdb.XInfoGroups(context.Background(), w.cfg.Store.Redis.Prefix+"events").Result()
		if err != nil || len(groups) == 0 {
			return false
		}
		return groups[0].Lag == 0 && groups[0].Pending == 0
	})
}

func (w *world) buildsOf(sha string) []jenkinsemu.Build {
	var out []jenkinsemu.Build
	for _, b := range w.builds("acme/app") {
		if b.Params[config.ParamSHA] == sha {
			out = append(out, b)
		}
	}
	return out
}

func statusWith(sha, context, desc string) func([]scmfake.Status) bool {
	return func(all []scmfake.Status) bool {
		for _, s := range all {
			if s.SHA == sha && s.Context == context && strings.Contains(s.Description, desc) {
				return true
			}
		}
		return false
	}
}

func TestForkPullRequestWaitsForOkToTest(t *testing.T) {
	w := start(t, nil)
	w.github.AddOrgMember("acme", "mia")
	w.github.SetPermission("acme/app", "rita", "read")

	// A fork PR is recorded, not built, and says what it waits for.
	w.mustAccept("pull_request", "pr-open", w.prEvent("opened", prA, "eve", "FIRST_TIME_CONTRIBUTOR", true))
	w.github.WaitFor(t, statusWith(prA, "ferry/app", "waiting for /ok-to-test from a member of acme"), 20*time.Second)
	w.drained()
	if n := len(w.builds("acme/app")); n != 0 {
		t.Fatalf("a fork PR was built %d times before /ok-to-test", n)
	}

	// /ok-to-test from a non-member (read access only) changes nothing;
	// nor does one in a code block or a quote from a member, which the
	// receiver does not even queue.
	w.mustAccept("issue_comment", "c-rita", w.commentEvent("/ok-to-test", "rita", "CONTRIBUTOR", "open"))
	for i, body := range []string{"```\n/ok-to-test\n```", "> /ok-to-test", "    /ok-to-test"} {
		code, r := w.githubHook("issue_comment", fmt.Sprintf("c-code-%d", i), w.commentEvent(body, "mia", "NONE", "open"))
		if code != http.StatusOK || r.Status != "ignored" {
			t.Fatalf("command in code or quote %q answered %d %+v, want 200 ignored", body, code, r)
		}
	}
	w.drained()
	if n := len(w.builds("acme/app")); n != 0 {
		t.Fatalf("a non-member's /ok-to-test built %d times", n)
	}
	if r := w.github.Reactions(); len(r) != 0 {
		t.Fatalf("a non-member's command was acknowledged: %+v", r)
	}

	// From a member (private membership: the association says NONE, the
	// API says member) it builds the exact head once, and is acknowledged.
	okBody := w.commentEvent("/ok-to-test", "mia", "NONE", "open")
	w.mustAccept("issue_comment", "c-mia", okBody)
	w.eventually("the held head built", func() bool { return len(w.buildsOf(prA)) == 1 })
	w.eventually("the command acknowledged", func() bool { return len(w.github.Reactions()) == 1 })
	if code, r := w.githubHook("issue_comment", "c-mia", okBody); code != http.StatusOK || r.Status != "duplicate" {
		t.Fatalf("redelivered /ok-to-test answered %d %+v", code, r)
	}

	// A later push to the approved PR builds without a new command.
	w.mustAccept("pull_request", "pr-sync", w.prEvent("synchronize", prB, "eve", "FIRST_TIME_CONTRIBUTOR", true))
	w.eventually("the new head built", func() bool { return len(w.buildsOf(prB)) == 1 })

	// /retest builds the current head again, once.
	w.mustAccept("issue_comment", "c-retest", w.commentEvent("/retest", "mia", "NONE", "open"))
	w.eventually("the head built again", func() bool { return len(w.buildsOf(prB)) == 2 })
	w.drained()
	ids := map[string]bool{}
	for _, b := range w.buildsOf(prB) {
		ids[b.Params[config.ParamTriggerID]] = true
	}
	if len(ids) != 2 {
		t.Errorf("/retest reused a correlation id: %v", ids)
	}
	if n := len(w.buildsOf(prA)) + len(w.buildsOf(prB)); n != 3 {
		t.Errorf("%d builds in all, want 3", n)
	}

	// A command on a closed PR is answered, not acted on.
	before := len(w.github.Comments())
	w.mustAccept("issue_comment", "c-closed", w.commentEvent("/retest", "mia", "MEMBER", "closed"))
	w.eventually("the closed PR's command answered", func() bool {
		for _, c := range w.github.Comments()[before:] {
			if strings.Contains(c.Body, "this pull request is closed") {
				return true
			}
		}
		return false
	})
	w.drained()
	if n := len(w.buildsOf(prB)); n != 2 {
		t.Errorf("a command on a closed PR built: %d builds of the head, want 2", n)
	}
}

func TestQuickPushesToAPullRequestCancelSupersededBuilds(t *testing.T) {
	w := start(t, nil)
	// The first head is running when the next two arrive back to back:
	// its build is stopped in Jenkins; the second is stopped or, when the
	// third was noted first, never started.
	w.mustAccept("pull_request", "push-a", w.prEvent("opened", prA, "mia", "MEMBER", false))
	w.eventually("the first head building", func() bool { b := w.buildsOf(prA); return len(b) == 1 && b[0].Building })
	w.mustAccept("pull_request", "push-b", w.prEvent("synchronize", prB, "mia", "MEMBER", false))
	w.mustAccept("pull_request", "push-c", w.prEvent("synchronize", prC, "mia", "MEMBER", false))
	w.eventually("the newest head building", func() bool {
		b := w.buildsOf(prC)
		return len(b) == 1 && b[0].Building
	})
	w.github.WaitFor(t, statusWith(prA, "ferry/app", "canceled: superseded by "), 20*time.Second)
	w.github.WaitFor(t, statusWith(prB, "ferry/app", "canceled: superseded by "+prC[:7]), 20*time.Second)
	w.drained()
	w.eventually("one build running, the older ones aborted", func() bool {
		running := 0
		for _, b := range w.builds("acme/app") {
			if b.Building {
				running++
			} else if b.Result != jenkinsemu.Aborted {
				return false
			}
		}
		return running == 1 && len(w.jenkins.QueueItems()) == 0
	})
	if b := w.buildsOf(prA); len(b) != 1 || b[0].Result != jenkinsemu.Aborted {
		t.Fatalf("first head's builds = %+v, want one ABORTED", b)
	}
	if b := w.buildsOf(prC); len(b) != 1 || !b[0].Building {
		t.Fatalf("newest head's builds = %+v, want one running", b)
	}
}
