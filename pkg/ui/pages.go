package ui

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/ferryci/ferry/pkg/deliveries"
	"github.com/ferryci/ferry/pkg/promote"
	"github.com/ferryci/ferry/pkg/promote/api"
	"github.com/ferryci/ferry/pkg/provision"
	"github.com/ferryci/ferry/pkg/store"
)

// liveHeader marks the script's refresh requests: they get the page's
// content alone.
const liveHeader = "X-Ferry-Live"

type pageTemplate struct{ full, content *template.Template }

var funcs = template.FuncMap{
	"short": func(s string) string {
		if s, ok := strings.CutPrefix(s, "sha256:"); ok && len(s) > 12 {
			return "sha256:" + s[:12]
		}
		if len(s) > 12 {
			return s[:12]
		}
		return s
	},
	"stamp": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"since": func(a, b time.Time) string {
		if a.IsZero() || b.IsZero() {
			return ""
		}
		return b.Sub(a).Round(100 * time.Millisecond).String()
	},
	"branch": func(ref string) string {
		if b, ok := strings.CutPrefix(ref, "refs/heads/"); ok {
			return b
		}
		return ref
	},
	"lower": func(v any) string { return strings.ToLower(fmt.Sprint(v)) },
	// httpURL passes only http(s) links (a Jenkins build URL), so a
	// hostile record cannot make a javascript: link.
	"httpURL": func(s string) string {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			return ""
		}
		return u.String()
	},
}

func parsePages() (map[string]*pageTemplate, error) {
	names := []string{"login", "activity", "why", "agents", "promotions", "promotion", "error"}
	out := map[string]*pageTemplate{}
	for _, n := range names {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html", "templates/"+n+".html")
		if err != nil {
			return nil, fmt.Errorf("ui: parse template %s: %w", n, err)
		}
		out[n] = &pageTemplate{full: t, content: t.Lookup("content")}
	}
	return out, nil
}

// page is what the layout gets.
type page struct {
	Title, Nav string
	Viewer     viewer
	Refresh    int64
	Promotions bool
	Agents     bool
	Data       any
}

func (s *Server) render(c *gin.Context, code int, name, title string, v viewer, data any) {
	pt := s.pages[name]
	p := page{Title: title, Nav: name, Viewer: v, Refresh: s.cfg.Refresh.Milliseconds(),
		Promotions: s.cfg.Promotions != nil, Agents: s.cfg.Agents != nil, Data: data}
	t := pt.full
	if c.GetHeader(liveHeader) != "" {
		t = pt.content
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, p); err != nil {
		s.log.ErrorContext(c.Request.Context(), "ui page did not render", "page", name, "error", err)
		c.AbortWithStatus(http.StatusInternalServerError)
		return
	}
	c.Data(code, "text/html; charset=utf-8", buf.Bytes())
}

// fail shows an error page (a short text for the live script).
func (s *Server) fail(c *gin.Context, code int, msg string) {
	if c.GetHeader(liveHeader) != "" || c.Request.Method != http.MethodGet && code == http.StatusUnauthorized {
		c.Header("Content-Type", "text/plain; charset=utf-8")
		c.AbortWithStatus(code)
		_, _ = c.Writer.WriteString(msg)
		return
	}
	s.render(c, code, "error", http.StatusText(code), viewerOf(c), msg)
	c.Abort()
}

// filter is the activity page's form.
type filter struct {
	Repo, Branch, PR, SHA string
	Errors                []string
}

var prNumber = regexp.MustCompile(`^[1-9][0-9]{0,9}$`)

// queries turns the form into delivery queries: a pull request is looked
// for under GitHub's and GitLab's refs.
func (f *filter) queries(limit int) []store.DeliveryQuery {
	v := url.Values{}
	if f.Repo != "" {
		v.Set("repo", f.Repo)
	}
	if f.SHA != "" {
		v.Set("sha", f.SHA)
	}
	if f.Branch != "" {
		v.Set("ref", "refs/heads/"+strings.TrimPrefix(f.Branch, "refs/heads/"))
	}
	v.Set("limit", strconv.Itoa(limit))
	q, err := deliveries.ParseQuery(v)
	if err != nil {
		f.Errors = append(f.Errors, strings.TrimPrefix(err.Error(), store.ErrInvalidQuery.Error()+": "))
	}
	if f.PR != "" && !prNumber.MatchString(f.PR) {
		f.Errors = append(f.Errors, "pull request must be its number, e.g. 42")
	}
	if len(f.Errors) > 0 {
		return nil
	}
	if f.PR == "" {
		return []store.DeliveryQuery{q}
	}
	gh, gl := q, q
	gh.Ref, gl.Ref = "refs/pull/"+f.PR+"/head", "refs/merge-requests/"+f.PR+"/head"
	return []store.DeliveryQuery{gh, gl}
}

