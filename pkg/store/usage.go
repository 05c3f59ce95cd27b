package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Agent usage: what each template's agents cost (pod-seconds, from pod
// creation to deletion: what ECI bills) against what they were used for
// (build-seconds), summed per day and template. The provisioner's leader
// adds each agent once when it deletes it (AddAgentUsage); the agents
// page reads a day's sums (Usage). Days are UTC days: a day's counters
// hold the part of each agent's seconds that fell between its 00:00 and
// 24:00 UTC, so an agent running over midnight counts on both days.

// UsageRetention is how long a day's counters, and the marks that keep an
// agent from being counted twice, are kept.
const UsageRetention = 8 * 24 * time.Hour

// UsageDayLayout is how a UTC day is named in the store.
const UsageDayLayout = "2006-01-02"

// AgentUsage is one agent's life, as the provisioner saw it end.
type AgentUsage struct {
	// Agent is the agent's (pod's) name: it is counted once.
	Agent    string
	Template string
	// Created is its pod's creation, Ended when it was deleted.
	Created, Ended time.Time
	// RanSince is since when it ran its build; zero: it ran none (or
	// none was seen).
	RanSince time.Time
}

// Validate says what is wrong with u.
func (u AgentUsage) Validate() error {
	var errs []error
	if u.Agent == "" {
		errs = append(errs, errors.New("agent name is empty"))
	}
	if u.Template == "" || strings.ContainsAny(u.Template, ":\x00") {
		errs = append(errs, fmt.Errorf("template %q must be a non-empty name without ':'", u.Template))
	}
	if u.Created.IsZero() || u.Ended.Before(u.Created) {
		errs = append(errs, fmt.Errorf("pod life %s → %s: creation must be set and not after the end", u.Created.Format(time.RFC3339), u.Ended.Format(time.RFC3339)))
	}
	if !u.RanSince.IsZero() && u.Ended.Before(u.RanSince) {
		errs = append(errs, fmt.Errorf("build start %s is after the end %s", u.RanSince.Format(time.RFC3339), u.Ended.Format(time.RFC3339)))
	}
	if len(errs) > 0 {
		return fmt.Errorf("agent usage of %q: %w", u.Agent, errors.Join(errs...))
	}
	return nil
}

// UsageCount is a template's sums over one day.
type UsageCount struct {
	Template     string  `json:"template"`
	PodSeconds   float64 `json:"pod_seconds"`
	BuildSeconds float64 `json:"build_seconds"`
	// Agents counts agents that ended that day.
	Agents int64 `json:"agents"`
}

// DayUsage is the part of an agent's usage that falls on one UTC day.
type DayUsage struct {
	Day string // UsageDayLayout
	UsageCount
}

// UsageDay names the UTC day of t.
func UsageDay(t time.Time) string { return t.UTC().Format(UsageDayLayout) }

// SplitUsage splits u's seconds over the UTC days they fell on, oldest
// first; the agent itself is counted on the day it ended. Pure.
func SplitUsage(u AgentUsage) []DayUsage {
	var out []DayUsage
	at := func(day string) *DayUsage {
		for i := range out {
			if out[i].Day == day {
				return &out[i]
			}
		}
		out = append(out, DayUsage{Day: day, UsageCount: UsageCount{Template: u.Template}})
		return &out[len(out)-1]
	}
	spread := func(from, to time.Time, add func(*DayUsage, float64)) {
		from, to = from.UTC(), to.UTC()
		for from.Before(to) {
			next := from.Truncate(24 * time.Hour).Add(24 * time.Hour)
			end := next
			if next.After(to) {
				end = to
			}
			add(at(UsageDay(from)), end.Sub(from).Seconds())
			from = end
		}
	}
	spread(u.Created, u.Ended, func(d *DayUsage, s float64) { d.PodSeconds += s })
	if !u.RanSince.IsZero() {
		from := u.RanSince
		if from.Before(u.Created) {
			from = u.Created
		}
		spread(from, u.Ended, func(d *DayUsage, s float64) { d.BuildSeconds += s })
	}
	at(UsageDay(u.Ended)).Agents++
	slices.SortFunc(out, func(a, b DayUsage) int { return strings.Compare(a.Day, b.Day) })
	return out
}

// SortUsage orders counts by template.
func SortUsage(c []UsageCount) {
	slices.SortFunc(c, func(a, b UsageCount) int { return strings.Compare(a.Template, b.Template) })
}
