package deliveries_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/ferryci/ferry/pkg/deliveries"
	"github.com/ferryci/ferry/pkg/event"
	"github.com/ferryci/ferry/pkg/scm"
	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/pkg/store/memstore"
)

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

func TestSteps(t *testing.T) {
	attempt := store.Build{Key: "gh-1/app", Job: "app", Pipeline: "app", Attempted: t0}
	queued := attempt
	queued.QueueID, queued.TriggeredAt = 42, t0.Add(time.Second)
	started := queued
	started.Number, started.URL, started.UpdatedAt = 7, "http://j/job/app/7/", t0.Add(3*time.Second)
	running := started
	running.Reported = string(scm.StateRunning)
	ended := running
	ended.Result, ended.UpdatedAt = "SUCCESS", t0.Add(9*time.Second)
	now := t0.Add(time.Hour)
	tests := []struct {
		name string
		prev *store.Build
		next store.Build
		want []string
	}{
		{"first write is the attempt", nil, attempt, []string{"attempted@12:00:00"}},
		{"queue item returned", &attempt, queued, []string{"queued@12:00:01"}},
		{"record written straight with its queue item", nil, queued, []string{"attempted@12:00:00", "queued@12:00:01"}},
		{"build started", &queued, started, []string{"started@12:00:03"}},
		{"running reported, time not in the record", &started, running, []string{"running@13:00:00"}},
		{"ended", &running, ended, []string{"ended@12:00:09"}},
		{"rewrite changes nothing", &ended, ended, nil},
		{"jump from queued to ended: one UpdatedAt for both", &queued, ended, []string{"started@12:00:09", "running@13:00:00", "ended@12:00:09"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, s := range deliveries.Steps(tt.prev, tt.next, now) {
				got = append(got, s.Step+"@"+s.At.Format("15:04:05"))
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("Steps = %v, want %v", got, tt.want)
			}
		})
	}
	for _, tc := range []struct {
		last store.Build
		want string
	}{
		{ended, "final commit status success (Build #7 succeeded)"},
		{attempt, "trigger attempt was dropped"},
		{queued, "removed before the build ended"},
	} {
		if got := deliveries.Closed(tc.last, now); got.Step != deliveries.StepClosed || !strings.Contains(got.Detail, tc.want) {
			t.Errorf("Closed(%+v) = %+v, want it to say %q", tc.last, got, tc.want)
		}
	}
}

