package scmfake

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// GitLabToken is the token a new GitLab fake accepts.
const GitLabToken = "glpat-scmfakeGitLabToken000"

// glFieldLimit is GitLab's documented limit on description and target_url.
const glFieldLimit = 255

// GitLab stands in for the GitLab REST API v4. It serves
// POST /api/v4/projects/:id/statuses/:sha and the deployments API
// (POST /projects/:id/deployments, GET and PUT
// /projects/:id/deployments/:deployment_id), where :id is a registered
// project's numeric id or its URL-encoded full path, and models the state
// machine behind it: a status that is still pending or running is updated
// in place, and a transition to the state it is already in is refused with
// 400 "Cannot transition status via :run from :running", as GitLab does.
type GitLab struct {
	*recorder

	mu       sync.Mutex
	root     string // relative URL root, e.g. "/gitlab"
	projects map[int64]string
	byPath   map[string]int64 // lower-cased full path → id
	open     map[glKey]*glJob // statuses still pending or running
	lastRef  map[glCommit]string
	nextID   int64
	conv     glConversation // notes.go
	hooks    glHookBook     // gitlab_hooks.go
}

type glKey struct {
	project   int64
	sha, name string
	ref       string
}

type glCommit struct {
	project int64
	sha     string
}

type glJob struct {
	id                    int64
	status                string
	created, started, end time.Time
}

// NewGitLab starts a GitLab fake that accepts GitLabToken and knows no
// project yet (see AddProject). It is closed when the test ends.
func NewGitLab(t Cleaner) *GitLab {
	g := &GitLab{projects: map[int64]string{}, byPath: map[string]int64{},
		open: map[glKey]*glJob{}, lastRef: map[glCommit]string{}}
	g.recorder = newRecorder(t, GitLabToken, http.HandlerFunc(g.serve))
	return g
}

// AddProject makes a project known by its id and full path
// ("group/subgroup/name"); others answer 404 Project Not Found.
func (g *GitLab) AddProject(id int64, path string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.projects[id] = path
	g.byPath[strings.ToLower(path)] = id
}

// SetRelativeURLRoot serves the API under a path prefix, as a GitLab
// installed at https://example.com/gitlab does ("/gitlab"). BaseURL() then
// includes it.
func (g *GitLab) SetRelativeURLRoot(root string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.root = "/" + strings.Trim(root, "/")
	if g.root == "/" {
		g.root = ""
	}
}

// BaseURL is the instance URL to configure a client with (scheme, host and
// relative URL root, without /api/v4).
func (g *GitLab) BaseURL() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.URL() + g.root
}

func (g *GitLab) serve(w http.ResponseWriter, r *http.Request) {
	call := Call{Method: r.Method, Path: r.URL.EscapedPath(), Host: r.Host}
	call.Authorized = g.authorized(r)
	call.Code = g.handle(w, r, &call)
	g.record(call)
}

func (g *GitLab) authorized(r *http.Request) bool {
	tok := r.Header.Get("PRIVATE-TOKEN")
	if tok == "" {
		if scheme, t, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "bearer") {
			tok = t
		}
	}
	return tok != "" && tok == g.Token()
}

