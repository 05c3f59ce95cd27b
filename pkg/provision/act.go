package provision

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/pkg/jenkins"
)

// act is one action decide chose, as data: start turns it into calls
// (agent.go, secrets.go) and runs it in its lane.
type act struct {
	kind actKind
	// agent is the agent acted on, or to be made; for an anchor, its name
	// and template.
	agent *agentView
	// item is the queue item the agent serves (creations, reports, give-ups).
	item jenkins.QueueItem
	// fallback is a creation's fallback level.
	fallback int
	// notBefore is when the pod of a retry's node may be made.
	notBefore time.Time
	// cause says why an agent is deleted (the cause attribute of
	// ferry_provision_agents_deleted).
	cause string
	// ranSince is since when a deleted agent ran its build.
	ranSince time.Time
	// build is the build an agent runs (offline mark, reports).
	build   jenkins.Executable
	failure eci.Failure
	// report: OnFailure is told of a lost build.
	report bool
	// secret is the agent Secret to delete.
	secret string
	// rerun is why a lost build is re-run (actRequestRerun).
	rerun rerunCause
	// replicas is an AgentPool's status.replicas (actPoolStatus).
	replicas int
}

type actKind int

const (
	actCreateAnchor  actKind = iota // the anchor node of a template
	actDeleteAnchor                 // the anchor of a template no longer configured
	actMarkOffline                  // an agent running its build (one build per agent)
	actDeleteAgent                  // node then pod
	actCollect                      // an orphan: deleted and counted as garbage
	actReportLost                   // a build whose agent died under it
	actReportReclaim                // a build whose spot instance is going
	actGiveUp                       // cancel the item and say why
	actCreateAgent                  // node, then Secret and pod
	actCreateNode                   // the node of a retry; its pod after the backoff
	actCreatePod                    // the pod of an existing node
	actDeleteSecret                 // an agent Secret no pod reads
	actRequestRerun                 // a build lost to infrastructure: ask the dispatcher to re-run it
	actCheckImage                   // resolve a template's image before its pods
	actCreateWarm                   // a warm agent: node, then Secret and pod
	actRetireWarm                   // take a warm agent offline to delete it (see warm.go)
	actPoolStatus                   // write a template's AgentPool status (see agentpool.go)
)

// key makes the action unique while it runs: a cycle skips an action whose
// key is in flight.
func (a act) key() string {
	switch a.kind {
	case actCreateAnchor, actDeleteAnchor:
		return "anchor/" + a.agent.template
	case actMarkOffline, actRetireWarm:
		return offlineKey(a.agent.name)
	case actDeleteAgent, actCollect:
		return deleteKey(a.agent.name)
	case actReportLost:
		return "report/" + a.agent.name
	case actReportReclaim:
		return "reclaim/" + a.agent.name
	case actGiveUp:
		return fmt.Sprintf("giveup/%d", a.agent.queueID)
	case actCreateAgent, actCreateNode, actCreatePod, actCreateWarm:
		return createKey(a.agent.name)
	case actDeleteSecret:
		return "secret/" + a.secret
	case actRequestRerun:
		return "rerun/" + a.agent.name
	case actCheckImage:
		return "image/" + a.agent.template
	case actPoolStatus:
		return "pool/" + a.agent.template
	}
	return fmt.Sprintf("unknown/%d", a.kind)
}

// Task keys.
func offlineKey(name string) string { return "offline/" + name }
func deleteKey(name string) string  { return "delete/" + name }
func createKey(name string) string  { return "create/" + name }

func (a act) lane() lane {
	switch a.kind {
	case actMarkOffline, actRetireWarm:
		return laneOffline
	case actCreateAgent, actCreateNode, actCreatePod, actCreateWarm:
		return laneCreate
	}
	return laneDelete
}