type activityData struct {
	Filter filter
	Chains []deliveries.Chain
	Charts []chart
	Error  string
}

const activityLimit = 50

func (s *Server) activity(c *gin.Context) {
	f := filter{Repo: strings.TrimSpace(c.Query("repo")), Branch: strings.TrimSpace(c.Query("branch")),
		PR: strings.TrimSpace(c.Query("pr")), SHA: strings.TrimSpace(c.Query("sha"))}
	d := activityData{}
	for _, q := range f.queries(activityLimit) {
		page, err := s.cfg.Deliveries.Chains(c.Request.Context(), q)
		if err != nil {
			d.Error = s.readError(c, "deliveries", err)
			break
		}
		d.Chains = append(d.Chains, page.Deliveries...)
	}
	slices.SortFunc(d.Chains, func(a, b deliveries.Chain) int { return strings.Compare(b.Record, a.Record) })
	if len(d.Chains) > activityLimit {
		d.Chains = d.Chains[:activityLimit]
	}
	d.Filter = f
	d.Charts = s.activityCharts(c)
	code := http.StatusOK
	if len(f.Errors) > 0 {
		code = http.StatusBadRequest
	}
	s.render(c, code, "activity", "Activity", viewerOf(c), d)
}

type whyData struct {
	Repo, SHA, Delivery string
	Chains              []deliveries.Chain
	Error               string
}

