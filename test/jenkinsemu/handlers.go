package jenkinsemu

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

func handleNotFound(s *Server, w http.ResponseWriter, r *http.Request, p principal, a routeArgs) {
	notFound(w)
}

// handleRequirePOST answers what Stapler's @RequirePOST answers to other
// methods.
func handleRequirePOST(s *Server, w http.ResponseWriter, r *http.Request, p principal, a routeArgs) {
	w.Header().Set("Content-Type", "text/html;charset=utf-8")
	w.WriteHeader(http.StatusMethodNotAllowed)
	_, _ = io.WriteString(w, "<html><body><h1>This URL requires POST</h1></body></html>\n")
}

func handleHTMLRoot(s *Server, w http.ResponseWriter, r *http.Request, p principal, a routeArgs) {
	htmlPage(w, "Dashboard")
}

func handleRoot(s *Server, w http.ResponseWriter, r *http.Request, p principal, a routeArgs) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceLocked()
	var jobs []any
	for _, name := range s.topLevelNames("") {
		jobs = append(jobs, s.childJSON(name))
	}
	if jobs == nil {
		jobs = []any{}
	}
	bi := s.nodes[0]
	writeJSON(w, r, map[string]any{
		"_class":          "hudson.model.Hudson",
		"assignedLabels":  []any{map[string]any{"name": "built-in"}},
		"mode":            bi.mode,
		"nodeDescription": bi.description,
		"nodeName":        "",
		"numExecutors":    bi.numExecutors,
		"description":     nil,
		"jobs":            jobs,
		"overallLoad":     map[string]any{},
		"primaryView":     map[string]any{"_class": "hudson.model.AllView", "name": "all", "url": s.base()},
		"quietDownReason": nil,
		"quietingDown":    false,
		"slaveAgentPort":  -1,
		"unlabeledLoad":   map[string]any{"_class": "jenkins.model.UnlabeledLoadStatistics"},
		"url":             s.base(),
		"useCrumbs":       true,
		"useSecurity":     true,
		"views":           []any{map[string]any{"_class": "hudson.model.AllView", "name": "all", "url": s.base()}},
	})
}

// topLevelNames lists the direct children (jobs and folders) of a folder.
func (s *Server) topLevelNames(folder string) []string {
	prefix := ""
	if folder != "" {
		prefix = folder + "/"
	}
	seen := map[string]bool{}
	add := func(full string) {
		if !strings.HasPrefix(full, prefix) {
			return
		}
		rest := strings.TrimPrefix(full, prefix)
		if rest == "" || strings.Contains(rest, "/") {
			return
		}
		seen[full] = true
	}
	for n := range s.jobs {
		add(n)
	}
	for f := range s.folders {
		add(f)
	}
	var names []string
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func (s *Server) childJSON(full string) map[string]any {
	if j, ok := s.jobs[full]; ok {
		return map[string]any{"_class": s.jobClass(j), "name": j.shortName(), "url": jobURL(s.base(), full), "color": s.color(j)}
	}
	name := full[strings.LastIndexByte(full, '/')+1:]
	return map[string]any{"_class": "com.cloudbees.hudson.plugins.folder.Folder", "name": name, "url": jobURL(s.base(), full)}
}

func handleCrumb(s *Server, w http.ResponseWriter, r *http.Request, p principal, a routeArgs) {
	writeJSON(w, r, map[string]any{
		"_class":            "hudson.security.csrf.DefaultCrumbIssuer",
		"crumb":             s.crumbFor(p),
		"crumbRequestField": "Jenkins-Crumb",
	})
}

func handleHTMLJob(s *Server, w http.ResponseWriter, r *http.Request, p principal, a routeArgs) {
	s.mu.Lock()
	_, isJob := s.jobs[a.job]
	isFolder := s.folders[a.job]
	s.mu.Unlock()
	if !isJob && !isFolder {
		notFound(w)
		return
	}
	htmlPage(w, a.job)
}

func handleJob(s *Server, w http.ResponseWriter, r *http.Request, p principal, a routeArgs) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.advanceLocked()
	if j, ok := s.jobs[a.job]; ok {
		writeJSON(w, r, s.jobJSON(j, r, now))
		return
	}
	if s.folders[a.job] {
		var jobs []any
		for _, n := range s.topLevelNames(a.job) {
			jobs = append(jobs, s.childJSON(n))
		}
		if jobs == nil {
			jobs = []any{}
		}
		name := a.job[strings.LastIndexByte(a.job, '/')+1:]
		writeJSON(w, r, map[string]any{
			"_class":            "com.cloudbees.hudson.plugins.folder.Folder",
			"actions":           []any{},
			"description":       nil,
			"displayName":       name,
			"displayNameOrNull": nil,
			"fullDisplayName":   fullDisplayName(a.job),
			"fullName":          a.job,
			"name":              name,
			"url":               jobURL(s.base(), a.job),
			"healthReport":      []any{},
			"jobs":              jobs,
			"primaryView":       map[string]any{"_class": "hudson.model.AllView", "name": "All", "url": jobURL(s.base(), a.job)},
			"views":             []any{map[string]any{"_class": "hudson.model.AllView", "name": "All", "url": jobURL(s.base(), a.job)}},
		})
		return
	}
	notFound(w)
}

