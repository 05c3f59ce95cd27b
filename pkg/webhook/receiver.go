// Package webhook receives GitHub and GitLab webhooks: it caps the body,
// verifies the delivery before parsing anything, normalizes the payload to
// an event.Event, and stores it durably — deduplicated on the delivery id in
// the same atomic step — before answering 202.
//
// Status codes are chosen for the senders: 202 accepted (durably queued),
// 200 for a valid delivery that is not built (duplicate, ignored, skipped,
// ping) — never 4xx, since GitLab disables hooks that answer 4xx — 401 for a
// failed verification, 413 for an oversized body, 400 for a verified body
// that cannot be parsed or whose values fail the checks below, 503 when the
// store cannot be reached or did not answer in time.
//
// A valid signature is not enough for the values that become Jenkins build
// parameters, which a Jenkinsfile hands to git; before an event is stored
// (validate.go): the commit id is 40 or 64 hexadecimal digits (upper case
// is lower-cased), refs follow git check-ref-format and are at most 1024
// bytes, the repository path is plain, and a clone URL is https (http only
// when the provider's own URL is), ssh:// or scp-like, on the provider's
// Git host (that of GitHubAPIURL or GitLabURL) and names the event's
// repository — a fork's, for a pull request from one. Anything else is a
// 400 saying what is wrong and what would be right. A key repeated in the
// JSON: the last one wins. Values echoed in answers and logs are capped
// and stripped of control characters (printable).
//
// Each delivery writes one log line naming its delivery id and what
// became of it (accepted, ignored and why, duplicate, rejected and why), so
// "why was my push not built?" is answered by the logs — and, with
// Config.Deliveries, by the delivery log (record.go), which `ferry why` and
// GET /api/v1/deliveries read.
//
// A 503 means "not known to be accepted", not "refused": the store may
// have failed after the write but before its answer, so the event may be
// queued all the same. Redelivering is always safe, since the delivery id
// is deduplicated in the same atomic step as the write: a redelivery of a
// stored event is answered "duplicate" and built once.
package webhook

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/event"
	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/pkg/telemetry"
)

// Enqueuer is the part of the store the receiver needs.
type Enqueuer interface {
	Enqueue(ctx context.Context, dedupKey string, ev event.Event) (bool, error)
}

// Matcher says which pipelines build an event, or why none does.
type Matcher interface {
	Match(ev event.Event) ([]config.Pipeline, string)
}

// Config holds the receiver's dependencies and settings.
type Config struct {
	Store   Enqueuer
	Matcher Matcher
	// GitHubSecrets are the accepted webhook secrets; none disables
	// /hooks/github.
	GitHubSecrets []string
	// GitLabTokens are the accepted X-Gitlab-Token values; none disables
	// /hooks/gitlab.
	GitLabTokens []string
	// GitHubAPIURL is GitHub's API root (github.apiURL); empty means
	// github.com. GitHub clone URLs must be on its Git host.
	GitHubAPIURL string
	// GitLabURL is the GitLab instance (gitlab.baseURL); empty means
	// https://gitlab.com. GitLab clone URLs must be on its host.
	GitLabURL string
	// GitHubGitURL and GitLabGitURL, when set, name the Git host clone
	// URLs must point at instead of the one derived from the API URLs
	// (github.gitURL, gitlab.gitURL).
	GitHubGitURL string
	GitLabGitURL string
	// MaxBodyBytes caps a body (default 25 MiB).
	MaxBodyBytes int64
	// StoreTimeout bounds the durable write (default 5s). The write runs
	// on its own context: a sender that hangs up does not cancel it.
	StoreTimeout time.Duration
	// OnAccepted, if set, is called after an event was stored, e.g. to
	// wake the dispatcher.
	OnAccepted func(event.Event)
	// Deliveries, if set, records every delivery's answer (record.go).
	Deliveries     DeliveryRecorder
	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	Now            func() time.Time
}

// Receiver serves the webhook endpoints.
type Receiver struct {
	cfg      Config
	log      *slog.Logger
	tracer   trace.Tracer
	requests metric.Int64Counter
	duration metric.Float64Histogram
	github   provider
	gitlab   provider
	homes    map[event.Provider]origin
	records  recorder
}

