package scmfake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// GitHubToken is the token a new GitHub fake accepts.
const GitHubToken = "ghp_scmfakeGitHubToken0000000000000000000"

// GitHub documentation URLs as the real API returns them in error bodies.
const (
	ghDocsRoot          = "https://docs.github.com/rest"
	ghDocsCreateStatus  = "https://docs.github.com/rest/commits/statuses#create-a-commit-status"
	ghDocsSecondaryRate = "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"
	ghDocsPrimaryRate   = "https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"
	ghDescriptionLimit  = 140
	ghRateLimit         = 5000
	ghStatusesMediaType = "github.v3; format=json"
)

// GitHub stands in for the GitHub REST API (github.com at the root and
// GitHub Enterprise Server under /api/v3). It serves
// POST /repos/{owner}/{repo}/statuses/{sha},
// POST /repos/{owner}/{repo}/deployments and
// POST /repos/{owner}/{repo}/deployments/{id}/statuses for registered
// repositories.
type GitHub struct {
	*recorder

	mu     sync.Mutex
	repos  map[string]bool   // lower-cased owner/name
	refs   map[string]string // lower-cased owner/name NUL ref → sha
	nextID atomic.Int64
	conv   ghConversation // members.go
	hooks  hookBook       // hooks.go
}

// NewGitHub starts a GitHub fake that accepts GitHubToken and knows no
// repository yet (see AddRepo). It is closed when the test (or t) ends.
func NewGitHub(t Cleaner) *GitHub {
	g := &GitHub{repos: map[string]bool{}}
	g.recorder = newRecorder(t, GitHubToken, http.HandlerFunc(g.serve))
	return g
}

// EnterpriseURL is the API root as GitHub Enterprise Server has it, for
// scm.GitHubConfig.BaseURL: URL() + "/api/v3/".
func (g *GitHub) EnterpriseURL() string { return g.URL() + "/api/v3/" }

// AddRepo makes the repositories ("owner/name") known; others answer 404.
func (g *GitHub) AddRepo(fullNames ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, n := range fullNames {
		g.repos[strings.ToLower(n)] = true
	}
}

// SecondaryRateLimitNext makes the next n requests answer GitHub's
// secondary rate limit: 403, the documented message and documentation_url,
// and Retry-After.
func (g *GitHub) SecondaryRateLimitNext(n int, retryAfter time.Duration) {
	body, _ := json.Marshal(ghError{
		Message:          "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID 0000:0000:000000:000000:00000000.",
		DocumentationURL: ghDocsSecondaryRate,
	})
	g.InjectFailures(n, Failure{Code: http.StatusForbidden, RetryAfter: retryAfter, Body: string(body)})
}

func (g *GitHub) knows(fullName string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.repos[strings.ToLower(fullName)]
}

// ghError is GitHub's error body.
type ghError struct {
	Message          string        `json:"message"`
	Errors           []ghErrorItem `json:"errors,omitempty"`
	DocumentationURL string        `json:"documentation_url,omitempty"`
	Status           string        `json:"status,omitempty"`
}

type ghErrorItem struct {
	Resource string `json:"resource"`
	Code     string `json:"code"`
	Field    string `json:"field"`
	Message  string `json:"message,omitempty"`
}

// ghStatusRequest is the body of the create-status call.
type ghStatusRequest struct {
	State       *string `json:"state"`
	TargetURL   *string `json:"target_url"`
	Description *string `json:"description"`
	Context     *string `json:"context"`
}

func (g *GitHub) serve(w http.ResponseWriter, r *http.Request) {
	call := Call{Method: r.Method, Path: r.URL.EscapedPath(), Host: r.Host}
	call.Authorized = g.authorized(r)
	code := g.handle(w, r, &call)
	call.Code = code
	g.record(call)
}

func (g *GitHub) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok {
		return false
	}
	switch strings.ToLower(scheme) {
	case "bearer", "token":
		return tok == g.Token()
	}
	return false
}

