package eci

import (
	"errors"
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
	"k8s.io/apimachinery/pkg/util/validation"
)

// WarmPool keeps ready agents of a template waiting for builds: Jenkins
// node connected, pod running, no build yet. Each takes one build, then
// goes like any agent and is replaced. Its size follows Schedule (windows
// in TimeZone, CronHPA-style), and the AgentPool object PoolRef names
// when that exists and sets spec.replicas (see the provision package).
type WarmPool struct {
	// Size is the pool's size outside every window; default 0.
	Size int `json:"size,omitempty"`
	// Schedule lists windows; while one is open the pool holds at least
	// its size (the largest open window's).
	Schedule []WarmWindow `json:"schedule,omitempty"`
	// ExcludeDates are days on which no window opens (holidays): a date
	// like 2026-12-25, or a cron expression whose day-of-month, month and
	// day-of-week fields pick days, as CronHPA's excludeDates do
	// ("* * * 25 12 *": every 25 December; "* * * * * 6,0": weekends).
	ExcludeDates []string `json:"excludeDates,omitempty"`
	// TimeZone is the IANA zone windows and dates are read in; default
	// UTC.
	TimeZone string `json:"timeZone,omitempty"`
	// MaxIdle recycles a warm agent idle for longer, so that none drifts
	// (a stale image cache, a long-lived spot instance); default 30m.
	MaxIdle Duration `json:"maxIdle,omitzero"`
	// PoolRef names an AgentPool (ferry.dev/v1alpha1) in the agents'
	// namespace whose spec.replicas, when set, sets the size instead of
	// Size and Schedule, so kubectl scale, an HPA, KEDA or ACK's CronHPA
	// can drive it through its scale subresource.
	PoolRef string `json:"poolRef,omitempty"`
}

// WarmWindow is one window of a warm pool's schedule: it opens at each
// time Start names and closes after Duration, or at the next time End
// names.
type WarmWindow struct {
	// Name names the window in logs and metrics; default window-N.
	Name string `json:"name,omitempty"`
	// Start is a cron expression: five fields (minute hour day-of-month
	// month day-of-week), six with seconds first as CronHPA writes them,
	// or a descriptor such as @daily.
	Start string `json:"start"`
	// End is a cron expression closing the window; set End or Duration.
	End string `json:"end,omitempty"`
	// Duration closes the window this long after it opened.
	Duration Duration `json:"duration,omitzero"`
	// Size is the pool's size while the window is open.
	Size int `json:"size"`
}

// DefaultWarmMaxIdle is WarmPool.MaxIdle's default.
const DefaultWarmMaxIdle = 30 * time.Minute

// cronParser reads five-field, six-field (seconds first) and descriptor
// expressions.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// WarmSchedule is a warm pool's schedule, parsed (see WarmPool.Compile).
type WarmSchedule struct {
	Size     int
	Windows  []CompiledWindow
	Location *time.Location
	Excluded []DateMatcher
	MaxIdle  time.Duration
	PoolRef  string
}

// CompiledWindow is a parsed WarmWindow.
type CompiledWindow struct {
	Name       string
	Start, End cron.Schedule
	Duration   time.Duration
	Size       int
}

// DateMatcher is one excluded date: a day, or a cron expression's days.
type DateMatcher struct {
	// Day is set for a date like 2026-12-25 (year, month, day).
	Day *[3]int
	// Days matches a cron expression's days.
	Days cron.Schedule
}

// Matches reports whether the day of t (in t's location) is excluded.
func (d DateMatcher) Matches(t time.Time) bool {
	y, m, day := t.Date()
	if d.Day != nil {
		return *d.Day == [3]int{y, int(m), day}
	}
	start := time.Date(y, m, day, 0, 0, 0, 0, t.Location())
	next := d.Days.Next(start.Add(-time.Second))
	return next.Before(start.AddDate(0, 0, 1))
}

