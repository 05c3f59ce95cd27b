package scmfake

import (
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// GitLab merge request conversation and membership endpoints, as the
// trust gate and comment commands call them:
//
//	GET  /projects/:id/members/all/:user_id      200 {"access_level": 10…50,
//	                                             "state": "active"}, inherited
//	                                             group members included; 404
//	                                             {"message": "404 Not found"}
//	POST /projects/:id/merge_requests/:iid/notes 201; 400 "body is missing"
//	POST /projects/:id/merge_requests/:iid/notes/:note_id/award_emoji
//	                                             201; 404 "404 Note Not Found";
//	                                             404 "…has already been taken…"
//	                                             for the same emoji twice
//
// Bad tokens get 401, unknown projects "404 Project Not Found", injected
// failures the 429 of GitLab's rate limiter, as the fake's other endpoints.

// Note is a note on a merge request of the GitLab fake.
type Note struct {
	ProjectID int64
	IID       int
	ID        int64
	Body      string
}

// Award is an award emoji the GitLab fake created on a note.
type Award struct {
	ProjectID int64
	IID       int
	NoteID    int64
	Name      string
}

type glConversation struct {
	mu       sync.Mutex
	members  map[int64]map[int64]int // project → user id → access level
	groups   map[int64]map[int64]int // project → user id → level inherited from its group
	notes    []Note
	awards   []Award
	nextNote int64
}

// GitLab access levels.
const (
	GitLabGuest      = 10
	GitLabReporter   = 20
	GitLabDeveloper  = 30
	GitLabMaintainer = 40
	GitLabOwner      = 50
)

// AddMember makes user a direct member of project at level.
func (g *GitLab) AddMember(project, user int64, level int) {
	g.conv.mu.Lock()
	defer g.conv.mu.Unlock()
	addLevel(&g.conv.members, project, user, level)
}

// AddGroupMember makes user a member of project's group at level: the
// project's members/all lists them, its direct members do not.
func (g *GitLab) AddGroupMember(project, user int64, level int) {
	g.conv.mu.Lock()
	defer g.conv.mu.Unlock()
	addLevel(&g.conv.groups, project, user, level)
}

func addLevel(m *map[int64]map[int64]int, project, user int64, level int) {
	if *m == nil {
		*m = map[int64]map[int64]int{}
	}
	if (*m)[project] == nil {
		(*m)[project] = map[int64]int{}
	}
	(*m)[project][user] = level
}

// AddNote records a note on merge request iid of project and returns its
// id, for a webhook payload that names it.
func (g *GitLab) AddNote(project int64, iid int, body string) int64 {
	g.conv.mu.Lock()
	defer g.conv.mu.Unlock()
	return g.addNoteLocked(project, iid, body)
}

func (g *GitLab) addNoteLocked(project int64, iid int, body string) int64 {
	if g.conv.nextNote == 0 {
		g.conv.nextNote = 5000
	}
	g.conv.nextNote++
	g.conv.notes = append(g.conv.notes, Note{ProjectID: project, IID: iid, ID: g.conv.nextNote, Body: body})
	return g.conv.nextNote
}

// Notes returns the notes made so far (by AddNote and by calls).
func (g *GitLab) Notes() []Note {
	g.conv.mu.Lock()
	defer g.conv.mu.Unlock()
	return append([]Note(nil), g.conv.notes...)
}

// Awards returns the award emoji created so far.
func (g *GitLab) Awards() []Award {
	g.conv.mu.Lock()
	defer g.conv.mu.Unlock()
	return append([]Award(nil), g.conv.awards...)
}

// handleConversation serves the endpoints above for parts of the path
// after /api/v4/projects/; ok is false for any other path.
func (g *GitLab) handleConversation(w http.ResponseWriter, r *http.Request, call *Call, parts []string) (int, bool) {
	get, post := r.Method == http.MethodGet, r.Method == http.MethodPost
	member := get && len(parts) == 4 && parts[1] == "members" && parts[2] == "all"
	note := post && len(parts) == 4 && parts[1] == "merge_requests" && parts[3] == "notes"
	award := post && len(parts) == 6 && parts[1] == "merge_requests" && parts[3] == "notes" && parts[5] == "award_emoji"
	if !member && !note && !award {
		return 0, false
	}
	if !call.Authorized {
		return glWrite(w, http.StatusUnauthorized, map[string]any{"message": "401 Unauthorized"}), true
	}
	idOrPath, _ := url.PathUnescape(parts[0])
	g.mu.Lock()
	project, _, found := g.lookup(idOrPath)
	g.mu.Unlock()
	if !found {
		return glWrite(w, http.StatusNotFound, map[string]any{"message": "404 Project Not Found"}), true
	}
	if member {
		user, err := strconv.ParseInt(parts[3], 10, 64)
		if err != nil {
			return glWrite(w, http.StatusNotFound, map[string]any{"error": "404 Not Found"}), true
		}
		g.conv.mu.Lock()
		level, ok := g.conv.members[project][user]
		if inherited, gok := g.conv.groups[project][user]; gok && inherited > level {
			level, ok = inherited, true // the highest of direct and inherited
		}
		g.conv.mu.Unlock()
		if !ok {
			return glWrite(w, http.StatusNotFound, map[string]any{"message": "404 Not found"}), true
		}
		return glWrite(w, http.StatusOK, map[string]any{"id": user, "username": "user" + parts[3],
			"state": "active", "access_level": level}), true
	}
	iid, err := strconv.Atoi(parts[2])
	if err != nil {
		return glWrite(w, http.StatusNotFound, map[string]any{"message": "404 Merge Request Not Found"}), true
	}
	params, err := glParams(r)
	if err != nil {
		return glWrite(w, http.StatusBadRequest, map[string]any{"error": "The provided content-type '" + r.Header.Get("Content-Type") + "' is not supported."}), true
	}
	g.conv.mu.Lock()
	defer g.conv.mu.Unlock()
	now := time.Now().UTC().Format(time.RFC3339)
	if note {
		if params["body"] == "" {
			return glWrite(w, http.StatusBadRequest, map[string]any{"error": "body is missing"}), true
		}
		id := g.addNoteLocked(project, iid, params["body"])
		return glWrite(w, http.StatusCreated, map[string]any{"id": id, "body": params["body"], "noteable_type": "MergeRequest", //nolint:misspell // GitLab spells it so
			"noteable_iid": iid, "created_at": now, "author": map[string]any{"username": "ferry-bot"}}), true //nolint:misspell // GitLab spells it so
	}
	noteID, _ := strconv.ParseInt(parts[4], 10, 64)
	known := false
	for _, n := range g.conv.notes {
		known = known || (n.ID == noteID && n.ProjectID == project && n.IID == iid)
	}
	if !known {
		return glWrite(w, http.StatusNotFound, map[string]any{"message": "404 Note Not Found"}), true
	}
	name := params["name"]
	if name == "" {
		return glWrite(w, http.StatusBadRequest, map[string]any{"error": "name is missing"}), true
	}
	for _, a := range g.conv.awards {
		if a.NoteID == noteID && a.Name == name {
			return glWrite(w, http.StatusNotFound, map[string]any{"message": "404 Award Emoji Name has already been taken Not Found"}), true
		}
	}
	g.conv.awards = append(g.conv.awards, Award{ProjectID: project, IID: iid, NoteID: noteID, Name: name})
	return glWrite(w, http.StatusCreated, map[string]any{"id": len(g.conv.awards), "name": name, "awardable_id": noteID,
		"awardable_type": "Note", "created_at": now, "user": map[string]any{"username": "ferry-bot"}}), true
}
