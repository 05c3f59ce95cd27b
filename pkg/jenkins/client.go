// Package jenkins is ferry's client for the Jenkins controller: triggering
// parameterized builds (with merge detection), reading the queue, builds and
// nodes, creating and deleting the inbound agents the provisioner runs, and
// fetching their secrets.
//
// It is built on gojenkins (github.com/bndr/gojenkins v1.1.0) where that
// library is right, and on direct REST calls through one small request
// helper where it is not. gojenkins v1.1.0 builds requests without the
// caller's context, fetches a fresh crumb before every POST (ignoring the
// fetch error and dereferencing a nil response on network failures), mostly
// ignores non-2xx answers, sends CreateNode with mode NORMAL and a
// misspelled retention strategy, and reports a trigger for an already
// queued job as queue id 0 with no error. Each direct call says which of
// these it avoids. gojenkins is used for the job lookup (Job) and for Ping,
// through a transport that binds the caller's context and records the
// answer's status so that failures gojenkins swallows still become errors.
//
// Jenkins words what it says (queue reasons, offline causes, error pages)
// in the request's language, so every request asks for English
// (Accept-Language: en). What ferry must not depend on prose for does not:
// a taken node name is confirmed by looking the node up, ferry's offline
// mark is found inside a localized reason (Computer.OfflineWith). Where
// prose is all there is — the label in a queue item's why — LanguageProblem
// reports a Jenkins that answers in another language anyway (the Locale
// plugin forcing one), logged once at ERROR and counted in metrics.
//
// Every call takes a context and runs under a per-call timeout, starts an
// OpenTelemetry span named jenkins.<op>, and returns errors that wrap
// ErrNotFound, ErrUnavailable, ErrAuth (and a few call-specific sentinels)
// inside an *HTTPError. Credentials never reach an error, a log line or a
// span attribute.
package jenkins

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Defaults for Config fields left zero.
const (
	DefaultTimeout      = 10 * time.Second
	DefaultUserAgent    = "ferry-jenkins-client"
	DefaultSearchBuilds = 50
	// MaxSearchBuilds is the largest page of builds asked for at once.
	MaxSearchBuilds = 100
)

// Config configures a Client. Only URL is required.
type Config struct {
	// URL is the Jenkins root URL, e.g. https://jenkins.example.com/ or
	// http://host:8080/jenkins (context path kept). Credentials given as
	// userinfo (https://user:token@host/) are moved into User/APIToken
	// when those are empty and stripped from the URL.
	URL string
	// User is the Jenkins user name. Empty means anonymous.
	User string
	// APIToken is the user's API token. Requests authenticated with a token
	// are exempt from CSRF crumbs, so no crumb is fetched up front.
	APIToken string
	// Password is used instead of APIToken when that is empty. POSTs then
	// carry a crumb from /crumbIssuer/api/json, cached together with the
	// session cookie Jenkins ties it to. Set one of APIToken and Password.
	Password string
	// HTTPClient supplies the transport, cookie jar and overall timeout.
	// Nil (or a nil Transport) means a clone of http.DefaultTransport. Its
	// CheckRedirect is not used: the Client never follows redirects,
	// because Jenkins answers POSTs with redirects whose status and target
	// are the result.
	HTTPClient *http.Client
	// Timeout bounds each Client call (all its requests). Default 10s.
	Timeout time.Duration
	// Logger receives debug lines per call; nil discards them.
	Logger *slog.Logger
	// UserAgent is sent on every request. Default DefaultUserAgent.
	UserAgent string
	// TracerProvider starts one span per call. Nil means no tracing.
	TracerProvider trace.TracerProvider
	// MeterProvider records ferry_jenkins_unreadable_reasons and
	// ferry_jenkins_unreadable (see LanguageProblem). Nil means none.
	MeterProvider metric.MeterProvider
	// MarkerParam is a build parameter only ferry's triggers carry
	// (FERRY_TRIGGER_ID): queue items with it are ferry's own, whichever
	// replica triggered them, and their reasons must be readable (see
	// LanguageProblem). Empty: only this client's own triggers count.
	MarkerParam string
	// SearchBuilds is how many builds FindByParam reads per request while
	// it pages back in time. Default DefaultSearchBuilds; at most
	// MaxSearchBuilds (larger values are lowered to it).
	SearchBuilds int
}

// Client talks to one Jenkins controller. It is safe for concurrent use.
type Client struct {
	base      *url.URL // no userinfo, no trailing slash in Path
	baseStr   string   // base.String(), for building request URLs
	user      string
	secret    string // API token or password; never logged
	password  bool   // secret is a password: POSTs need a crumb
	hc        *http.Client
	rt        http.RoundTripper
	timeout   time.Duration
	log       *slog.Logger
	ua        string
	tracer    trace.Tracer
	searchMax int

	crumbMu     sync.Mutex
	crumb       *crumb      // nil until fetched
	crumbAlways atomic.Bool // Jenkins rejected a POST without a crumb

	triggered triggerMemory
	marker    string
	prose     *proseWatch
	session   sessionWatch
}

