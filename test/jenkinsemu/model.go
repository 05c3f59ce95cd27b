package jenkinsemu

import (
	"slices"
	"sort"
	"strings"
	"time"
)

// Result is a build result as Jenkins reports it (hudson.model.Result).
type Result string

// Build results. NotBuilt is what Jenkins reports for builds that never ran
// a step; the emulator only reports it when a test asks for it.
const (
	Success  Result = "SUCCESS"
	Unstable Result = "UNSTABLE"
	Failure  Result = "FAILURE"
	NotBuilt Result = "NOT_BUILT"
	Aborted  Result = "ABORTED"
)

// Forever as a JobSpec.Duration (or BuildOverride duration) makes builds run
// until FinishBuild, a stop request or the deletion of their node ends them.
const Forever time.Duration = -1

// ParamType names a parameter definition type the way the job's JSON does in
// "type" (the simple name of the ParameterDefinition class).
type ParamType string

// Parameter definition types the emulator knows.
const (
	StringParam   ParamType = "StringParameterDefinition"
	TextParam     ParamType = "TextParameterDefinition"
	BooleanParam  ParamType = "BooleanParameterDefinition"
	ChoiceParam   ParamType = "ChoiceParameterDefinition"
	PasswordParam ParamType = "PasswordParameterDefinition"
)

// Param defines one build parameter of a job.
type Param struct {
	Name string
	// Type defaults to StringParam.
	Type ParamType
	// Default is the value used when a trigger does not pass the parameter
	// ("true"/"false" for BooleanParam). For ChoiceParam the first choice is
	// the default and Default is ignored.
	Default     string
	Choices     []string
	Description string
}

// JobSpec describes a job created with AddJob.
type JobSpec struct {
	// Label is the label expression builds need ("ferry-agent",
	// "linux && amd64"); "" lets builds run on any node in NORMAL mode.
	Label string
	// Duration is how long a build runs once it has an executor; 0 ends it
	// at the next look, Forever never (see FinishBuild).
	Duration time.Duration
	// Result is the result builds end with; default Success.
	Result Result
	// Params are the job's parameter definitions. A job with parameters is
	// triggered with buildWithParameters (or build with a json form); values
	// for undefined parameters are dropped, as Jenkins does since
	// SECURITY-170.
	Params []Param
	// DisableConcurrentBuilds makes a second item wait, blocked, while a
	// build runs (freestyle's default and Pipeline's disableConcurrentBuilds()).
	// The emulator's default allows concurrent builds, like Pipeline jobs.
	DisableConcurrentBuilds bool
	// Disabled makes the job not buildable: triggers answer 409, its JSON
	// says buildable false, disabled true.
	Disabled bool
	// Pipeline makes the job behave like a Pipeline (WorkflowJob) whose
	// Jenkinsfile is "node(Label) { ... }": the job's own queue item starts
	// at once on a flyweight executor of the controller, and the build then
	// waits for an executor through a second queue item (the
	// ExecutorStepExecution placeholder task) that carries no parameters and
	// whose task URL is the build's URL. Without it the job behaves like a
	// freestyle project restricted to Label.
	Pipeline bool
}

// BuildOverride changes how one build ends; see OverrideBuild.
type BuildOverride struct {
	Result   Result
	Duration time.Duration
}

type itemState int

const (
	stateWaiting itemState = iota
	stateBlocked
	stateBuildable
	stateLeft
)

func (s itemState) String() string {
	return [...]string{"waiting", "blocked", "buildable", "left"}[s]
}

// paramValue is one ParameterValue of a ParametersAction.
type paramValue struct {
	name  string
	class string // hudson.model.StringParameterValue, ...
	value string
}

type job struct {
	fullName   string
	spec       JobSpec
	label      labelExpr
	nextNumber int
	builds     []*build // ascending by number
	active     []*build // running builds, in start order
	created    time.Time
}

func (j *job) shortName() string {
	if i := strings.LastIndexByte(j.fullName, '/'); i >= 0 {
		return j.fullName[i+1:]
	}
	return j.fullName
}

func (j *job) parameterized() bool { return len(j.spec.Params) > 0 }

