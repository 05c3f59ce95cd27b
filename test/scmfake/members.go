package scmfake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// GitHub pull request conversation, membership and permission endpoints,
// as the trust gate and comment commands call them:
//
//	GET  /orgs/{org}/members/{user}            204 member; 404 not a member;
//	                                           302 to public_members when the
//	                                           token's user is outside the org
//	GET  /orgs/{org}/public_members/{user}     204 public member; 404
//	GET  /repos/{o}/{r}/collaborators/{u}/permission
//	                                           200 {"permission": admin|write|
//	                                           read|none, "role_name": …};
//	                                           404 unknown repository or user
//	GET  /orgs/{org}/teams/{slug}/memberships/{user}
//	                                           200 {"state": active|pending};
//	                                           404 not a member
//	POST /repos/{o}/{r}/issues/comments/{id}/reactions
//	                                           201 new, 200 the same reaction
//	                                           again; 422 unknown content;
//	                                           404 unknown comment
//	POST /repos/{o}/{r}/issues/{n}/comments    201; 422 without a body
//
// Bad tokens get 401 and injected failures the rate limit answers (403
// with X-RateLimit-Remaining: 0, 403/429 secondary limit with Retry-After)
// as every other endpoint of the fake.

// Reaction is a reaction the GitHub fake created.
type Reaction struct {
	Repo      string
	CommentID int64
	Content   string
}

// Comment is a comment on an issue or pull request of the GitHub fake.
type Comment struct {
	Repo   string
	Number int
	ID     int64
	Body   string
}

// ghConversation is the GitHub fake's state for the endpoints above.
type ghConversation struct {
	mu          sync.Mutex
	members     map[string]map[string]bool   // org → login (lower-case)
	public      map[string]map[string]bool   // org → login publicly a member
	outside     map[string]bool              // orgs the token's user is not in
	perms       map[string]map[string]string // repo → login → permission
	teams       map[string]map[string]string // org/slug → login → state
	comments    []Comment
	reactions   []Reaction
	nextComment int64
}

func (c *ghConversation) init() {
	if c.members == nil {
		c.members, c.public, c.outside = map[string]map[string]bool{}, map[string]map[string]bool{}, map[string]bool{}
		c.perms, c.teams = map[string]map[string]string{}, map[string]map[string]string{}
		c.nextComment = 1000
	}
}

// AddOrgMember makes users (private) members of org.
func (g *GitHub) AddOrgMember(org string, users ...string) {
	g.conv.mu.Lock()
	defer g.conv.mu.Unlock()
	g.conv.init()
	set(g.conv.members, org, users)
}

// AddPublicOrgMember makes users public members of org.
func (g *GitHub) AddPublicOrgMember(org string, users ...string) {
	g.conv.mu.Lock()
	defer g.conv.mu.Unlock()
	g.conv.init()
	set(g.conv.members, org, users)
	set(g.conv.public, org, users)
}

// TokenOutsideOrg makes the token's user a non-member of org: its
// membership checks are redirected to the public membership check.
func (g *GitHub) TokenOutsideOrg(org string) {
	g.conv.mu.Lock()
	defer g.conv.mu.Unlock()
	g.conv.init()
	g.conv.outside[strings.ToLower(org)] = true
}

// SetPermission sets user's permission on repo: admin, maintain, write,
// triage, read (or none).
func (g *GitHub) SetPermission(repo, user, permission string) {
	g.conv.mu.Lock()
	defer g.conv.mu.Unlock()
	g.conv.init()
	r := strings.ToLower(repo)
	if g.conv.perms[r] == nil {
		g.conv.perms[r] = map[string]string{}
	}
	g.conv.perms[r][strings.ToLower(user)] = permission
}

// AddTeamMember makes user an active member of the team org/slug.
func (g *GitHub) AddTeamMember(org, slug, user string) {
	g.conv.mu.Lock()
	defer g.conv.mu.Unlock()
	g.conv.init()
	k := strings.ToLower(org + "/" + slug)
	if g.conv.teams[k] == nil {
		g.conv.teams[k] = map[string]string{}
	}
	g.conv.teams[k][strings.ToLower(user)] = "active"
}