// New validates cfg and returns a Client. It does not contact Jenkins; use
// Ping for that.
func New(cfg Config) (*Client, error) {
	raw := strings.TrimSpace(cfg.URL)
	if raw == "" {
		return nil, errors.New("jenkins: URL is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("jenkins: invalid URL %q: %w", redactRawURL(raw), err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("jenkins: URL %q: scheme must be http or https", u.Redacted())
	}
	if u.Host == "" {
		return nil, fmt.Errorf("jenkins: URL %q has no host", u.Redacted())
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("jenkins: URL %q must not have a query or fragment", u.Redacted())
	}
	user, token, password := cfg.User, cfg.APIToken, cfg.Password
	if u.User != nil {
		if user == "" && token == "" && password == "" {
			user = u.User.Username()
			token, _ = u.User.Password()
		}
		u.User = nil
	}
	if token != "" && password != "" {
		return nil, errors.New("jenkins: set APIToken or Password, not both")
	}
	if user == "" && (token != "" || password != "") {
		return nil, errors.New("jenkins: a token or password needs a User")
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")

	c := &Client{
		base:      u,
		baseStr:   u.String(),
		user:      user,
		secret:    token,
		timeout:   cfg.Timeout,
		log:       cfg.Logger,
		ua:        cfg.UserAgent,
		searchMax: cfg.SearchBuilds,
	}
	if password != "" {
		c.secret, c.password = password, true
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("component", "jenkins")
	if c.ua == "" {
		c.ua = DefaultUserAgent
	}
	if c.searchMax <= 0 {
		c.searchMax = DefaultSearchBuilds
	}
	c.searchMax = min(c.searchMax, MaxSearchBuilds)
	tp := cfg.TracerProvider
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	c.tracer = tp.Tracer("github.com/ferryci/ferry/pkg/jenkins")
	mp := cfg.MeterProvider
	if mp == nil {
		mp = metricnoop.NewMeterProvider()
	}
	if c.prose, err = newProseWatch(c.log, mp.Meter("github.com/ferryci/ferry/pkg/jenkins")); err != nil {
		return nil, fmt.Errorf("jenkins: metrics: %w", err)
	}
	c.marker = cfg.MarkerParam

	base := cfg.HTTPClient
	if base == nil {
		base = &http.Client{}
	}
	c.rt = base.Transport
	if c.rt == nil {
		// A transport of its own: code that calls CloseIdleConnections on
		// http.DefaultTransport (httptest servers do on Close) would break
		// this client's connections being set up.
		if dt, ok := http.DefaultTransport.(*http.Transport); ok {
			c.rt = dt.Clone()
		} else {
			c.rt = http.DefaultTransport
		}
	}
	c.hc = &http.Client{
		Transport:     c.rt,
		Jar:           base.Jar,
		Timeout:       base.Timeout,
		CheckRedirect: noRedirect,
	}
	return c, nil
}

// URL returns the Jenkins root URL the client talks to, without credentials.
func (c *Client) URL() string { return c.baseStr }

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// call runs one Client operation: per-call timeout, a span named
// jenkins.<op> with attrs, and a debug log line. fn's error is returned
// as is; the exported methods add what they were doing.
func (c *Client) call(ctx context.Context, op string, attrs []attribute.KeyValue, fn func(ctx context.Context) error) error {
	return c.callWithin(ctx, op, c.timeout, attrs, fn)
}

// callWithin is call with its own bound on the whole call; 0 leaves the
// bound to fn (a paged search bounds each request instead).
func (c *Client) callWithin(ctx context.Context, op string, timeout time.Duration, attrs []attribute.KeyValue, fn func(ctx context.Context) error) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	ctx, span := c.tracer.Start(ctx, "jenkins."+op,
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	defer span.End()
	start := time.Now()
	err := fn(ctx)
	logAttrs := []slog.Attr{slog.String("op", op), slog.Duration("elapsed", time.Since(start))}
	for _, a := range attrs {
		logAttrs = append(logAttrs, slog.String(string(a.Key), a.Value.String()))
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		logAttrs = append(logAttrs, slog.String("err", err.Error()))
		c.log.LogAttrs(ctx, slog.LevelDebug, "jenkins call failed", logAttrs...)
		return err
	}
	c.log.LogAttrs(ctx, slog.LevelDebug, "jenkins call", logAttrs...)
	return nil
}

// Span attribute keys. Values are names and ids, never credentials.
const (
	attrJob     = attribute.Key("jenkins.job")
	attrQueueID = attribute.Key("jenkins.queue_id")
	attrBuild   = attribute.Key("jenkins.build_number")
	attrNode    = attribute.Key("jenkins.node")
	attrParam   = attribute.Key("jenkins.param")
	attrMerged  = attribute.Key("jenkins.merged")
	attrStatus  = attribute.Key("http.response.status_code")
)

// jobPath turns "a/b" into the escaped "/job/a/job/b". Jenkins forbids '/'
// in item names, so splitting on it is exact.
func jobPath(job string) (string, error) {
	job = strings.Trim(job, "/")
	if job == "" {
		return "", errors.New("jenkins: empty job name")
	}
	var b strings.Builder
	for _, seg := range strings.Split(job, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("jenkins: invalid job name %q", job)
		}
		b.WriteString("/job/")
		b.WriteString(url.PathEscape(seg))
	}
	return b.String(), nil
}

// nodePath returns the escaped "/computer/NAME".
func nodePath(name string) (string, error) {
	if name == "" || strings.Contains(name, "/") || name == "." || name == ".." {
		return "", fmt.Errorf("jenkins: invalid node name %q", name)
	}
	return "/computer/" + url.PathEscape(name), nil
}

// redactRawURL hides the password part of userinfo in a URL string that
// may not even parse.
func redactRawURL(raw string) string {
	i := strings.Index(raw, "://")
	if i < 0 {
		return raw
	}
	rest := raw[i+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	at := strings.LastIndex(rest[:end], "@")
	if at < 0 {
		return raw
	}
	user := rest[:at]
	if colon := strings.Index(user, ":"); colon >= 0 {
		user = user[:colon] + ":xxxxx"
	}
	return raw[:i+3] + user + rest[at:]
}