// parseDelay is TimeDuration.fromString: "5sec"/"5secs" are seconds, a bare
// number is milliseconds.
func parseDelay(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	unit := time.Millisecond
	if strings.HasSuffix(v, "sec") || strings.HasSuffix(v, "secs") {
		v = strings.TrimSpace(v[:strings.LastIndex(v, "sec")])
		unit = time.Second
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("Invalid time duration value: %s", v) //nolint:staticcheck // Jenkins' own message, shown to clients
	}
	return time.Duration(n) * unit, nil
}

// handleTrigger serves /build and /buildWithParameters
// (ParameterizedJobMixIn.doBuild / doBuildWithParameters and
// ParametersDefinitionProperty.buildWithParameters / _doBuild).
//
// A disabled job answers 409 "NAME is not buildable" (doBuild checks that
// before the Job/Build permission, doBuildWithParameters after): since
// 2.524 a plain error page, before a text/plain stack trace of an
// IOException. buildWithParameters of a job without parameters answers
// 400 "NAME is not parameterized" since 2.524; before, an
// IllegalStateException, rendered as a 500 "Oops!" page.
//
// Each declared parameter takes its value from the request (query or form)
// or its default; values for undeclared parameters are dropped. The item is
// then scheduled with Queue.schedule2: if a live item (waiting, blocked or
// buildable) of the same job has the same set of parameter values
// (ParametersAction.shouldSchedule), nothing is created and the existing
// item is returned (ScheduleResult.Existing). buildWithParameters answers
// that 303 See Other with Location …/queue/item/EXISTING_ID/ since 2.308
// (JENKINS-66105), 201 like a new item before; build always answers 201.
// A trigger of a job without parameters merges with any live item of that
// job.
func handleTrigger(s *Server, w http.ResponseWriter, r *http.Request, p principal, a routeArgs) {
	withParams := a.withParams
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[a.job]
	if !ok {
		notFound(w)
		return
	}
	if !withParams && j.spec.Disabled {
		s.notBuildable(w, j, "")
		return
	}
	if p.user.ReadOnly {
		s.denied(w, p, "hudson.model.Item.Build", "Job/Build")
		return
	}
	if withParams && j.spec.Disabled {
		s.notBuildable(w, j, "!")
		return
	}
	if withParams && !j.parameterized() {
		if versionAtLeast(s.opts.Version, "2.524") {
			jettyError(w, http.StatusBadRequest, j.fullName+" is not parameterized")
			return
		}
		s.oops(w, "java.lang.IllegalStateException: This build is not parameterized!")
		return
	}
	form := r.Form
	if !withParams && j.parameterized() {
		// _doBuild reads the parameters from the submitted form's json.
		raw := r.Form.Get("json")
		if raw == "" {
			s.oops(w, "javax.servlet.ServletException: This page expects a form submission but had only {}")
			return
		}
		var sub struct {
			Parameter json.RawMessage `json:"parameter"`
		}
		if err := json.Unmarshal([]byte(raw), &sub); err != nil {
			s.oops(w, "net.sf.json.JSONException: "+err.Error())
			return
		}
		form = map[string][]string{}
		var list []struct {
			Name  string `json:"name"`
			Value any    `json:"value"`
		}
		if len(sub.Parameter) > 0 && sub.Parameter[0] == '[' {
			_ = json.Unmarshal(sub.Parameter, &list)
		} else if len(sub.Parameter) > 0 {
			var one struct {
				Name  string `json:"name"`
				Value any    `json:"value"`
			}
			_ = json.Unmarshal(sub.Parameter, &one)
			list = append(list, one)
		}
		for _, e := range list {
			form[e.Name] = append(form[e.Name], fmt.Sprint(e.Value))
		}
	}
	var vals []paramValue
	for _, def := range j.spec.Params {
		got, present := form[def.Name]
		if !present {
			vals = append(vals, def.defaultValue())
			continue
		}
		if len(got) != 1 {
			s.oops(w, fmt.Sprintf("java.lang.IllegalArgumentException: Illegal number of parameter values for %s: %d", def.Name, len(got)))
			return
		}
		v := got[0]
		switch def.typ() {
		case BooleanParam:
			v = strconv.FormatBool(strings.EqualFold(v, "true"))
		case ChoiceParam:
			if !slices.Contains(def.Choices, v) {
				s.oops(w, fmt.Sprintf("java.lang.IllegalArgumentException: Illegal choice for parameter %s: %s", def.Name, v))
				return
			}
		}
		vals = append(vals, paramValue{name: def.Name, class: def.valueClass(), value: v})
	}
	quiet := s.opts.QuietPeriod
	if d := r.Form.Get("delay"); d != "" {
		var err error
		if quiet, err = parseDelay(d); err != nil {
			s.oops(w, "java.lang.IllegalArgumentException: "+err.Error())
			return
		}
	}
	now := s.advanceLocked()
	for _, q := range s.queue {
		if q.job == j && q.placeholder == nil && sameParams(q.params, vals) {
			// Queue.scheduleInternal: a duplicate keeps the shorter due time.
			if q.state == stateWaiting && now.Add(quiet).Before(q.due) {
				q.due = now.Add(quiet)
			}
			s.log.Debug("trigger merged into existing item", "job", j.fullName, "item", q.id)
			s.advanceLocked()
			code := http.StatusCreated
			if withParams && versionAtLeast(s.opts.Version, "2.308") {
				code = http.StatusSeeOther
			}
			redirect(w, code, s.base()+"queue/item/"+strconv.FormatInt(q.id, 10)+"/")
			return
		}
	}
	s.nextQueueID++
	q := &queueItem{
		id:           s.nextQueueID,
		job:          j,
		params:       vals,
		user:         p.name(),
		state:        stateWaiting,
		inQueueSince: now,
		due:          now.Add(quiet),
	}
	s.queue = append(s.queue, q)
	s.log.Debug("item queued", "job", j.fullName, "item", q.id)
	s.advanceLocked()
	redirect(w, http.StatusCreated, s.base()+"queue/item/"+strconv.FormatInt(q.id, 10)+"/")
}