// provider is one Git host's way of verifying and describing deliveries.
type provider interface {
	name() event.Provider
	// verify checks the delivery's signature or token; it must not parse
	// the body.
	verify(h http.Header, body []byte) error
	// eventType names the delivery's event for metrics and logs.
	eventType(h http.Header) string
	// deliveryID returns the provider's id of the delivery, "" if absent.
	deliveryID(h http.Header) string
	// parse turns a verified body into an event, or into a reason it is
	// not built.
	parse(h http.Header, body []byte) (outcome, error)
}

// outcome is what a verified delivery amounts to.
type outcome struct {
	ev event.Event
	// urlRepo is the repository ev.RepoURL must name when it is not
	// ev.Repo: the fork a pull request comes from.
	urlRepo string
	ignore  string // non-empty: not built, and why
	pong    bool   // a ping
}

var (
	errUnauthorized = errors.New("unauthorized")
	errBadPayload   = errors.New("bad payload")
)

// New checks the configuration and builds a receiver.
func New(cfg Config) (*Receiver, error) {
	if cfg.Store == nil {
		return nil, errors.New("webhook: Store is required")
	}
	if cfg.Matcher == nil {
		return nil, errors.New("webhook: Matcher is required")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 25 << 20
	}
	if cfg.StoreTimeout <= 0 {
		cfg.StoreTimeout = 5 * time.Second
	}
	telemetry.Fill(&cfg.Logger, &cfg.TracerProvider, &cfg.MeterProvider)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	gh, err := gitHubOrigin(cfg.GitHubAPIURL)
	if err == nil && cfg.GitHubGitURL != "" {
		gh, err = parseOrigin(cfg.GitHubGitURL, "github.gitURL")
	}
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	gl, err := gitLabOrigin(cfg.GitLabURL)
	if err == nil && cfg.GitLabGitURL != "" {
		gl, err = parseOrigin(cfg.GitLabGitURL, "gitlab.gitURL")
	}
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	r := &Receiver{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "webhook"),
		tracer: cfg.TracerProvider.Tracer("github.com/ferryci/ferry/pkg/webhook"),
		homes:  map[event.Provider]origin{event.GitHub: gh, event.GitLab: gl},
	}
	r.records = newRecorder(cfg.Deliveries, cfg.StoreTimeout, r.log)
	if len(cfg.GitHubSecrets) > 0 {
		r.github = newGitHub(cfg.GitHubSecrets)
	}
	if len(cfg.GitLabTokens) > 0 {
		r.gitlab = newGitLab(cfg.GitLabTokens)
	}
	meter := cfg.MeterProvider.Meter("github.com/ferryci/ferry/pkg/webhook")
	if r.requests, err = meter.Int64Counter("ferry_webhook_requests",
		metric.WithDescription("Webhook deliveries by provider, event type and outcome.")); err != nil {
		return nil, fmt.Errorf("webhook metrics: %w", err)
	}
	if r.duration, err = meter.Float64Histogram("ferry_webhook_duration_seconds",
		metric.WithDescription("Time to answer a webhook delivery, durable write included."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5)); err != nil {
		return nil, fmt.Errorf("webhook metrics: %w", err)
	}
	return r, nil
}

// Register mounts POST /hooks/github and POST /hooks/gitlab.
func (r *Receiver) Register(routes gin.IRoutes) {
	routes.POST("/hooks/github", r.handler(r.github, "github", "set github.webhookSecrets"))
	routes.POST("/hooks/gitlab", r.handler(r.gitlab, "gitlab", "set gitlab.webhookTokens"))
}

// answer is the JSON body of every webhook response.
type answer struct {
	Status    string   `json:"status"`
	ID        string   `json:"id,omitempty"`
	Reason    string   `json:"reason,omitempty"`
	Pipelines []string `json:"pipelines,omitempty"`
	Error     string   `json:"error,omitempty"`
}

func (r *Receiver) handler(p provider, name, fix string) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := r.cfg.Now()
		ctx, span := r.tracer.Start(c.Request.Context(), "webhook.receive",
			trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("ferry.provider", name)))
		defer span.End()
		evType := "unknown"
		seen := store.Delivery{ReceivedAt: start.UTC()}
		code, ans := r.serve(ctx, span, p, name, fix, c.Request, &evType, &seen)
		outcome := ans.Status
		if ans.Error != "" {
			outcome = strings.ReplaceAll(strings.ToLower(http.StatusText(code)), " ", "_")
		}
		span.SetAttributes(attribute.String("ferry.event_type", evType),
			attribute.String("ferry.outcome", outcome), attribute.Int("http.response.status_code", code))
		if code >= 500 {
			span.SetStatus(codes.Error, ans.Error)
		}
		attrs := metric.WithAttributes(attribute.String("provider", name),
			attribute.String("event", evType), attribute.String("outcome", outcome))
		r.requests.Add(ctx, 1, attrs)
		r.duration.Record(ctx, r.cfg.Now().Sub(start).Seconds(), metric.WithAttributes(
			attribute.String("provider", name), attribute.String("outcome", outcome)))
		if code == http.StatusServiceUnavailable {
			c.Header("Retry-After", "5")
		}
		c.JSON(code, ans)
		if p != nil {
			seen.Provider, seen.Event = p.name(), printable(p.eventType(c.Request.Header))
			r.records.record(ctx, seen, code, ans)
		}
	}
}