func (g *GitLab) handle(w http.ResponseWriter, r *http.Request, call *Call) int {
	if f, ok := g.nextFailure(); ok {
		return g.writeFailure(w, f)
	}
	g.mu.Lock()
	root := g.root
	g.mu.Unlock()
	// Routing comes first: an unknown route is 404 even without a token.
	rest, ok := strings.CutPrefix(call.Path, root+"/api/v4/projects/")
	parts := strings.Split(rest, "/")
	if ok && len(parts) >= 2 && parts[1] == "hooks" {
		return g.handleHooks(w, r, call, parts)
	}
	if ok && len(parts) >= 2 && parts[1] == "deployments" {
		return g.handleDeployments(w, r, call, parts)
	}
	if ok {
		if code, handled := g.handleConversation(w, r, call, parts); handled {
			return code
		}
	}
	if !ok || len(parts) != 3 || parts[1] != "statuses" || parts[0] == "" || parts[2] == "" || r.Method != http.MethodPost {
		return glWrite(w, http.StatusNotFound, map[string]any{"error": "404 Not Found"})
	}
	if !call.Authorized {
		return glWrite(w, http.StatusUnauthorized, map[string]any{"message": "401 Unauthorized"})
	}
	params, err := glParams(r)
	if err != nil {
		return glWrite(w, http.StatusBadRequest, map[string]any{"error": "The provided content-type '" + r.Header.Get("Content-Type") + "' is not supported."})
	}
	idOrPath, _ := url.PathUnescape(parts[0])
	sha, _ := url.PathUnescape(parts[2])
	st := &Status{Provider: "gitlab", SHA: sha, State: params["state"], Description: params["description"],
		TargetURL: params["target_url"], Ref: params["ref"]}
	st.Context = params["name"]
	if st.Context == "" {
		st.Context = params["context"]
	}
	if st.Context == "" {
		st.Context = "default"
	}
	// Grape validates parameters before the endpoint looks anything up.
	switch st.State {
	case "pending", "running", "success", "failed", "canceled", "skipped":
	case "":
		return glWrite(w, http.StatusBadRequest, map[string]any{"error": "state is missing, state does not have a valid value"})
	default:
		return glWrite(w, http.StatusBadRequest, map[string]any{"error": "state does not have a valid value"})
	}

	g.mu.Lock()
	defer g.mu.Unlock()
	id, path, found := g.lookup(idOrPath)
	if !found {
		return glWrite(w, http.StatusNotFound, map[string]any{"message": "404 Project Not Found"})
	}
	st.ProjectID, st.Repo = id, path
	call.Status = st
	if !isHexSHA(sha) {
		return glWrite(w, http.StatusNotFound, map[string]any{"message": "404 Commit Not Found"})
	}
	invalid := map[string][]string{}
	for field, v := range map[string]string{"description": st.Description, "target_url": st.TargetURL} {
		if utf8.RuneCountInString(v) > glFieldLimit {
			invalid[field] = []string{fmt.Sprintf("is too long (maximum is %d characters)", glFieldLimit)}
		}
	}
	if len(invalid) > 0 {
		return glWrite(w, http.StatusBadRequest, map[string]any{"message": invalid})
	}

	ref := st.Ref
	if ref == "" {
		// GitLab takes the ref of the newest pipeline of the commit, or
		// the first branch that contains it.
		ref = g.lastRef[glCommit{id, sha}]
		if ref == "" {
			ref = "main"
		}
	}
	key := glKey{project: id, sha: sha, name: st.Context, ref: ref}
	job, msg := g.transition(key, st.State)
	if msg != "" {
		return glWrite(w, http.StatusBadRequest, map[string]any{"message": msg})
	}
	g.lastRef[glCommit{id, sha}] = ref
	return glWrite(w, http.StatusCreated, g.entity(job, st, ref))
}

// lookup finds a project by numeric id or full path; the caller holds g.mu.
func (g *GitLab) lookup(idOrPath string) (int64, string, bool) {
	if n, err := strconv.ParseInt(idOrPath, 10, 64); err == nil {
		p, ok := g.projects[n]
		return n, p, ok
	}
	n, ok := g.byPath[strings.ToLower(idOrPath)]
	return n, g.projects[n], ok
}

// glEvents names the state-machine event behind each requested state.
var glEvents = map[string]string{
	"pending": "enqueue", "running": "run", "success": "success",
	"failed": "drop", "canceled": "cancel", "skipped": "skip",
}