// building is the most recent running build, the one Jenkins names in
// BecauseOfBuildInProgress.
func (j *job) building() *build {
	if len(j.active) == 0 {
		return nil
	}
	return j.active[len(j.active)-1]
}

// estimatedDuration is Job.getEstimatedDuration: the mean duration of up to
// three recent successful or unstable builds, -1 without any.
func (j *job) estimatedDuration() time.Duration {
	var sum time.Duration
	n := 0
	for i := len(j.builds) - 1; i >= 0 && n < 3; i-- {
		b := j.builds[i]
		if !b.building && (b.result == Success || b.result == Unstable) {
			sum += b.duration
			n++
		}
	}
	if n == 0 {
		return -1
	}
	return sum / time.Duration(n)
}

type queueItem struct {
	id             int64
	job            *job
	params         []paramValue
	user           string
	state          itemState
	inQueueSince   time.Time
	due            time.Time // waiting: end of the quiet period
	buildableSince time.Time
	leftAt         time.Time
	cancelled      bool
	build          *build // set when the item left to run

	// placeholder marks the ExecutorStepExecution.PlaceholderTask item of a
	// Pipeline build ("node" block waiting for an executor); its task is the
	// build itself.
	placeholder *build
}

func (q *queueItem) label() labelExpr { return q.job.label }

type build struct {
	job      *job
	number   int
	queueID  int64
	params   []paramValue
	user     string
	node     *node // while it holds an executor
	nodeName string
	start    time.Time
	building bool
	result   Result
	duration time.Duration

	plannedResult Result
	plannedDur    time.Duration // Forever allowed
	end           time.Time     // planned end; zero: none (Forever, hung, or waiting for its node block)
	hung          bool          // its agent disconnected
	remaining     time.Duration // planned time left when it hung; <0 unknown

	// Pipeline builds run on a flyweight executor and wait for a node
	// through a placeholder queue item.
	flyweight   bool
	placeholder *queueItem
}

func (b *build) url(base string) string {
	return jobURL(base, b.job.fullName) + itoa(b.number) + "/"
}

type node struct {
	name         string
	description  string
	remoteFS     string
	numExecutors int
	mode         string // NORMAL or EXCLUSIVE
	labelString  string
	launcher     string // stapler-class of the launcher
	webSocket    bool
	retention    string
	builtIn      bool
	connected    bool
	lostChannel  bool // was connected once and the channel closed
	// tempOffline is Node.getTemporaryOfflineCause() != null: set by
	// toggleOffline / changeOfflineCause, kept with the agent connected.
	tempOffline  bool
	offlineBy    string // user who took it offline
	offlineMsg   string // offlineMessage, trimmed; "" for none
	offlineSince time.Time
	executors    []*build
	created      time.Time
	createJSON   string
	createType   string

	// atomSet caches atoms() for the inputs in atomKey: the scheduler
	// matches every queued item against every node on each pass.
	atomSet map[string]bool
	atomKey atomKey
}

// atomKey is what a node's label atoms derive from.
type atomKey struct {
	labelString string
	name        string
	builtIn     bool
}

// atoms returns the node's label atoms, including its own name. The map is
// shared: callers must not modify it. It is recomputed only when the label
// string, the name or builtIn change.
func (n *node) atoms() map[string]bool {
	k := atomKey{labelString: n.labelString, name: n.name, builtIn: n.builtIn}
	if n.atomSet == nil || n.atomKey != k {
		n.atomSet, n.atomKey = n.computeAtoms(), k
	}
	return n.atomSet
}

func (n *node) computeAtoms() map[string]bool {
	m := map[string]bool{}
	for _, a := range parseLabelString(n.labelString) {
		m[a] = true
	}
	if n.builtIn {
		m["built-in"] = true
	} else {
		m[n.name] = true
	}
	return m
}

func (n *node) labels() []string {
	var l []string
	for a := range n.atoms() {
		l = append(l, a)
	}
	sort.Strings(l)
	return l
}

// online is Computer.isOnline(): a channel (the built-in node always has
// one) and not temporarily offline. Queue.JobOffer.isAvailable() offers
// only online executors, so a temporarily-offline node keeps the build it
// runs but is given no new one.
func (n *node) online() bool { return (n.builtIn || n.connected) && !n.tempOffline }

