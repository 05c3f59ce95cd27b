package provision

import (
	"time"

	"github.com/ferryci/ferry/pkg/eci"
)

// maxActivations bounds how many times a window's start a schedule walks
// through to answer one question: a start every second with a week's
// duration would otherwise take 600,000 steps.
const maxActivations = 10000

// lookbacks are how far back the last opening of an end-closed window is
// looked for, shortest first: a frequent start is found in the first one
// in few steps; a yearly one in the last.
var lookbacks = []time.Duration{time.Hour, 24 * time.Hour, 8 * 24 * time.Hour, 32 * 24 * time.Hour, 367 * 24 * time.Hour}

// desiredWarm is the size a warm pool's schedule asks for at now: the
// largest size among its open windows, at least its base size; and the
// name of the window that sets it ("" for the base size). A window's
// opening on an excluded date (in the schedule's time zone) does not
// count. Pure: the clock is now.
func desiredWarm(now time.Time, s *eci.WarmSchedule) (int, string) {
	if s == nil {
		return 0, ""
	}
	loc := s.Location
	if loc == nil {
		loc = time.UTC
	}
	now = now.In(loc)
	size, by := s.Size, ""
	for _, w := range s.Windows {
		if w.Size > size && windowOpen(now, w, s.Excluded) {
			size, by = w.Size, w.Name
		}
	}
	return size, by
}

// windowOpen reports whether one of w's openings, not on an excluded
// date, is open at now.
func windowOpen(now time.Time, w eci.CompiledWindow, excluded []eci.DateMatcher) bool {
	if w.End == nil {
		// Every opening in (now-Duration, now] is open now.
		t := w.Start.Next(now.Add(-w.Duration))
		for i := 0; i < maxActivations && !t.IsZero() && !t.After(now); i++ {
			if !excludedDay(t, excluded) {
				return true
			}
			t = w.Start.Next(t)
		}
		return false
	}
	opened := lastActivation(w.Start, now)
	if opened.IsZero() || excludedDay(opened, excluded) {
		return false
	}
	return w.End.Next(opened).After(now)
}

// lastActivation returns the latest time at or before now that s names,
// or zero if none is within a year.
func lastActivation(s interface{ Next(time.Time) time.Time }, now time.Time) time.Time {
	for _, back := range lookbacks {
		var last time.Time
		t := s.Next(now.Add(-back))
		for i := 0; i < maxActivations && !t.IsZero() && !t.After(now); i++ {
			last = t
			t = s.Next(t)
		}
		if !last.IsZero() {
			return last
		}
	}
	return time.Time{}
}

func excludedDay(t time.Time, excluded []eci.DateMatcher) bool {
	for _, d := range excluded {
		if d.Matches(t) {
			return true
		}
	}
	return false
}
