package jenkinsemu

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Errors of the test-side API.
var (
	ErrNoSuchJob   = errors.New("no such job")
	ErrNoSuchBuild = errors.New("no such build")
	ErrNoSuchNode  = errors.New("no such node")
	ErrJobExists   = errors.New("job already exists")
	// ErrBadSecret is the emulated JNLP handshake rejecting an agent whose
	// secret is not the node's (real agents log "Authorization failure").
	ErrBadSecret = errors.New("agent secret rejected")
	// ErrAlreadyConnected mirrors "Agent NAME is already connected to this
	// controller. Rejecting this connection."
	ErrAlreadyConnected = errors.New("agent already connected")
	ErrNotInbound       = errors.New("node has no inbound (JNLP) launcher")
)

// AddJob creates a job; path may name folders ("team/app" is job "app" in
// folder "team", at /job/team/job/app/), which are created as needed.
func (s *Server) AddJob(path string, spec JobSpec) error {
	path = strings.Trim(path, "/")
	if path == "" {
		return fmt.Errorf("add job: empty name")
	}
	l, err := parseLabel(spec.Label)
	if err != nil {
		return fmt.Errorf("add job %s: %w", path, err)
	}
	for _, p := range spec.Params {
		if p.typ() == ChoiceParam && len(p.Choices) == 0 {
			return fmt.Errorf("add job %s: choice parameter %s has no choices", path, p.Name)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.jobs[path]; ok || s.folders[path] {
		return fmt.Errorf("add job %s: %w", path, ErrJobExists)
	}
	segs := strings.Split(path, "/")
	for i := 1; i < len(segs); i++ {
		f := strings.Join(segs[:i], "/")
		if _, ok := s.jobs[f]; ok {
			return fmt.Errorf("add job %s: %s is a job, not a folder", path, f)
		}
		s.folders[f] = true
	}
	if spec.Result == "" {
		spec.Result = Success
	}
	s.jobs[path] = &job{fullName: path, spec: spec, label: l, nextNumber: 1, created: s.clock.Now()}
	return nil
}

// UpdateJob changes a job's spec for builds that start from now on.
func (s *Server) UpdateJob(path string, update func(*JobSpec)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[strings.Trim(path, "/")]
	if !ok {
		return fmt.Errorf("update job %s: %w", path, ErrNoSuchJob)
	}
	spec := j.spec
	update(&spec)
	l, err := parseLabel(spec.Label)
	if err != nil {
		return fmt.Errorf("update job %s: %w", path, err)
	}
	if spec.Result == "" {
		spec.Result = Success
	}
	j.spec, j.label = spec, l
	s.advanceLocked()
	return nil
}

// OverrideBuild sets result and duration of build number of job: of a
// running build (its duration counts from its start), or of a build that
// has not started yet, when it starts.
func (s *Server) OverrideBuild(jobPath string, number int, o BuildOverride) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.advanceLocked()
	j, ok := s.jobs[strings.Trim(jobPath, "/")]
	if !ok {
		return fmt.Errorf("override build %s #%d: %w", jobPath, number, ErrNoSuchJob)
	}
	if o.Result == "" {
		o.Result = j.spec.Result
	}
	for _, b := range j.builds {
		if b.number != number {
			continue
		}
		if !b.building {
			return fmt.Errorf("override build %s #%d: already finished", jobPath, number)
		}
		b.plannedResult, b.plannedDur = o.Result, o.Duration
		switch {
		case b.placeholder != nil:
			// Still waiting for its node block; the duration counts from there.
		case o.Duration < 0:
			b.end = time.Time{}
		case b.hung:
			b.remaining = max(0, o.Duration-now.Sub(b.start))
		default:
			b.end = b.start.Add(o.Duration)
		}
		s.advanceLocked()
		return nil
	}
	if number < j.nextNumber {
		return fmt.Errorf("override build %s #%d: %w", jobPath, number, ErrNoSuchBuild)
	}
	s.overrides[overrideKey{j.fullName, number}] = o
	return nil
}

// FinishBuild ends a running build now with the given result.
func (s *Server) FinishBuild(jobPath string, number int, r Result) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.advanceLocked()
	j, ok := s.jobs[strings.Trim(jobPath, "/")]
	if !ok {
		return fmt.Errorf("finish build %s #%d: %w", jobPath, number, ErrNoSuchJob)
	}
	for _, b := range j.builds {
		if b.number == number {
			if !b.building {
				return fmt.Errorf("finish build %s #%d: already finished", jobPath, number)
			}
			s.completeLocked(b, r, now)
			s.advanceLocked()
			return nil
		}
	}
	return fmt.Errorf("finish build %s #%d: %w", jobPath, number, ErrNoSuchBuild)
}

