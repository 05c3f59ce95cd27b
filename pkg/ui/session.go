package ui

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/ferryci/ferry/pkg/promote/api"
)

// Cookie names. The session holds the sign-in's token encrypted and
// authenticated (AES-256-GCM), never in the clear; the login cookie is
// the double-submit CSRF value of the sign-in form.
const (
	sessionCookie = "ferry_session"
	loginCookie   = "ferry_login"
	csrfField     = "csrf"
	// maxTokenBytes bounds a pasted token (a Kubernetes token is ~1 KiB).
	maxTokenBytes = 8 << 10
	// identityTTL is how long a verified identity is reused before the
	// token is verified again (a TokenReview per page would load the API
	// server).
	identityTTL = 30 * time.Second
)

// session is what the cookie carries.
type session struct {
	Token   string `json:"t"`
	Expires int64  `json:"e"`
	CSRF    string `json:"c"`
}

type sessions struct {
	aead cipher.AEAD
	ttl  time.Duration
	now  func() time.Time

	mu    sync.Mutex
	known map[[sha256.Size]byte]knownIdentity
}

type knownIdentity struct {
	id    api.Identity
	until time.Time
}

func newSessions(key []byte, ttl time.Duration, now func() time.Time) (*sessions, error) {
	if len(key) < 32 {
		return nil, errors.New("ui: the session key must be at least 32 bytes")
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("ferry ui session cookie v1"))
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		return nil, fmt.Errorf("ui: session cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("ui: session cipher: %w", err)
	}
	return &sessions{aead: aead, ttl: ttl, now: now, known: map[[sha256.Size]byte]knownIdentity{}}, nil
}

func (ss *sessions) seal(s session) (string, error) {
	plain, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("encode session: %w", err)
	}
	nonce := make([]byte, ss.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("session nonce: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(ss.aead.Seal(nonce, nonce, plain, []byte(sessionCookie))), nil
}

// open decrypts and checks a cookie value; any fault is "no session".
func (ss *sessions) open(v string) (session, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(v)
	n := ss.aead.NonceSize()
	if err != nil || len(raw) < n {
		return session{}, false
	}
	plain, err := ss.aead.Open(nil, raw[:n], raw[n:], []byte(sessionCookie))
	if err != nil {
		return session{}, false
	}
	var s session
	if json.Unmarshal(plain, &s) != nil || s.Token == "" || ss.now().Unix() >= s.Expires {
		return session{}, false
	}
	return s, true
}

// remembered returns an identity verified for token less than
// identityTTL ago.
func (ss *sessions) remembered(token string) (api.Identity, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	k := sha256.Sum256([]byte(token))
	ki, ok := ss.known[k]
	if !ok || ss.now().After(ki.until) {
		delete(ss.known, k)
		return api.Identity{}, false
	}
	return ki.id, true
}

func (ss *sessions) remember(token string, id api.Identity) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	now := ss.now()
	for k, ki := range ss.known {
		if now.After(ki.until) {
			delete(ss.known, k)
		}
	}
	ss.known[sha256.Sum256([]byte(token))] = knownIdentity{id: id, until: now.Add(identityTTL)}
}

func (ss *sessions) forget(token string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.known, sha256.Sum256([]byte(token)))
}

func randomHex() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// viewer is who looks at a page: signed in, or anonymous.
type viewer struct {
	ID       api.Identity
	SignedIn bool
	CSRF     string
}

const viewerKey = "ferry.ui.viewer"

func viewerOf(c *gin.Context) viewer {
	v, _ := c.Get(viewerKey)
	out, _ := v.(viewer)
	return out
}

