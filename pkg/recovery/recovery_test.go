package recovery_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/recovery"
	"github.com/ferryci/ferry/pkg/store/memstore"
	"github.com/ferryci/ferry/test/scmfake"
)

// receiver stands in for ferry's receiver: down, it answers 503; up, 202
// for a delivery id it has not seen and 200 for one it has.
type receiver struct {
	srv    *httptest.Server
	up     atomic.Bool
	header string
	mu     sync.Mutex
	seen   map[string]int
}

func newReceiver(t *testing.T, header string) *receiver {
	r := &receiver{header: header, seen: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !r.up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		id := req.Header.Get(r.header)
		r.seen[id]++
		if r.seen[id] > 1 {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) accepted() (distinct, total int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.seen {
		distinct++
		total += n
	}
	return distinct, total
}

func newRecoverer(t *testing.T, marks recovery.Marks, maxRedeliveries int, srcs ...recovery.Source) *recovery.Recoverer {
	t.Helper()
	r, err := recovery.New(recovery.Config{Sources: srcs, Marks: marks, MaxPages: 10, MaxRedeliveries: maxRedeliveries})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func newMarks(t *testing.T) *memstore.Store {
	s, err := memstore.New(memstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// 130 failed deliveries span two pages of the list; the hook is found by
// its URL; every one is redelivered once within the pass's budget, and a
// later pass redelivers nothing.
func TestGitHubRecoveryPagesBudgetsAndNeverRepeats(t *testing.T) {
	gh := scmfake.NewGitHub(t)
	recv := newReceiver(t, "X-GitHub-Delivery")
	hook := gh.AddHook("acme/app", "", recv.srv.URL+"/hooks/github", "s3cret")
	gh.AddHook("acme/app", "", "https://elsewhere.example.com/hook", "")
	for i := 0; i < 130; i++ {
		if d, err := gh.Deliver(hook, "push", []byte(fmt.Sprintf(`{"ref":"refs/heads/b%d"}`, i))); err != nil || d.StatusCode != 503 || d.Status != "Invalid HTTP Response: 503" {
			t.Fatalf("delivery %d = %+v, %v; want a 503", i, d, err)
		}
	}
	recv.up.Store(true)
	src, err := recovery.NewGitHubHook(recovery.GitHubConfig{Token: scmfake.GitHubToken, BaseURL: gh.EnterpriseURL(),
		Repo: "acme/app", HookURL: recv.srv.URL + "/hooks/github"})
	if err != nil {
		t.Fatal(err)
	}
	marks := newMarks(t)
	r := newRecoverer(t, marks, 100, src)
	sum, err := r.Pass(context.Background())
	if err != nil || sum.Redelivered != 100 || sum.Listed != 130 {
		t.Fatalf("first pass = %+v, %v; want 100 of 130 redelivered (the budget)", sum, err)
	}
	gh.WaitRedeliveries()
	sum, err = r.Pass(context.Background())
	if err != nil || sum.Redelivered != 30 {
		t.Fatalf("second pass = %+v, %v; want the remaining 30", sum, err)
	}
	gh.WaitRedeliveries()
	// A new Recoverer (a restarted or another replica) over the same marks.
	sum, err = newRecoverer(t, marks, 100, src).Pass(context.Background())
	if err != nil || sum.Redelivered != 0 || sum.Verdicts[recovery.Delivered] != 130 {
		t.Fatalf("third pass = %+v, %v; want nothing redelivered, 130 delivered", sum, err)
	}
	if distinct, total := recv.accepted(); distinct != 130 || total != 130 {
		t.Errorf("receiver got %d distinct deliveries in %d requests, want 130 once each", distinct, total)
	}
}

// Two recoverers at once (no lease) redeliver each failed attempt once.
func TestConcurrentPassesRedeliverOnce(t *testing.T) {
	gh := scmfake.NewGitHub(t)
	recv := newReceiver(t, "X-GitHub-Delivery")
	hook := gh.AddHook("", "acme", recv.srv.URL+"/hooks/github", "")
	for i := 0; i < 20; i++ {
		if _, err := gh.Deliver(hook, "push", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	recv.up.Store(true)
	src, err := recovery.NewGitHubHook(recovery.GitHubConfig{Token: scmfake.GitHubToken, BaseURL: gh.EnterpriseURL(), Org: "acme", ID: hook})
	if err != nil {
		t.Fatal(err)
	}
	marks := newMarks(t)
	var wg sync.WaitGroup
	var total atomic.Int64
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sum, err := newRecoverer(t, marks, 100, src).Pass(context.Background())
			if err != nil {
				t.Error(err)
			}
			total.Add(int64(sum.Redelivered))
		}()
	}
	wg.Wait()
	gh.WaitRedeliveries()
	if total.Load() != 20 || len(gh.HookDeliveries(hook)) != 40 {
		t.Errorf("redelivered %d, %d attempts listed; want 20 and 40", total.Load(), len(gh.HookDeliveries(hook)))
	}
}

func TestGitHubErrors(t *testing.T) {
	gh := scmfake.NewGitHub(t)
	recv := newReceiver(t, "X-GitHub-Delivery")
	hook := gh.AddHook("acme/app", "", recv.srv.URL, "")
	if _, err := gh.Deliver(hook, "push", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	recv.up.Store(true)
	mk := func(token string, id int64) *recovery.Recoverer {
		src, err := recovery.NewGitHubHook(recovery.GitHubConfig{Token: token, BaseURL: gh.EnterpriseURL(), Repo: "acme/app", ID: id, HookURL: "https://nowhere.example.com/hooks/github"})
		if err != nil {
			t.Fatal(err)
		}
		return newRecoverer(t, newMarks(t), 10, src)
	}
	for _, tc := range []struct {
		name    string
		r       *recovery.Recoverer
		prepare func()
		want    string
		limited bool
	}{
		{"bad token", mk("ghp_wrong", hook), nil, "github.token was refused (401)", false},
		{"unknown hook", mk(scmfake.GitHubToken, 999), nil, "no such hook", false},
		{"hook not found by URL", mk(scmfake.GitHubToken, 0), nil, "delivers to https://nowhere.example.com/hooks/github", false},
		{"rate limit", mk(scmfake.GitHubToken, hook), func() { gh.FailNext(1, http.StatusForbidden) }, "rate limit", true},
		{"secondary rate limit", mk(scmfake.GitHubToken, hook), func() { gh.SecondaryRateLimitNext(1, time.Second) }, "rate limit", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.prepare != nil {
				tc.prepare()
			}
			sum, err := tc.r.Pass(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, recovery.ErrRateLimited) != tc.limited || sum.Redelivered != 0 {
				t.Errorf("Pass = %+v, %v; want an error saying %q (rate limited: %v)", sum, err, tc.want, tc.limited)
			}
		})
	}
	// After the errors, a good pass redelivers the one failed delivery.
	if sum, err := mk(scmfake.GitHubToken, hook).Pass(context.Background()); err != nil || sum.Redelivered != 1 {
		t.Errorf("good pass = %+v, %v", sum, err)
	}
}

// GitLab's resend is limited to five a minute per hook: a pass stops at
// the 429, leaves the rest for later, and nothing is resent twice.
func TestGitLabRecoveryHonoursTheResendLimit(t *testing.T) {
	gl := scmfake.NewGitLab(t)
	gl.AddProject(15, "platform/infra/terraform")
	recv := newReceiver(t, "Idempotency-Key")
	hook := gl.AddHook(15, recv.srv.URL+"/hooks/gitlab", "tok")
	for i := 0; i < 7; i++ {
		if e, err := gl.Deliver(hook, "Push Hook", []byte(`{}`)); err != nil || e.ResponseStatus != "503" {
			t.Fatalf("event %d = %+v, %v", i, e, err)
		}
	}
	recv.up.Store(true)
	src, err := recovery.NewGitLabHook(recovery.GitLabConfig{Token: scmfake.GitLabToken, BaseURL: gl.BaseURL(),
		Project: "platform/infra/terraform", HookURL: recv.srv.URL + "/hooks/gitlab"})
	if err != nil {
		t.Fatal(err)
	}
	marks := newMarks(t)
	r := newRecoverer(t, marks, 100, src)
	sum, err := r.Pass(context.Background())
	if !errors.Is(err, recovery.ErrRateLimited) || sum.Redelivered != 5 {
		t.Fatalf("first pass = %+v, %v; want 5 resent, then rate limited", sum, err)
	}
	gl.SetResendLimit(false)
	if sum, err = r.Pass(context.Background()); err != nil || sum.Redelivered != 2 {
		t.Fatalf("second pass = %+v, %v; want the 2 left", sum, err)
	}
	if sum, err = r.Pass(context.Background()); err != nil || sum.Redelivered != 0 || sum.Verdicts[recovery.Delivered] != 7 {
		t.Fatalf("third pass = %+v, %v; want nothing resent", sum, err)
	}
	if distinct, total := recv.accepted(); distinct != 7 || total != 7 {
		t.Errorf("receiver got %d distinct events in %d requests, want 7 once each", distinct, total)
	}
	bad, err := recovery.NewGitLabHook(recovery.GitLabConfig{Token: "wrong", BaseURL: gl.BaseURL(), Project: "15", ID: hook})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newRecoverer(t, marks, 10, bad).Pass(context.Background()); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("bad token: %v", err)
	}
	missing, _ := recovery.NewGitLabHook(recovery.GitLabConfig{Token: scmfake.GitLabToken, BaseURL: gl.BaseURL(), Project: "15", ID: 9999})
	if _, err := newRecoverer(t, marks, 10, missing).Pass(context.Background()); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("unknown hook: %v", err)
	}
}