// AddComment records a comment on issue or pull request number of repo and
// returns its id, for a webhook payload that names it.
func (g *GitHub) AddComment(repo string, number int, body string) int64 {
	g.conv.mu.Lock()
	defer g.conv.mu.Unlock()
	g.conv.init()
	g.conv.nextComment++
	g.conv.comments = append(g.conv.comments, Comment{Repo: repo, Number: number, ID: g.conv.nextComment, Body: body})
	return g.conv.nextComment
}

// Comments returns the comments made so far (by AddComment and by calls).
func (g *GitHub) Comments() []Comment {
	g.conv.mu.Lock()
	defer g.conv.mu.Unlock()
	return append([]Comment(nil), g.conv.comments...)
}

// Reactions returns the reactions created so far.
func (g *GitHub) Reactions() []Reaction {
	g.conv.mu.Lock()
	defer g.conv.mu.Unlock()
	return append([]Reaction(nil), g.conv.reactions...)
}

func set(m map[string]map[string]bool, key string, users []string) {
	k := strings.ToLower(key)
	if m[k] == nil {
		m[k] = map[string]bool{}
	}
	for _, u := range users {
		m[k][strings.ToLower(u)] = true
	}
}

var ghReactions = map[string]bool{"+1": true, "-1": true, "laugh": true, "confused": true, "heart": true, "hooray": true, "rocket": true, "eyes": true}

// handleConversation serves the endpoints above; ok is false for any
// other path.
func (g *GitHub) handleConversation(w http.ResponseWriter, r *http.Request, call *Call, parts []string) (int, bool) {
	notFound := func() int {
		return ghWrite(w, http.StatusNotFound, ghError{Message: "Not Found", DocumentationURL: ghDocsRoot, Status: "404"})
	}
	get, post := r.Method == http.MethodGet, r.Method == http.MethodPost
	switch {
	case get && len(parts) == 4 && parts[0] == "orgs" && parts[2] == "members":
		return g.orgMember(w, r, call, parts[1], parts[3], false), true
	case get && len(parts) == 4 && parts[0] == "orgs" && parts[2] == "public_members":
		return g.orgMember(w, r, call, parts[1], parts[3], true), true
	case get && len(parts) == 6 && parts[0] == "repos" && parts[3] == "collaborators" && parts[5] == "permission":
		if !call.Authorized {
			return ghWrite(w, http.StatusUnauthorized, ghError{Message: "Requires authentication", DocumentationURL: ghDocsRoot, Status: "401"}), true
		}
		repo := parts[1] + "/" + parts[2]
		if !g.knows(repo) {
			return notFound(), true
		}
		g.conv.mu.Lock()
		p, ok := g.conv.perms[strings.ToLower(repo)][strings.ToLower(parts[4])]
		g.conv.mu.Unlock()
		if !ok {
			p = "none"
		}
		legacy := p
		switch p { // the permission field keeps the five legacy values
		case "maintain":
			legacy = "write"
		case "triage":
			legacy = "read"
		}
		return ghWrite(w, http.StatusOK, map[string]any{"permission": legacy, "role_name": p,
			"user": map[string]any{"login": parts[4], "type": "User"}}), true
	case get && len(parts) == 6 && parts[0] == "orgs" && parts[2] == "teams" && parts[4] == "memberships":
		if !call.Authorized {
			return ghWrite(w, http.StatusUnauthorized, ghError{Message: "Requires authentication", DocumentationURL: ghDocsRoot, Status: "401"}), true
		}
		g.conv.mu.Lock()
		state, ok := g.conv.teams[strings.ToLower(parts[1]+"/"+parts[3])][strings.ToLower(parts[5])]
		g.conv.mu.Unlock()
		if !ok {
			return notFound(), true
		}
		return ghWrite(w, http.StatusOK, map[string]any{"role": "member", "state": state,
			"url": fmt.Sprintf("%s/teams/1/memberships/%s", g.apiRoot(r), parts[5])}), true
	case post && len(parts) == 7 && parts[0] == "repos" && parts[3] == "issues" && parts[4] == "comments" && parts[6] == "reactions":
		return g.react(w, call, parts[1]+"/"+parts[2], parts[5], r), true
	case post && len(parts) == 6 && parts[0] == "repos" && parts[3] == "issues" && parts[5] == "comments":
		return g.comment(w, r, call, parts[1]+"/"+parts[2], parts[4]), true
	}
	return 0, false
}

