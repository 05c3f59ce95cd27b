package jenkinsemu

import (
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// writeJSON sends an exported object the way Stapler's api/json does:
// Content-Type "application/json;charset=utf-8", pruned by ?tree= when
// given. An unparsable tree is a 400 in Stapler as well.
func writeJSON(w http.ResponseWriter, r *http.Request, v map[string]any) {
	var t *treeSpec
	if tr := r.URL.Query().Get("tree"); tr != "" {
		var err error
		if t, err = parseTree(tr); err != nil {
			jettyError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	body, err := json.Marshal(prune(v, t))
	if err != nil {
		oopsPage(w, err.Error(), false)
		return
	}
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// depth reports the ?depth= of a request; a tree counts as deep enough for
// whatever it names.
func depth(r *http.Request) int {
	if r.URL.Query().Get("tree") != "" {
		return 100
	}
	d, _ := strconv.Atoi(r.URL.Query().Get("depth"))
	return d
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func (s *Server) jobClass(j *job) string {
	if j.spec.Pipeline {
		return "org.jenkinsci.plugins.workflow.job.WorkflowJob"
	}
	return "hudson.model.FreeStyleProject"
}

func (s *Server) buildClass(j *job) string {
	if j.spec.Pipeline {
		return "org.jenkinsci.plugins.workflow.job.WorkflowRun"
	}
	return "hudson.model.FreeStyleBuild"
}

// color is Job.getIconColor: "disabled" for a disabled job, else the last
// completed result's ball color, "notbuilt" before any build; "_anime"
// while a build runs.
func (s *Server) color(j *job) string {
	c := "notbuilt"
	for i := len(j.builds) - 1; i >= 0 && !j.spec.Disabled; i-- {
		if !j.builds[i].building {
			c = map[Result]string{Success: "blue", Unstable: "yellow", Failure: "red", Aborted: "aborted", NotBuilt: "notbuilt"}[j.builds[i].result]
			break
		}
	}
	if j.spec.Disabled {
		c = "disabled"
	}
	if j.building() != nil {
		c += "_anime"
	}
	return c
}

func (s *Server) buildRef(b *build) any {
	if b == nil {
		return nil
	}
	return map[string]any{"_class": s.buildClass(b.job), "number": b.number, "url": b.url(s.base())}
}

// executableRef is what an agent's executor runs: the build itself for a
// freestyle job; for a Pipeline the node block's
// ExecutorStepExecution.PlaceholderTask.PlaceholderExecutable, which
// exports the run's number and absolute url, display names, estimated
// duration and the run's start timestamp.
func (s *Server) executableRef(b *build) map[string]any {
	if !b.job.spec.Pipeline {
		return s.buildRef(b).(map[string]any)
	}
	name := "part of " + fullDisplayName(b.job.fullName) + " #" + itoa(b.number)
	est := int64(-1)
	if e := b.job.estimatedDuration(); e >= 0 {
		est = e.Milliseconds()
	}
	return map[string]any{
		"_class":            "org.jenkinsci.plugins.workflow.support.steps.ExecutorStepExecution$PlaceholderTask$PlaceholderExecutable",
		"number":            b.number,
		"url":               b.url(s.base()),
		"displayName":       name,
		"fullDisplayName":   name,
		"estimatedDuration": est,
		"timestamp":         ms(b.start),
	}
}

func paramValueJSON(v paramValue) map[string]any {
	m := map[string]any{"_class": v.class, "name": v.name}
	switch v.class {
	case "hudson.model.BooleanParameterValue":
		m["value"] = v.value == "true"
	case "hudson.model.PasswordParameterValue":
		// The Secret is not exported.
	default:
		m["value"] = v.value
	}
	return m
}

func parametersAction(vals []paramValue) map[string]any {
	ps := make([]any, len(vals))
	for i, v := range vals {
		ps[i] = paramValueJSON(v)
	}
	return map[string]any{"_class": "hudson.model.ParametersAction", "parameters": ps}
}

func causeAction(user string) map[string]any {
	return map[string]any{"_class": "hudson.model.CauseAction", "causes": []any{map[string]any{
		"_class":           "hudson.model.Cause$UserIdCause",
		"shortDescription": "Started by user " + user,
		"userId":           user,
		"userName":         user,
	}}}
}

func (s *Server) paramDefs(j *job) []any {
	defs := make([]any, 0, len(j.spec.Params))
	for _, p := range j.spec.Params {
		d := map[string]any{
			"_class":                "hudson.model." + string(p.typ()),
			"defaultParameterValue": paramValueJSON(p.defaultValue()),
			"description":           p.Description,
			"name":                  p.Name,
			"type":                  string(p.typ()),
		}
		switch p.typ() {
		case ChoiceParam:
			choices := make([]any, len(p.Choices))
			for i, c := range p.Choices {
				choices[i] = c
			}
			d["choices"] = choices
		case StringParam:
			d["trim"] = false
		}
		defs = append(defs, d)
	}
	return defs
}

func (p Param) typ() ParamType {
	if p.Type == "" {
		return StringParam
	}
	return p.Type
}

func (p Param) valueClass() string {
	switch p.typ() {
	case BooleanParam:
		return "hudson.model.BooleanParameterValue"
	case TextParam:
		return "hudson.model.TextParameterValue"
	case PasswordParam:
		return "hudson.model.PasswordParameterValue"
	default: // string and choice
		return "hudson.model.StringParameterValue"
	}
}

func (p Param) defaultValue() paramValue {
	v := p.Default
	switch p.typ() {
	case ChoiceParam:
		v = ""
		if len(p.Choices) > 0 {
			v = p.Choices[0]
		}
	case BooleanParam:
		v = strconv.FormatBool(strings.EqualFold(v, "true"))
	}
	return paramValue{name: p.Name, class: p.valueClass(), value: v}
}

// paramsString is Item.getParams(): "\n" + getShortDescription() of every
// value, i.e. "\nNAME=value" ("NAME=****" for passwords).
func paramsString(vals []paramValue) string {
	var b strings.Builder
	for _, v := range vals {
		b.WriteString("\n")
		b.WriteString(v.name)
		b.WriteString("=")
		if v.class == "hudson.model.PasswordParameterValue" {
			b.WriteString("****")
		} else {
			b.WriteString(v.value)
		}
	}
	return b.String()
}

func (s *Server) itemClass(q *queueItem) string {
	return "hudson.model.Queue$" + map[itemState]string{
		stateWaiting: "WaitingItem", stateBlocked: "BlockedItem",
		stateBuildable: "BuildableItem", stateLeft: "LeftItem",
	}[q.state]
}

// taskJSON is the item's task as exported inside a queue item: name, url
// and color — no fullName, so clients must use url for jobs in folders.
func (s *Server) taskJSON(q *queueItem) map[string]any {
	if b := q.placeholder; b != nil {
		// ExecutorStepExecution.PlaceholderTask exports name and
		// fullDisplayName ("part of FOLDER » JOB #N"; "JOB #N (STAGE)" inside
		// a labelled block, not emulated) and url, the run's URL relative to
		// the root (Run.getUrl()), unlike a job task's absolute url.
		name := "part of " + fullDisplayName(b.job.fullName) + " #" + itoa(b.number)
		return map[string]any{
			"_class":          "org.jenkinsci.plugins.workflow.support.steps.ExecutorStepExecution$PlaceholderTask",
			"name":            name,
			"fullDisplayName": name,
			"url":             strings.TrimPrefix(b.url(s.base()), s.base()),
		}
	}
	return map[string]any{
		"_class": s.jobClass(q.job),
		"name":   q.job.shortName(),
		"url":    jobURL(s.base(), q.job.fullName),
		"color":  s.color(q.job),
	}
}

func fullDisplayName(fullName string) string {
	return strings.ReplaceAll(fullName, "/", " » ")
}

func (s *Server) itemJSON(q *queueItem, now time.Time, lg *lang) map[string]any {
	actions := []any{}
	if q.placeholder == nil {
		if q.job.parameterized() {
			actions = append(actions, parametersAction(q.params))
		}
		actions = append(actions, causeAction(q.user))
	}
	m := map[string]any{
		"_class":       s.itemClass(q),
		"actions":      actions,
		"blocked":      q.state == stateBlocked,
		"buildable":    q.state == stateBuildable,
		"id":           q.id,
		"inQueueSince": ms(q.inQueueSince),
		"params":       paramsString(q.params),
		"stuck":        s.stuckLocked(q, now),
		"task":         s.taskJSON(q),
		"url":          "queue/item/" + strconv.FormatInt(q.id, 10) + "/",
		"why":          s.whyLocked(q, now, lg),
	}
	switch q.state {
	case stateWaiting:
		m["timestamp"] = ms(q.due)
	case stateBlocked:
		m["buildableStartMilliseconds"] = ms(q.buildableSince)
	case stateBuildable:
		m["buildableStartMilliseconds"] = ms(q.buildableSince)
		m["pending"] = false
	case stateLeft:
		m["cancelled"] = q.cancelled
		switch {
		case q.build != nil:
			m["executable"] = s.buildRef(q.build)
		case q.placeholder != nil && !q.cancelled:
			m["executable"] = s.executableRef(q.placeholder)
		default:
			m["executable"] = nil
		}
	}
	return m
}

// queueOrder is Queue.getItems(): waiting items by due time, then blocked
// items, then buildable items newest first.
func (s *Server) queueOrder() []*queueItem {
	var waiting, blocked, buildable []*queueItem
	for _, q := range s.queue {
		switch q.state {
		case stateWaiting:
			waiting = append(waiting, q)
		case stateBlocked:
			blocked = append(blocked, q)
		case stateBuildable:
			buildable = append(buildable, q)
		}
	}
	sort.SliceStable(waiting, func(i, k int) bool { return waiting[i].due.Before(waiting[k].due) })
	out := append(waiting, blocked...)
	for i := len(buildable) - 1; i >= 0; i-- {
		out = append(out, buildable[i])
	}
	return out
}

func (s *Server) jobQueueItem(j *job) *queueItem {
	for _, q := range s.queueOrder() {
		if q.job == j && q.placeholder == nil {
			return q
		}
	}
	return nil
}

func (s *Server) jobJSON(j *job, r *http.Request, now time.Time) map[string]any {
	var builds []any
	var all []any
	// At depth 0 Jenkins shows nested builds by reference ({number, url}),
	// but a tree reaches every exported property of a Run
	// (builds[number,result,actions[parameters[name,value]]] works), so
	// with a tree the whole build is rendered and the tree prunes it.
	full := r != nil && r.URL.Query().Get("tree") != ""
	for i := len(j.builds) - 1; i >= 0; i-- {
		ref := s.buildRef(j.builds[i])
		if full {
			ref = s.buildJSON(j.builds[i], r, now)
		}
		if len(builds) < 100 {
			builds = append(builds, ref)
		}
		all = append(all, ref)
	}
	if builds == nil {
		builds, all = []any{}, []any{}
	}
	find := func(pred func(*build) bool) any {
		for i := len(j.builds) - 1; i >= 0; i-- {
			if pred(j.builds[i]) {
				return s.buildRef(j.builds[i])
			}
		}
		return nil
	}
	var first any
	if len(j.builds) > 0 {
		first = s.buildRef(j.builds[0])
	}
	var qi any
	if q := s.jobQueueItem(j); q != nil {
		qi = s.itemJSON(q, now, s.requestLang(r))
	}
	actions := []any{}
	props := []any{}
	if j.parameterized() {
		pdp := map[string]any{"_class": "hudson.model.ParametersDefinitionProperty", "parameterDefinitions": s.paramDefs(j)}
		actions = append(actions, pdp)
		props = append(props, pdp)
	}
	m := map[string]any{
		"_class":                s.jobClass(j),
		"actions":               actions,
		"description":           "",
		"displayName":           j.shortName(),
		"displayNameOrNull":     nil,
		"fullDisplayName":       fullDisplayName(j.fullName),
		"fullName":              j.fullName,
		"name":                  j.shortName(),
		"url":                   jobURL(s.base(), j.fullName),
		"buildable":             !j.spec.Disabled,
		"builds":                builds,
		"color":                 s.color(j),
		"firstBuild":            first,
		"healthReport":          []any{},
		"inQueue":               qi != nil,
		"keepDependencies":      false,
		"lastBuild":             find(func(b *build) bool { return true }),
		"lastCompletedBuild":    find(func(b *build) bool { return !b.building }),
		"lastFailedBuild":       find(func(b *build) bool { return !b.building && b.result == Failure }),
		"lastStableBuild":       find(func(b *build) bool { return !b.building && b.result == Success }),
		"lastSuccessfulBuild":   find(func(b *build) bool { return !b.building && (b.result == Success || b.result == Unstable) }),
		"lastUnstableBuild":     find(func(b *build) bool { return !b.building && b.result == Unstable }),
		"lastUnsuccessfulBuild": find(func(b *build) bool { return !b.building && b.result != Success }),
		"nextBuildNumber":       j.nextNumber,
		"property":              props,
		"queueItem":             qi,
		"concurrentBuild":       !j.spec.DisableConcurrentBuilds,
		"disabled":              j.spec.Disabled,
	}
	if j.spec.Pipeline {
		m["resumeBlocked"] = false
	} else {
		var le any
		if j.label != nil {
			le = j.label.name()
		}
		m["labelExpression"] = le
		m["scm"] = map[string]any{"_class": "hudson.scm.NullSCM"}
		m["upstreamProjects"] = []any{}
		m["downstreamProjects"] = []any{}
	}
	// allBuilds is exported with visibility -2: only an explicit tree gets it.
	if strings.Contains(r.URL.Query().Get("tree"), "allBuilds") {
		m["allBuilds"] = all
	}
	return m
}

func (s *Server) buildJSON(b *build, _ *http.Request, _ time.Time) map[string]any {
	actions := []any{}
	if b.job.parameterized() {
		actions = append(actions, parametersAction(b.params))
	}
	actions = append(actions, causeAction(b.user))
	var result any
	var executor any
	duration := int64(0)
	if b.building {
		ex := map[string]any{"_class": "hudson.model.Executor"}
		if b.flyweight && b.node == nil {
			ex["_class"] = "hudson.model.OneOffExecutor"
		}
		executor = ex
	} else {
		result = string(b.result)
		duration = b.duration.Milliseconds()
	}
	est := b.job.estimatedDuration()
	estMS := int64(-1)
	if est >= 0 {
		estMS = est.Milliseconds()
	}
	m := map[string]any{
		"_class":            s.buildClass(b.job),
		"actions":           actions,
		"artifacts":         []any{},
		"building":          b.building,
		"description":       nil,
		"displayName":       "#" + itoa(b.number),
		"duration":          duration,
		"estimatedDuration": estMS,
		"executor":          executor,
		"fullDisplayName":   fullDisplayName(b.job.fullName) + " #" + itoa(b.number),
		"id":                itoa(b.number),
		"keepLog":           false,
		"number":            b.number,
		"queueId":           b.queueID,
		"result":            result,
		"timestamp":         ms(b.start),
		"url":               b.url(s.base()),
	}
	if b.job.spec.Pipeline {
		m["inProgress"] = b.building
		m["changeSets"] = []any{}
		m["culprits"] = []any{}
		m["nextBuild"] = nil
		m["previousBuild"] = nil
	} else {
		m["builtOn"] = b.nodeName
		m["changeSet"] = map[string]any{"_class": "hudson.scm.EmptyChangeLogSet", "items": []any{}, "kind": nil}
		m["culprits"] = []any{}
	}
	return m
}

func (s *Server) computerJSON(n *node, r *http.Request) map[string]any {
	deep := depth(r) > 0
	execs := make([]any, len(n.executors))
	for i, b := range n.executors {
		if !deep {
			// At depth 0 Stapler prunes the nested executors to their class.
			execs[i] = map[string]any{"_class": "hudson.model.Executor"}
			continue
		}
		e := map[string]any{
			"_class":      "hudson.model.Executor",
			"idle":        b == nil,
			"likelyStuck": false,
			"number":      i,
			"progress":    -1,
		}
		if b == nil {
			e["currentExecutable"] = nil
		} else {
			e["currentExecutable"] = s.executableRef(b)
			// Executor.getProgress: percent of the estimated duration, at most
			// 99; -1 without an estimate.
			if est := b.job.estimatedDuration(); est > 0 {
				e["progress"] = min(99, int(s.clock.Now().Sub(b.start)*100/est))
			}
		}
		execs[i] = e
	}
	var labels []any
	for _, l := range n.labels() {
		labels = append(labels, map[string]any{"name": l})
	}
	icon := "symbol-computer"
	if !n.online() {
		icon = "symbol-computer-offline"
	}
	oneOff := []any{}
	idle := n.idle()
	if n.builtIn {
		// Pipeline runs occupy one-off (flyweight) executors of the
		// controller, which make it non-idle.
		for _, j := range s.jobs {
			for _, b := range j.active {
				if b.flyweight {
					idle = false
					e := map[string]any{"_class": "hudson.model.OneOffExecutor"}
					if deep {
						e["currentExecutable"] = s.buildRef(b)
						e["idle"] = false
					}
					oneOff = append(oneOff, e)
				}
			}
		}
	}
	// getOfflineCause(): the temporary offline cause first, then the
	// channel's. getOfflineCauseReason() is a UserCause's message without
	// the "Disconnected by USER" prefix — where Jenkins' regular expression
	// manages to strip it (see offlineCauseReason).
	var offlineCause any
	reason := ""
	switch {
	case n.tempOffline:
		lg := s.requestLang(r)
		suffix := ""
		if n.offlineMsg != "" {
			suffix = " : " + n.offlineMsg
		}
		offlineCause = map[string]any{"_class": "hudson.slaves.OfflineCause$UserCause",
			"description": lg.format(msgDisconnectedBy, n.offlineBy, suffix), "timestamp": n.offlineSince.UnixMilli()}
		reason = offlineCauseReason(lg, n.offlineBy, n.offlineMsg, versionAtLeast(s.opts.Version, "2.483"))
	case n.lostChannel && !n.connected:
		offlineCause = map[string]any{"_class": "hudson.slaves.OfflineCause$ChannelTermination"}
	}
	m := map[string]any{
		"actions":             []any{},
		"assignedLabels":      labels,
		"description":         n.description,
		"displayName":         n.displayName(),
		"executors":           execs,
		"icon":                icon,
		"iconClassName":       icon,
		"idle":                idle,
		"jnlpAgent":           !n.builtIn && n.jnlp(),
		"launchSupported":     n.builtIn || !n.jnlp(),
		"loadStatistics":      map[string]any{"_class": "hudson.model.Label$1"},
		"manualLaunchAllowed": true,
		"monitorData":         map[string]any{},
		"numExecutors":        n.numExecutors,
		"offline":             !n.online(),
		"offlineCause":        offlineCause,
		"offlineCauseReason":  reason,
		"oneOffExecutors":     oneOff,
		"temporarilyOffline":  n.tempOffline,
	}
	if n.builtIn {
		m["_class"] = "hudson.model.Hudson$MasterComputer"
	} else {
		m["_class"] = "hudson.slaves.SlaveComputer"
		var arp any
		if n.connected {
			arp = n.remoteFS
		}
		m["absoluteRemotePath"] = arp
	}
	return m
}