// withSession finds the viewer from the cookie, verifying its token
// again as the APIs do; required refuses an anonymous one (pages redirect
// to the sign-in, everything else is answered 401).
func (s *Server) withSession(required bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		var v viewer
		if ck, err := c.Cookie(sessionCookie); err == nil {
			if sess, ok := s.sessions.open(ck); ok {
				id, err := s.identity(c, sess.Token)
				switch {
				case err == nil:
					v = viewer{ID: id, SignedIn: true, CSRF: sess.CSRF}
				case api.IsUnavailable(err):
					s.fail(c, http.StatusServiceUnavailable, "your sign-in cannot be verified now (the Kubernetes API server did not answer); retry in a moment")
					return
				default:
					s.clearCookie(c, sessionCookie)
				}
			}
		}
		if required && !v.SignedIn {
			if c.Request.Method == http.MethodGet && c.GetHeader(liveHeader) == "" {
				c.Redirect(http.StatusSeeOther, "/ui/login?next="+url.QueryEscape(c.Request.URL.RequestURI()))
				c.Abort()
				return
			}
			c.Header("WWW-Authenticate", `Bearer realm="ferry"`)
			s.fail(c, http.StatusUnauthorized, "sign in first")
			return
		}
		c.Set(viewerKey, v)
		c.Next()
	}
}

func (s *Server) identity(c *gin.Context, token string) (api.Identity, error) {
	if id, ok := s.sessions.remembered(token); ok {
		return id, nil
	}
	if s.cfg.Auth == nil {
		return api.Identity{}, errors.New("nobody can sign in: no identities are configured")
	}
	id, err := s.cfg.Auth.Authenticate(c.Request.Context(), token)
	if err != nil {
		return api.Identity{}, err
	}
	s.sessions.remember(token, id)
	return id, nil
}

// csrf refuses a POST whose form does not carry the session's token, or
// that comes from another origin.
func (s *Server) csrf(c *gin.Context) {
	v := viewerOf(c)
	got := c.PostForm(csrfField)
	if !sameOrigin(c.Request) || v.CSRF == "" || subtle.ConstantTimeCompare([]byte(got), []byte(v.CSRF)) != 1 {
		s.log.WarnContext(c.Request.Context(), "ui request refused: CSRF check failed", "path", c.Request.URL.Path, "user", v.ID.Name, "remote", c.ClientIP())
		s.fail(c, http.StatusForbidden, "the form's CSRF token is missing or stale: reload the page and try again")
		return
	}
	c.Next()
}

// sameOrigin is false when Origin (or, without it, Referer) names another
// host than the request's.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		o = r.Header.Get("Referer")
	}
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