// ConnectAgent emulates an inbound agent connecting for node name with
// secret, as agent.jar -secret … -name … does: the secret must be the
// node's (AgentSecret), the node must exist, have an inbound launcher and
// not be connected already. The node is online afterwards and can take
// builds at once; builds that hung when its previous connection was lost
// resume with the time they had left.
func (s *Server) ConnectAgent(name, secret string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.advanceLocked()
	n := s.nodeByURLName(name)
	if n == nil || n.builtIn {
		return fmt.Errorf("connect agent %s: %w", name, ErrNoSuchNode)
	}
	if secret != s.AgentSecret(name) {
		return fmt.Errorf("connect agent %s: %w", name, ErrBadSecret)
	}
	if !n.jnlp() {
		return fmt.Errorf("connect agent %s: %w", name, ErrNotInbound)
	}
	if n.connected {
		return fmt.Errorf("connect agent %s: %w", name, ErrAlreadyConnected)
	}
	n.connected = true
	for _, b := range n.executors {
		if b != nil && b.hung {
			b.hung = false
			if b.remaining >= 0 {
				b.end = now.Add(b.remaining)
			}
			b.remaining = -1
		}
	}
	s.log.Debug("agent connected", "node", name)
	s.advanceLocked()
	return nil
}

// DisconnectAgent emulates the agent process dying (its pod deleted, its
// channel closed) while the node stays configured: the node goes offline
// with a ChannelTermination cause and builds on it hang — they stay
// "building", hold their executor and do not end on their own, as a
// Pipeline "node" block does while it waits for the agent to come back.
// They end when the agent reconnects (resuming with the time they had left),
// when FinishBuild or a stop request ends them, or when the node is deleted
// (ABORTED, Jenkins' answer to removing a node with running builds).
// (A freestyle build would instead fail at once with a ChannelClosedException;
// the emulator models the Pipeline case ferry's jobs are.)
func (s *Server) DisconnectAgent(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.advanceLocked()
	n := s.nodeByURLName(name)
	if n == nil || n.builtIn {
		return fmt.Errorf("disconnect agent %s: %w", name, ErrNoSuchNode)
	}
	if !n.connected {
		return nil
	}
	n.connected = false
	n.lostChannel = true
	for _, b := range n.executors {
		if b != nil && !b.hung {
			b.hung = true
			b.remaining = -1
			if !b.end.IsZero() {
				b.remaining = max(0, b.end.Sub(now))
			}
			b.end = time.Time{}
		}
	}
	s.log.Debug("agent disconnected", "node", name)
	s.advanceLocked()
	return nil
}

// DeleteNode removes a node as the REST doDelete does (running builds are
// aborted).
func (s *Server) DeleteNode(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.advanceLocked()
	n := s.nodeByURLName(name)
	if n == nil || n.builtIn {
		return fmt.Errorf("delete node %s: %w", name, ErrNoSuchNode)
	}
	s.removeNodeLocked(n, now)
	return nil
}

