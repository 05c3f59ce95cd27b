package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Stage is one step of a change's way from push to production, as the demo
// sees it in a real component.
type Stage int

// The stages, in the order a change goes through them.
const (
	StageAccepted Stage = iota
	StageQueued
	StageAgentPod
	StageBuildRunning
	StageImagePushed
	StagePromotedTest
	StageVerified
	StageWaitingApproval
	StageApproved
	StageProduction
	StageAgentGone
	StageReported
	numStages
)

// stageInfo is what the demo prints for a stage and where it saw it.
var stageInfo = [numStages]struct{ name, seenIn string }{
	StageAccepted:        {"accepted", "ferry's delivery log (GET /api/v1/deliveries)"},
	StageQueued:          {"queued in Jenkins", "the Jenkins emulator's queue"},
	StageAgentPod:        {"agent pod on a virtual node", "the bed's API server"},
	StageBuildRunning:    {"build running", "the Jenkins emulator's builds"},
	StageImagePushed:     {"image built and pushed", "ferry image build, then the registry"},
	StagePromotedTest:    {"promoted to test", "the promotion API and the test Deployment"},
	StageVerified:        {"verified", "the promotion API (verification Job)"},
	StageWaitingApproval: {"waiting for approval", "the promotion API"},
	StageApproved:        {"approved", "the promotion API's audit trail"},
	StageProduction:      {"production", "the promotion API and the production Deployment"},
	StageAgentGone:       {"agent gone", "the bed's API server and the Jenkins emulator's nodes"},
	StageReported:        {"commit status, deployments", "the GitHub fake's records"},
}

func (s Stage) String() string {
	if s < 0 || s >= numStages {
		return fmt.Sprintf("stage(%d)", int(s))
	}
	return stageInfo[s].name
}

// Stages returns every stage in order.
func Stages() []Stage {
	out := make([]Stage, numStages)
	for i := range out {
		out[i] = Stage(i)
	}
	return out
}

// Seen is a stage as the demo observed it: when (since the push was sent)
// and what it saw.
type Seen struct {
	Stage  Stage
	After  time.Duration
	Detail string
}

// Line is the live line printed when a stage is seen.
func (s Seen) Line() string {
	return fmt.Sprintf("%8s  %-28s  %s", formatAfter(s.After), s.Stage, s.Detail)
}

// formatAfter is a time since the push, to the tenth of a second.
func formatAfter(d time.Duration) string {
	return fmt.Sprintf("+%.1fs", d.Round(100*time.Millisecond).Seconds())
}

// missing returns the stages not in seen, in order.
func missing(seen []Seen) []Stage {
	got := map[Stage]bool{}
	for _, s := range seen {
		got[s.Stage] = true
	}
	var out []Stage
	for _, st := range Stages() {
		if !got[st] {
			out = append(out, st)
		}
	}
	return out
}

// printTimeline writes each stage's time since the push and the time it
// took after the previous one; stages never seen are listed as such.
func printTimeline(w io.Writer, seen []Seen) {
	fmt.Fprintln(w, "timeline (since the push was sent):")
	fmt.Fprintf(w, "  %-28s %9s %9s  %s\n", "stage", "at", "step", "seen in")
	var prev time.Duration
	for _, s := range seen {
		fmt.Fprintf(w, "  %-28s %9s %9s  %s\n", s.Stage, formatAfter(s.After), formatAfter(s.After-prev), stageInfo[s.Stage].seenIn)
		prev = s.After
	}
	for _, st := range missing(seen) {
		fmt.Fprintf(w, "  %-28s %9s %9s  %s\n", st, "never", "", stageInfo[st].seenIn)
	}
}

// oneLine folds a multi-line text (a command's output) into one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