func (s *Server) secure(r *http.Request) bool {
	return s.cfg.SecureCookie || r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// setCookie sets a cookie of the UI's; Secure is set whenever the browser
// reached ferry over TLS (a Secure cookie sent over plain HTTP would never
// come back).
func (s *Server) setCookie(c *gin.Context, name, value string, maxAge time.Duration) {
	http.SetCookie(c.Writer, &http.Cookie{Name: name, Value: value, Path: "/ui", MaxAge: int(maxAge.Seconds()), //nolint:gosec // Secure over TLS, see above
		HttpOnly: true, Secure: s.secure(c.Request), SameSite: http.SameSiteStrictMode})
}

func (s *Server) clearCookie(c *gin.Context, name string) { s.setCookie(c, name, "", -time.Second) }

// safeNext is where a sign-in may lead: a path inside /ui/ on this host,
// else the activity page. Anything with a scheme, a host, "//" or a
// backslash (which browsers read as "/") is refused.
func safeNext(next string) string {
	const home = "/ui/activity"
	if next == "" || len(next) > 2048 || strings.ContainsAny(next, "\\\r\n\t") || strings.HasPrefix(next, "//") {
		return home
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return home
	}
	if u.Path != "/ui" && !strings.HasPrefix(u.Path, "/ui/") || strings.Contains(u.Path, "/../") || strings.HasSuffix(u.Path, "/..") ||
		strings.HasPrefix(u.Path, "/ui/login") {
		return home
	}
	return u.RequestURI()
}

type loginData struct {
	Next, CSRF, Error string
	CanSignIn         bool
}

func (s *Server) loginPage(c *gin.Context) {
	tok := randomHex()
	s.setCookie(c, loginCookie, tok, 30*time.Minute)
	s.render(c, http.StatusOK, "login", "Sign in", viewer{}, loginData{Next: safeNext(c.Query("next")), CSRF: tok, CanSignIn: s.cfg.Auth != nil})
}

func (s *Server) login(c *gin.Context) {
	next := safeNext(c.PostForm("next"))
	again := func(code int, msg string) {
		tok := randomHex()
		s.setCookie(c, loginCookie, tok, 30*time.Minute)
		s.render(c, code, "login", "Sign in", viewer{}, loginData{Next: next, CSRF: tok, Error: msg, CanSignIn: s.cfg.Auth != nil})
	}
	ck, err := c.Cookie(loginCookie)
	if err != nil || !sameOrigin(c.Request) || subtle.ConstantTimeCompare([]byte(ck), []byte(c.PostForm(csrfField))) != 1 {
		again(http.StatusForbidden, "The sign-in form was stale or came from another site; try again.")
		return
	}
	token := strings.TrimSpace(c.PostForm("token"))
	switch {
	case s.cfg.Auth == nil:
		again(http.StatusForbidden, "Nobody can sign in: no identities are configured (promotion.auth.tokens or promotion.auth.kubernetes).")
		return
	case token == "" || len(token) > maxTokenBytes:
		again(http.StatusBadRequest, "Paste your ferry token or a Kubernetes bearer token.")
		return
	}
	id, err := s.cfg.Auth.Authenticate(c.Request.Context(), token)
	switch {
	case api.IsUnavailable(err):
		again(http.StatusServiceUnavailable, "Your token cannot be verified now (the Kubernetes API server did not answer); retry in a moment.")
		return
	case err != nil:
		s.log.WarnContext(c.Request.Context(), "ui sign-in refused", "remote", c.ClientIP(), "reason", err)
		again(http.StatusUnauthorized, "This token is not accepted.")
		return
	case id.Via == api.ViaPipelineToken:
		again(http.StatusForbidden, "The pipelines' token cannot sign in: use your own token.")
		return
	}
	switch ok, err := s.mayRead(c.Request.Context(), id); {
	case err != nil:
		again(http.StatusServiceUnavailable, "Your rights cannot be checked now (the Kubernetes API server did not answer); retry in a moment.")
		return
	case !ok:
		s.log.WarnContext(c.Request.Context(), "ui sign-in refused: no right to read", "user", id.Name, "via", id.Via, "remote", c.ClientIP())
		again(http.StatusForbidden, id.Name+" (verified by "+id.Via+") may not read ferry: signing in needs the get right on the promotions of an app (promotion.auth roles, or Kubernetes RBAC on promotions.ferry.dev).")
		return
	}
	sealed, err := s.sessions.seal(session{Token: token, Expires: s.cfg.Now().Add(s.cfg.TTL).Unix(), CSRF: randomHex()})
	if err != nil {
		s.fail(c, http.StatusInternalServerError, "could not start a session")
		return
	}
	s.sessions.remember(token, id)
	s.clearCookie(c, loginCookie)
	s.setCookie(c, sessionCookie, sealed, s.cfg.TTL)
	s.log.InfoContext(c.Request.Context(), "ui sign-in", "user", id.Name, "via", id.Via)
	c.Redirect(http.StatusSeeOther, next)
}

// mayRead is what signing in needs beyond a verified identity: the right
// to read the promotions of one of the apps (any Kubernetes identity in
// the cluster can be verified, so verification alone is not enough).
func (s *Server) mayRead(ctx context.Context, id api.Identity) (bool, error) {
	apps := []string{""}
	if s.cfg.Promotions != nil && len(s.cfg.Promotions.Apps()) > 0 {
		apps = s.cfg.Promotions.Apps()
	}
	for _, app := range apps {
		ok, err := s.cfg.Auth.Allowed(ctx, id, api.VerbGet, app, "")
		if err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

func (s *Server) logout(c *gin.Context) {
	if ck, err := c.Cookie(sessionCookie); err == nil {
		if sess, ok := s.sessions.open(ck); ok {
			s.sessions.forget(sess.Token)
		}
	}
	s.clearCookie(c, sessionCookie)
	c.Redirect(http.StatusSeeOther, "/ui/login")
}
