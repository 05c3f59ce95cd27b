package provision

import (
	"maps"
	"slices"
	"sync"
	"time"
)

// WarmPool is a template's warm pool as this replica's last cycle saw it,
// for the agents page (ferry_provision_warm_* say the same to Prometheus).
type WarmPool struct {
	Template string
	// Desired is the size the pool is brought to; Source what set it:
	// "agentpool" (its AgentPool's spec.replicas), "window NAME" (a
	// schedule window) or "size" (the template's plain size).
	Desired int
	Source  string
	// Agents counts its free warm agents by state: creating, starting,
	// ready, serving (counted on to take a waiting build), retiring.
	Agents map[string]int64
	// Hits and Misses count the builds of the template that started on a
	// warm agent or on one made for them, and IdleSeconds the pod-seconds
	// warm agents spent before their build or retirement: since this
	// replica began leading (kept in memory, lost on restart).
	Hits, Misses int64
	IdleSeconds  float64
}

// WarmView is the warm pools at a cycle.
type WarmView struct {
	// At is when the cycle ran; Since when this replica's sums began.
	At, Since time.Time
	Pools     []WarmPool
}

// WarmStates lists the states of WarmPool.Agents in life order.
var WarmStates = []string{warmCreating, warmStarting, warmReady, warmServing, warmRetiring}

// WarmPools returns the warm pools as this replica's last cycle saw them;
// false when no cycle has run here (this replica does not lead the
// provisioner, or not yet). A replica that stopped leading keeps its last
// view: At says how old it is.
func (p *Provisioner) WarmPools() (WarmView, bool) { return p.warmView.get() }

// warmView keeps the view between the reconcile worker and readers.
type warmView struct {
	mu    sync.Mutex
	view  WarmView
	pools map[string]*WarmPool
}

// note adds a cycle's decision to the view.
func (v *warmView) note(at time.Time, d *decision) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.pools == nil {
		v.pools = map[string]*WarmPool{}
		v.view.Since = at
	}
	pool := func(t string) *WarmPool {
		if v.pools[t] == nil {
			v.pools[t] = &WarmPool{Template: t, Agents: map[string]int64{}}
		}
		return v.pools[t]
	}
	for _, w := range v.pools {
		w.Agents = map[string]int64{}
	}
	for t, n := range d.warmDesired {
		w := pool(t)
		w.Desired, w.Source = n, d.warmSource[t]
	}
	for k, n := range d.warm {
		pool(k.template).Agents[k.of] += n
	}
	for k, n := range d.warmBuilds {
		if k.of == "hit" {
			pool(k.template).Hits += n
		} else {
			pool(k.template).Misses += n
		}
	}
	for _, i := range d.warmIdle {
		pool(i.template).IdleSeconds += i.seconds
	}
	v.view.At = at
}

func (v *warmView) get() (WarmView, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.pools == nil {
		return WarmView{}, false
	}
	out := WarmView{At: v.view.At, Since: v.view.Since}
	for _, t := range slices.Sorted(maps.Keys(v.pools)) {
		w := *v.pools[t]
		w.Agents = maps.Clone(w.Agents)
		out.Pools = append(out.Pools, w)
	}
	return out, true
}
