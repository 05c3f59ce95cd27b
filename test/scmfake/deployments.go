package scmfake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Deployment is one deployment a fake created, with the statuses it
// accepted for it.
type Deployment struct {
	// Provider is "github" or "gitlab".
	Provider string
	// Repo is "owner/name" on GitHub, the project's full path on GitLab.
	Repo string
	// ProjectID is GitLab's project id (0 on GitHub).
	ProjectID int64
	// ID is the id the fake answered.
	ID int64
	// SHA is the deployed commit: GitHub resolves the ref (the fake only
	// resolves SHAs and refs added with AddRef), GitLab takes sha as sent.
	SHA string
	// Ref as sent; Tag is GitLab's tag flag.
	Ref string
	Tag bool
	// Environment as sent.
	Environment string
	// GitHub only: the request's other fields as sent (nil when absent).
	Task                  string
	Description           string
	Payload               map[string]any
	AutoMerge             *bool
	RequiredContexts      *[]string
	TransientEnvironment  *bool
	ProductionEnvironment *bool
	// Statuses are the statuses accepted, in order; on GitLab the first
	// is the status the deployment was created with.
	Statuses []DeploymentStatus
}

// DeploymentStatus is one status of a deployment, in the provider's
// vocabulary (GitHub: error, failure, inactive, in_progress, queued,
// pending, success; GitLab: running, success, failed, canceled).
type DeploymentStatus struct {
	State string
	// GitHub only, as sent.
	Description    string
	EnvironmentURL string
	LogURL         string
}

// States returns the deployment's states in order.
func (d Deployment) States() []string {
	out := make([]string, len(d.Statuses))
	for i, s := range d.Statuses {
		out[i] = s.State
	}
	return out
}

// Deployments returns a copy of the deployments created so far, in order.
func (r *recorder) Deployments() []Deployment {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Deployment, len(r.deployments))
	for i, d := range r.deployments {
		c := *d
		c.Statuses = append([]DeploymentStatus(nil), d.Statuses...)
		out[i] = c
	}
	return out
}