// notBuildable answers a trigger of a disabled job: 409, since 2.524 as
// HttpResponses.errorWithoutStack, before as HttpResponses.error with an
// IOException (a text/plain stack trace; doBuildWithParameters' message
// ended in "!").
func (s *Server) notBuildable(w http.ResponseWriter, j *job, bang string) {
	if versionAtLeast(s.opts.Version, "2.524") {
		jettyError(w, http.StatusConflict, j.fullName+" is not buildable")
		return
	}
	w.Header().Set("Content-Type", "text/plain;charset=UTF-8")
	w.WriteHeader(http.StatusConflict)
	_, _ = fmt.Fprintf(w, "java.io.IOException: %s is not buildable%s\n\tat jenkins.model.ParameterizedJobMixIn.doBuildWithParameters(ParameterizedJobMixIn.java:231)\n", j.fullName, bang)
}

// sameParams compares parameter values as sets (ParametersAction uses
// HashSet equality of ParameterValue, which compares class, name and value).
func sameParams(a, b []paramValue) bool {
	if len(a) != len(b) {
		return false
	}
	set := map[paramValue]int{}
	for _, v := range a {
		set[v]++
	}
	for _, v := range b {
		if set[v] == 0 {
			return false
		}
		set[v]--
	}
	return true
}