func newStore(t *testing.T) *memstore.Store {
	t.Helper()
	s, err := memstore.New(memstore.Config{Now: func() time.Time { return t0.Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Seed fills a store with one accepted-and-built push, one ignored, one
// duplicate and one rejected delivery of the same commit, the build going
// through the Tracker as the dispatcher writes it.
func Seed(t *testing.T, s store.Store) {
	t.Helper()
	ctx := context.Background()
	const sha = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	rec := func(d store.Delivery) {
		if _, err := s.RecordDelivery(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	base := store.Delivery{Provider: event.GitHub, Event: "push", Repo: "acme/app", Ref: "refs/heads/main", SHA: sha}
	acc := base
	acc.DeliveryID, acc.EventID, acc.Outcome, acc.Status, acc.Pipelines, acc.ReceivedAt = "d-1", "gh-d-1", store.DeliveryAccepted, 202, []string{"app"}, t0.Add(-4*time.Minute)
	rec(acc)
	dup := acc
	dup.Outcome, dup.Status, dup.Pipelines, dup.Reason, dup.ReceivedAt = store.DeliveryDuplicate, 200, nil, "this delivery was already accepted", t0.Add(-3*time.Minute)
	rec(dup)
	ign := base
	ign.DeliveryID, ign.EventID, ign.Outcome, ign.Status, ign.Reason, ign.ReceivedAt = "d-2", "gh-d-2", store.DeliveryIgnored, 200, `no pipeline builds acme/app on branch main`, t0.Add(-2*time.Minute)
	rec(ign)
	rej := store.Delivery{Provider: event.GitHub, Event: "push", DeliveryID: "d-3", Outcome: store.DeliveryRejected, Status: 401,
		Reason: "unauthorized: signature does not match any configured secret", ReceivedAt: t0.Add(-time.Minute)}
	rec(rej)

	clock := t0
	tr := deliveries.NewTracker(s, func() time.Time { return clock }, nil)
	b := store.Build{Key: "gh-d-1/app", Event: event.Event{ID: "gh-d-1"}, Pipeline: "app", Job: "app", Attempted: t0}
	steps := []func(){
		func() {},
		func() { b.QueueID, b.TriggeredAt = 42, t0.Add(time.Second) },
		func() { b.Number, b.URL, b.UpdatedAt = 7, "http://jenkins/job/app/7/", t0.Add(3*time.Second) },
		func() { b.Reported = "running"; clock = t0.Add(4 * time.Second) },
		func() { b.Result, b.UpdatedAt = "SUCCESS", t0.Add(9*time.Second) },
	}
	for _, step := range steps {
		step()
		if err := tr.PutBuild(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	clock = t0.Add(10 * time.Second)
	if err := tr.DeleteBuild(ctx, b.Key); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetBuild(ctx, b.Key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the build record was not deleted: %v", err)
	}
}

func serve(t *testing.T, s store.Store) http.Handler {
	gin.SetMode(gin.TestMode)
	e := gin.New()
	deliveries.NewServer(deliveries.Config{Log: s, Token: "tok", Agents: true}).Register(e)
	return e
}

func get(h http.Handler, query, token string) (int, string) {
	req := httptest.NewRequest(http.MethodGet, "/api/v1/deliveries?"+query, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Code, w.Body.String()
}

func TestAPIChain(t *testing.T) {
	s := newStore(t)
	Seed(t, s)
	h := serve(t, s)
	code, body := get(h, "repo=acme/app&sha=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "tok")
	if code != 200 {
		t.Fatalf("GET = %d %s", code, body)
	}
	var p deliveries.Page
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Deliveries) != 3 {
		t.Fatalf("%d deliveries, want 3 (ignored, duplicate, accepted): %s", len(p.Deliveries), body)
	}
	acc := p.Deliveries[2]
	if acc.Outcome != store.DeliveryAccepted || len(acc.Builds) != 1 {
		t.Fatalf("oldest = %+v, want the accepted one with its build", acc)
	}
	l := acc.Builds[0]
	if l.QueueID != 42 || l.Number != 7 || l.AgentPod != "ferry-agent-42-1" || l.Status != "success" || l.Result != "SUCCESS" {
		t.Errorf("link = %+v", l)
	}
	var steps []string
	for _, st := range l.Steps {
		steps = append(steps, st.Step)
	}
	if got := strings.Join(steps, ","); got != "attempted,queued,started,running,ended,closed" {
		t.Errorf("steps = %s", got)
	}
	if len(p.Deliveries[1].Builds) != 1 {
		t.Errorf("the duplicate does not lead to the accepted event's build: %+v", p.Deliveries[1])
	}
	if len(p.Deliveries[0].Builds) != 0 {
		t.Errorf("the ignored delivery has builds: %+v", p.Deliveries[0])
	}
}

func TestAPIAuthAndValidation(t *testing.T) {
	h := serve(t, newStore(t))
	for _, tok := range []string{"", "wrong"} {
		if code, _ := get(h, "", tok); code != 401 {
			t.Errorf("token %q: %d, want 401", tok, code)
		}
	}
	tests := []struct {
		query, want string
	}{
		{"sha=abc", "must be the full commit id"},
		{"repo=app", "must be the repository's full path"},
		{"ref=main", "refs/heads/main"},
		{"limit=0", "from 1 to 500"},
		{"limit=x", "from 1 to 500"},
		{"limit=501", "from 1 to 500"},
		{"after=garbage", "cursor"},
		{"commit=aaaa", "unknown parameter"},
		{"repo=a/b&repo=c/d", "given 2 times"},
		{"delivery=" + url.QueryEscape("a\x00b"), "printable"},
		{"sha=abc&repo=app", "; "},
	}
	for _, tt := range tests {
		code, body := get(h, tt.query, "tok")
		if code != 400 || !strings.Contains(body, tt.want) {
			t.Errorf("GET ?%s = %d %s, want 400 saying %q", tt.query, code, body, tt.want)
		}
	}
	if code, body := get(h, "repo=acme/app&ref=refs/heads/main&limit=10", "tok"); code != 200 || !strings.Contains(body, `"deliveries":[]`) {
		t.Errorf("valid query on an empty log = %d %s", code, body)
	}
}