// String says what the action does, for tests and logs.
func (a act) String() string {
	switch a.kind {
	case actCreateAnchor:
		return "create anchor " + a.agent.template
	case actDeleteAnchor:
		return "delete anchor " + a.agent.template
	case actMarkOffline:
		return "mark offline " + a.agent.name
	case actDeleteAgent:
		return "delete " + a.agent.name + " (" + a.cause + ")"
	case actCollect:
		return "collect " + a.agent.name
	case actReportLost:
		return fmt.Sprintf("report lost %s: %s (tell %v)", a.agent.name, a.failure.Reason, a.report)
	case actReportReclaim:
		return fmt.Sprintf("report reclaim %s: %s", a.agent.name, a.failure.Reason)
	case actGiveUp:
		return fmt.Sprintf("give up %d after %s: %s", a.agent.queueID, a.agent.name, a.failure.Reason)
	case actCreateAgent:
		return fmt.Sprintf("create %s fallback %d", a.agent.name, a.fallback)
	case actCreateNode:
		return fmt.Sprintf("create node %s fallback %d", a.agent.name, a.fallback)
	case actCreatePod:
		return fmt.Sprintf("create pod %s fallback %d", a.agent.name, a.fallback)
	case actDeleteSecret:
		return "delete secret " + a.secret
	case actRequestRerun:
		return fmt.Sprintf("request rerun %s: %s", a.agent.name, a.rerun.reason)
	case actCheckImage:
		return "check image of " + a.agent.template
	case actCreateWarm:
		return "create warm " + a.agent.name + " of " + a.agent.template
	case actRetireWarm:
		return "retire warm " + a.agent.name
	case actPoolStatus:
		return fmt.Sprintf("pool status %s: %d", a.agent.template, a.replicas)
	}
	return a.key()
}

// action is one call, or a few, that an act runs. The cycle that decided
// it does not wait for it (see start).
type action func(ctx context.Context) error

// lane is a pool actions run in; each has its own concurrency bound, so
// that what keeps the one-build-per-agent promise (taking an agent offline
// as its build starts, deleting it once the build is over) never waits
// behind a backlog of slow creations.
type lane int

const (
	// laneOffline marks agents offline: one Jenkins call, the most urgent.
	laneOffline lane = iota
	// laneDelete deletes agents and runs the other short actions (anchors,
	// reports, give-ups).
	laneDelete
	// laneCreate creates agents: nodes, Secrets and pods, slow under API
	// throttling.
	laneCreate
	numLanes
)

const (
	// maxPendingCreates times Parallelism bounds the creations in flight.
	maxPendingCreates = 8
	// podMadeWait is how long a pod ferry created may take to show in the
	// informer before a cycle creates it again.
	podMadeWait = 10 * time.Second
)

// calls returns the calls of an act: run in its lane, then, when set and
// once run succeeded, then outside the lanes (what it waits for bounds it),
// with the key still in flight.
func (p *Provisioner) calls(a act) (run, then action) {
	switch a.kind {
	case actCreateAnchor:
		return p.createAnchor(a.agent.template), nil
	case actDeleteAnchor:
		return p.deleteNodeOnly(a.agent.name, "anchor"), nil
	case actMarkOffline:
		return p.markOffline(a.agent, a.build), nil
	case actDeleteAgent:
		return p.deleteAgent(a.agent, a.ranSince, a.cause), nil
	case actCollect:
		return p.collect(a.agent, a.ranSince), nil
	case actReportLost:
		return p.reportDied(a.agent, a.build, a.item, a.failure, a.report), nil
	case actReportReclaim:
		return p.reportReclaim(a.agent, a.build, a.item, a.failure), nil
	case actGiveUp:
		return p.giveUp(a.agent.pod, a.item, a.agent.template, a.agent.name, a.failure), nil
	case actCreateAgent:
		return p.createAgent(a.item, a.agent.template, a.agent.attempt, a.fallback)
	case actCreateNode:
		return p.createNode(a.item, a.agent.template, a.agent.attempt, a.fallback, a.notBefore), nil
	case actCreatePod:
		return p.createPod(a.agent.name, a.agent.queueID, a.agent.attempt, a.agent.template, a.fallback, a.item)
	case actDeleteSecret:
		return p.deleteSecret(a.secret), nil
	case actRequestRerun:
		return p.requestRerun(a.agent, a.build, a.item, a.failure, a.rerun), nil
	case actCheckImage:
		return p.checkImage(a.agent.template), nil
	case actCreateWarm:
		return p.createWarm(a.agent.name, a.agent.template)
	case actRetireWarm:
		return p.retireWarm(a.agent), nil
	case actPoolStatus:
		return p.writePoolStatus(a.agent.template, a.replicas), nil
	}
	return func(context.Context) error { return fmt.Errorf("provision: no calls for %s", a) }, nil
}

