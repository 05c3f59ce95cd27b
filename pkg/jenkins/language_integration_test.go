package jenkins_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/jenkins"
	"github.com/ferryci/ferry/test/jenkinsemu"
)

// TestEmulatorLanguages runs the three places ferry depends on Jenkins'
// prose against a controller speaking English, one whose default locale is
// Chinese (ferry's Accept-Language gets English), and one whose Locale
// plugin forces Chinese on everybody:
//
//	(a) the label a queued build waits for, read from why — impossible
//	    when Chinese is forced, which LanguageProblem must then report;
//	(b) an agent ferry took offline, recognised by its offline message;
//	(c) a taken node name on creation, reported as ErrExists.
func TestEmulatorLanguages(t *testing.T) {
	const offlineMsg = "ferry: one build per agent"
	tests := []struct {
		name        string
		locale      string
		force       bool
		wantLabel   string
		wantProblem bool
	}{
		{"English", "en", false, emuLabel, false},
		{"Chinese by default", "zh_CN", false, emuLabel, false},
		{"Chinese forced by the Locale plugin", "zh_CN", true, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := jenkinsemu.New(jenkinsemu.Options{Locale: tt.locale, IgnoreAcceptLanguage: tt.force, Logger: slog.New(slog.DiscardHandler)})
			t.Cleanup(srv.Close)
			if err := srv.AddJob("app", jenkinsemu.JobSpec{Label: emuLabel, Duration: jenkinsemu.Forever, Params: ferryParams}); err != nil {
				t.Fatal(err)
			}
			c := emuClient(t, srv, func(c *jenkins.Config) { c.MarkerParam = "FERRY_ID" })
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			// (c) A second creation of the same node.
			for _, n := range []string{"a1", "a2"} {
				if err := c.CreateNode(ctx, jenkins.NodeSpec{Name: n, Labels: []string{emuLabel}, WebSocket: true}); err != nil {
					t.Fatalf("CreateNode %s: %v", n, err)
				}
			}
			if err := c.CreateNode(ctx, jenkins.NodeSpec{Name: "a1", Labels: []string{emuLabel}}); !errors.Is(err, jenkins.ErrExists) {
				t.Errorf("(c) CreateNode of a taken name: err = %v, want ErrExists", err)
			}

			// (a) The label of a queued build.
			res, err := c.Trigger(ctx, "app", map[string]string{"SHA": "abc", "FERRY_ID": "ev-1"})
			if err != nil {
				t.Fatal(err)
			}
			items, err := c.Queue(ctx)
			if err != nil || len(items) != 1 || items[0].ID != res.QueueID {
				t.Fatalf("Queue = %+v, %v", items, err)
			}
			if got := items[0].WaitingLabel(); got != tt.wantLabel {
				t.Errorf("(a) WaitingLabel of %q = %q, want %q", items[0].Why, got, tt.wantLabel)
			}
			problem := c.LanguageProblem()
			if got := problem != nil; got != tt.wantProblem {
				t.Errorf("(a) LanguageProblem = %v, want a problem: %v", problem, tt.wantProblem)
			}
			if tt.wantProblem && !errors.Is(problem, jenkins.ErrUnreadable) {
				t.Errorf("(a) LanguageProblem = %v, want ErrUnreadable", problem)
			}

			// (b) An agent that ran its build, taken offline by ferry.
			if err := srv.ConnectAgent("a1", srv.AgentSecret("a1")); err != nil {
				t.Fatal(err)
			}
			if err := c.MarkOffline(ctx, "a1", offlineMsg); err != nil {
				t.Fatal(err)
			}
			comps, err := c.Computers(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var a1 *jenkins.Computer
			for i := range comps {
				if comps[i].Name == "a1" {
					a1 = &comps[i]
				}
			}
			if a1 == nil || !a1.OfflineWith(offlineMsg) {
				t.Errorf("(b) a1 = %+v; want it recognised as offline with %q", a1, offlineMsg)
			}
		})
	}
}
