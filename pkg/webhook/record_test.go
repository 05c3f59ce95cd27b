package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/ferryci/ferry/pkg/store"
)

// fakeLog collects delivery records.
type fakeLog struct {
	mu   sync.Mutex
	recs []store.Delivery
	err  error
}

func (f *fakeLog) RecordDelivery(_ context.Context, d store.Delivery) (store.Delivery, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return d, f.err
	}
	f.recs = append(f.recs, d)
	return d, nil
}

func (f *fakeLog) all() []store.Delivery {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.recs)
}

// Every answered delivery leaves one record saying what the answer was,
// with what the payload named once it was verified — never the body.
func TestEveryDeliveryIsRecorded(t *testing.T) {
	push := fixture(t, "github_push.json")
	unmatched := bytes.ReplaceAll(push, []byte("acme/app"), []byte("acme/other"))
	big := append(append([]byte(nil), push...), bytes.Repeat([]byte(" "), 64<<10)...)
	badSHA := bytes.Replace(push, []byte(`"after": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"`), []byte(`"after": "not-a-sha"`), 1)
	const sha = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	tests := []struct {
		name     string
		req      *http.Request
		storeErr error
		want     store.Delivery
		mention  string
	}{
		{"accepted", githubReq("push", "R-1", ghSecret, push), nil, store.Delivery{Outcome: store.DeliveryAccepted, Status: 202,
			EventID: "gh-R-1", Repo: "acme/app", Ref: "refs/heads/main", SHA: sha, Pipelines: []string{"app"}}, ""},
		{"unbuilt event type", githubReq("issues", "R-2", ghSecret, fixture(t, "github_ping.json")), nil,
			store.Delivery{Outcome: store.DeliveryIgnored, Status: 200}, `"issues" events are not built`},
		{"unmatched repository", githubReq("push", "R-3", ghSecret, unmatched), nil,
			store.Delivery{Outcome: store.DeliveryIgnored, Status: 200, EventID: "gh-R-3", Repo: "acme/other", Ref: "refs/heads/main", SHA: sha}, "acme/other"},
		{"skip ci", githubReq("push", "R-4", ghSecret, fixture(t, "github_push_skip_ci.json")), nil,
			store.Delivery{Outcome: store.DeliverySkipped, Status: 200, EventID: "gh-R-4", Repo: "acme/app", Ref: "refs/heads/main"}, "skip CI"},
		{"ping", githubReq("ping", "R-5", ghSecret, fixture(t, "github_ping.json")), nil, store.Delivery{Outcome: store.DeliveryPong, Status: 200}, ""},
		{"forged", githubReq("push", "R-6", "wrong-secret", push), nil, store.Delivery{Outcome: store.DeliveryRejected, Status: 401}, "signature"},
		{"oversized", githubReq("push", "R-7", ghSecret, big), nil, store.Delivery{Outcome: store.DeliveryRejected, Status: 413}, "server.maxBodyBytes"},
		{"not JSON", githubReq("push", "R-8", ghSecret, []byte("<html>")), nil, store.Delivery{Outcome: store.DeliveryRejected, Status: 400}, "not valid JSON"},
		{"bad sha", githubReq("push", "R-9", ghSecret, badSHA), nil,
			store.Delivery{Outcome: store.DeliveryRejected, Status: 400, EventID: "gh-R-9", Repo: "acme/app", Ref: "refs/heads/main", SHA: "not-a-sha"}, "sha"},
		{"store down", githubReq("push", "R-10", ghSecret, push), store.ErrUnavailable,
			store.Delivery{Outcome: store.DeliveryRejected, Status: 503, EventID: "gh-R-10", Repo: "acme/app", Ref: "refs/heads/main", SHA: sha}, "redeliver"},
		{"gitlab accepted", gitlabReq("Push Hook", "R-11", glToken, fixture(t, "gitlab_push.json")), nil,
			store.Delivery{Outcome: store.DeliveryAccepted, Status: 202, Repo: "platform/infra/terraform", Pipelines: []string{"infra"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			log := &fakeLog{}
			r, h := newRecordingServer(t, &fakeStore{err: tt.storeErr}, log)
			code, _ := do(h, tt.req)
			r.Drain()
			recs := log.all()
			if len(recs) != 1 {
				t.Fatalf("%d records, want 1: %+v", len(recs), recs)
			}
			got := recs[0]
			delivery := tt.req.Header.Get("X-GitHub-Delivery") + tt.req.Header.Get("Idempotency-Key")
			if got.DeliveryID != delivery || got.Status != code || got.Outcome != tt.want.Outcome || got.Status != tt.want.Status || got.ReceivedAt.IsZero() {
				t.Errorf("record = %+v, want delivery %s, %s %d", got, delivery, tt.want.Outcome, tt.want.Status)
			}
			for field, pair := range map[string][2]string{
				"repo": {got.Repo, tt.want.Repo}, "ref": {got.Ref, tt.want.Ref}, "event_id": {got.EventID, tt.want.EventID},
			} {
				if pair[1] != "" && pair[0] != pair[1] {
					t.Errorf("record %s = %q, want %q", field, pair[0], pair[1])
				}
			}
			if tt.want.SHA != "" && got.SHA != tt.want.SHA {
				t.Errorf("record sha = %q, want %q", got.SHA, tt.want.SHA)
			}
			if !slices.Equal(got.Pipelines, tt.want.Pipelines) {
				t.Errorf("record pipelines = %v, want %v", got.Pipelines, tt.want.Pipelines)
			}
			if !strings.Contains(got.Reason, tt.mention) {
				t.Errorf("record reason %q does not say %q", got.Reason, tt.mention)
			}
			if code == 401 && (got.Repo != "" || got.EventID != "") {
				t.Errorf("an unverified delivery recorded what its body claims: %+v", got)
			}
			raw, _ := json.Marshal(got)
			for _, leak := range []string{"Tighten the retry budget", ghSecret, glToken, "wrong-secret"} {
				if strings.Contains(string(raw), leak) {
					t.Errorf("record holds %q (body or secret): %s", leak, raw)
				}
			}
		})
	}
	t.Run("duplicate", func(t *testing.T) {
		log := &fakeLog{}
		r, h := newRecordingServer(t, &fakeStore{}, log)
		do(h, githubReq("push", "R-12", ghSecret, push))
		do(h, githubReq("push", "R-12", ghSecret, push))
		r.Drain()
		recs := log.all()
		if len(recs) != 2 {
			t.Fatalf("%d records, want 2", len(recs))
		}
		outcomes := []store.DeliveryOutcome{recs[0].Outcome, recs[1].Outcome}
		slices.Sort(outcomes)
		if !slices.Equal(outcomes, []store.DeliveryOutcome{store.DeliveryAccepted, store.DeliveryDuplicate}) {
			t.Errorf("outcomes = %v, want accepted and duplicate", outcomes)
		}
	})
}

// A delivery log that cannot be written is logged and changes nothing
// about the answer.
func TestRecordFailureKeepsTheAnswer(t *testing.T) {
	log := &fakeLog{err: errors.New("redis down")}
	st := &fakeStore{}
	h, o := newObservedServer(t, st, func(c *Config) { c.Deliveries = log })
	code, a := do(h, githubReq("push", "F-1", ghSecret, fixture(t, "github_push.json")))
	if code != 202 || a.Status != "accepted" || len(st.stored()) != 1 {
		t.Fatalf("answer = %d %+v, want 202 accepted", code, a)
	}
	waitFor(t, func() bool {
		for _, l := range o.lines() {
			if l["msg"] == "could not record the delivery's answer in the delivery log" && l["delivery"] == "F-1" && l["level"] == "WARN" {
				return true
			}
		}
		return false
	})
}

func newRecordingServer(t *testing.T, st Enqueuer, log *fakeLog) (*Receiver, http.Handler) {
	t.Helper()
	r, err := New(Config{
		Store: st, Matcher: testConfig(t), Deliveries: log,
		GitHubSecrets: []string{ghSecret}, GitLabTokens: []string{glToken},
		GitLabURL: "https://gitlab.example.com", MaxBodyBytes: 32 << 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	gin.SetMode(gin.TestMode)
	e := gin.New()
	r.Register(e)
	return r, e
}

// waitFor polls cond until it holds, for at most a generous while.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