func (s *Server) findBuild(j *job, a routeArgs) *build {
	if a.permalink == "" {
		for _, b := range j.builds {
			if b.number == a.number {
				return b
			}
		}
		return nil
	}
	preds := map[string]func(*build) bool{
		"lastBuild":             func(*build) bool { return true },
		"firstBuild":            func(*build) bool { return true },
		"lastCompletedBuild":    func(b *build) bool { return !b.building },
		"lastSuccessfulBuild":   func(b *build) bool { return !b.building && (b.result == Success || b.result == Unstable) },
		"lastStableBuild":       func(b *build) bool { return !b.building && b.result == Success },
		"lastFailedBuild":       func(b *build) bool { return !b.building && b.result == Failure },
		"lastUnstableBuild":     func(b *build) bool { return !b.building && b.result == Unstable },
		"lastUnsuccessfulBuild": func(b *build) bool { return !b.building && b.result != Success },
	}
	pred := preds[a.permalink]
	if a.permalink == "firstBuild" {
		if len(j.builds) > 0 {
			return j.builds[0]
		}
		return nil
	}
	for i := len(j.builds) - 1; i >= 0; i-- {
		if pred(j.builds[i]) {
			return j.builds[i]
		}
	}
	return nil
}

func handleBuildInfo(s *Server, w http.ResponseWriter, r *http.Request, p principal, a routeArgs) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.advanceLocked()
	j, ok := s.jobs[a.job]
	if !ok {
		notFound(w)
		return
	}
	b := s.findBuild(j, a)
	if b == nil {
		notFound(w)
		return
	}
	writeJSON(w, r, s.buildJSON(b, r, now))
}

func handleHTMLBuild(s *Server, w http.ResponseWriter, r *http.Request, p principal, a routeArgs) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceLocked()
	j, ok := s.jobs[a.job]
	if !ok || s.findBuild(j, a) == nil {
		notFound(w)
		return
	}
	htmlPage(w, a.job+" #"+itoa(a.number))
}

// handleStopBuild is Run.doStop → Executor.doStop: the running build is
// aborted (ABORTED) and the answer redirects to the previous page (the
// Referer, else the build page).
func handleStopBuild(s *Server, w http.ResponseWriter, r *http.Request, p principal, a routeArgs) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.advanceLocked()
	j, ok := s.jobs[a.job]
	if !ok {
		notFound(w)
		return
	}
	b := s.findBuild(j, a)
	if b == nil {
		notFound(w)
		return
	}
	if p.user.ReadOnly {
		s.denied(w, p, "hudson.model.Item.Cancel", "Job/Cancel")
		return
	}
	s.completeLocked(b, Aborted, now)
	s.advanceLocked()
	to := r.Header.Get("Referer")
	if to == "" {
		to = b.url(s.base())
	}
	redirect(w, http.StatusFound, to)
}

