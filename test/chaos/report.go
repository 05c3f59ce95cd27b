package chaos

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/config"
)

// Report is what became of the deliveries sent to a cluster.
type Report struct {
	// Delay is the proxy's hold on trigger answers.
	Delay time.Duration
	// Seeded builds the job had before ferry started.
	Seeded int
	// Sent deliveries; Accepted of them (202, or duplicate on
	// redelivery); Redelivered needed more than one send; Failed were
	// never accepted.
	Sent, Accepted, Redelivered, Failed int
	// Builds of ferry's events (queued items count as builds to come),
	// re-runs included; Reruns of them are re-runs (attempt 2 and later)
	// of builds lost to infrastructure.
	Builds, Reruns int
	// Doubles: events with an attempt built more than once. Missing:
	// accepted events with no build of any attempt. Stray: builds of events
	// no accepted delivery names.
	Doubles, Missing, Stray int
	// Dropped trigger answers: Jenkins queued the build, the caller was
	// gone (killed) before the answer came.
	Dropped int
	// Quiet says whether the queue was done with every event when the
	// report was made (false: Settle timed out).
	Quiet bool

	// DoubledIDs and MissingIDs name the first few of each, with build
	// numbers.
	DoubledIDs, MissingIDs []string
}

// String is the one-line summary of a run.
func (r Report) String() string {
	return fmt.Sprintf("delay=%s seeded=%d sent=%d accepted=%d redelivered=%d failed=%d builds=%d reruns=%d doubles=%d missing=%d stray=%d dropped=%d",
		r.Delay, r.Seeded, r.Sent, r.Accepted, r.Redelivered, r.Failed, r.Builds, r.Reruns, r.Doubles, r.Missing, r.Stray, r.Dropped)
}

// Settle waits until the cluster has nothing left to do — every accepted
// event has a build and the queue has handed out and acknowledged every
// event, so no further trigger can come — or timeout passes, then counts.
func (c *Cluster) Settle(timeout time.Duration) Report {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var why string
	for {
		r := c.count()
		if r.Missing == 0 {
			quiet, reason, err := c.queueQuiet(ctx)
			if err != nil && ctx.Err() == nil {
				c.t.Fatalf("settle: %v", err)
			}
			if quiet {
				r.Quiet = true
				return r
			}
			why = reason
		} else {
			why = fmt.Sprintf("%d accepted events not built yet", r.Missing)
		}
		select {
		case <-ctx.Done():
			c.t.Logf("settle: gave up after %s: %s", timeout, why)
			return c.count()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitBuiltOnce settles the cluster and fails the test unless every
// delivery was accepted and became exactly one build, and no build came
// from nowhere. Print the report with Summary.
func (c *Cluster) WaitBuiltOnce(timeout time.Duration) Report {
	c.t.Helper()
	r := c.Settle(timeout)
	if r.Doubles > 0 {
		c.t.Errorf("%s: %d events were built more than once: %s", r, r.Doubles, strings.Join(r.DoubledIDs, "; "))
	}
	if r.Missing > 0 {
		c.t.Errorf("%s: %d accepted events were not built within %s: %s", r, r.Missing, timeout, strings.Join(r.MissingIDs, "; "))
	}
	if r.Failed > 0 {
		c.t.Errorf("%s: %d of %d deliveries were never accepted, even redelivered", r, r.Failed, r.Sent)
	}
	if r.Stray > 0 {
		c.t.Errorf("%s: %d builds belong to no accepted delivery", r, r.Stray)
	}
	if !r.Quiet {
		c.t.Errorf("%s: ferry's queue still had work after %s", r, timeout)
	}
	return r
}

// count compares the deliveries with the builds Jenkins has.
func (c *Cluster) count() Report {
	ds := c.Deliveries()
	r := Report{Delay: c.Proxy.Delay(), Seeded: c.baseline, Sent: len(ds), Dropped: c.Proxy.Dropped()}
	// trigger id of attempt 1 → attempt → build numbers, or queue items
	builds := map[string]map[int][]string{}
	add := func(id, what string) {
		base, attempt := id, config.TriggerAttempt(id)
		if attempt > 1 {
			base = id[:strings.LastIndexByte(id, '#')]
			r.Reruns++
		}
		if builds[base] == nil {
			builds[base] = map[int][]string{}
		}
		builds[base][attempt] = append(builds[base][attempt], what)
		r.Builds++
	}
	for _, b := range c.Jenkins.Builds(Job)[min(c.baseline, len(c.Jenkins.Builds(Job))):] {
		add(b.Params[config.ParamTriggerID], fmt.Sprintf("#%d", b.Number))
	}
	for _, q := range c.Jenkins.QueueItems() {
		if q.Job != Job || q.Placeholder || q.Cancelled || q.State == "left" {
			continue
		}
		add(q.Params[config.ParamTriggerID], fmt.Sprintf("queue item %d", q.ID))
	}
	want := map[string]bool{}
	for _, d := range ds {
		if d.Attempts > 1 {
			r.Redelivered++
		}
		if !d.Accepted() {
			r.Failed++
			continue
		}
		r.Accepted++
		id := config.TriggerID(d.EventID, Pipeline)
		want[id] = true
		if len(builds[id]) == 0 {
			r.Missing++
			if len(r.MissingIDs) < 10 {
				r.MissingIDs = append(r.MissingIDs, fmt.Sprintf("%s (delivery %s, %d attempts)", id, d.GUID, d.Attempts))
			}
		}
		for attempt, bs := range builds[id] {
			if len(bs) > 1 {
				r.Doubles++
				if len(r.DoubledIDs) < 10 {
					r.DoubledIDs = append(r.DoubledIDs, fmt.Sprintf("%s attempt %d: %s", id, attempt, strings.Join(bs, ", ")))
				}
				break
			}
		}
	}
	for id, attempts := range builds {
		if !want[id] {
			for _, bs := range attempts {
				r.Stray += len(bs)
			}
		}
	}
	slices.Sort(r.DoubledIDs)
	return r
}

// Summary logs a line of figures and, when FERRY_CHAOS_REPORT names a
// file, appends it there, so a whole run's figures can be printed at its
// end (make chaos does).
func Summary(tb testing.TB, format string, args ...any) {
	tb.Helper()
	line := fmt.Sprintf(format, args...)
	tb.Log(line)
	path := os.Getenv("FERRY_CHAOS_REPORT")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		tb.Errorf("write the summary to %s: %v", path, err)
		return
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "%s %s\n", tb.Name(), line); err != nil {
		tb.Errorf("write the summary to %s: %v", path, err)
	}
}