// start starts the acts whose key is not in flight, each in its lane, and
// returns without waiting: a cycle lasts as long as its two polls and its
// decisions, however many creations are pending, so a build that starts is
// seen, and its agent taken offline, within a cycle. An act that succeeded
// after the cycle's polls began is not started again: its effect may not
// show in them yet. Failed actions are logged; a later cycle sees what is
// left to do.
func (p *Provisioner) start(ctx context.Context, acts []act) {
	for _, a := range acts {
		key := a.key()
		p.mu.Lock()
		_, busy := p.inflight[key]
		if d, ok := p.done[key]; ok && !d.at.Before(p.polledAt) {
			busy = true
		}
		if busy {
			p.mu.Unlock()
			continue
		}
		p.inflight[key] = a
		p.mu.Unlock()
		run, then := p.calls(a)
		l := a.lane()
		p.tasks.Add(1)
		go func() {
			defer p.tasks.Done()
			defer func() {
				p.mu.Lock()
				delete(p.inflight, key)
				p.mu.Unlock()
			}()
			select {
			case p.lanes[l] <- struct{}{}:
			case <-ctx.Done():
				return
			}
			err := p.fenced(a, run)(ctx)
			<-p.lanes[l]
			if err == nil && then != nil {
				err = p.fenced(a, then)(ctx)
			}
			if err != nil && ctx.Err() == nil {
				p.log.Warn("provisioning action failed; the next cycle retries", "error", err)
			}
			if err == nil {
				p.mu.Lock()
				p.done[key] = doneAct{act: a, at: p.clock.Now()}
				p.mu.Unlock()
			}
		}()
	}
}

// fenced runs call only if Config.Fence allows it now.
func (p *Provisioner) fenced(a act, call action) action {
	if p.cfg.Fence == nil {
		return call
	}
	return func(ctx context.Context) error {
		checked := p.clock.Now()
		if err := p.cfg.Fence(); err != nil {
			return fmt.Errorf("not acting on %s: %w", a, err)
		}
		// fenced_at is when the Lease was checked: the log line, the
		// requests and their answers may come later (a process frozen in
		// between sends them after the thaw: the check narrows that window
		// to the instructions between it and the request, it cannot close
		// it without a precondition on the API server's side).
		p.log.Debug("acting", "act", a.String(), "fenced_at", checked)
		return call(ctx)
	}
}

// doneAct is an act that succeeded, and when.
type doneAct struct {
	act
	at time.Time
}

// inFlight returns the acts in flight, by key, with those that succeeded
// after the cycle's polls began (which may not show their effect yet); a
// copy of the pods created and deleted recently; and when creations may
// resume after a quota answer.
func (p *Provisioner) inFlight(polledAt time.Time) (map[string]act, map[string]time.Time, map[string]time.Time, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	flight := maps.Clone(p.inflight)
	for k, d := range p.done {
		if d.at.Before(polledAt) {
			delete(p.done, k)
			continue
		}
		flight[k] = d.act
	}
	return flight, maps.Clone(p.podMade), maps.Clone(p.podDeleted), p.kubeBackoff
}

// podMadeNow records that an agent's pod was just created.
func (p *Provisioner) podMadeNow(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.podMade[name] = p.clock.Now()
}

// forgetMadePod forgets a created pod once the informer shows it.
func (p *Provisioner) forgetMadePod(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.podMade, name)
}

// podDeletedNow records that an agent's pod was just deleted.
func (p *Provisioner) podDeletedNow(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.podDeleted[name] = p.clock.Now()
}

// forgetDeletedPod forgets a deleted pod once the informer shows it
// terminating or gone.
func (p *Provisioner) forgetDeletedPod(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.podDeleted, name)
}

// kubePaused returns how long creations still wait after a quota or
// throttling answer from the API server.
func (p *Provisioner) kubePaused(now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Before(p.kubeBackoff) {
		return p.kubeBackoff.Sub(now)
	}
	return 0
}

// pauseKube backs creations off after a quota or throttling answer,
// doubling up to the resync period times 30.
func (p *Provisioner) pauseKube(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock.Now()
	if now.Before(p.kubeBackoff) {
		return
	}
	d := p.kubeBackoffDelay * 2
	if d == 0 {
		d = time.Second
	}
	d = min(d, 30*p.cfg.Resync)
	p.kubeBackoffDelay = d
	p.kubeBackoff = now.Add(d)
	p.log.Warn("the API server refused an agent pod for quota or throttling; pausing creations", "pause", d, "error", err)
}

func (p *Provisioner) kubeOK() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.kubeBackoffDelay = 0
}