// why is `ferry why` on a page: one commit's (or one delivery's) chains.
func (s *Server) why(c *gin.Context) {
	v := url.Values{}
	for _, k := range []string{"repo", "sha", "delivery"} {
		if x := strings.TrimSpace(c.Query(k)); x != "" {
			v.Set(k, x)
		}
	}
	d := whyData{Repo: v.Get("repo"), SHA: v.Get("sha"), Delivery: v.Get("delivery")}
	v.Set("limit", "100")
	q, err := deliveries.ParseQuery(v)
	switch {
	case err != nil:
		d.Error = strings.TrimPrefix(err.Error(), store.ErrInvalidQuery.Error()+": ")
	case q.DeliveryID == "" && (q.Repo == "" || q.SHA == ""):
		d.Error = "give a repository and a full commit SHA, or a delivery id"
	}
	if d.Error != "" {
		s.render(c, http.StatusBadRequest, "why", "Why", viewerOf(c), d)
		return
	}
	page, err := s.cfg.Deliveries.Chains(c.Request.Context(), q)
	if err != nil {
		d.Error = s.readError(c, "deliveries", err)
	}
	d.Chains = page.Deliveries
	s.render(c, http.StatusOK, "why", "Why "+short(d.SHA), viewerOf(c), d)
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// readError logs a failed read and says it for the page, without the
// error's text (which may name internal addresses).
func (s *Server) readError(c *gin.Context, what string, err error) string {
	s.log.ErrorContext(c.Request.Context(), "ui could not read", "what", what, "error", err)
	if errors.Is(err, store.ErrUnavailable) {
		return "The store is unreachable right now; the page will retry."
	}
	return "Could not read " + what + "; see ferry's log."
}

type promotionsData struct {
	Apps    []appView
	Recent  []store.Promotion
	Charts  []chart
	Error   string
	Flash   string
	Visible bool
}

// appView is an app's environments: what runs in each and who put it there.
type appView struct {
	Name string
	Envs []envView
}

type envView struct {
	Name, Digest, Target, By, Via, Promotion string
	At                                       time.Time
	CanRollback                              bool
}

func (s *Server) promotions(c *gin.Context) {
	if s.cfg.Promotions == nil {
		s.fail(c, http.StatusNotFound, "promotions are not enabled on this ferry (promotion.enabled)")
		return
	}
	v := viewerOf(c)
	ps, err := s.visible(c, v)
	d := promotionsData{}
	if err != nil {
		d.Error = s.readError(c, "promotions", err)
	}
	d.Apps = s.current(c, v, ps)
	if len(ps) > 30 {
		ps = ps[:30]
	}
	d.Recent = ps
	d.Charts = []chart{leadTimeChart(ps)}
	d.Flash = c.Query("done")
	s.render(c, http.StatusOK, "promotions", "Promotions", v, d)
}

// visible is the promotions the viewer may read; anonymous readers (with
// ui.anonymousRead) see all of them.
func (s *Server) visible(c *gin.Context, v viewer) ([]store.Promotion, error) {
	if v.SignedIn {
		return s.cfg.Promotions.Visible(c.Request.Context(), v.ID, "")
	}
	return s.cfg.Promotions.Visible(c.Request.Context(), anonymousReader, "")
}

// current is, per app and environment, the newest promotion that
// succeeded there (promotions come newest first).
func (s *Server) current(c *gin.Context, v viewer, ps []store.Promotion) []appView {
	var out []appView
	for _, app := range s.cfg.Promotions.Apps() {
		av := appView{Name: app}
		seen := map[string]bool{}
		var order []string
		for _, p := range ps {
			if p.App != app {
				continue
			}
			for _, e := range p.Environments {
				if !slices.Contains(order, e.Name) {
					order = append(order, e.Name)
				}
				if seen[e.Name] || e.Phase != store.EnvSucceeded {
					continue
				}
				seen[e.Name] = true
				by := p.RequestedBy
				if e.Approver != "" {
					by = e.Approver
				}
				av.Envs = append(av.Envs, envView{Name: e.Name, Digest: p.SourceDigest, Target: p.Target, By: by,
					Promotion: p.ID, At: e.FinishedAt, CanRollback: s.allowed(c, v, api.VerbRollback, app, e.Name)})
			}
		}
		slices.SortStableFunc(av.Envs, func(a, b envView) int { return slices.Index(order, b.Name) - slices.Index(order, a.Name) })
		out = append(out, av)
	}
	return out
}

func (s *Server) allowed(c *gin.Context, v viewer, verb, app, env string) bool {
	if !v.SignedIn || s.cfg.Auth == nil {
		return false
	}
	ok, err := s.cfg.Auth.Allowed(c.Request.Context(), v.ID, verb, app, env)
	return err == nil && ok
}

type promotionData struct {
	P          store.Promotion
	Waiting    string
	CanApprove bool
	CanReject  bool
	Flash      string
	Steps      []timelineStep
	Canaries   []*canaryView
}

func (s *Server) promotion(c *gin.Context) {
	if s.cfg.Promotions == nil {
		s.fail(c, http.StatusNotFound, "promotions are not enabled on this ferry (promotion.enabled)")
		return
	}
	v := viewerOf(c)
	id := v.ID
	if !v.SignedIn {
		id = anonymousReader
	}
	p, err := s.cfg.Promotions.Get(c.Request.Context(), id, c.Param("id"))
	if err != nil {
		s.actionError(c, err)
		return
	}
	d := promotionData{P: p, Flash: c.Query("done"), Steps: timeline(p)}
	for _, e := range p.Environments {
		if e.Phase == store.EnvAwaitingApprove {
			d.Waiting = e.Name
		}
		if s.cfg.Canary != nil {
			if cv := canaryOf(p, e, s.cfg.Canary(p.App, e.Name)); cv != nil {
				d.Canaries = append(d.Canaries, cv)
			}
		}
	}
	if d.Waiting != "" {
		d.CanApprove = s.allowed(c, v, api.VerbApprove, p.App, d.Waiting)
		d.CanReject = s.allowed(c, v, api.VerbReject, p.App, d.Waiting)
	}
	s.render(c, http.StatusOK, "promotion", "Promotion "+p.ID, v, d)
}

// actionError shows why an action or a read was refused, with the API's
// status code.
func (s *Server) actionError(c *gin.Context, err error) {
	code, msg := http.StatusInternalServerError, "the request failed; see ferry's log"
	switch {
	case errors.Is(err, api.ErrForbidden):
		code, msg = http.StatusForbidden, strings.TrimPrefix(err.Error(), api.ErrForbidden.Error()+": ")
	case api.IsUnavailable(err), errors.Is(err, store.ErrUnavailable):
		code, msg = http.StatusServiceUnavailable, "cannot decide now; retry in a moment"
	case errors.Is(err, promote.ErrNotFound), errors.Is(err, promote.ErrUnknownApp):
		code, msg = http.StatusNotFound, err.Error()
	case errors.Is(err, promote.ErrState):
		code, msg = http.StatusConflict, err.Error()
	case errors.Is(err, promote.ErrInvalid):
		code, msg = http.StatusBadRequest, err.Error()
	}
	if code == http.StatusInternalServerError {
		s.log.ErrorContext(c.Request.Context(), "ui action failed", "path", c.Request.URL.Path, "error", err)
	}
	s.fail(c, code, msg)
}

func (s *Server) approve(c *gin.Context) {
	s.decide(c, "approved", func(v viewer, id, env string) error {
		_, err := s.cfg.Promotions.Approve(c.Request.Context(), v.ID, id, env)
		return err
	})
}

func (s *Server) reject(c *gin.Context) {
	s.decide(c, "rejected", func(v viewer, id, env string) error {
		_, err := s.cfg.Promotions.Reject(c.Request.Context(), v.ID, id, env, strings.TrimSpace(c.PostForm("reason")))
		return err
	})
}

// decide runs an approval or rejection of the environment the form names
// (the one the page showed waiting) and returns to the promotion.
func (s *Server) decide(c *gin.Context, done string, act func(v viewer, id, env string) error) {
	if s.cfg.Promotions == nil {
		s.fail(c, http.StatusNotFound, "promotions are not enabled on this ferry (promotion.enabled)")
		return
	}
	id, env := c.Param("id"), c.PostForm("environment")
	if len(c.PostForm("reason")) > 1024 {
		s.fail(c, http.StatusBadRequest, "the reason must be at most 1024 bytes")
		return
	}
	if err := act(viewerOf(c), id, env); err != nil {
		s.actionError(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, "/ui/promotions/"+url.PathEscape(id)+"?done="+done)
}

func (s *Server) rollback(c *gin.Context) {
	if s.cfg.Promotions == nil {
		s.fail(c, http.StatusNotFound, "promotions are not enabled on this ferry (promotion.enabled)")
		return
	}
	r := promote.RollbackRequest{App: c.PostForm("app"), Environment: c.PostForm("environment"), Reason: strings.TrimSpace(c.PostForm("reason"))}
	if r.App == "" || r.Environment == "" || len(r.Reason) > 1024 {
		s.fail(c, http.StatusBadRequest, "a rollback needs the app and the environment (and a reason of at most 1024 bytes)")
		return
	}
	if r.Reason == "" {
		r.Reason = "from the web UI"
	}
	p, err := s.cfg.Promotions.Rollback(c.Request.Context(), viewerOf(c).ID, r)
	if err != nil {
		s.actionError(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, "/ui/promotions/"+url.PathEscape(p.ID)+"?done=rollback+requested")
}

// anonymousReader reads for visitors when ui.anonymousRead is set: it
// may read every app's promotions and do nothing else.
var anonymousReader = api.Reader("anonymous")

// timelineStep is one line of a promotion's timeline: its audit trail,
// which records copy, rollout, verification, gate and outcome.
type timelineStep = store.AuditEntry

func timeline(p store.Promotion) []timelineStep {
	out := slices.Clone(p.Audit)
	slices.SortStableFunc(out, func(a, b store.AuditEntry) int { return a.At.Compare(b.At) })
	return out
}

type agentsData struct {
	Snap       AgentSnapshot
	States     []AgentState
	WarmStates []string
	Charts     []chart
	Error      string
}

func (s *Server) agents(c *gin.Context) {
	if s.cfg.Agents == nil {
		s.fail(c, http.StatusNotFound, "this ferry runs no agents (agents.enabled)")
		return
	}
	d := agentsData{States: AgentStates, WarmStates: provision.WarmStates}
	snap, err := s.agentSnapshot(c.Request.Context())
	if err != nil {
		d.Error = s.readError(c, "agents", err)
	} else {
		d.Snap = snap
		s.history.add(snap.At, len(snap.Agents))
	}
	now := s.cfg.Now()
	pts := s.history.snapshot()
	from := now.Add(-24 * time.Hour)
	if len(pts) > 0 && pts[0].At.After(from) {
		from = pts[0].At
	}
	d.Charts = []chart{line("Agents over time", "sampled by this replica each minute and on every look, since it started (kept in memory)", pts, from, now)}
	s.render(c, http.StatusOK, "agents", "Agents", viewerOf(c), d)
}