func (r *Receiver) serve(ctx context.Context, span trace.Span, p provider, name, fix string, req *http.Request, evType *string, seen *store.Delivery) (int, answer) {
	if p == nil {
		return http.StatusNotFound, answer{Status: "error", Error: name + " webhooks are not configured: " + fix}
	}
	*evType = boundedType(p.eventType(req.Header))
	// The delivery id is the sender's to choose: logs and the event get
	// its printable form; dedup uses it whole. Every delivery writes one
	// line naming it, so "why was this not built?" has an answer.
	delivery := p.deliveryID(req.Header)
	shown := printable(delivery)
	seen.DeliveryID = shown
	log := r.log.With("provider", name, "event", *evType, "delivery", shown)
	body, err := readBody(req, r.cfg.MaxBodyBytes)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			msg := fmt.Sprintf("body exceeds %d bytes (server.maxBodyBytes)", r.cfg.MaxBodyBytes)
			log.WarnContext(ctx, "webhook body too large", "remote", req.RemoteAddr, "error", msg)
			return http.StatusRequestEntityTooLarge, answer{Status: "error", Error: msg}
		}
		log.WarnContext(ctx, "webhook body could not be read", "remote", req.RemoteAddr, "error", err)
		return http.StatusBadRequest, answer{Status: "error", Error: "read body: " + err.Error()}
	}
	if err := p.verify(req.Header, body); err != nil {
		log.WarnContext(ctx, "webhook verification failed", "remote", req.RemoteAddr, "reason", err.Error())
		return http.StatusUnauthorized, answer{Status: "error", Error: err.Error()}
	}
	out, err := p.parse(req.Header, body)
	if err != nil {
		log.WarnContext(ctx, "webhook payload rejected", "error", err)
		return http.StatusBadRequest, answer{Status: "error", Error: err.Error()}
	}
	switch {
	case out.pong:
		log.InfoContext(ctx, "webhook ping answered")
		return http.StatusOK, answer{Status: "pong"}
	case out.ignore != "":
		log.InfoContext(ctx, "webhook delivery ignored", "reason", out.ignore)
		return http.StatusOK, answer{Status: "ignored", Reason: out.ignore}
	}
	ev := out.ev
	ev.Provider = p.name()
	ev.DeliveryID = shown
	ev.ID = eventID(p.name(), delivery, body)
	ev.ReceivedAt = r.cfg.Now().UTC()
	ev.TraceParent = telemetry.TraceParent(ctx)
	seen.EventID, seen.Repo, seen.Ref, seen.SHA = ev.ID, printable(ev.Repo), printable(ev.Ref), printable(ev.SHA)
	if err := ev.Validate(); err != nil {
		log.WarnContext(ctx, "webhook payload rejected", "event_id", ev.ID, "error", err)
		return http.StatusBadRequest, answer{Status: "error", ID: ev.ID, Error: err.Error()}
	}
	if bad := checkEvent(&ev, r.homes[ev.Provider], out.urlRepo); len(bad) > 0 {
		msg := strings.Join(bad, "; ")
		log.WarnContext(ctx, "webhook payload rejected", "event_id", ev.ID, "error", msg)
		return http.StatusBadRequest, answer{Status: "error", ID: ev.ID, Error: msg}
	}
	seen.SHA = ev.SHA
	span.SetAttributes(attribute.String("ferry.event_id", ev.ID), attribute.String("vcs.repository.name", ev.Repo),
		attribute.String("vcs.ref", ev.Ref), attribute.String("vcs.revision", ev.SHA))
	log = log.With("event_id", ev.ID, "kind", ev.Kind, "repo", ev.Repo, "ref", ev.Ref, "sha", ev.SHA)
	if skipCI(ev.Message) {
		const why = "the head commit message asks to skip CI"
		log.InfoContext(ctx, "webhook delivery skipped", "reason", why)
		return http.StatusOK, answer{Status: "skipped", ID: ev.ID, Reason: why}
	}
	pipes, reason := r.cfg.Matcher.Match(ev)
	if len(pipes) == 0 {
		log.InfoContext(ctx, "webhook delivery ignored", "reason", reason)
		return http.StatusOK, answer{Status: "ignored", ID: ev.ID, Reason: reason}
	}
	names := make([]string, len(pipes))
	for i, pl := range pipes {
		names[i] = pl.Name
	}
	// The write must not end with the sender's connection: a sender that
	// hangs up mid-write (GitHub gives up after 10 s) would get an event
	// stored but reported lost. It keeps the request's values (trace).
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.StoreTimeout)
	defer cancel()
	stored, err := r.cfg.Store.Enqueue(wctx, string(p.name())+":"+dedupID(delivery, body), ev)
	if err != nil {
		log.ErrorContext(ctx, "could not store webhook event", "error", err)
		if errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
			return http.StatusServiceUnavailable, answer{Status: "error", ID: ev.ID,
				Error: "the event store is unavailable or did not answer in time; the delivery is not known to be accepted: redeliver it later; a duplicate is recognised and not built twice"}
		}
		return http.StatusInternalServerError, answer{Status: "error", ID: ev.ID, Error: "the event could not be stored"}
	}
	if ctx.Err() != nil {
		// Stored all the same; only the answer cannot be delivered.
		log = log.With("sender_gone", true)
	}
	if !stored {
		log.InfoContext(ctx, "webhook delivery is a duplicate", "reason", "this delivery was already accepted")
		return http.StatusOK, answer{Status: "duplicate", ID: ev.ID, Reason: "this delivery was already accepted"}
	}
	log.InfoContext(ctx, "webhook event accepted", "pipelines", names)
	if r.cfg.OnAccepted != nil {
		r.cfg.OnAccepted(ev)
	}
	return http.StatusAccepted, answer{Status: "accepted", ID: ev.ID, Pipelines: names}
}