// transition applies state to the open status of key (or a new one) the
// way GitLab's CommitStatus state machine does. It returns the refusal
// message when the transition is not allowed. The caller holds g.mu.
func (g *GitLab) transition(key glKey, state string) (*glJob, string) {
	now := time.Now().UTC()
	job, open := g.open[key]
	if !open {
		g.nextID++
		job = &glJob{id: g.nextID, status: "created", created: now}
	}
	from := job.status
	refuse := func() (*glJob, string) {
		ev := glEvents[state]
		return nil, fmt.Sprintf("Cannot transition status via :%s from :%s (Reason(s): Status cannot transition via %q)", ev, from, ev)
	}
	switch state {
	case "pending": // enqueue!: created → pending
		if from != "created" {
			return refuse()
		}
		job.status = "pending"
	case "running": // enqueue (silently refused unless created), then run!: pending → running
		if from != "created" && from != "pending" {
			return refuse()
		}
		job.status, job.started = "running", now
	case "success", "failed", "canceled": // success!/drop!/cancel!: created, pending, running → done
		job.status, job.end = state, now
	case "skipped": // skip!: created → skipped
		if from != "created" {
			return refuse()
		}
		job.status, job.end = state, now
	}
	if job.status == "pending" || job.status == "running" {
		g.open[key] = job
	} else {
		delete(g.open, key)
	}
	return job, ""
}

// entity renders GitLab's Entities::CommitStatus.
func (g *GitLab) entity(job *glJob, st *Status, ref string) map[string]any {
	ts := func(t time.Time) any {
		if t.IsZero() {
			return nil
		}
		return t.Format("2006-01-02T15:04:05.000Z")
	}
	return map[string]any{
		"id":            job.id,
		"sha":           st.SHA,
		"ref":           ref,
		"status":        job.status,
		"name":          st.Context,
		"target_url":    nullable(st.TargetURL),
		"description":   nullable(st.Description),
		"created_at":    ts(job.created),
		"started_at":    ts(job.started),
		"finished_at":   ts(job.end),
		"allow_failure": false,
		"coverage":      nil,
		"pipeline_id":   st.ProjectID*1000 + 1,
		"author": map[string]any{
			"id": 1, "username": "ferry-bot", "name": "ferry", "state": "active",
			"web_url": g.URL() + "/ferry-bot",
		},
	}
}

// glParams merges query, form and JSON body parameters, as Grape does.
func glParams(r *http.Request) (map[string]string, error) {
	out := map[string]string{}
	for k, v := range r.URL.Query() {
		out[k] = v[0]
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "application/json":
		var m map[string]any
		b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			return nil, err
		}
		if len(b) > 0 {
			if err := json.Unmarshal(b, &m); err != nil {
				return nil, err
			}
		}
		for k, v := range m {
			switch v := v.(type) {
			case string:
				out[k] = v
			case nil:
			default:
				out[k] = fmt.Sprint(v)
			}
		}
	case "multipart/form-data":
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			return nil, err
		}
		for k, v := range r.PostForm {
			out[k] = v[0]
		}
	case "application/x-www-form-urlencoded", "":
		if err := r.ParseForm(); err != nil {
			return nil, err
		}
		for k, v := range r.PostForm {
			out[k] = v[0]
		}
	default:
		return nil, fmt.Errorf("unsupported content type %q", ct)
	}
	return out, nil
}

func (g *GitLab) writeFailure(w http.ResponseWriter, f Failure) int {
	if f.RetryAfter > 0 {
		w.Header().Set("Retry-After", retryAfterSeconds(f.RetryAfter))
	} else if f.Code == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	if f.Body != "" {
		w.WriteHeader(f.Code)
		_, _ = io.WriteString(w, f.Body)
		return f.Code
	}
	switch f.Code {
	case http.StatusTooManyRequests:
		// Rack::Attack's answer: plain text with the RateLimit headers.
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("RateLimit-Limit", "2000")
		w.Header().Set("RateLimit-Remaining", "0")
		w.WriteHeader(f.Code)
		_, _ = io.WriteString(w, "Retry later\n")
		return f.Code
	case http.StatusConflict:
		return glWrite(w, f.Code, map[string]any{"message": "Another update to this commit status is in progress"})
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(f.Code)
		_, _ = fmt.Fprintf(w, "<!DOCTYPE html>\n<html><head><title>GitLab is not responding (%d)</title></head><body></body></html>\n", f.Code)
		return f.Code
	default:
		return glWrite(w, f.Code, map[string]any{"message": fmt.Sprintf("%d %s", f.Code, http.StatusText(f.Code))})
	}
}

func glWrite(w http.ResponseWriter, code int, body any) int {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
	return code
}
