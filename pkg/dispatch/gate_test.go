package dispatch

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/event"
	"github.com/ferryci/ferry/pkg/jenkins"
	"github.com/ferryci/ferry/pkg/scm"
	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/pkg/store/memstore"
	"github.com/ferryci/ferry/pkg/trust"
	"github.com/ferryci/ferry/test/jenkinsemu"
	"github.com/ferryci/ferry/test/scmfake"
)

// gateBed is a dispatcher whose Jenkins has no executor (every build stays
// queued) and whose Git hosts are the fakes.
type gateBed struct {
	jenkins *jenkinsemu.Server
	store   store.Store
	github  *scmfake.GitHub
	gitlab  *scmfake.GitLab
	seq     time.Time
}

func newGateBed(t *testing.T, st store.Store, pipelines string) *gateBed {
	t.Helper()
	emu := jenkinsemu.New(jenkinsemu.Options{})
	t.Cleanup(emu.Close)
	if err := emu.AddJob("app", jenkinsemu.JobSpec{Duration: jenkinsemu.Forever, Params: ferryParams()}); err != nil {
		t.Fatal(err)
	}
	cl, err := jenkins.New(jenkins.Config{URL: emu.URL(), User: jenkinsemu.DefaultUser.Name, APIToken: jenkinsemu.DefaultUser.Token, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	b := &gateBed{jenkins: emu, store: st, github: scmfake.NewGitHub(t), gitlab: scmfake.NewGitLab(t), seq: time.Now()}
	b.github.AddRepo("acme/app")
	b.gitlab.AddProject(15, "platform/app")
	gh, err := scm.NewGitHub(scm.GitHubConfig{Token: scmfake.GitHubToken, BaseURL: b.github.EnterpriseURL()})
	if err != nil {
		t.Fatal(err)
	}
	gl, err := scm.NewGitLab(scm.GitLabConfig{Token: scmfake.GitLabToken, BaseURL: b.gitlab.BaseURL()})
	if err != nil {
		t.Fatal(err)
	}
	m, err := config.Parse([]byte("jenkins: {url: \"http://jenkins/\"}\npipelines:\n" + pipelines))
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{
		Store: st, Jenkins: cl, Matcher: m, JenkinsURL: emu.URL(), Consumer: "gate",
		Reporter:     scm.NewMulti(scm.MultiConfig{Reporters: map[event.Provider]scm.Reporter{event.GitHub: gh, event.GitLab: gl}}),
		Trust:        &trust.Checker{GitHub: gh, GitLab: gl, TTL: time.Minute},
		PRHosts:      map[event.Provider]PRHost{event.GitHub: gh, event.GitLab: gl},
		ReclaimAfter: 300 * time.Millisecond, RetryInitial: 10 * time.Millisecond, RetryMax: 80 * time.Millisecond,
		PermanentAttempts: 3, StatusInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, d)
	return b
}

// next enqueues ev as the next delivery (later ReceivedAt than the last).
func (b *gateBed) next(t *testing.T, ev event.Event) {
	t.Helper()
	b.seq = b.seq.Add(time.Second)
	ev.ReceivedAt = b.seq
	enqueue(t, b.store, ev)
}

func ghPR(id, sha, author, assoc string) event.Event {
	return event.Event{ID: id, Provider: event.GitHub, DeliveryID: id, Kind: event.PullRequest, Action: "synchronize",
		Repo: "acme/app", RepoURL: "https://github.com/acme/app.git", Ref: "refs/pull/7/head", SHA: sha,
		BaseRef: "main", Number: 7, Author: author, Association: assoc}
}

func queuedFor(emu *jenkinsemu.Server, sha string) []jenkinsemu.QueueItem {
	var out []jenkinsemu.QueueItem
	for _, q := range emu.QueueItems() {
		if q.Params[config.ParamSHA] == sha {
			out = append(out, q)
		}
	}
	return out
}

func hasStatus(sha, desc string) func([]scmfake.Status) bool {
	return func(all []scmfake.Status) bool {
		return slices.ContainsFunc(all, func(s scmfake.Status) bool {
			return s.SHA == sha && strings.Contains(s.Description, desc)
		})
	}
}

// TestSupersededQueueItemsAndCancelCommand: a newer PR head cancels the
// older head's queued item (POST /queue/cancelItem); /cancel from a
// trusted user cancels the rest and is acknowledged; from anyone else it
// does nothing.
func TestSupersededQueueItemsAndCancelCommand(t *testing.T) {
	stores(t, func(t *testing.T, st store.Store) {
		b := newGateBed(t, st, "  - {name: app, repo: acme/app, events: [pull_request], job: app}\n")
		shaA, shaB := strings.Repeat("a", 40), strings.Repeat("b", 40)
		b.next(t, ghPR("gh-pa", shaA, "mia", "MEMBER"))
		eventually(t, "A queued", func() bool { return len(queuedFor(b.jenkins, shaA)) == 1 })
		idA := queuedFor(b.jenkins, shaA)[0].ID
		b.next(t, ghPR("gh-pb", shaB, "mia", "MEMBER"))
		eventually(t, "B queued", func() bool { return len(queuedFor(b.jenkins, shaB)) == 1 })
		eventually(t, "A's item cancelled", func() bool { return slices.Contains(b.jenkins.CancelledItems(), idA) })
		b.github.WaitFor(t, hasStatus(shaA, "canceled: superseded by "+shaB[:7]), 10*time.Second)

		cmd := func(id, author, assoc string) event.Event {
			return event.Event{ID: id, Provider: event.GitHub, DeliveryID: id, Kind: event.Comment, Repo: "acme/app",
				Ref: "refs/pull/7/head", Number: 7, Author: author, Association: assoc, Command: "cancel",
				CommentID: b.github.AddComment("acme/app", 7, "/cancel")}
		}
		b.next(t, cmd("gh-c1", "eve", "NONE"))
		b.next(t, cmd("gh-c2", "mia", "OWNER"))
		eventually(t, "B's item cancelled", func() bool { return len(queuedFor(b.jenkins, shaB)) == 0 })
		b.github.WaitFor(t, hasStatus(shaB, "canceled: /cancel from @mia"), 10*time.Second)
		eventually(t, "one reaction", func() bool { return len(b.github.Reactions()) == 1 })
		if r := b.github.Reactions()[0]; r.Content != "+1" {
			t.Errorf("reaction = %+v", r)
		}
		if n := len(b.jenkins.CancelledItems()); n != 2 {
			t.Errorf("%d items cancelled, want 2", n)
		}
	})
}

// TestGitLabMergeRequestHeldUntilDeveloperSaysOkToTest: a merge request from
// a fork project waits; a Reporter's /ok-to-test does nothing, a
// Developer's (inherited from the group) builds the head.
func TestGitLabMergeRequestHeldUntilDeveloperSaysOkToTest(t *testing.T) {
	stores(t, func(t *testing.T, st store.Store) {
		b := newGateBed(t, st, "  - {name: app, repo: platform/app, events: [pull_request], job: app}\n")
		b.gitlab.AddMember(15, 20, scmfake.GitLabReporter)
		b.gitlab.AddGroupMember(15, 30, scmfake.GitLabDeveloper)
		b.gitlab.AddProject(99, "outsider/app") // the fork: statuses go to the source project
		sha := strings.Repeat("c", 40)
		b.next(t, event.Event{ID: "gl-mr", Provider: event.GitLab, DeliveryID: "gl-mr", Kind: event.PullRequest, Action: "open",
			Repo: "platform/app", ProjectID: 99, Ref: "refs/merge-requests/3/head", SHA: sha, BaseRef: "main", Number: 3,
			Author: "outsider", AuthorID: 77, Fork: true})
		b.gitlab.WaitFor(t, hasStatus(sha, "waiting for /ok-to-test from a Developer of platform/app"), 10*time.Second)
		note := func(id string, user int64) event.Event {
			return event.Event{ID: id, Provider: event.GitLab, DeliveryID: id, Kind: event.Comment, Repo: "platform/app",
				ProjectID: 15, Ref: "refs/merge-requests/3/head", SHA: sha, Number: 3, Author: "u", AuthorID: user,
				Command: "ok-to-test", CommentID: b.gitlab.AddNote(15, 3, "/ok-to-test")}
		}
		b.next(t, note("gl-n1", 20))
		eventually(t, "the Reporter's command handled", func() bool { return pending(t, st) == 0 })
		b.next(t, note("gl-n2", 30))
		eventually(t, "the head queued once", func() bool { return len(queuedFor(b.jenkins, sha)) == 1 })
		eventually(t, "the note awarded", func() bool { return len(b.gitlab.Awards()) == 1 })
		if len(b.jenkins.QueueItems()) != 1 {
			t.Errorf("queue = %+v, want one item", b.jenkins.QueueItems())
		}
	})
}

// TestBranchPushesCancelOnlyWhenAsked: cancelSupersededPushes makes a newer
// push to a branch cancel the older one; without it both stay.
func TestBranchPushesCancelOnlyWhenAsked(t *testing.T) {
	b := newGateBed(t, memStore(t), `  - {name: app, repo: acme/app, branches: [main], job: app, cancelSupersededPushes: true}
  - {name: dev, repo: acme/app, branches: [dev], job: app}
`)
	x, y := strings.Repeat("d", 40), strings.Repeat("e", 40)
	for _, sha := range []string{x, y} {
		b.next(t, pushEvent("gh-m"+sha[:1], sha))
		dev := pushEvent("gh-d"+sha[:1], sha)
		dev.Ref = "refs/heads/dev"
		b.next(t, dev)
		eventually(t, "both branches queued", func() bool { return len(queuedFor(b.jenkins, sha)) >= 1 })
	}
	b.github.WaitFor(t, hasStatus(x, "canceled: superseded by "+y[:7]), 10*time.Second)
	eventually(t, "main's older item cancelled, dev's kept", func() bool {
		return len(queuedFor(b.jenkins, x)) == 1 && len(queuedFor(b.jenkins, y)) == 2
	})
	if q := queuedFor(b.jenkins, x); q[0].Params[config.ParamRef] != "refs/heads/dev" {
		t.Errorf("the item kept for %s is %v, want dev's", x[:7], q[0].Params)
	}
}

func memStore(t *testing.T) store.Store {
	t.Helper()
	st, err := memstore.New(memstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}