// readBody reads at most max bytes; a larger body fails with
// *http.MaxBytesError before it is read whole.
func readBody(req *http.Request, max int64) ([]byte, error) {
	if req.ContentLength > max {
		return nil, &http.MaxBytesError{Limit: max}
	}
	var buf bytes.Buffer
	if req.ContentLength > 0 {
		buf.Grow(int(req.ContentLength) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(nil, req.Body, max)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

var knownTypes = map[string]bool{
	"push": true, "create": true, "pull_request": true, "ping": true,
	"Push Hook": true, "Tag Push Hook": true, "Merge Request Hook": true,
	"issue_comment": true, "Note Hook": true,
}

// boundedType keeps metric labels to a known set.
func boundedType(t string) string {
	if knownTypes[t] {
		return strings.ReplaceAll(strings.ToLower(t), " ", "_")
	}
	return "other"
}

var unsafeID = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// eventID derives ferry's event id from the delivery id, so a redelivery
// maps to the same id. Without a usable delivery id, the body's hash
// stands in (an identical body is the same delivery).
func eventID(p event.Provider, delivery string, body []byte) string {
	prefix := "gh-"
	if p == event.GitLab {
		prefix = "gl-"
	}
	return prefix + dedupID(delivery, body)
}

func dedupID(delivery string, body []byte) string {
	if delivery != "" && len(delivery) <= 64 && !unsafeID.MatchString(delivery) {
		return delivery
	}
	sum := sha256.Sum256(append([]byte(delivery+"\x00"), body...))
	return "h" + hex.EncodeToString(sum[:16])
}

var skipMarkers = []string{"[skip ci]", "[ci skip]"}

func skipCI(msg string) bool {
	m := strings.ToLower(msg)
	for _, s := range skipMarkers {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

// maxEcho caps, in bytes, each sender-chosen value (a header, a ref, an
// action) that an answer or a log line repeats.
const maxEcho = 128

// printable returns s fit to echo: control characters dropped, invalid
// UTF-8 replaced, at most maxEcho bytes, and marked when cut.
func printable(s string) string {
	clean := len(s) <= maxEcho && utf8.ValidString(s)
	for _, r := range s {
		if !clean {
			break
		}
		clean = !unicode.IsControl(r)
	}
	if clean {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) {
			continue
		}
		if b.Len()+utf8.RuneLen(r) > maxEcho {
			b.WriteString("…(truncated)")
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}
