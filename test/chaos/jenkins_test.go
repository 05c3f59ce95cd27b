package chaos_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/test/chaos"
	"github.com/ferryci/ferry/test/jenkinsemu"
)

// TestJenkinsRestartOnTheBed restarts the Jenkins controller (the
// emulator's Restart: running builds and the queue lost, jobs and nodes
// kept, agents offline until they connect again) while a burst of builds
// runs on agents of three ferry processes. Every build the restart lost
// must be re-run exactly once (a re-run, attempt 2, of the same event),
// every other event built once, and no agent pod, Secret or Jenkins node
// left behind.
func TestJenkinsRestartOnTheBed(t *testing.T) {
	b := startHABed(t)
	// Builds long enough that many run when Jenkins goes.
	if err := b.c.Jenkins.UpdateJob(chaos.Job, func(s *jenkinsemu.JobSpec) { s.Duration = 10 * time.Second }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a provisioner leader", time.Minute, func() bool { return b.leader(t.Context()) != nil })
	n := burst() / 2
	<-b.sendBurst(n)
	// The queue is drained (a lost queue item is found lost only after
	// dispatch's vanishAfter, 15 minutes) and builds run.
	var lost []string
	waitFor(t, "every build started, some still running", 3*time.Minute, func() bool {
		lost = lost[:0]
		if len(b.c.Jenkins.QueueItems()) > 0 || len(b.c.Jenkins.Builds(chaos.Job)) < n {
			return false
		}
		for _, bl := range b.c.Jenkins.Builds(chaos.Job) {
			if bl.Building {
				lost = append(lost, bl.Params[config.ParamTriggerID])
			}
		}
		return len(lost) >= 3
	})
	restarted := time.Now()
	if err := b.c.Jenkins.Restart(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	// Work resumed: the first re-run reached Jenkins.
	waitFor(t, "a lost build re-run", 2*time.Minute, func() bool {
		for _, bl := range b.c.Jenkins.Builds(chaos.Job) {
			if config.TriggerAttempt(bl.Params[config.ParamTriggerID]) > 1 {
				return true
			}
		}
		for _, q := range b.c.Jenkins.QueueItems() {
			if config.TriggerAttempt(q.Params[config.ParamTriggerID]) > 1 {
				return true
			}
		}
		return false
	})
	resumed := time.Since(restarted)
	b.settle(t, "jenkins-restart", resumed, fmt.Sprintf("lost=%d", len(lost)))
	attempts := map[string]int{}
	for _, bl := range b.c.Jenkins.Builds(chaos.Job) {
		attempts[bl.Params[config.ParamTriggerID]]++
	}
	for _, id := range lost {
		if attempts[id+"#2"] != 1 || attempts[id+"#3"] != 0 {
			t.Errorf("build %s was lost by the restart and re-run %d times (attempt 3: %d), want once", id, attempts[id+"#2"], attempts[id+"#3"])
		}
	}
	for id := range attempts {
		if base, ok := strings.CutSuffix(id, "#2"); ok && !slices.Contains(lost, base) {
			t.Errorf("%s was re-run though the restart did not lose it", base)
		}
	}
}