func handleQueue(s *Server, w http.ResponseWriter, r *http.Request, p principal, a routeArgs) {
	s.mu.Lock()
	now := s.advanceLocked()
	items := []any{}
	// Items waiting for the same label wait for the same reason: work it
	// out once per answer, not once per item against every node.
	s.whyMemo = map[string]string{}
	lg := s.requestLang(r)
	for _, q := range s.queueOrder() {
		items = append(items, s.itemJSON(q, now, lg))
	}
	s.whyMemo = nil
	// The answer is a snapshot: encode it without holding up the model.
	s.mu.Unlock()
	writeJSON(w, r, map[string]any{
		"_class":            "hudson.model.Queue",
		"discoverableItems": []any{},
		"items":             items,
	})
}

func (s *Server) itemByID(id int64) *queueItem {
	for _, q := range s.queue {
		if q.id == id {
			return q
		}
	}
	return s.left[id]
}

func handleQueueItem(s *Server, w http.ResponseWriter, r *http.Request, p principal, a routeArgs) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.advanceLocked()
	q := s.itemByID(a.id)
	if q == nil {
		notFound(w)
		return
	}
	writeJSON(w, r, s.itemJSON(q, now, s.requestLang(r)))
}

// handleCancelItem is Queue.doCancelItem (Jenkins ≥ 2.2xx): 204 when a live
// item was cancelled; 404 "Provided id (N) not found" when no live item has
// the id (already started, already cancelled, or unknown); 422 when the
// user may not cancel it. The cancelled item becomes a LeftItem with
// cancelled=true. Cancelling the node-block item of a Pipeline build aborts
// the build, as the interrupted node step does.
func handleCancelItem(s *Server, w http.ResponseWriter, r *http.Request, p principal, a routeArgs) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.advanceLocked()
	id, _ := strconv.ParseInt(r.Form.Get("id"), 10, 64)
	var q *queueItem
	for _, x := range s.queue {
		if x.id == id {
			q = x
		}
	}
	if q == nil {
		jettyError(w, http.StatusNotFound, fmt.Sprintf("Provided id (%d) not found", id))
		return
	}
	if p.user.ReadOnly {
		jettyError(w, http.StatusUnprocessableEntity, fmt.Sprintf("Item for id (%d) is not cancellable", id))
		return
	}
	s.cancelItemLocked(q, now)
	if b := q.placeholder; b != nil {
		b.placeholder = nil
		s.completeLocked(b, Aborted, now)
	}
	s.advanceLocked()
	w.WriteHeader(http.StatusNoContent)
}

func handleHTMLComputers(s *Server, w http.ResponseWriter, r *http.Request, p principal, a routeArgs) {
	htmlPage(w, "Nodes")
}

func handleComputers(s *Server, w http.ResponseWriter, r *http.Request, p principal, a routeArgs) {
	s.mu.Lock()
	s.advanceLocked()
	comps := []any{}
	busy, total := 0, 0
	for _, n := range s.nodes {
		comps = append(comps, s.computerJSON(n, r))
		if n.online() {
			total += n.numExecutors
			busy += n.busy()
		}
	}
	// The answer is a snapshot: encode it without holding up the model.
	s.mu.Unlock()
	writeJSON(w, r, map[string]any{
		"_class":         "hudson.model.ComputerSet",
		"busyExecutors":  busy,
		"computer":       comps,
		"displayName":    "Nodes",
		"totalExecutors": total,
	})
}

// nodeByURLName resolves /computer/NAME/: "(built-in)" (and the pre-2.307
// "(master)") is the built-in node.
func (s *Server) nodeByURLName(name string) *node {
	if name == "(built-in)" || name == "(master)" {
		return s.nodes[0]
	}
	for _, n := range s.nodes[1:] {
		if n.name == name {
			return n
		}
	}
	return nil
}

