// Package deliveries answers "what became of this delivery?": the
// delivery API (GET /api/v1/deliveries) over the store's delivery log, the
// chain from a delivery to its builds that `ferry why` prints, and the
// Tracker that keeps the trail of each build record after the dispatcher
// deletes it.
//
//	webhook.Receiver ─RecordDelivery▶ store delivery log ◀─PutTrail─ Tracker ◀─PutBuild/DeleteBuild─ dispatcher
//	                                         │
//	GET /api/v1/deliveries ─ListDeliveries + Trails▶ Chain (delivery → answer → queue item → build → agent pod → commit status)
package deliveries

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/gin-gonic/gin"

	"github.com/ferryci/ferry/pkg/apiauth"
	"github.com/ferryci/ferry/pkg/dispatch"
	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/pkg/scm"
	"github.com/ferryci/ferry/pkg/store"
)

// Log is the part of the store the API reads.
type Log interface {
	ListDeliveries(ctx context.Context, q store.DeliveryQuery) (store.DeliveryPage, error)
	Trails(ctx context.Context, eventID string) ([]store.BuildTrail, error)
}

// Config configures the Server.
type Config struct {
	Log Log
	// Token is the bearer token; empty refuses every request.
	Token string
	// Agents says whether ferry runs agent pods, so the chain names the
	// pod a build's queue item got.
	Agents bool
	Logger *slog.Logger
}

// Server serves GET /api/v1/deliveries.
type Server struct {
	cfg Config
	log *slog.Logger
}

// NewServer returns the Server.
func NewServer(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: cfg.Logger.With("component", "deliveries-api")}
}

// Register mounts the endpoint on r.
func (s *Server) Register(r gin.IRouter) {
	r.GET("/api/v1/deliveries", apiauth.Bearer(s.cfg.Token), s.list)
}

// Chain is one delivery and what followed from it.
type Chain struct {
	store.Delivery
	Builds []Link `json:"builds,omitempty"`
}

// Link is one pipeline's build of an accepted event.
type Link struct {
	Pipeline string `json:"pipeline"`
	Job      string `json:"job"`
	QueueID  int64  `json:"queue_id,omitempty"`
	Number   int64  `json:"number,omitempty"`
	URL      string `json:"url,omitempty"`
	Result   string `json:"result,omitempty"`
	// AgentPod is the agent pod of the queue item's first attempt; a
	// retry adds -2, -3.
	AgentPod string `json:"agent_pod,omitempty"`
	// Status is the last commit status ferry sent, as far as the trail
	// knows, and StatusDetail its description.
	Status       string            `json:"status,omitempty"`
	StatusDetail string            `json:"status_detail,omitempty"`
	Steps        []store.BuildStep `json:"steps"`
}

// Page is the API's answer.
type Page struct {
	Deliveries []Chain `json:"deliveries"`
	Next       string  `json:"next,omitempty"`
}

var (
	hexSHA = regexp.MustCompile(`^[0-9a-fA-F]{40}([0-9a-fA-F]{24})?$`)
	params = []string{"repo", "ref", "sha", "delivery", "limit", "after"}
)