func (g *GitHub) orgMember(w http.ResponseWriter, r *http.Request, call *Call, org, user string, public bool) int {
	g.conv.mu.Lock()
	g.conv.init()
	o, u := strings.ToLower(org), strings.ToLower(user)
	outside := g.conv.outside[o] || !call.Authorized
	member, pub := g.conv.members[o][u], g.conv.public[o][u]
	g.conv.mu.Unlock()
	if public {
		if pub {
			w.WriteHeader(http.StatusNoContent)
			return http.StatusNoContent
		}
		return ghWrite(w, http.StatusNotFound, ghError{Message: "Not Found", DocumentationURL: ghDocsRoot, Status: "404"})
	}
	if outside {
		// "If the requester is not a member of the organization, the
		// query will be redirected to the public members check."
		w.Header().Set("Location", g.apiRoot(r)+"/orgs/"+org+"/public_members/"+user)
		w.WriteHeader(http.StatusFound)
		return http.StatusFound
	}
	if member {
		w.WriteHeader(http.StatusNoContent)
		return http.StatusNoContent
	}
	return ghWrite(w, http.StatusNotFound, ghError{Message: "User does not exist or is not a member of the organization", DocumentationURL: ghDocsRoot, Status: "404"})
}

func (g *GitHub) react(w http.ResponseWriter, call *Call, repo, idText string, r *http.Request) int {
	if !call.Authorized {
		return ghWrite(w, http.StatusUnauthorized, ghError{Message: "Requires authentication", DocumentationURL: ghDocsRoot, Status: "401"})
	}
	id, _ := strconv.ParseInt(idText, 10, 64)
	var body struct {
		Content string `json:"content"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		return ghWrite(w, http.StatusBadRequest, ghError{Message: "Problems parsing JSON", DocumentationURL: ghDocsRoot, Status: "400"})
	}
	g.conv.mu.Lock()
	defer g.conv.mu.Unlock()
	known := false
	for _, c := range g.conv.comments {
		known = known || (c.ID == id && strings.EqualFold(c.Repo, repo))
	}
	if !g.knows(repo) || !known {
		return ghWrite(w, http.StatusNotFound, ghError{Message: "Not Found", DocumentationURL: ghDocsRoot, Status: "404"})
	}
	if !ghReactions[body.Content] {
		return ghWrite(w, http.StatusUnprocessableEntity, ghError{Message: "Validation Failed", Status: "422", DocumentationURL: ghDocsRoot,
			Errors: []ghErrorItem{{Resource: "Reaction", Code: "custom", Field: "content", Message: "content is not included in the list"}}})
	}
	code := http.StatusCreated
	for _, x := range g.conv.reactions {
		if x.CommentID == id && x.Content == body.Content {
			code = http.StatusOK // the same user's same reaction again
		}
	}
	if code == http.StatusCreated {
		g.conv.reactions = append(g.conv.reactions, Reaction{Repo: repo, CommentID: id, Content: body.Content})
	}
	return ghWrite(w, code, map[string]any{"id": len(g.conv.reactions), "content": body.Content,
		"user": map[string]any{"login": "ferry-bot"}, "created_at": time.Now().UTC().Format(time.RFC3339)})
}

func (g *GitHub) comment(w http.ResponseWriter, r *http.Request, call *Call, repo, numText string) int {
	if !call.Authorized {
		return ghWrite(w, http.StatusUnauthorized, ghError{Message: "Requires authentication", DocumentationURL: ghDocsRoot, Status: "401"})
	}
	n, err := strconv.Atoi(numText)
	if err != nil || !g.knows(repo) {
		return ghWrite(w, http.StatusNotFound, ghError{Message: "Not Found", DocumentationURL: ghDocsRoot, Status: "404"})
	}
	var body struct {
		Body *string `json:"body"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		return ghWrite(w, http.StatusBadRequest, ghError{Message: "Problems parsing JSON", DocumentationURL: ghDocsRoot, Status: "400"})
	}
	if body.Body == nil || *body.Body == "" {
		return ghWrite(w, http.StatusUnprocessableEntity, ghError{Message: "Validation Failed", Status: "422", DocumentationURL: ghDocsRoot,
			Errors: []ghErrorItem{{Resource: "IssueComment", Code: "missing_field", Field: "body"}}})
	}
	id := g.AddComment(repo, n, *body.Body)
	return ghWrite(w, http.StatusCreated, map[string]any{"id": id, "body": *body.Body,
		"user": map[string]any{"login": "ferry-bot"}, "created_at": time.Now().UTC().Format(time.RFC3339)})
}
