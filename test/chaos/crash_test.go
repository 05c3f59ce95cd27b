package chaos_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/ferryci/ferry/test/chaos"
)

func TestMain(m *testing.M) { os.Exit(chaos.Main(m)) }

// round is one crash run: how slowly Jenkins' answer to a trigger comes
// back, how many pushes are sent, and how long a history the job has.
type round struct {
	delay     time.Duration
	pushes    int
	workers   int
	seed      int
	killAfter time.Duration
}

// rounds are the bounded runs of the default suite, or with FERRY_CHAOS=full
// (make chaos) the reproduction as first reported — 800 pushes, the kill 3 s
// in — at slow answers from 50 ms to 5 s, on a fresh job and on one with
// 3,000 builds. At 5 s a trigger holds a worker for 5 s, so that round
// sends fewer pushes to more workers to stay within minutes.
func rounds() []round {
	if os.Getenv("FERRY_CHAOS") == "full" {
		var out []round
		for _, seed := range []int{0, 3000} {
			out = append(out,
				round{delay: 50 * time.Millisecond, pushes: 800, workers: 8, seed: seed, killAfter: 3 * time.Second},
				round{delay: 300 * time.Millisecond, pushes: 800, workers: 8, seed: seed, killAfter: 3 * time.Second},
				round{delay: 5 * time.Second, pushes: 200, workers: 32, seed: seed, killAfter: 3 * time.Second},
			)
		}
		return out
	}
	return []round{
		{delay: 50 * time.Millisecond, pushes: 300, workers: 8, killAfter: time.Second},
		{delay: 300 * time.Millisecond, pushes: 300, workers: 8, killAfter: time.Second},
	}
}

// ferry is SIGKILLed while Jenkins has queued builds whose answers it has
// not seen yet, and restarted a second later under the same name. Every
// accepted push must be built exactly once, and the restarted process must
// find the builds of its interrupted triggers at once (it resumes its own
// events), not a reclaim interval later when the job has moved on.
func TestKillDuringTriggersBuildsEachEventOnce(t *testing.T) {
	for _, r := range rounds() {
		t.Run(fmt.Sprintf("answer_%s_builds_%d", r.delay, r.seed), func(t *testing.T) {
			c := chaos.Start(t, chaos.Options{TriggerDelay: r.delay, Workers: r.workers, SeedBuilds: r.seed})
			f := c.Ferry(0)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			sent := make(chan struct{})
			go func() {
				defer close(sent)
				c.Send(ctx, r.pushes)
			}()

			// Kill once the run is under way and several triggers are in
			// the window: queued in Jenkins, their answers held.
			time.Sleep(r.killAfter)
			waitCtx, waitCancel := context.WithTimeout(ctx, 30*time.Second)
			inWindow := c.Proxy.WaitHeld(waitCtx, 3)
			waitCancel()
			if !inWindow {
				t.Fatalf("three trigger answers were never held at once (%d triggers so far): the kill would hit nothing in flight", c.Proxy.Triggers())
			}
			if err := f.Kill(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
			restarted := time.Now()
			if err := f.Start(); err != nil {
				t.Fatal(err)
			}
			<-sent

			rep := c.WaitBuiltOnce(c.Options().ReclaimAfter + time.Minute)
			resumed, recovered, lastRecovered := afterRestart(f, restarted)
			chaos.Summary(t, "%s resumed=%d recovered=%d recovered_within=%s", rep, resumed, recovered, lastRecovered.Round(time.Millisecond))
			if rep.Doubles == 0 && recovered == 0 {
				t.Errorf("no trigger was in flight at the kill (none doubled, none found again): the run proves nothing")
			}
			if c.Options().NoConsumerFlag {
				return
			}
			if resumed < rep.Dropped {
				t.Errorf("the restarted process resumed %d events; %d triggers were in flight when it was killed", resumed, rep.Dropped)
			}
			if recovered < rep.Dropped {
				t.Errorf("the restarted process found %d earlier builds in Jenkins; %d triggers were in flight when it was killed", recovered, rep.Dropped)
			}
			if limit := c.Options().ReclaimAfter / 2; lastRecovered > limit {
				t.Errorf("the last interrupted trigger was found %s after the restart, over %s: that is a reclaim, not a resume", lastRecovered, limit)
			}
		})
	}
}

// afterRestart reads the restarted process's log: how many events it
// resumed, how many builds of earlier attempts it found in Jenkins, and
// how long after the restart it found the last.
func afterRestart(f *chaos.Ferry, restarted time.Time) (resumed, recovered int, last time.Duration) {
	for _, l := range f.Logs(0, "resumed events this replica had not finished") {
		resumed += l.Int("events")
	}
	for _, l := range f.Logs(0, "found the build in Jenkins from an earlier attempt") {
		recovered++
		if at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(l["time"])); err == nil {
			last = max(last, at.Sub(restarted))
		}
	}
	return resumed, recovered, last
}