// WaitForDeployments polls the deployments until pred holds and returns
// them; after timeout it fails the test with what was recorded. It must be
// called from the test's goroutine.
func (r *recorder) WaitForDeployments(t testing.TB, pred func([]Deployment) bool, timeout time.Duration) []Deployment {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := r.Deployments()
		if pred(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("scmfake: deployment condition not met within %s; deployments recorded:\n%s", timeout, FormatDeployments(got))
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// FormatDeployments renders deployments one per line, for failure messages.
func FormatDeployments(ds []Deployment) string {
	if len(ds) == 0 {
		return "  (none)"
	}
	var b strings.Builder
	for _, d := range ds {
		fmt.Fprintf(&b, "  #%d %s %s@%s ref=%q env=%s states=%v\n", d.ID, d.Provider, d.Repo, shortSHA(d.SHA), d.Ref, d.Environment, d.States())
	}
	return b.String()
}

// addDeployment records a new deployment and gives it an id.
func (r *recorder) addDeployment(d Deployment) Deployment {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nextDeployment++
	d.ID = r.nextDeployment
	r.deployments = append(r.deployments, &d)
	return d
}

// deployment returns the recorded deployment id of repo (case-insensitive).
// The caller holds r.mu.
func (r *recorder) deploymentLocked(repo string, id int64) *Deployment {
	for _, d := range r.deployments {
		if d.ID == id && strings.EqualFold(d.Repo, repo) {
			return d
		}
	}
	return nil
}

// ---- GitHub ----

const (
	ghDocsCreateDeployment = "https://docs.github.com/rest/deployments/deployments#create-a-deployment"
	ghDocsDeploymentStatus = "https://docs.github.com/rest/deployments/statuses#create-a-deployment-status"
)

// AddRef makes ref (a branch or tag name) of repo resolve to sha for
// deployments; any 7 to 40 digit hex SHA resolves to itself.
func (g *GitHub) AddRef(repo, ref, sha string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.refs == nil {
		g.refs = map[string]string{}
	}
	g.refs[strings.ToLower(repo)+"\x00"+ref] = sha
}

func (g *GitHub) resolve(repo, ref string) (string, bool) {
	if isHexSHA(ref) {
		return ref, true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	sha, ok := g.refs[strings.ToLower(repo)+"\x00"+ref]
	return sha, ok
}

type ghDeploymentRequest struct {
	Ref                   *string         `json:"ref"`
	Task                  *string         `json:"task"`
	AutoMerge             *bool           `json:"auto_merge"`
	RequiredContexts      *[]string       `json:"required_contexts"`
	Payload               json.RawMessage `json:"payload"`
	Environment           *string         `json:"environment"`
	Description           *string         `json:"description"`
	TransientEnvironment  *bool           `json:"transient_environment"`
	ProductionEnvironment *bool           `json:"production_environment"`
}

type ghDeploymentStatusRequest struct {
	State          *string `json:"state"`
	LogURL         *string `json:"log_url"`
	Description    *string `json:"description"`
	Environment    *string `json:"environment"`
	EnvironmentURL *string `json:"environment_url"`
	AutoInactive   *bool   `json:"auto_inactive"`
}

// handleDeployments serves POST /repos/{owner}/{repo}/deployments and
// POST /repos/{owner}/{repo}/deployments/{id}/statuses; parts is the path
// split at "/" (repos, owner, repo, deployments, ...). The token has been
// checked when present.
func (g *GitHub) handleDeployments(w http.ResponseWriter, r *http.Request, call *Call, parts []string) int {
	notFound := ghError{Message: "Not Found", DocumentationURL: ghDocsRoot, Status: "404"}
	create := len(parts) == 4
	setStatus := len(parts) == 6 && parts[5] == "statuses"
	if (!create && !setStatus) || r.Method != http.MethodPost {
		return ghWrite(w, http.StatusNotFound, notFound)
	}
	docs := ghDocsCreateDeployment
	if setStatus {
		docs = ghDocsDeploymentStatus
	}
	if !call.Authorized {
		return ghWrite(w, http.StatusUnauthorized, ghError{Message: "Requires authentication", DocumentationURL: docs, Status: "401"})
	}
	repo := parts[1] + "/" + parts[2]
	if !g.knows(repo) {
		return ghWrite(w, http.StatusNotFound, ghError{Message: "Not Found", DocumentationURL: docs, Status: "404"})
	}
	if create {
		return g.createDeployment(w, r, repo)
	}
	id, err := strconv.ParseInt(parts[4], 10, 64)
	if err != nil {
		return ghWrite(w, http.StatusNotFound, notFound)
	}
	return g.createDeploymentStatus(w, r, repo, id)
}

func (g *GitHub) createDeployment(w http.ResponseWriter, r *http.Request, repo string) int {
	var req ghDeploymentRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		return ghWrite(w, http.StatusBadRequest, ghError{Message: "Problems parsing JSON", DocumentationURL: ghDocsCreateDeployment, Status: "400"})
	}
	if deref(req.Ref) == "" {
		return ghWrite(w, http.StatusUnprocessableEntity, ghError{Message: "Invalid request.\n\n\"ref\" wasn't supplied.", DocumentationURL: ghDocsCreateDeployment, Status: "422"})
	}
	sha, ok := g.resolve(repo, *req.Ref)
	if !ok {
		return ghWrite(w, http.StatusUnprocessableEntity, ghError{Message: "No ref found for: " + *req.Ref, DocumentationURL: ghDocsCreateDeployment, Status: "422"})
	}
	if req.RequiredContexts == nil {
		// GitHub checks every status context of the commit unless told
		// otherwise, and refuses while one is not success.
		for _, s := range g.Statuses() {
			if strings.EqualFold(s.Repo, repo) && s.SHA == sha && s.State != "success" && isLatest(g.Statuses(), s) {
				return ghWrite(w, http.StatusConflict, ghError{Message: "Conflict: Commit status checks failed for " + *req.Ref + ".",
					Errors:           []ghErrorItem{{Resource: "Deployment", Field: "required_contexts", Code: "invalid", Message: s.Context + " is " + s.State}},
					DocumentationURL: ghDocsCreateDeployment, Status: "409"})
			}
		}
	}
	env := deref(req.Environment)
	if env == "" {
		env = "production"
	}
	task := deref(req.Task)
	if task == "" {
		task = "deploy"
	}
	var payload map[string]any
	if len(req.Payload) > 0 && string(req.Payload) != "null" {
		if err := json.Unmarshal(req.Payload, &payload); err != nil {
			// GitHub also accepts a JSON string; keep it under "".
			var s string
			if json.Unmarshal(req.Payload, &s) != nil {
				return ghWrite(w, http.StatusUnprocessableEntity, ghError{Message: "Invalid request.\n\nInvalid payload.", DocumentationURL: ghDocsCreateDeployment, Status: "422"})
			}
			payload = map[string]any{"": s}
		}
	}
	d := g.addDeployment(Deployment{Provider: "github", Repo: repo, SHA: sha, Ref: *req.Ref, Environment: env, Task: task,
		Description: deref(req.Description), Payload: payload, AutoMerge: req.AutoMerge, RequiredContexts: req.RequiredContexts,
		TransientEnvironment: req.TransientEnvironment, ProductionEnvironment: req.ProductionEnvironment})
	root := g.apiRoot(r)
	self := fmt.Sprintf("%s/repos/%s/deployments/%d", root, repo, d.ID)
	now := time.Now().UTC().Format(time.RFC3339)
	if payload == nil {
		payload = map[string]any{}
	}
	w.Header().Set("Location", self)
	return ghWrite(w, http.StatusCreated, map[string]any{
		"url": self, "id": d.ID, "node_id": fmt.Sprintf("DE_kwDOscmfake%d", d.ID), "sha": sha, "ref": d.Ref,
		"task": task, "payload": payload, "original_environment": env, "environment": env,
		"description": nullable(d.Description), "created_at": now, "updated_at": now,
		"statuses_url": self + "/statuses", "repository_url": root + "/repos/" + repo,
		"transient_environment":  req.TransientEnvironment != nil && *req.TransientEnvironment,
		"production_environment": req.ProductionEnvironment != nil && *req.ProductionEnvironment || (req.ProductionEnvironment == nil && env == "production"),
		"creator":                map[string]any{"login": "ferry-bot", "id": 1, "type": "User", "site_admin": false},
	})
}

// isLatest reports whether s is the newest status of its context.
func isLatest(all []Status, s Status) bool {
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].SHA == s.SHA && all[i].Context == s.Context && strings.EqualFold(all[i].Repo, s.Repo) {
			return all[i] == s
		}
	}
	return false
}