// Compile validates the pool and parses its schedule. Errors name the
// field (relative to warmPool) and say how to fix it.
func (p WarmPool) Compile() (*WarmSchedule, error) {
	v := &validator{}
	s := &WarmSchedule{Size: p.Size, MaxIdle: p.MaxIdle.Duration, PoolRef: p.PoolRef, Location: time.UTC}
	if s.MaxIdle == 0 {
		s.MaxIdle = DefaultWarmMaxIdle
	}
	switch {
	case p.Size < 0:
		v.add("size", "must not be negative")
	case p.MaxIdle.Duration < 0:
		v.add("maxIdle", "must not be negative; write a duration like 30m (default 30m)")
	case p.MaxIdle.Duration > 0 && p.MaxIdle.Duration < time.Minute:
		v.add("maxIdle", "%s is too short for an agent to start and wait: use at least 1m", p.MaxIdle.Duration)
	}
	if p.TimeZone != "" {
		loc, err := time.LoadLocation(p.TimeZone)
		if err != nil {
			v.add("timeZone", "%q is not an IANA time zone (e.g. Asia/Shanghai, Europe/Berlin, UTC)", p.TimeZone)
		} else {
			s.Location = loc
		}
	}
	if p.PoolRef != "" && len(validation.IsDNS1123Subdomain(p.PoolRef)) > 0 {
		v.add("poolRef", "%q is not a Kubernetes object name (lower-case letters, digits, '-' and '.')", p.PoolRef)
	}
	for i, w := range p.Schedule {
		f := fmt.Sprintf("schedule[%d]", i)
		c := CompiledWindow{Name: w.Name, Duration: w.Duration.Duration, Size: w.Size}
		if c.Name == "" {
			c.Name = fmt.Sprintf("window-%d", i)
		}
		var err error
		if c.Start, err = parseCron(w.Start); err != nil {
			v.add(f+".start", "%v", err)
		}
		switch {
		case w.End != "" && w.Duration.Duration != 0:
			v.add(f, "set end or duration, not both")
		case w.End != "":
			if c.End, err = parseCron(w.End); err != nil {
				v.add(f+".end", "%v", err)
			}
		case w.Duration.Duration <= 0:
			v.add(f+".duration", "set a positive duration (e.g. 10h) or an end cron expression")
		}
		if w.Size < 0 {
			v.add(f+".size", "must not be negative")
		}
		s.Windows = append(s.Windows, c)
	}
	for i, d := range p.ExcludeDates {
		m, err := parseExcluded(d)
		if err != nil {
			v.add(fmt.Sprintf("excludeDates[%d]", i), "%v", err)
			continue
		}
		s.Excluded = append(s.Excluded, m)
	}
	if err := errors.Join(v.errs...); err != nil {
		return nil, err
	}
	return s, nil
}

func parseCron(expr string) (cron.Schedule, error) {
	if expr == "" {
		return nil, errors.New("must be set: a cron expression such as \"0 8 * * 1-5\" (08:00 on weekdays)")
	}
	s, err := cronParser.Parse(expr)
	if err != nil {
		return nil, fmt.Errorf("%q is not a cron expression (%w): write five fields (minute hour day-of-month month day-of-week) such as \"0 8 * * 1-5\", six with seconds first, or @daily", expr, err)
	}
	return s, nil
}

func parseExcluded(d string) (DateMatcher, error) {
	if t, err := time.Parse(time.DateOnly, d); err == nil {
		y, m, day := t.Date()
		return DateMatcher{Day: &[3]int{y, int(m), day}}, nil
	}
	s, err := cronParser.Parse(d)
	if err != nil {
		return DateMatcher{}, fmt.Errorf("%q is neither a date like 2026-12-25 nor a cron expression like \"* * * 25 12 *\"", d)
	}
	return DateMatcher{Days: s}, nil
}

func (v *validator) warmPool(t Template) {
	if t.WarmPool == nil {
		return
	}
	if _, err := t.WarmPool.Compile(); err != nil {
		for _, e := range unjoin(err) {
			v.errs = append(v.errs, fmt.Errorf("warmPool.%w", e))
		}
	}
	if len(t.Labels) == 0 {
		v.add("warmPool", "a template without labels serves no build: put the warm pool on a template with labels")
	}
	maxIdle := t.WarmPool.MaxIdle.Duration
	if maxIdle == 0 {
		maxIdle = DefaultWarmMaxIdle
	}
	if d := t.ActiveDeadline.Duration; d > 0 && maxIdle >= d {
		// activeDeadlineSeconds counts from the pod's start, idle time
		// included: a build on a warm agent gets what is left.
		v.add("warmPool.maxIdle", "%s must be below activeDeadline (%s): a warm agent's idle time counts against its pod's deadline", maxIdle, d)
	}
	if p := t.WarmPool; t.MaxAgents > 0 {
		biggest := p.Size
		for _, w := range p.Schedule {
			biggest = max(biggest, w.Size)
		}
		if biggest > t.MaxAgents {
			v.add("warmPool", "a size of %d exceeds maxAgents (%d): warm agents count against the cap, so the pool could never fill", biggest, t.MaxAgents)
		}
	}
}
