package jenkinsemu

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"syscall"
	"testing"
	"time"
)

func TestSetDown(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	hc := &http.Client{Timeout: 5 * time.Second}
	get := func() (int, error) {
		req, _ := http.NewRequest("GET", s.URL()+"/api/json", nil)
		req.SetBasicAuth(DefaultUser.Name, DefaultUser.Token)
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	// Open a keep-alive connection first: Refuse must close it too.
	if st, err := get(); err != nil || st != 200 {
		t.Fatalf("up: %d %v", st, err)
	}
	url0 := s.URL()
	steps := []struct {
		mode       DownMode
		wantStatus int
		wantRefuse bool
	}{
		{Unavailable, 503, false},
		{Up, 200, false},
		{Refuse, 0, true},
		{Refuse, 0, true},
		{Unavailable, 503, false},
		{Refuse, 0, true},
		{Up, 200, false},
	}
	for i, st := range steps {
		if err := s.SetDown(st.mode); err != nil {
			t.Fatalf("step %d SetDown(%d): %v", i, st.mode, err)
		}
		status, err := get()
		if st.wantRefuse {
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("step %d: got %d %v, want connection refused", i, status, err)
			}
			continue
		}
		if err != nil || status != st.wantStatus {
			t.Fatalf("step %d: got %d %v, want %d", i, status, err, st.wantStatus)
		}
	}
	if s.URL() != url0 {
		t.Errorf("URL changed from %s to %s", url0, s.URL())
	}
}

func TestUnavailableAnswersEverything(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	if err := s.SetDown(Unavailable); err != nil {
		t.Fatal(err)
	}
	c := tokenClient(t, s)
	for _, p := range []string{"/queue/api/json", "/crumbIssuer/api/json", "/job/x/buildWithParameters"} {
		if r := c.do("POST", p, url.Values{}); r.status != 503 {
			t.Errorf("%s: %d, want 503", p, r.status)
		}
	}
	anon := newClient(t, s, "", "")
	if r := anon.get("/api/json"); r.status != 503 {
		t.Errorf("anonymous: %d, want 503", r.status)
	}
}

func TestLatency(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	c := tokenClient(t, s)
	s.SetLatency(100 * time.Millisecond)
	start := time.Now()
	if r := c.get("/api/json"); r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	// Only a lower bound: the answer cannot come before the latency.
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("answered after %v, want at least 100ms", d)
	}
	s.SetLatency(0)
}

func TestLatencyRespectsClientCancel(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	s.SetLatency(time.Hour)
	hc := &http.Client{Timeout: 50 * time.Millisecond}
	req, _ := http.NewRequest("GET", s.URL()+"/api/json", nil)
	req.SetBasicAuth(DefaultUser.Name, DefaultUser.Token)
	if resp, err := hc.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("answer despite an hour of latency")
	}
	// Close must not hang on the pending handler.
	s.Close()
}

func TestCalls(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	mustAdd(t, s, "team/app", JobSpec{Label: "ferry", Params: []Param{{Name: "SHA"}}})
	c := tokenClient(t, s)
	c.trigger("team/app", url.Values{"SHA": {"1"}})
	c.trigger("team/app", url.Values{"SHA": {"2"}})
	c.get("/queue/api/json")
	c.get("/queue/item/1/api/json?tree=executable[number]")
	c.get("/job/team/job/app/api/json")
	c.get("/computer/api/json")
	c.createNode("n1", "ferry", "EXCLUSIVE", 1)
	c.get("/computer/n1/jenkins-agent.jnlp")
	c.post("/computer/n1/doDelete", nil)
	c.get("/job/team/job/app/1/api/json")
	c.post("/queue/cancelItem?id=2", nil)
	c.get("/no/such/thing")
	newClient(t, s, "", "").get("/crumbIssuer/api/json")

	want := map[string]int{
		RouteBuildWithParameters: 2,
		RouteQueue:               1,
		RouteQueueItem:           1,
		RouteJob:                 1,
		RouteComputers:           1,
		RouteCreateNode:          1,
		RouteAgentJNLP:           1,
		RouteDeleteNode:          1,
		RouteBuildInfo:           1,
		RouteCancelItem:          1,
		RouteCrumb:               1,
		"GET <other>":            1,
	}
	got := s.Calls()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("Calls()[%q] = %d, want %d", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("Calls() = %v, want exactly %v", got, want)
	}
	s.ResetCalls()
	if got := s.Calls(); len(got) != 0 {
		t.Errorf("after reset: %v", got)
	}
}
