package jenkinsemu

import (
	"cmp"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Clock tells the emulator what time it is. Every timed behaviour (quiet
// period, build duration, expiry of left queue items) is computed from it
// when a request or an inspection looks at the state, so a test can drive
// time with a fake clock instead of sleeping.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// User is an account of the emulated Jenkins.
type User struct {
	Name string
	// Password authenticates with HTTP basic auth; such requests get a
	// session cookie and, being browser-like, need a crumb on POST.
	Password string
	// Token is an API token; requests authenticated with it are exempt from
	// crumbs (Jenkins ≥ 2.96).
	Token string
	// ReadOnly users have Overall/Read and Job/Read only: triggering,
	// cancelling, stopping and creating, deleting or connecting agents are
	// denied with 403 (or 422 for cancelItem, as Jenkins answers).
	ReadOnly bool
}

// DefaultUser is the account used when Options.Users is empty.
var DefaultUser = User{Name: "admin", Password: "admin-password", Token: "11e5c4fa2ba2c0e0c9a6f3a8d4e1b7c2ab"}

// DownMode is how the emulated controller fails; see SetDown.
type DownMode int

// Down modes.
const (
	// Up serves normally.
	Up DownMode = iota
	// Refuse closes the listener and every open connection, so connections
	// are refused (a crashed or restarting process). Up listens again on
	// the same address.
	Refuse
	// Unavailable answers 503 to every request, as Jenkins does while it
	// starts ("Please wait while Jenkins is getting ready to work").
	Unavailable
)

// Options configures New. Zero values get defaults.
type Options struct {
	// Addr to listen on; default "127.0.0.1:0".
	Addr string
	// Users; default []User{DefaultUser}.
	Users []User
	// Version is sent as X-Jenkins; default "2.462.3". Answers that
	// changed across cores follow it: a merged buildWithParameters is 303
	// from 2.308 (201 before); a disabled job's 409 and a parameterless
	// job's 400 (500 before) are plain error pages from 2.524;
	// offlineCauseReason is HTML-escaped from 2.483.
	Version string
	// ShowStackTrace shows the exception on Jenkins' 500 "Oops!" page, as
	// -Djenkins.model.Jenkins.SHOW_STACK_TRACE=true does; by default the
	// page names no exception, only a logging id.
	ShowStackTrace bool
	// QuietPeriod applies to every trigger without a "delay" parameter.
	// Jenkins' global default is 5 s; the emulator defaults to 0 so tests
	// are quick. During it the item's why is "In the quiet period. Expires
	// in …" and the label does not appear anywhere.
	QuietPeriod time.Duration
	// LeftItemTTL is how long a queue item that started or was cancelled
	// stays readable at /queue/item/ID/; default 5 minutes
	// (Queue.leftItems' cache expiry).
	LeftItemTTL time.Duration
	// CreateNodeDelay is spent inside the creation lock of each
	// doCreateItem, emulating the cost of ComputerSet.doDoCreateItem, which
	// is synchronized and saves the configuration to disk.
	CreateNodeDelay time.Duration
	// BuiltInExecutors is the number of executors of the built-in node;
	// default 0, the recommended setup, so builds need agents.
	BuiltInExecutors int
	// SecretKey keys the HMAC that derives agent secrets from node names
	// (JnlpAgentReceiver.SLAVE_SECRET); default random per emulator.
	SecretKey []byte
	// Locale is the controller's default locale (a Java locale name: "en",
	// "zh_CN", "ja", "zh_TW"; default English): requests without
	// Accept-Language get queue reasons, offline causes and error messages
	// in it, as a Jenkins whose JVM runs in that locale answers. Requests
	// with Accept-Language get their preferred language (English where the
	// emulator has no text for it).
	Locale string
	// IgnoreAcceptLanguage is the Locale plugin's "Ignore browser
	// preference and force this language to all users": every request is
	// answered in Locale, and every answer carries X-Jenkins-Language.
	IgnoreAcceptLanguage bool
	// Clock; default the wall clock.
	Clock Clock
	// Logger; default slog.Default(). Records carry component=jenkinsemu.
	Logger *slog.Logger
}

// Server is a running emulated Jenkins controller.
type Server struct {
	opts  Options
	clock Clock
	log   *slog.Logger
	key   []byte
	salt  []byte
	// instance distinguishes this controller's start in cookie names and
	// the X-Jenkins-Session header, as Jenkins' per-start session id does
	// (Restart gives a new one).
	instance atomic.Pointer[string]

	mu          sync.Mutex
	jobs        map[string]*job
	folders     map[string]bool
	queue       []*queueItem
	left        map[int64]*queueItem
	nextQueueID int64
	nodes       []*node // built-in first, then agents by name
	// whyMemo, while set (during one queue answer), holds the why of each
	// label.
	whyMemo   map[string]string
	sessions  map[string]string
	overrides map[overrideKey]BuildOverride
	running   map[*build]bool
	calls     map[string]int
	latency   time.Duration
	down      DownMode

	createMu sync.Mutex

	localeMu sync.Mutex
	locale   localeConf

	netMu   sync.Mutex
	addr    string
	httpSrv *http.Server
	closed  bool
}

type overrideKey struct {
	job    string
	number int
}

// New starts an emulator listening on Options.Addr. It panics if it cannot
// listen, like httptest.NewServer, since it is meant for tests.
func New(opts Options) *Server {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if len(opts.Users) == 0 {
		opts.Users = []User{DefaultUser}
	}
	if opts.Version == "" {
		opts.Version = "2.462.3"
	}
	if opts.LeftItemTTL == 0 {
		opts.LeftItemTTL = 5 * time.Minute
	}
	if len(opts.SecretKey) == 0 {
		opts.SecretKey = randomBytes(32)
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{
		opts:        opts,
		clock:       opts.Clock,
		log:         opts.Logger.With("component", "jenkinsemu"),
		key:         opts.SecretKey,
		salt:        randomBytes(32),
		jobs:        map[string]*job{},
		folders:     map[string]bool{},
		left:        map[int64]*queueItem{},
		sessions:    map[string]string{},
		overrides:   map[overrideKey]BuildOverride{},
		running:     map[*build]bool{},
		calls:       map[string]int{},
		nextQueueID: 0,
	}
	s.newInstance()
	s.SetLocale(opts.Locale, opts.IgnoreAcceptLanguage)
	s.nodes = []*node{{
		name:         "",
		description:  "the Jenkins controller's built-in node",
		numExecutors: opts.BuiltInExecutors,
		mode:         "NORMAL",
		builtIn:      true,
		executors:    make([]*build, opts.BuiltInExecutors),
		created:      s.clock.Now(),
	}}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		panic(fmt.Sprintf("jenkinsemu: listen on %s: %v", opts.Addr, err))
	}
	s.addr = ln.Addr().String()
	s.serve(ln)
	return s
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

func (s *Server) serve(ln net.Listener) {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	s.httpSrv = srv
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve", "err", err)
		}
	}()
}

// URL is the controller's root URL without a trailing slash, e.g.
// "http://127.0.0.1:41234". It stays the same across SetDown(Refuse) and
// SetDown(Up).
func (s *Server) URL() string {
	s.netMu.Lock()
	defer s.netMu.Unlock()
	return "http://" + s.addr
}

func (s *Server) base() string { return s.URL() + "/" }

// Close stops the server and closes every connection.
func (s *Server) Close() {
	s.netMu.Lock()
	defer s.netMu.Unlock()
	s.closed = true
	if s.httpSrv != nil {
		_ = s.httpSrv.Close()
		s.httpSrv = nil
	}
}

// SetDown switches how the controller fails. Refuse closes the listener and
// all connections; Up (from Refuse) listens again on the same address,
// retrying for a few seconds if the port is briefly unavailable.
func (s *Server) SetDown(mode DownMode) error {
	s.netMu.Lock()
	defer s.netMu.Unlock()
	if s.closed {
		return errors.New("jenkinsemu: server closed")
	}
	s.mu.Lock()
	s.down = mode
	s.mu.Unlock()
	switch {
	case mode == Refuse && s.httpSrv != nil:
		err := s.httpSrv.Close()
		s.httpSrv = nil
		if err != nil {
			return fmt.Errorf("close listener: %w", err)
		}
	case mode != Refuse && s.httpSrv == nil:
		var ln net.Listener
		var err error
		for range 50 {
			if ln, err = net.Listen("tcp", s.addr); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("listen again on %s: %w", s.addr, err)
		}
		s.serve(ln)
	}
	return nil
}

// SetLatency delays every answer by d (0 turns it off).
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// Calls returns how many requests each endpoint received, keyed by method
// and route template: the Route* constants (e.g.
// "POST /job/{job}/buildWithParameters"), the HTML pages ("GET /",
// "GET /computer/", "GET /computer/{name}/", "GET /job/{job}/",
// "GET /job/{job}/{number}/"), an action called with the wrong method under
// that method ("GET /queue/cancelItem"), anything else under
// "METHOD <other>". Rejected requests (401, 403, 503) count too; refused
// connections cannot.
func (s *Server) Calls() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]int, len(s.calls))
	for k, v := range s.calls {
		m[k] = v
	}
	return m
}