// QueueItem is a snapshot of a queue item for tests.
type QueueItem struct {
	ID     int64
	Job    string
	Params map[string]string
	// State is "waiting" (quiet period), "blocked", "buildable" or "left".
	State string
	// Why is the item's reason in English, whatever the controller's
	// locale.
	Why          string
	Stuck        bool
	InQueueSince time.Time
	Cancelled    bool
	// BuildNumber is set once the item left to run (0 otherwise).
	BuildNumber int
	// Placeholder marks the node-block item of a running Pipeline build;
	// BuildNumber is then the build it belongs to.
	Placeholder bool
}

// Build is a snapshot of a build for tests.
type Build struct {
	Job      string
	Number   int
	QueueID  int64
	Params   map[string]string
	Node     string // "" on the built-in node or while a Pipeline waits for its node
	Building bool
	// Hung is true while the build's agent is disconnected.
	Hung bool
	// Result is "" while building.
	Result   Result
	Start    time.Time
	Duration time.Duration
}

// Node is a snapshot of a node for tests; CreateJSON is the json form field
// the node was created with, to assert what a client sent.
type Node struct {
	Name              string
	Description       string
	RemoteFS          string
	Labels            []string // label atoms including the node's own name
	LabelString       string
	Mode              string
	NumExecutors      int
	Launcher          string
	WebSocket         bool
	RetentionStrategy string
	BuiltIn           bool
	Online            bool
	// TemporarilyOffline: taken offline by toggleOffline or
	// changeOfflineCause; OfflineMessage is the message given then.
	TemporarilyOffline bool
	OfflineMessage     string
	// Connected: an agent is connected (always true for the built-in
	// node), whether or not the node is temporarily offline.
	Connected bool
	// Running lists the builds on its executors as "job#number".
	Running    []string
	Created    time.Time
	CreateJSON string
	CreateType string
}

func paramMap(vals []paramValue) map[string]string {
	m := make(map[string]string, len(vals))
	for _, v := range vals {
		m[v.name] = v.value
	}
	return m
}

func (s *Server) itemSnapshot(q *queueItem, now time.Time) QueueItem {
	why, _ := s.whyLocked(q, now, english).(string)
	qi := QueueItem{
		ID:           q.id,
		Job:          q.job.fullName,
		Params:       paramMap(q.params),
		State:        q.state.String(),
		Why:          why,
		Stuck:        s.stuckLocked(q, now),
		InQueueSince: q.inQueueSince,
		Cancelled:    q.cancelled,
		Placeholder:  q.placeholder != nil,
	}
	if q.build != nil {
		qi.BuildNumber = q.build.number
	}
	if q.placeholder != nil {
		qi.BuildNumber = q.placeholder.number
	}
	return qi
}

// QueueItems returns the live queue (waiting, blocked and buildable items)
// in the order /queue/api/json lists it.
func (s *Server) QueueItems() []QueueItem {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.advanceLocked()
	var out []QueueItem
	for _, q := range s.queueOrder() {
		out = append(out, s.itemSnapshot(q, now))
	}
	return out
}