func (n *node) displayName() string {
	if n.builtIn {
		return "Built-In Node"
	}
	return n.name
}

func (n *node) jnlp() bool { return n.launcher == "hudson.slaves.JNLPLauncher" }

func (n *node) freeExecutor() int {
	for i, b := range n.executors {
		if b == nil {
			return i
		}
	}
	return -1
}

func (n *node) idle() bool {
	for _, b := range n.executors {
		if b != nil {
			return false
		}
	}
	return true
}

func (n *node) busy() int {
	c := 0
	for _, b := range n.executors {
		if b != nil {
			c++
		}
	}
	return c
}

// canTake is Node.canTake for the parts the emulator models: the item's
// label must match the node; an item without a label only goes to nodes in
// NORMAL mode ("Utilize this node as much as possible"); EXCLUSIVE nodes
// ("Only build jobs with label expressions matching this node") take only
// items whose label matches them.
func (n *node) canTake(l labelExpr) bool {
	if l != nil {
		return l.match(n.atoms())
	}
	return n.mode != "EXCLUSIVE"
}

// advanceLocked brings the model to the clock's present, processing every
// timed event (quiet period expiry, build end) in time order, then
// forgetting left items past LeftItemTTL, so what clients observe does not
// depend on how often they look.
func (s *Server) advanceLocked() time.Time {
	now := s.clock.Now()
	for range 100000 {
		t, ok := s.nextEventLocked()
		if !ok || t.After(now) {
			break
		}
		if s.applyEventsLocked(t) {
			s.scheduleLocked(t)
		}
	}
	s.scheduleLocked(now)
	// Left items expire from Queue.leftItems without changing anything
	// else, so not as events: every reader advances first.
	for id, q := range s.left {
		if !q.leftAt.Add(s.opts.LeftItemTTL).After(now) {
			delete(s.left, id)
		}
	}
	return now
}

func (s *Server) nextEventLocked() (time.Time, bool) {
	var best time.Time
	found := false
	consider := func(t time.Time) {
		if !found || t.Before(best) {
			best, found = t, true
		}
	}
	for _, q := range s.queue {
		if q.state == stateWaiting {
			consider(q.due)
		}
	}
	for b := range s.running {
		if !b.hung && !b.end.IsZero() {
			consider(b.end)
		}
	}
	return best, found
}

// applyEventsLocked applies the events due at t (an item's quiet period
// ended, a build ended) and reports whether there were any.
func (s *Server) applyEventsLocked(t time.Time) bool {
	changed := false
	for _, q := range s.queue {
		if q.state == stateWaiting && !q.due.After(t) {
			q.state = stateBuildable
			q.buildableSince = q.due
			changed = true
		}
	}
	var due []*build
	for b := range s.running {
		if !b.hung && !b.end.IsZero() && !b.end.After(t) {
			due = append(due, b)
		}
	}
	// Same-time ends complete in start order, for stable results.
	slices.SortFunc(due, func(x, y *build) int {
		if c := x.start.Compare(y.start); c != 0 {
			return c
		}
		return x.number - y.number
	})
	for _, b := range due {
		s.completeLocked(b, b.plannedResult, b.end)
		changed = true
	}
	return changed
}

// blockedLocked reports whether a non-concurrent job already builds, which
// makes Jenkins keep its next item as a BlockedItem
// (AbstractProject.BecauseOfBuildInProgress).
func (s *Server) blockedLocked(q *queueItem, startedNow map[*job]bool) bool {
	if q.placeholder != nil || !q.job.spec.DisableConcurrentBuilds {
		return false
	}
	return q.job.building() != nil || startedNow[q.job]
}