// ResetCalls sets every request counter back to zero.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = map[string]int{}
}

type authKind int

const (
	authAnonymous authKind = iota
	authPassword
	authToken
	authSession
)

type principal struct {
	kind    authKind
	user    *User
	session string // password/session auth: the HTTP session
	newSess bool
}

func (p principal) name() string {
	if p.user == nil {
		return "anonymous"
	}
	return p.user.Name
}

func (s *Server) cookieName() string { return "JSESSIONID." + *s.instance.Load() }

func (s *Server) newInstance() {
	id := hex.EncodeToString(randomBytes(4))
	s.instance.Store(&id)
}

// ServeHTTP implements http.Handler. The order of checks follows Jenkins'
// filter chain: the security filter (bad credentials → 401), the crumb
// filter (POST without a valid crumb → 403 unless authenticated by API
// token), then Jenkins.getTarget() (anonymous without Overall/Read → 403),
// then the URL's object.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt := matchRoute(r.Method, r.URL.Path)
	s.mu.Lock()
	s.calls[rt.key]++
	latency, down := s.latency, s.down
	s.mu.Unlock()
	if latency > 0 {
		select {
		case <-time.After(latency):
		case <-r.Context().Done():
			return
		}
	}
	h := w.Header()
	if down == Unavailable {
		h.Set("Content-Type", "text/html;charset=utf-8")
		h.Set("Retry-After", "10")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "<html><body>Please wait while Jenkins is getting ready to work...</body></html>\n")
		return
	}
	h.Set("X-Jenkins", s.opts.Version)
	h.Set("X-Hudson", "1.395")
	h.Set("X-Jenkins-Session", *s.instance.Load())
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Server", "Jetty(10.0.20)")

	p, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	if p.newSess {
		http.SetCookie(w, &http.Cookie{Name: s.cookieName(), Value: p.session, Path: "/", HttpOnly: true})
	}
	if r.Method == http.MethodPost && p.kind != authToken && !s.validCrumb(r, p) {
		// CrumbFilter: response.sendError(SC_FORBIDDEN, "No valid crumb was
		// included in the request"), rendered by Jetty's error handler.
		s.log.Debug("no valid crumb", "path", r.URL.Path, "user", p.name())
		jettyError(w, http.StatusForbidden, "No valid crumb was included in the request")
		return
	}
	if lc := s.localeConf(); lc.force {
		// The Locale plugin's filter comes after the authentication and
		// crumb filters, before Stapler (which refuses anonymous reads).
		h.Set("X-Jenkins-Language", cmp.Or(lc.locale, "en"))
	}
	if p.kind == authAnonymous {
		s.denied(w, p, "hudson.model.Hudson.Read", "Overall/Read")
		return
	}
	if err := r.ParseForm(); err != nil {
		jettyError(w, http.StatusBadRequest, "Unable to parse form content")
		return
	}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		_ = r.ParseMultipartForm(1 << 20)
	}
	rt.h(s, w, r, p, rt.args)
}