func handleHTMLComputer(s *Server, w http.ResponseWriter, r *http.Request, p principal, a routeArgs) {
	s.mu.Lock()
	n := s.nodeByURLName(a.name)
	s.mu.Unlock()
	if n == nil {
		notFound(w)
		return
	}
	htmlPage(w, n.displayName())
}

func handleComputer(s *Server, w http.ResponseWriter, r *http.Request, p principal, a routeArgs) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceLocked()
	n := s.nodeByURLName(a.name)
	if n == nil {
		notFound(w)
		return
	}
	writeJSON(w, r, s.computerJSON(n, r))
}

// unsafeNameChars are the characters Jenkins.checkGoodName rejects.
const unsafeNameChars = "?*/\\%!@#$^&|<>[]:;"

// createNodeForm is the part of the doCreateItem json the emulator reads;
// numbers may arrive as JSON numbers or strings, as from an HTML form.
type createNodeForm struct {
	NodeDescription   string          `json:"nodeDescription"`
	NumExecutors      json.RawMessage `json:"numExecutors"`
	RemoteFS          string          `json:"remoteFS"`
	LabelString       string          `json:"labelString"`
	Mode              string          `json:"mode"`
	Launcher          map[string]any  `json:"launcher"`
	RetentionStrategy map[string]any  `json:"retentionStrategy"`
}

// handleCreateNode is ComputerSet.doDoCreateItem: synchronized, needs
// Computer.CREATE, validates the name (checkName: required, no unsafe
// characters, not taken — "Agent called ‘NAME’ already exists", a Failure
// rendered as 400), binds the json form to the descriptor named by type
// (hudson.slaves.DumbSlave or its descriptor class; anything else fails with
// a NullPointerException, 500) and redirects (302) to the node list.
// Numbers of executors below 1 are a FormException (400). A missing
// launcher means JNLPLauncher, as in Slave.getLauncher().
func handleCreateNode(s *Server, w http.ResponseWriter, r *http.Request, p principal, a routeArgs) {
	if p.user.ReadOnly {
		s.denied(w, p, "hudson.model.Computer.Create", "Agent/Create")
		return
	}
	s.createMu.Lock()
	defer s.createMu.Unlock()
	if d := s.opts.CreateNodeDelay; d > 0 {
		time.Sleep(d)
	}
	name := strings.TrimSpace(r.Form.Get("name"))
	if name == "" {
		failure(w, "Query parameter 'name' is required")
		return
	}
	if i := strings.IndexAny(name, unsafeNameChars); i >= 0 {
		failure(w, "‘"+name[i:i+1]+"’ is an unsafe character")
		return
	}
	if name == "." || name == ".." {
		failure(w, "“"+name+"” is not an allowed name")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nodeByURLName(name) != nil && name != "(built-in)" && name != "(master)" {
		failure(w, s.requestLang(r).format(msgAgentExists, name))
		return
	}
	raw := r.Form.Get("json")
	if raw == "" {
		s.oops(w, "javax.servlet.ServletException: This page expects a form submission but had only {}")
		return
	}
	typ := r.Form.Get("type")
	if typ != "hudson.slaves.DumbSlave" && typ != "hudson.slaves.DumbSlave$DescriptorImpl" {
		s.oops(w, "java.lang.NullPointerException: no node descriptor "+typ)
		return
	}
	var f createNodeForm
	if err := json.Unmarshal([]byte(raw), &f); err != nil {
		s.oops(w, "net.sf.json.JSONException: "+err.Error())
		return
	}
	execs := 1
	if len(f.NumExecutors) > 0 {
		v := strings.Trim(string(f.NumExecutors), `"`)
		n, err := strconv.Atoi(v)
		if err != nil {
			s.oops(w, "java.lang.NumberFormatException: For input string: \""+v+"\"")
			return
		}
		execs = n
	}
	if execs < 1 {
		failure(w, "Invalid agent configuration for ‘"+name+"’. Invalid # of executors.")
		return
	}
	mode := f.Mode
	switch mode {
	case "":
		mode = "NORMAL"
	case "NORMAL", "EXCLUSIVE":
	default:
		s.oops(w, "java.lang.IllegalArgumentException: No enum constant hudson.model.Node.Mode."+mode)
		return
	}
	launcher := "hudson.slaves.JNLPLauncher"
	webSocket := false
	if f.Launcher != nil {
		if c, ok := f.Launcher["stapler-class"].(string); ok && c != "" {
			launcher = c
		} else if c, ok := f.Launcher["$class"].(string); ok && c != "" {
			launcher = c
		}
		switch v := f.Launcher["webSocket"].(type) {
		case bool:
			webSocket = v
		case string:
			webSocket = v == "true" || v == "on"
		}
	}
	retention := ""
	if f.RetentionStrategy != nil {
		retention, _ = f.RetentionStrategy["stapler-class"].(string)
	}
	n := &node{
		name:         name,
		description:  f.NodeDescription,
		remoteFS:     f.RemoteFS,
		numExecutors: execs,
		mode:         mode,
		labelString:  strings.Join(parseLabelString(f.LabelString), " "),
		launcher:     launcher,
		webSocket:    webSocket,
		retention:    retention,
		executors:    make([]*build, execs),
		created:      s.clock.Now(),
		createJSON:   raw,
		createType:   typ,
	}
	s.nodes = append(s.nodes, n)
	slices.SortStableFunc(s.nodes[1:], func(x, y *node) int { return strings.Compare(x.name, y.name) })
	s.log.Debug("node created", "node", name, "labels", n.labelString, "mode", mode)
	s.advanceLocked()
	redirect(w, http.StatusFound, s.base()+"computer/")
}

// handleDeleteNode is Computer.doDoDelete: needs Computer.DELETE, removes
// the node (Jenkins.removeNode kills the computer: builds on its executors
// are interrupted and end ABORTED) and redirects to the node list.
func handleDeleteNode(s *Server, w http.ResponseWriter, r *http.Request, p principal, a routeArgs) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.advanceLocked()
	n := s.nodeByURLName(a.name)
	if n == nil {
		notFound(w)
		return
	}
	if p.user.ReadOnly {
		s.denied(w, p, "hudson.model.Computer.Delete", "Agent/Delete")
		return
	}
	if n.builtIn {
		failure(w, "Cannot delete the built-in node")
		return
	}
	s.removeNodeLocked(n, now)
	redirect(w, http.StatusFound, s.base()+"computer/")
}