func (g *GitHub) createDeploymentStatus(w http.ResponseWriter, r *http.Request, repo string, id int64) int {
	var req ghDeploymentStatusRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		return ghWrite(w, http.StatusBadRequest, ghError{Message: "Problems parsing JSON", DocumentationURL: ghDocsDeploymentStatus, Status: "400"})
	}
	st := DeploymentStatus{State: deref(req.State), Description: deref(req.Description),
		EnvironmentURL: deref(req.EnvironmentURL), LogURL: deref(req.LogURL)}
	var invalid []ghErrorItem
	switch st.State {
	case "error", "failure", "inactive", "in_progress", "queued", "pending", "success":
	case "":
		invalid = append(invalid, ghErrorItem{Resource: "DeploymentStatus", Code: "missing_field", Field: "state"})
	default:
		invalid = append(invalid, ghErrorItem{Resource: "DeploymentStatus", Code: "custom", Field: "state", Message: "state is not included in the list"})
	}
	if utf8.RuneCountInString(st.Description) > ghDescriptionLimit {
		invalid = append(invalid, ghErrorItem{Resource: "DeploymentStatus", Code: "custom", Field: "description",
			Message: fmt.Sprintf("description is too long (maximum is %d characters)", ghDescriptionLimit)})
	}
	g.recorder.mu.Lock()
	defer g.recorder.mu.Unlock()
	d := g.deploymentLocked(repo, id)
	if d == nil {
		return ghWrite(w, http.StatusNotFound, ghError{Message: "Not Found", DocumentationURL: ghDocsDeploymentStatus, Status: "404"})
	}
	if len(invalid) > 0 {
		return ghWrite(w, http.StatusUnprocessableEntity, ghError{Message: "Validation Failed", Errors: invalid, DocumentationURL: ghDocsDeploymentStatus, Status: "422"})
	}
	d.Statuses = append(d.Statuses, st)
	root := g.apiRoot(r)
	dep := fmt.Sprintf("%s/repos/%s/deployments/%d", root, repo, id)
	sid := g.nextID.Add(1)
	now := time.Now().UTC().Format(time.RFC3339)
	return ghWrite(w, http.StatusCreated, map[string]any{
		"url": fmt.Sprintf("%s/statuses/%d", dep, sid), "id": sid, "node_id": fmt.Sprintf("DES_kwDOscmfake%d", sid),
		"state": st.State, "description": st.Description, "environment": d.Environment,
		"target_url": st.LogURL, "log_url": st.LogURL, "environment_url": st.EnvironmentURL,
		"created_at": now, "updated_at": now, "deployment_url": dep, "repository_url": root + "/repos/" + repo,
		"creator": map[string]any{"login": "ferry-bot", "id": 1, "type": "User", "site_admin": false},
	})
}

// ---- GitLab ----

// glDeploymentEvents names GitLab's Deployment state-machine event behind
// each status.
var glDeploymentEvents = map[string]string{"running": "run", "success": "succeed", "failed": "drop", "canceled": "cancel"}