// scheduleLocked is the emulator's Queue.maintain(): blocked items whose
// cause went away become buildable, buildable items that got blocked move
// back, and each buildable item, oldest first, goes to the first online node
// (built-in node first, then agents in creation order) that can take it and
// has an idle executor. Real Jenkins picks among candidates with a
// consistent hash of the task; with one candidate the outcome is the same.
func (s *Server) scheduleLocked(t time.Time) {
	startedNow := map[*job]bool{}
	// Only online nodes with an idle executor can take an item: with many
	// agents starting or busy, few are, so each item is matched against
	// those alone (in the same order).
	var free []*node
	for _, n := range s.nodes {
		if n.online() && n.freeExecutor() >= 0 {
			free = append(free, n)
		}
	}
	for _, q := range s.queue {
		switch q.state {
		case stateBlocked:
			if !s.blockedLocked(q, startedNow) {
				q.state = stateBuildable
				if q.buildableSince.IsZero() {
					q.buildableSince = t
				}
			}
		case stateBuildable:
			if s.blockedLocked(q, startedNow) {
				q.state = stateBlocked
			}
		}
		if q.state == stateBuildable && q.job.spec.Pipeline && q.placeholder == nil {
			// A WorkflowJob is a FlyweightTask: its run goes to a one-off
			// executor on the controller without waiting for a node.
			s.startLocked(q, nil, -1, t)
			startedNow[q.job] = true
			continue
		}
		if q.state != stateBuildable {
			continue
		}
		for k, n := range free {
			if !n.canTake(q.label()) {
				continue
			}
			s.startLocked(q, n, n.freeExecutor(), t)
			startedNow[q.job] = true
			if n.freeExecutor() < 0 {
				free = slices.Delete(free, k, k+1)
			}
			break
		}
	}
	live := s.queue[:0]
	for _, q := range s.queue {
		if q.state != stateLeft {
			live = append(live, q)
		}
	}
	s.queue = live
}

func (s *Server) leaveLocked(q *queueItem, t time.Time) {
	q.state = stateLeft
	q.leftAt = t
	s.left[q.id] = q
}

func (s *Server) startLocked(q *queueItem, n *node, executor int, t time.Time) {
	s.leaveLocked(q, t)
	if q.placeholder != nil {
		// The node block of a running Pipeline build got its executor.
		b := q.placeholder
		b.placeholder = nil
		b.node, b.nodeName = n, n.name
		n.executors[executor] = b
		if b.plannedDur >= 0 {
			b.end = t.Add(b.plannedDur)
		}
		s.log.Debug("node block started", "job", b.job.fullName, "build", b.number, "node", n.name)
		return
	}
	j := q.job
	b := &build{
		job:           j,
		number:        j.nextNumber,
		queueID:       q.id,
		params:        q.params,
		user:          q.user,
		start:         t,
		building:      true,
		plannedResult: j.spec.Result,
		plannedDur:    j.spec.Duration,
		remaining:     -1,
	}
	if b.plannedResult == "" {
		b.plannedResult = Success
	}
	j.nextNumber++
	j.builds = append(j.builds, b)
	j.active = append(j.active, b)
	s.running[b] = true
	q.build = b
	if ov, ok := s.overrides[overrideKey{j.fullName, b.number}]; ok {
		b.plannedResult, b.plannedDur = ov.Result, ov.Duration
		delete(s.overrides, overrideKey{j.fullName, b.number})
	}
	if n == nil {
		b.flyweight = true
		s.nextQueueID++
		ph := &queueItem{
			id:           s.nextQueueID,
			job:          j,
			user:         q.user,
			state:        stateBuildable,
			inQueueSince: t,
			placeholder:  b,
		}
		ph.buildableSince = t
		b.placeholder = ph
		s.queue = append(s.queue, ph)
		s.log.Debug("pipeline build started, node block queued", "job", j.fullName, "build", b.number, "item", ph.id)
		return
	}
	b.node, b.nodeName = n, n.name
	n.executors[executor] = b
	if b.plannedDur >= 0 {
		b.end = t.Add(b.plannedDur)
	}
	s.log.Debug("build started", "job", j.fullName, "build", b.number, "node", n.name, "item", q.id)
}

// completeLocked ends a build with result r at time t and frees its
// executor. A Pipeline build still waiting for its node block loses the
// placeholder item (cancelled, as the step's stop() does).
func (s *Server) completeLocked(b *build, r Result, t time.Time) {
	if !b.building {
		return
	}
	b.building = false
	b.result = r
	delete(s.running, b)
	b.job.active = slices.DeleteFunc(b.job.active, func(x *build) bool { return x == b })
	b.duration = t.Sub(b.start)
	if b.duration < 0 {
		b.duration = 0
	}
	b.end = time.Time{}
	b.hung = false
	if b.node != nil {
		for i, e := range b.node.executors {
			if e == b {
				b.node.executors[i] = nil
			}
		}
		b.node = nil
	}
	if ph := b.placeholder; ph != nil {
		b.placeholder = nil
		s.cancelItemLocked(ph, t)
	}
	s.log.Debug("build finished", "job", b.job.fullName, "build", b.number, "result", string(r))
}

