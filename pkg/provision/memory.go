package provision

import (
	"maps"
	"slices"
	"time"

	"github.com/ferryci/ferry/pkg/jenkins"
)

// memory is what the provisioner remembers between cycles. Only reconcile
// changes it, by applying what decide returned (see remember). Losing it
// (a restart) only makes ferry more careful, never wrong.
type memory struct {
	agents map[string]agentMemory
	items  map[int64]itemMemory
	// unread holds since when each agent Secret no pod reads from has been
	// seen so (see decideSecrets).
	unread map[string]time.Time
	// warm holds each template's warm pool memory (see warm.go).
	warm map[string]warmMemory
	// waiting holds the items that waited for each template at the last
	// cycle: a warm agent first seen connected may have taken any of
	// them (see stateWarmUsed).
	waiting map[string][]int64
}

func newMemory() memory {
	return memory{agents: map[string]agentMemory{}, items: map[int64]itemMemory{}, unread: map[string]time.Time{}, warm: map[string]warmMemory{}}
}

func (m memory) clone() memory {
	return memory{agents: maps.Clone(m.agents), items: maps.Clone(m.items), unread: maps.Clone(m.unread), warm: maps.Clone(m.warm), waiting: maps.Clone(m.waiting)}
}

// agentMemory is what the provisioner remembers of one agent.
type agentMemory struct {
	firstSeen time.Time
	// fresh: seen idle while its own item still waited, and never seen
	// running: it has not run a build and may serve another item of its
	// template (Jenkins gives any waiting item of the label to the first
	// agent that connects).
	fresh     bool
	ranSince  time.Time
	build     jenkins.Executable
	goneSince time.Time
	// offlineSince: the agent disconnected while running a build.
	offlineSince time.Time
	queuedAt     time.Time
	// steps are the steps of its life already measured.
	steps stepSet
	// reclaimReported: the build running on this agent was reported as
	// losing its spot instance (see stateReclaiming).
	reclaimReported bool
	// idleCounted: a warm agent's idle time was measured (see idleOver).
	idleCounted bool
	// exposed holds the items that waited for a warm agent's template
	// while it was connected and idle (see stateWarmUsed).
	exposed []int64
}

// recall returns what is remembered of an agent, or, for one seen for the
// first time, that it is first seen now.
func (m memory) recall(name string, now time.Time) agentMemory {
	if am, ok := m.agents[name]; ok {
		return am
	}
	return agentMemory{firstSeen: now}
}

// itemMemory is what the provisioner remembers of one queue item.
type itemMemory struct {
	nextAttempt int
	fallback    int
	notBefore   time.Time
	gaveUp      bool
	// maxSeen is the highest attempt of the item's agents seen: a new
	// attempt is never given an earlier one's name, even once that agent
	// is gone (its pod may still be terminating).
	maxSeen int
	// swapped counts the attempts that replaced an agent Jenkins gave
	// another item's build, not a failure: they do not count against
	// Retry.MaxAttempts. swapAttempt is the last one counted.
	swapped     int
	swapAttempt int
}

// stepSet holds the steps of an agent's life already measured (the
// step attribute of ferry_provision_step_seconds measured per agent).
type stepSet uint8

var agentSteps = [...]string{stepScheduled, stepRunning, stepConnected, stepBuildStarted}

func stepBit(step string) stepSet { return 1 << slices.Index(agentSteps[:], step) }

func (s stepSet) has(step string) bool { return s&stepBit(step) != 0 }

func (s stepSet) with(step string) stepSet { return s | stepBit(step) }