// authenticate resolves the caller. A wrong user or secret in the basic
// auth header answers 401 "Invalid password/token for user: NAME"
// (BasicHeaderProcessor); a valid session cookie without a header
// authenticates as the session's user.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (principal, bool) {
	if name, secret, ok := r.BasicAuth(); ok {
		for i := range s.opts.Users {
			u := &s.opts.Users[i]
			if u.Name != name {
				continue
			}
			if u.Token != "" && hmac.Equal([]byte(secret), []byte(u.Token)) {
				return principal{kind: authToken, user: u}, true
			}
			if u.Password != "" && hmac.Equal([]byte(secret), []byte(u.Password)) {
				p := principal{kind: authPassword, user: u}
				s.mu.Lock()
				if c, err := r.Cookie(s.cookieName()); err == nil && s.sessions[c.Value] == u.Name {
					p.session = c.Value
				} else {
					p.session = "node0" + hex.EncodeToString(randomBytes(12))
					p.newSess = true
					s.sessions[p.session] = u.Name
				}
				s.mu.Unlock()
				return p, true
			}
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="Jenkins"`)
		jettyError(w, http.StatusUnauthorized, "Invalid password/token for user: "+name)
		return principal{}, false
	}
	if c, err := r.Cookie(s.cookieName()); err == nil {
		s.mu.Lock()
		name, ok := s.sessions[c.Value]
		s.mu.Unlock()
		if ok {
			for i := range s.opts.Users {
				if s.opts.Users[i].Name == name {
					return principal{kind: authSession, user: &s.opts.Users[i], session: c.Value}, true
				}
			}
		}
	}
	return principal{kind: authAnonymous}, true
}

// crumbFor is DefaultCrumbIssuer.issueCrumb: a digest of the user name and
// the HTTP session id (crumbs are bound to the session since 2.176.2, so a
// crumb fetched without keeping the session cookie is useless).
func (s *Server) crumbFor(p principal) string {
	m := hmac.New(sha256.New, s.salt)
	m.Write([]byte(p.name() + ";" + p.session))
	return hex.EncodeToString(m.Sum(nil))
}

func (s *Server) validCrumb(r *http.Request, p principal) bool {
	got := r.Header.Get("Jenkins-Crumb")
	if got == "" {
		if err := r.ParseForm(); err == nil {
			got = r.Form.Get("Jenkins-Crumb")
		}
	}
	if got == "" || p.kind == authAnonymous {
		return false
	}
	return hmac.Equal([]byte(got), []byte(s.crumbFor(p)))
}

// denied answers like AccessDeniedException3: 403 with the diagnostic
// headers Jenkins sends and the "is missing the … permission" message.
func (s *Server) denied(w http.ResponseWriter, p principal, permID, permTitle string) {
	h := w.Header()
	h.Set("X-You-Are-Authenticated-As", p.name())
	h.Set("X-You-Are-In-Group-Disabled", "JENKINS-39402: use -Dhudson.security.AccessDeniedException2.REPORT_GROUP_HEADERS=true or use /whoAmI to diagnose")
	h.Set("X-Required-Permission", permID)
	h.Set("X-Permission-Implied-By", "hudson.model.Hudson.Administer")
	h.Set("Content-Type", "text/html;charset=utf-8")
	w.WriteHeader(http.StatusForbidden)
	if p.kind == authAnonymous {
		_, _ = fmt.Fprintf(w, "<html><head><meta http-equiv='refresh' content='1;url=/login?from=%%2F'/></head><body>Authentication required\n<!--\nYou are authenticated as: anonymous\nGroups that you are in:\n  \nPermission you need to have (but didn't): %s\n -->\n</body></html>\n", permID)
		return
	}
	_, _ = fmt.Fprintf(w, "<html><body><h1>Access Denied</h1><p>%s is missing the %s permission</p></body></html>\n", htmlEscape(p.name()), permTitle)
}

func jettyError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/html;charset=iso-8859-1")
	w.Header().Set("Cache-Control", "must-revalidate,no-cache,no-store")
	w.WriteHeader(code)
	_, _ = fmt.Fprintf(w, "<html>\n<head>\n<meta http-equiv=\"Content-Type\" content=\"text/html;charset=ISO-8859-1\"/>\n<title>Error %d %s</title>\n</head>\n<body><h2>HTTP ERROR %d %s</h2>\n<table>\n<tr><th>URI:</th><td></td></tr>\n<tr><th>STATUS:</th><td>%d</td></tr>\n<tr><th>MESSAGE:</th><td>%s</td></tr>\n</table>\n</body>\n</html>\n",
		code, htmlEscape(msg), code, htmlEscape(msg), code, htmlEscape(msg))
}

// failure answers like hudson.model.Failure (Jenkins' error page, 400).
func failure(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "text/html;charset=utf-8")
	w.WriteHeader(http.StatusBadRequest)
	_, _ = fmt.Fprintf(w, "<html><head><title>Error [Jenkins]</title></head><body><div id=\"main-panel\"><h1>Error</h1><p>%s</p></div></body></html>\n", htmlEscape(msg))
}

// oops answers like an uncaught exception in Stapler: 500, Jenkins' "Oops!"
// page, which names the exception only with Options.ShowStackTrace.
func (s *Server) oops(w http.ResponseWriter, msg string) {
	oopsPage(w, msg, s.opts.ShowStackTrace)
}

func oopsPage(w http.ResponseWriter, msg string, show bool) {
	w.Header().Set("Content-Type", "text/html;charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	trace := ""
	if show {
		trace = "<h2>Stack trace</h2><pre>" + htmlEscape(msg) + "</pre>"
	}
	_, _ = fmt.Fprintf(w, "<html><head><title>Jenkins</title></head><body><h1>Oops!</h1><div id=\"error-description\"><h2>A problem occurred while processing the request</h2><p>Logging ID=%s</p></div>%s</body></html>\n",
		uuid(), trace)
}

// uuid is a random version 4 UUID, as Jenkins logs exceptions under.
func uuid() string {
	b := randomBytes(16)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func notFound(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html;charset=utf-8")
	w.WriteHeader(http.StatusNotFound)
	_, _ = io.WriteString(w, "<html><head><title>Not Found</title></head><body><h2>Not Found</h2></body></html>\n")
}

func htmlPage(w http.ResponseWriter, title string) {
	w.Header().Set("Content-Type", "text/html;charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprintf(w, "<!DOCTYPE html><html><head><title>%s [Jenkins]</title></head><body></body></html>\n", htmlEscape(title))
}

func redirect(w http.ResponseWriter, code int, location string) {
	w.Header().Set("Location", location)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(code)
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#39;").Replace(s)
}

func itoa(i int) string { return strconv.Itoa(i) }

// jobURL is the absolute URL of a job (folders become /job/a/job/b/).
func jobURL(base, fullName string) string {
	var b strings.Builder
	b.WriteString(base)
	for _, seg := range strings.Split(fullName, "/") {
		b.WriteString("job/")
		b.WriteString(pathEscape(seg))
		b.WriteString("/")
	}
	return b.String()
}

func pathEscape(s string) string { return url.PathEscape(s) }

// AgentSecret is the secret Jenkins puts in the agent's JNLP file: the hex
// HMAC-SHA256 of the node name under the controller's key, so the same
// name always has the same secret.
func (s *Server) AgentSecret(name string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(name))
	return hex.EncodeToString(m.Sum(nil))
}
