package promote_test

import (
	"strings"
	"testing"

	"github.com/ferryci/ferry/pkg/promote"
)

func TestJudgeRevision(t *testing.T) {
	const img = "registry.example/release/hello@sha256:01"
	up := promote.KnativeObservation{Observed: true, LatestCreated: "hello-00002", LatestReady: "hello-00002", RevisionImage: img, RevisionReady: "True"}
	for _, tt := range []struct {
		name string
		edit func(*promote.KnativeObservation)
		want promote.KnativeState
		says string
	}{
		{"ready", func(*promote.KnativeObservation) {}, promote.KnativeDone, "revision hello-00002 is ready"},
		{"controller behind", func(o *promote.KnativeObservation) { o.Observed = false }, promote.KnativeWaiting, "observe the new generation"},
		{"no revision yet", func(o *promote.KnativeObservation) { o.LatestCreated = "" }, promote.KnativeWaiting, "observe"},
		{"starting", func(o *promote.KnativeObservation) { o.RevisionReady, o.RevisionMessage = "Unknown", "Deploying" }, promote.KnativeWaiting, "not ready yet (Deploying)"},
		{"ready but not yet latest ready", func(o *promote.KnativeObservation) { o.LatestReady = "hello-00001" }, promote.KnativeWaiting, "not ready yet"},
		{"failed", func(o *promote.KnativeObservation) { o.RevisionReady, o.RevisionMessage = "False", "ExitCode1: boom" }, promote.KnativeFailed, "revision hello-00002 failed: ExitCode1: boom"},
		{"someone else's image", func(o *promote.KnativeObservation) { o.RevisionImage = "other:1" }, promote.KnativeFailed, "changed by someone else"},
	} {
		o := up
		tt.edit(&o)
		got, says := promote.JudgeRevision(o, img)
		if got != tt.want || !strings.Contains(says, tt.says) {
			t.Errorf("%s: %v %q, want %v %q", tt.name, got, says, tt.want, tt.says)
		}
	}
}

func TestJudgeTraffic(t *testing.T) {
	want := map[string]int64{"hello-00001": 80, "hello-00002": 20}
	in := promote.KnativeObservation{Observed: true, RoutesReady: "True", Traffic: map[string]int64{"hello-00001": 80, "hello-00002": 20, "hello-00000": 0}}
	for _, tt := range []struct {
		name string
		edit func(*promote.KnativeObservation)
		want promote.KnativeState
	}{
		{"routed (a 0% entry is no route)", func(*promote.KnativeObservation) {}, promote.KnativeDone},
		{"controller behind", func(o *promote.KnativeObservation) { o.Observed = false }, promote.KnativeWaiting},
		{"old split", func(o *promote.KnativeObservation) { o.Traffic = map[string]int64{"hello-00001": 100} }, promote.KnativeWaiting},
		{"route programming", func(o *promote.KnativeObservation) { o.RoutesReady = "Unknown" }, promote.KnativeWaiting},
		{"route failed", func(o *promote.KnativeObservation) { o.RoutesReady, o.RoutesMessage = "False", "RevisionMissing" }, promote.KnativeFailed},
	} {
		o := in
		tt.edit(&o)
		if got, says := promote.JudgeTraffic(o, want); got != tt.want {
			t.Errorf("%s: %v (%s), want %v", tt.name, got, says, tt.want)
		}
	}
}