// CancelledItems returns the ids of the cancelled items still known to
// /queue/item/ID/ (left within LeftItemTTL), in one look.
func (s *Server) CancelledItems() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceLocked()
	var out []int64
	for id, q := range s.left {
		if q.cancelled {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// QueueItem returns any item still known to /queue/item/ID/ (live or left
// within LeftItemTTL).
func (s *Server) QueueItem(id int64) (QueueItem, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.advanceLocked()
	q := s.itemByID(id)
	if q == nil {
		return QueueItem{}, false
	}
	return s.itemSnapshot(q, now), true
}

func buildSnapshot(b *build) Build {
	return Build{
		Job:      b.job.fullName,
		Number:   b.number,
		QueueID:  b.queueID,
		Params:   paramMap(b.params),
		Node:     b.nodeName,
		Building: b.building,
		Hung:     b.hung,
		Result:   b.result,
		Start:    b.start,
		Duration: b.duration,
	}
}

// Builds returns a job's builds, oldest first.
func (s *Server) Builds(jobPath string) []Build {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceLocked()
	j, ok := s.jobs[strings.Trim(jobPath, "/")]
	if !ok {
		return nil
	}
	out := make([]Build, 0, len(j.builds))
	for _, b := range j.builds {
		out = append(out, buildSnapshot(b))
	}
	return out
}

// Build returns one build.
func (s *Server) Build(jobPath string, number int) (Build, bool) {
	for _, b := range s.Builds(jobPath) {
		if b.Number == number {
			return b, true
		}
	}
	return Build{}, false
}

// Nodes returns every node, built-in first, agents by name.
func (s *Server) Nodes() []Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceLocked()
	out := make([]Node, 0, len(s.nodes))
	for _, n := range s.nodes {
		nn := Node{
			Name:               n.name,
			Description:        n.description,
			RemoteFS:           n.remoteFS,
			Labels:             n.labels(),
			LabelString:        n.labelString,
			Mode:               n.mode,
			NumExecutors:       n.numExecutors,
			Launcher:           n.launcher,
			WebSocket:          n.webSocket,
			RetentionStrategy:  n.retention,
			BuiltIn:            n.builtIn,
			Online:             n.online(),
			TemporarilyOffline: n.tempOffline,
			OfflineMessage:     n.offlineMsg,
			Connected:          n.builtIn || n.connected,
			Created:            n.created,
			CreateJSON:         n.createJSON,
			CreateType:         n.createType,
		}
		for _, b := range n.executors {
			if b != nil {
				nn.Running = append(nn.Running, b.job.fullName+"#"+itoa(b.number))
			}
		}
		out = append(out, nn)
	}
	return out
}

// Node returns one node by name ("" or "(built-in)" for the built-in node).
func (s *Server) Node(name string) (Node, bool) {
	if name == "(built-in)" || name == "(master)" {
		name = ""
	}
	nodes := s.Nodes()
	i := slices.IndexFunc(nodes, func(n Node) bool { return n.Name == name })
	if i < 0 {
		return Node{}, false
	}
	return nodes[i], true
}

// Restart emulates the controller killed and started again (an OOM kill,
// its node lost, `kill -9` of the JVM) with JENKINS_HOME kept: the
// listener and every connection close, and for down the controller
// refuses connections; then it listens again on the same address as a new
// start (a new X-Jenkins-Session, every login session gone). What was on
// disk survives — jobs, finished builds, next build numbers, nodes and
// their settings — and what lived only in the JVM is lost: queue items
// (a crash leaves no queue.xml to reload), and running builds, which are
// gone from their job (their numbers are not reused). Agent nodes are
// offline until their agents connect again (ConnectAgent), as inbound
// agents do after a restart.
//
// A real controller may differ for running builds: a Pipeline build
// resumes if its steps are durable, and a freestyle build's record can
// survive with result FAILURE (Run.reload's default). Restart models the
// case where nothing of the build survives, the one a re-run must repair.
func (s *Server) Restart(down time.Duration) error {
	if err := s.SetDown(Refuse); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	s.mu.Lock()
	s.queue = nil
	s.left = map[int64]*queueItem{}
	s.running = map[*build]bool{}
	s.sessions = map[string]string{}
	for _, j := range s.jobs {
		if len(j.active) == 0 {
			continue
		}
		lost := map[*build]bool{}
		for _, b := range j.active {
			lost[b] = true
		}
		j.builds = slices.DeleteFunc(j.builds, func(b *build) bool { return lost[b] })
		j.active = nil
	}
	for _, n := range s.nodes {
		clear(n.executors)
		if !n.builtIn {
			n.connected, n.lostChannel = false, false
		}
	}
	s.newInstance()
	s.log.Info("controller restarted", "down", down)
	s.mu.Unlock()
	if down > 0 {
		time.Sleep(down)
	}
	return s.SetDown(Up)
}