// handleToggleOffline is Computer.doToggleOffline (@RequirePOST): 404 for
// an unknown node; a node that is temporarily offline comes back online
// (needs Computer.CONNECT); any other is taken temporarily offline as
// doChangeOfflineCause does (needs Computer.DISCONNECT). It toggles: a
// second call undoes the first. Jenkins answers redirectToDot, a 302 to
// the computer's page. A build running on the node keeps running; the
// agent stays connected.
func handleToggleOffline(s *Server, w http.ResponseWriter, r *http.Request, p principal, a routeArgs) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.advanceLocked()
	n := s.nodeByURLName(a.name)
	if n == nil {
		notFound(w)
		return
	}
	if !n.tempOffline {
		s.takeOfflineLocked(w, r, p, n, now)
		return
	}
	if p.user.ReadOnly {
		s.denied(w, p, "hudson.model.Computer.Connect", "Agent/Connect")
		return
	}
	n.tempOffline, n.offlineBy, n.offlineMsg, n.offlineSince = false, "", "", time.Time{}
	s.log.Debug("node back online", "node", n.name)
	s.advanceLocked()
	redirect(w, http.StatusFound, s.computerURL(n))
}

// handleChangeOfflineCause is Computer.doChangeOfflineCause (@RequirePOST,
// Computer.DISCONNECT): the node is temporarily offline afterwards whatever
// it was before, with an OfflineCause.UserCause carrying the caller and
// the trimmed offlineMessage; 302 to the computer's page. Unlike
// toggleOffline, calling it twice leaves the node offline.
func handleChangeOfflineCause(s *Server, w http.ResponseWriter, r *http.Request, p principal, a routeArgs) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.advanceLocked()
	n := s.nodeByURLName(a.name)
	if n == nil {
		notFound(w)
		return
	}
	s.takeOfflineLocked(w, r, p, n, now)
}