// handle answers the request and returns the status code it wrote.
func (g *GitHub) handle(w http.ResponseWriter, r *http.Request, call *Call) int {
	g.rateHeaders(w)
	if f, ok := g.nextFailure(); ok {
		return g.writeFailure(w, f)
	}
	if r.Header.Get("Authorization") != "" && !call.Authorized {
		return ghWrite(w, http.StatusUnauthorized, ghError{Message: "Bad credentials", DocumentationURL: ghDocsRoot, Status: "401"})
	}
	path := strings.TrimPrefix(call.Path, "/api/v3")
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) >= 4 && parts[0] == "repos" && parts[3] == "deployments" {
		return g.handleDeployments(w, r, call, parts)
	}
	if code, ok := g.handleConversation(w, r, call, parts); ok {
		return code
	}
	if isHookPath(parts) {
		return g.handleHooks(w, r, call, parts)
	}
	if len(parts) != 5 || parts[0] != "repos" || parts[3] != "statuses" {
		return ghWrite(w, http.StatusNotFound, ghError{Message: "Not Found", DocumentationURL: ghDocsRoot, Status: "404"})
	}
	if r.Method != http.MethodPost {
		return ghWrite(w, http.StatusNotFound, ghError{Message: "Not Found", DocumentationURL: ghDocsRoot, Status: "404"})
	}
	if !call.Authorized {
		// Writing a status needs a token; GitHub says so before looking
		// the repository up.
		return ghWrite(w, http.StatusUnauthorized, ghError{Message: "Requires authentication", DocumentationURL: ghDocsCreateStatus, Status: "401"})
	}
	repo, sha := parts[1]+"/"+parts[2], parts[4]
	if !g.knows(repo) {
		return ghWrite(w, http.StatusNotFound, ghError{Message: "Not Found", DocumentationURL: ghDocsCreateStatus, Status: "404"})
	}
	var req ghStatusRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		return ghWrite(w, http.StatusBadRequest, ghError{Message: "Problems parsing JSON", DocumentationURL: ghDocsCreateStatus, Status: "400"})
	}
	st := &Status{Provider: "github", Repo: repo, SHA: sha, State: deref(req.State),
		Context: deref(req.Context), Description: deref(req.Description), TargetURL: deref(req.TargetURL)}
	if st.Context == "" {
		st.Context = "default"
	}
	call.Status = st
	if !isHexSHA(sha) {
		return ghWrite(w, http.StatusUnprocessableEntity, ghError{Message: "No commit found for SHA: " + sha, DocumentationURL: ghDocsCreateStatus, Status: "422"})
	}
	var invalid []ghErrorItem
	switch st.State {
	case "pending", "success", "failure", "error":
	case "":
		invalid = append(invalid, ghErrorItem{Resource: "Status", Code: "missing_field", Field: "state"})
	default:
		invalid = append(invalid, ghErrorItem{Resource: "Status", Code: "custom", Field: "state", Message: "state is not included in the list"})
	}
	if n := utf8.RuneCountInString(st.Description); n > ghDescriptionLimit {
		invalid = append(invalid, ghErrorItem{Resource: "Status", Code: "custom", Field: "description",
			Message: fmt.Sprintf("description is too long (maximum is %d characters)", ghDescriptionLimit)})
	}
	if len(invalid) > 0 {
		return ghWrite(w, http.StatusUnprocessableEntity, ghError{Message: "Validation Failed", Errors: invalid, DocumentationURL: ghDocsCreateStatus, Status: "422"})
	}

	id := g.nextID.Add(1)
	now := time.Now().UTC().Format(time.RFC3339)
	self := fmt.Sprintf("%s/repos/%s/statuses/%s", g.apiRoot(r), repo, sha)
	w.Header().Set("Location", self)
	return ghWrite(w, http.StatusCreated, map[string]any{
		"url":         self,
		"avatar_url":  "https://avatars.githubusercontent.com/u/1?v=4",
		"id":          id,
		"node_id":     fmt.Sprintf("SC_kwDOscmfake%d", id),
		"state":       st.State,
		"description": nullable(st.Description),
		"target_url":  nullable(st.TargetURL),
		"context":     st.Context,
		"created_at":  now,
		"updated_at":  now,
		"creator": map[string]any{
			"login": "ferry-bot", "id": 1, "type": "User", "site_admin": false,
		},
	})
}

// apiRoot is the API root the request used, for URLs in answers.
func (g *GitHub) apiRoot(r *http.Request) string {
	if strings.HasPrefix(r.URL.Path, "/api/v3/") {
		return g.URL() + "/api/v3"
	}
	return g.URL()
}

// rateHeaders sets the headers GitHub sends on every answer. The budget
// never runs out unless a test injects a rate limit.
func (g *GitHub) rateHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("X-GitHub-Media-Type", ghStatusesMediaType)
	h.Set("X-RateLimit-Limit", fmt.Sprint(ghRateLimit))
	h.Set("X-RateLimit-Remaining", fmt.Sprint(ghRateLimit-1))
	h.Set("X-RateLimit-Reset", fmt.Sprint(time.Now().Add(time.Hour).Unix()))
	h.Set("X-RateLimit-Resource", "core")
}

func (g *GitHub) writeFailure(w http.ResponseWriter, f Failure) int {
	if f.RetryAfter > 0 {
		w.Header().Set("Retry-After", retryAfterSeconds(f.RetryAfter))
	} else if f.Code == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	if f.Body != "" {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(f.Code)
		_, _ = w.Write([]byte(f.Body))
		return f.Code
	}
	switch f.Code {
	case http.StatusTooManyRequests:
		return ghWrite(w, f.Code, ghError{Message: "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.", DocumentationURL: ghDocsSecondaryRate})
	case http.StatusForbidden:
		// The primary rate limit: 403 with the budget exhausted until the
		// reset.
		reset := max(f.RetryAfter, time.Minute)
		w.Header().Set("X-RateLimit-Remaining", "0")
		w.Header().Set("X-RateLimit-Reset", fmt.Sprint(time.Now().Add(reset).Unix()))
		return ghWrite(w, f.Code, ghError{Message: "API rate limit exceeded for user ID 1.", DocumentationURL: ghDocsPrimaryRate})
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(f.Code)
		_, _ = fmt.Fprintf(w, "<html><body><h1>%d %s</h1></body></html>\n", f.Code, http.StatusText(f.Code))
		return f.Code
	default:
		return ghWrite(w, f.Code, ghError{Message: "Server Error"})
	}
}

func ghWrite(w http.ResponseWriter, code int, body any) int {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
	return code
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}