func (s *Server) cancelItemLocked(q *queueItem, t time.Time) {
	for i, x := range s.queue {
		if x == q {
			s.queue = append(s.queue[:i], s.queue[i+1:]...)
			break
		}
	}
	q.cancelled = true
	s.leaveLocked(q, t)
}

// whyLocked is Item.getWhy(): the CauseOfBlockage sentence in language lg.
// For a buildable item it follows BuildableItem.getCauseOfBlockage():
//
//   - no agents at all (the built-in node does not count):
//     "Waiting for next available executor" — the label is not mentioned;
//   - every node matching the label offline (BecauseLabelIsOffline /
//     BecauseNodeIsOffline): "There are no nodes with the label ‘L’" when no
//     node has it, "All nodes of label ‘L’ are offline" for several nodes,
//     "N is offline" (node name, no quotes) when exactly one node has it;
//   - otherwise busy (BecauseLabelIsBusy / BecauseNodeIsBusy):
//     "Waiting for next available executor on ‘L’", or with exactly one
//     matching node that node's name in place of the label;
//   - no label: "Waiting for next available executor".
func (s *Server) whyLocked(q *queueItem, now time.Time, lg *lang) any {
	switch q.state {
	case stateLeft:
		return nil
	case stateWaiting:
		return lg.format(msgInQuietPeriod, timeSpanIn(q.due.Sub(now), lg))
	case stateBlocked:
		b := q.job.building()
		if b == nil {
			return lg.format(msgUnknown)
		}
		eta := "N/A"
		if est := q.job.estimatedDuration(); est >= 0 {
			if left := est - now.Sub(b.start); left > 0 {
				eta = timeSpanIn(left, lg)
			}
		}
		return lg.format(msgBuildInProgress, itoa(b.number), lg.format(msgBuildInProgressETA, eta))
	}
	l := q.label()
	key := ""
	if l != nil {
		key = l.name()
	}
	if w, ok := s.whyMemo[key]; ok {
		return w
	}
	w := s.labelWhyLocked(l, lg)
	if s.whyMemo != nil {
		s.whyMemo[key] = w
	}
	return w
}

// labelWhyLocked is why an item waiting for label l (nil: any node) is
// not running; it depends only on l, the nodes and the language.
func (s *Server) labelWhyLocked(l labelExpr, lg *lang) string {
	agents := 0
	for _, n := range s.nodes {
		if !n.builtIn {
			agents++
		}
	}
	if l == nil || agents == 0 {
		return lg.format(msgWaitingForExecutor)
	}
	var matching []*node
	offline := true
	for _, n := range s.nodes {
		if l.match(n.atoms()) {
			matching = append(matching, n)
			if n.online() {
				offline = false
			}
		}
	}
	if offline {
		switch len(matching) {
		case 0:
			return lg.format(msgLabelHasNoNodes, l.name())
		case 1:
			return lg.format(msgNodeOffline, matching[0].displayName())
		default:
			return lg.format(msgAllNodesOffline, l.name())
		}
	}
	if len(matching) == 1 {
		return lg.format(msgWaitingForExecutorOn, matching[0].displayName())
	}
	return lg.format(msgWaitingForExecutorOn, l.name())
}

// stuckLocked is BuildableItem.isStuck(): every node of the label offline,
// or buildable for ten times the estimated duration (at least 10 minutes),
// or for a day without an estimate.
func (s *Server) stuckLocked(q *queueItem, now time.Time) bool {
	if q.state != stateBuildable {
		return false
	}
	if l := q.label(); l != nil {
		offline := true
		for _, n := range s.nodes {
			if n.online() && l.match(n.atoms()) {
				offline = false
			}
		}
		if offline {
			return true
		}
	}
	elapsed := now.Sub(q.buildableSince)
	if est := q.job.estimatedDuration(); est >= 0 {
		return elapsed > max(est, time.Minute)*10
	}
	return elapsed > 24*time.Hour
}