// ParseQuery checks the query parameters and says what is wrong with each.
func ParseQuery(v url.Values) (store.DeliveryQuery, error) {
	var q store.DeliveryQuery
	var bad []string
	for k, vs := range v {
		switch {
		case !slices.Contains(params, k):
			bad = append(bad, fmt.Sprintf("unknown parameter %q: use %s", printable(k), strings.Join(params, ", ")))
		case len(vs) > 1:
			bad = append(bad, fmt.Sprintf("parameter %s is given %d times; give it once", k, len(vs)))
		}
	}
	get := func(k string) string { return v.Get(k) }
	check := func(k, val string, max int) {
		if len(val) > max || strings.IndexFunc(val, unicode.IsControl) >= 0 {
			bad = append(bad, fmt.Sprintf("%s must be at most %d printable bytes", k, max))
		}
	}
	q.Repo, q.Ref, q.DeliveryID = get("repo"), get("ref"), get("delivery")
	check("repo", q.Repo, 1024)
	check("ref", q.Ref, 1024)
	check("delivery", q.DeliveryID, 128)
	if q.Repo != "" && (!strings.Contains(q.Repo, "/") || strings.HasPrefix(q.Repo, "/") || strings.HasSuffix(q.Repo, "/")) {
		bad = append(bad, fmt.Sprintf("repo %q must be the repository's full path, e.g. acme/app", printable(q.Repo)))
	}
	if q.Ref != "" && !strings.HasPrefix(q.Ref, "refs/") {
		bad = append(bad, fmt.Sprintf("ref %q must be a full ref: refs/heads/%s for a branch, refs/tags/… for a tag, refs/pull/N/head or refs/merge-requests/N/head", printable(q.Ref), printable(q.Ref)))
	}
	if sha := get("sha"); sha != "" {
		if !hexSHA.MatchString(sha) {
			bad = append(bad, fmt.Sprintf("sha %q must be the full commit id: 40 (or 64) hexadecimal digits", printable(sha)))
		}
		q.SHA = strings.ToLower(sha)
	}
	if l := get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > store.MaxDeliveryPage {
			bad = append(bad, fmt.Sprintf("limit %q must be a number from 1 to %d", printable(l), store.MaxDeliveryPage))
		}
		q.Limit = n
	}
	q.After = get("after")
	if q.After != "" {
		if _, err := store.RecordTime(q.After); err != nil {
			bad = append(bad, "after: "+strings.TrimPrefix(err.Error(), store.ErrInvalidQuery.Error()+": "))
		}
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		return q, fmt.Errorf("%w: %s", store.ErrInvalidQuery, strings.Join(bad, "; "))
	}
	return q, nil
}

func (s *Server) list(c *gin.Context) {
	q, err := ParseQuery(c.Request.URL.Query())
	if err != nil {
		c.AbortWithStatusJSON(http.StatusBadRequest, gin.H{"error": err.Error()})
		return
	}
	page, err := s.Chains(c.Request.Context(), q)
	if err != nil {
		code := http.StatusInternalServerError
		switch {
		case errors.Is(err, store.ErrInvalidQuery):
			code = http.StatusBadRequest
		case errors.Is(err, store.ErrUnavailable):
			code = http.StatusServiceUnavailable
		}
		if code >= 500 {
			s.log.ErrorContext(c.Request.Context(), "listing deliveries failed", "error", err)
		}
		c.AbortWithStatusJSON(code, gin.H{"error": err.Error()})
		return
	}
	c.JSON(http.StatusOK, page)
}

// Chains reads the deliveries q selects and follows each accepted one to
// its builds.
func (s *Server) Chains(ctx context.Context, q store.DeliveryQuery) (Page, error) {
	page, err := s.cfg.Log.ListDeliveries(ctx, q)
	if err != nil {
		return Page{}, fmt.Errorf("list deliveries: %w", err)
	}
	out := Page{Deliveries: make([]Chain, 0, len(page.Deliveries)), Next: page.Next}
	for _, d := range page.Deliveries {
		ch := Chain{Delivery: d}
		if d.EventID != "" && (d.Outcome == store.DeliveryAccepted || d.Outcome == store.DeliveryDuplicate) {
			trails, err := s.cfg.Log.Trails(ctx, d.EventID)
			if err != nil {
				return Page{}, fmt.Errorf("read the builds of event %s: %w", d.EventID, err)
			}
			for _, t := range trails {
				ch.Builds = append(ch.Builds, s.link(t))
			}
		}
		out.Deliveries = append(out.Deliveries, ch)
	}
	return out, nil
}

func (s *Server) link(t store.BuildTrail) Link {
	b := t.Build
	l := Link{Pipeline: b.Pipeline, Job: b.Job, QueueID: b.QueueID, Number: b.Number, URL: b.URL, Result: b.Result, Steps: t.Steps}
	if s.cfg.Agents && b.QueueID > 0 {
		l.AgentPod = eci.AgentName(b.QueueID, 1)
	}
	closed := len(t.Steps) > 0 && t.Steps[len(t.Steps)-1].Step == StepClosed
	switch {
	case b.Result != "" && closed:
		st := dispatch.EndStatus(b)
		l.Status, l.StatusDetail = string(st.State), st.Description
	case b.Reported != "":
		l.Status = b.Reported
	case b.QueueID > 0:
		l.Status, l.StatusDetail = string(scm.StatePending), "Queued in Jenkins"
	}
	return l
}

// printable caps and cleans a value echoed in an error.
func printable(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}