// handleDeployments serves POST /projects/:id/deployments,
// PUT and GET /projects/:id/deployments/:deployment_id; parts is the path
// after /projects/ split at "/".
func (g *GitLab) handleDeployments(w http.ResponseWriter, r *http.Request, call *Call, parts []string) int {
	create := len(parts) == 2 && r.Method == http.MethodPost
	update := len(parts) == 3 && r.Method == http.MethodPut
	get := len(parts) == 3 && r.Method == http.MethodGet
	if parts[0] == "" || (!create && !update && !get) {
		return glWrite(w, http.StatusNotFound, map[string]any{"error": "404 Not Found"})
	}
	if !call.Authorized {
		return glWrite(w, http.StatusUnauthorized, map[string]any{"message": "401 Unauthorized"})
	}
	params, err := glParams(r)
	if err != nil {
		return glWrite(w, http.StatusBadRequest, map[string]any{"error": "The provided content-type '" + r.Header.Get("Content-Type") + "' is not supported."})
	}
	// Grape validates parameters before the endpoint looks anything up.
	var missing []string
	required := []string{"status"}
	if create {
		required = []string{"environment", "sha", "ref", "tag", "status"}
	}
	if !get {
		for _, p := range required {
			if _, ok := params[p]; !ok {
				missing = append(missing, p+" is missing")
			}
		}
	}
	if len(missing) > 0 {
		return glWrite(w, http.StatusBadRequest, map[string]any{"error": strings.Join(missing, ", ")})
	}
	if _, ok := glDeploymentEvents[params["status"]]; !get && !ok {
		return glWrite(w, http.StatusBadRequest, map[string]any{"error": "status does not have a valid value"})
	}
	if create && params["tag"] != "true" && params["tag"] != "false" {
		return glWrite(w, http.StatusBadRequest, map[string]any{"error": "tag is invalid"})
	}
	idOrPath := unescape(parts[0])
	g.mu.Lock()
	pid, path, found := g.lookup(idOrPath)
	g.mu.Unlock()
	if !found {
		return glWrite(w, http.StatusNotFound, map[string]any{"message": "404 Project Not Found"})
	}
	if create {
		d := g.addDeployment(Deployment{Provider: "gitlab", Repo: path, ProjectID: pid, SHA: params["sha"], Ref: params["ref"],
			Tag: params["tag"] == "true", Environment: params["environment"], Statuses: []DeploymentStatus{{State: params["status"]}}})
		return glWrite(w, http.StatusCreated, g.deploymentEntity(d))
	}
	id, err := strconv.ParseInt(parts[2], 10, 64)
	g.recorder.mu.Lock()
	defer g.recorder.mu.Unlock()
	var d *Deployment
	if err == nil {
		d = g.deploymentLocked(path, id)
	}
	if d == nil {
		return glWrite(w, http.StatusNotFound, map[string]any{"message": "404 Not found"})
	}
	if get {
		return glWrite(w, http.StatusOK, g.deploymentEntity(*d))
	}
	from, to := d.Statuses[len(d.Statuses)-1].State, params["status"]
	// run: created → running; succeed, drop, cancel: any other status →
	// theirs. A refused transition leaves no error on the record, so
	// GitLab answers 400 with an empty message.
	if from == to || (to == "running" && from != "created") {
		return glWrite(w, http.StatusBadRequest, map[string]any{"message": map[string]any{}})
	}
	d.Statuses = append(d.Statuses, DeploymentStatus{State: to})
	return glWrite(w, http.StatusOK, g.deploymentEntity(*d))
}

func unescape(s string) string {
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}

// deploymentEntity renders GitLab's Entities::Deployment.
func (g *GitLab) deploymentEntity(d Deployment) map[string]any {
	now := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	status := d.Statuses[len(d.Statuses)-1].State
	var finished any
	if status != "running" {
		finished = now
	}
	return map[string]any{
		"id": d.ID, "iid": d.ID, "ref": d.Ref, "sha": d.SHA, "created_at": now, "updated_at": now, "finished_at": finished,
		"status": status,
		"user":   map[string]any{"id": 1, "username": "ferry-bot", "name": "ferry", "state": "active", "web_url": g.URL() + "/ferry-bot"},
		"environment": map[string]any{"id": d.ProjectID*100 + int64(len(d.Environment)), "name": d.Environment,
			"slug": strings.ToLower(d.Environment), "external_url": nil, "state": "available", "tier": "other"},
		"deployable": nil,
	}
}