func (s *Server) takeOfflineLocked(w http.ResponseWriter, r *http.Request, p principal, n *node, now time.Time) {
	if p.user.ReadOnly {
		s.denied(w, p, "hudson.model.Computer.Disconnect", "Agent/Disconnect")
		return
	}
	n.tempOffline, n.offlineBy, n.offlineMsg, n.offlineSince = true, p.name(), strings.TrimSpace(r.Form.Get("offlineMessage")), now
	s.log.Debug("node temporarily offline", "node", n.name, "message", n.offlineMsg)
	s.advanceLocked()
	redirect(w, http.StatusFound, s.computerURL(n))
}

// computerURL is Computer.getUrl() made absolute, as Jetty does with a
// relative redirect.
func (s *Server) computerURL(n *node) string {
	if n.builtIn {
		return s.base() + "computer/(built-in)/"
	}
	return s.base() + "computer/" + pathEscape(n.name) + "/"
}

func (s *Server) removeNodeLocked(n *node, now time.Time) {
	for _, b := range n.executors {
		if b != nil {
			s.completeLocked(b, Aborted, now)
		}
	}
	n.connected = false
	s.nodes = slices.DeleteFunc(s.nodes, func(x *node) bool { return x == n })
	s.log.Debug("node deleted", "node", n.name)
	s.advanceLocked()
}

// handleJNLP serves slave-agent.jnlp / jenkins-agent.jnlp
// (SlaveComputer.doSlaveAgentJnlp, slave-agent.jnlp.jelly): needs
// Computer.CONNECT; the first application-desc argument is the secret, the
// second the node name; -webSocket is added for WebSocket launchers.
// Content-Type is application/x-java-jnlp-file.
func handleJNLP(s *Server, w http.ResponseWriter, r *http.Request, p principal, a routeArgs) {
	s.mu.Lock()
	n := s.nodeByURLName(a.name)
	var ws bool
	var remoteFS string
	if n != nil {
		ws, remoteFS = n.webSocket, n.remoteFS
	}
	s.mu.Unlock()
	if n == nil || n.builtIn {
		notFound(w)
		return
	}
	if p.user.ReadOnly {
		s.denied(w, p, "hudson.model.Computer.Connect", "Agent/Connect")
		return
	}
	base := s.base()
	var args strings.Builder
	arg := func(v string) { args.WriteString("<argument>" + htmlEscape(v) + "</argument>") }
	arg(s.AgentSecret(n.name))
	arg(n.name)
	if ws {
		arg("-webSocket")
	}
	if remoteFS != "" {
		arg("-workDir")
		arg(remoteFS)
		arg("-internalDir")
		arg("remoting")
	}
	arg("-url")
	arg(base)
	w.Header().Set("Content-Type", "application/x-java-jnlp-file")
	w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><jnlp codebase="%scomputer/%s/" spec="1.0+"><information><title>Agent for %s</title><vendor>Jenkins project</vendor><homepage href="https://jenkins-ci.org/"></homepage></information><security><all-permissions></all-permissions></security><resources><j2se version="1.8+"></j2se><jar href="%sjnlpJars/remoting.jar"></jar><property name="hudson.showWindowsServiceInstallLink" value="true"></property></resources><application-desc main-class="hudson.remoting.jnlp.Main">%s</application-desc></jnlp>`,
		base, pathEscape(n.name), htmlEscape(n.name), base, args.String())
}
