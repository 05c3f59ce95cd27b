package jenkins

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/bndr/gojenkins"
	"go.opentelemetry.io/otel/trace"
)

// maxBody bounds what is read of an answer; a big queue with a tree filter
// stays far below it.
const maxBody = 16 << 20

// request is one direct REST call.
type request struct {
	method string
	path   string     // escaped, relative to the Jenkins URL, starts with "/"
	query  url.Values // optional
	form   url.Values // POST body, form-encoded; nil sends an empty body
}

// response is a fully read answer with a 2xx or 3xx status.
type response struct {
	status int
	header http.Header
	body   []byte
}

// crumb is a CSRF crumb and the session cookies it is tied to: since
// Jenkins 2.176.2 the default crumb issuer binds crumbs to the web session,
// so a crumb sent without its JSESSIONID cookie is rejected.
type crumb struct {
	field   string
	value   string
	cookies []*http.Cookie
}

// do sends r without following redirects and returns 2xx and 3xx answers;
// any other answer or a transport failure becomes an *HTTPError. POSTs
// carry a crumb when the client authenticates with a password; after a 403
// "No valid crumb" a POST is sent once more with a freshly fetched crumb,
// whatever the credentials, and later POSTs carry one too.
func (c *Client) do(ctx context.Context, r request) (*response, error) {
	var body []byte
	if r.form != nil {
		body = []byte(r.form.Encode())
	}
	useCrumb := r.method == http.MethodPost && (c.password || c.crumbAlways.Load())
	for attempt := 0; ; attempt++ {
		var cr *crumb
		if useCrumb {
			var err error
			if cr, err = c.getCrumb(ctx); err != nil {
				return nil, err
			}
		}
		resp, err := c.send(ctx, r, body, cr)
		if err != nil {
			return nil, err
		}
		if resp.status >= 300 && resp.status < 400 && isLoginRedirect(resp.header.Get("Location")) {
			return nil, c.httpError(r, resp.status, resp.header, resp.body)
		}
		if resp.status >= 200 && resp.status < 400 {
			return resp, nil
		}
		if resp.status == http.StatusForbidden && r.method == http.MethodPost && attempt == 0 &&
			bytes.Contains(bytes.ToLower(resp.body), []byte("no valid crumb")) {
			c.dropCrumb(cr)
			// A Jenkins that wants crumbs even with a token (cores before
			// 2.96) gets them on every POST from now on.
			c.crumbAlways.Store(true)
			useCrumb = true
			continue
		}
		return nil, c.httpError(r, resp.status, resp.header, resp.body)
	}
}

// send performs one exchange.
func (c *Client) send(ctx context.Context, r request, body []byte, cr *crumb) (*response, error) {
	target := c.baseStr + r.path
	if len(r.query) > 0 {
		target += "?" + r.query.Encode()
	}
	var rd io.Reader
	if r.method == http.MethodPost {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, target, rd)
	if err != nil {
		return nil, &HTTPError{Method: r.method, Path: r.path, Err: err}
	}
	if r.method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Accept", "application/json, application/xml;q=0.9, */*;q=0.5")
	c.decorate(req)
	if cr != nil && cr.field != "" {
		req.Header.Set(cr.field, cr.value)
		if c.hc.Jar == nil {
			for _, ck := range cr.cookies {
				req.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value}) //nolint:gosec // a cookie sent by a client; Secure/HttpOnly are server-side attributes
			}
		}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.transportError(r, err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, c.transportError(r, fmt.Errorf("read answer: %w", err))
	}
	if len(data) > maxBody {
		return nil, &HTTPError{Method: r.method, Path: r.path, Status: resp.StatusCode,
			Body: fmt.Sprintf("answer larger than %d bytes", maxBody)}
	}
	trace.SpanFromContext(ctx).SetAttributes(attrStatus.Int(resp.StatusCode))
	c.noteAnswer(ctx, resp.StatusCode, resp.Header)
	return &response{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// acceptLanguage is asked of Jenkins on every request. Jenkins words queue
// reasons (why), offline causes and error pages in the request's language,
// else in the controller's default locale, and ferry reads some of that
// prose (QueueItem.WaitingLabel). Only the Locale plugin's "ignore browser
// preference" (or a user language it lets users choose) overrides it; see
// LanguageProblem.
const acceptLanguage = "en"

// decorate adds what every request carries: user agent, language and
// credentials.
func (c *Client) decorate(req *http.Request) {
	c.setCommonHeaders(req.Header)
	if c.user != "" {
		req.SetBasicAuth(c.user, c.secret)
	}
}

// setCommonHeaders sets the headers of direct and gojenkins requests alike.
func (c *Client) setCommonHeaders(h http.Header) {
	h.Set("User-Agent", c.ua)
	h.Set("Accept-Language", acceptLanguage)
}

func (c *Client) transportError(r request, err error) *HTTPError {
	var ue *url.Error
	if errors.As(err, &ue) {
		// url.Error repeats the full URL; Method and Path already say it.
		err = ue.Err
	}
	return &HTTPError{Method: r.method, Path: r.path, Err: err, kind: kindForTransport(err)}
}

// httpError builds the error for a non-success answer. A 3xx reaching here
// (callers that accept redirects look at them first) is a redirect to the
// login page when Jenkins wants credentials, otherwise unexpected.
func (c *Client) httpError(r request, status int, header http.Header, body []byte) *HTTPError {
	e := &HTTPError{Method: r.method, Path: r.path, Status: status, Body: c.snippet(header, body), kind: kindForStatus(status)}
	if status >= 300 && status < 400 {
		loc := header.Get("Location")
		if isLoginRedirect(loc) {
			e.kind = ErrAuth
		}
		e.Body = "unexpected redirect to " + redactRawURL(loc)
	}
	return e
}

// isLoginRedirect reports whether a redirect sends the client to log in,
// which is how Jenkins answers some unauthorized requests.
func isLoginRedirect(loc string) bool {
	return strings.Contains(loc, "/login") || strings.Contains(loc, "securityRealm/")
}

// snippet returns a short, secret-free text for an error answer: Jenkins'
// X-Error header if set (error pages carry the message there), else the
// body with markup removed.
func (c *Client) snippet(header http.Header, body []byte) string {
	s := header.Get("X-Error")
	if s == "" {
		s = stripTags(string(body))
	}
	s = strings.Join(strings.Fields(s), " ")
	if c.secret != "" {
		s = strings.ReplaceAll(s, c.secret, "xxxxx")
	}
	if len(s) > snippetLen {
		s = s[:snippetLen] + "…"
	}
	return s
}

// stripTags drops HTML markup, scripts and styles; good enough to make the
// message of a Jenkins error page readable in a log line.
func stripTags(s string) string {
	if !strings.Contains(s, "<") {
		return s
	}
	var b strings.Builder
	lower := strings.ToLower(s)
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(lower[i:], "<script"), strings.HasPrefix(lower[i:], "<style"), strings.HasPrefix(lower[i:], "<head"):
			tag := "</script>"
			if strings.HasPrefix(lower[i:], "<style") {
				tag = "</style>"
			} else if strings.HasPrefix(lower[i:], "<head") {
				tag = "</head>"
			}
			end := strings.Index(lower[i:], tag)
			if end < 0 {
				return b.String()
			}
			i += end + len(tag)
		case s[i] == '<':
			end := strings.IndexByte(s[i:], '>')
			if end < 0 {
				return b.String()
			}
			b.WriteByte(' ')
			i += end + 1
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	return b.String()
}

// getCrumb returns the cached crumb or fetches one. A Jenkins without a
// crumb issuer (404) yields an empty crumb, cached too.
func (c *Client) getCrumb(ctx context.Context) (*crumb, error) {
	c.crumbMu.Lock()
	defer c.crumbMu.Unlock()
	if c.crumb != nil {
		return c.crumb, nil
	}
	r := request{method: http.MethodGet, path: "/crumbIssuer/api/json"}
	resp, err := c.send(ctx, r, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch crumb: %w", err)
	}
	cr := &crumb{}
	switch resp.status {
	case http.StatusNotFound:
		// No CSRF protection configured.
	case http.StatusOK:
		var v struct {
			Crumb             string `json:"crumb"`
			CrumbRequestField string `json:"crumbRequestField"`
		}
		if err := json.Unmarshal(resp.body, &v); err != nil || v.Crumb == "" {
			return nil, fmt.Errorf("fetch crumb: %w", &HTTPError{Method: r.method, Path: r.path, Status: resp.status,
				Body: "answer is not a crumb", kind: ErrUnavailable})
		}
		cr.field, cr.value = v.CrumbRequestField, v.Crumb
		if cr.field == "" {
			cr.field = "Jenkins-Crumb"
		}
		cr.cookies = (&http.Response{Header: resp.header}).Cookies()
	default:
		return nil, fmt.Errorf("fetch crumb: %w", c.httpError(r, resp.status, resp.header, resp.body))
	}
	c.crumb = cr
	return cr, nil
}

// dropCrumb forgets used if it is still the cached crumb, so that
// concurrent callers rejected with the same stale crumb fetch one new one.
func (c *Client) dropCrumb(used *crumb) {
	c.crumbMu.Lock()
	defer c.crumbMu.Unlock()
	if used == nil || c.crumb == used {
		c.crumb = nil
	}
}

// getJSON is a direct GET decoding a JSON answer into v.
func (c *Client) getJSON(ctx context.Context, path string, query url.Values, v any) error {
	r := request{method: http.MethodGet, path: path, query: query}
	resp, err := c.do(ctx, r)
	if err != nil {
		return err
	}
	if resp.status != http.StatusOK {
		return c.httpError(r, resp.status, resp.header, resp.body)
	}
	if err := json.Unmarshal(resp.body, v); err != nil {
		return &HTTPError{Method: r.method, Path: r.path, Status: resp.status,
			Body: "answer is not the expected JSON: " + err.Error()}
	}
	return nil
}

// --- gojenkins adapter ---

// exchange records the last answer a gojenkins request got, because
// gojenkins drops the status of most calls and every error body.
type exchange struct {
	mu      sync.Mutex
	method  string
	path    string
	status  int
	header  http.Header
	snippet []byte
}

// boundTransport is the transport a per-call gojenkins client uses. It
// attaches the call's context (gojenkins v1.1.0 builds requests with
// http.NewRequest, so a cancelled context would not stop them), sets the
// user agent and language, and records the answer in ex.
type boundTransport struct {
	ctx  context.Context
	next http.RoundTripper
	c    *Client
	ex   *exchange
}

func (t *boundTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(t.ctx)
	t.c.setCommonHeaders(req.Header)
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	t.ex.mu.Lock()
	defer t.ex.mu.Unlock()
	t.ex.method = req.Method
	t.ex.path = strings.TrimPrefix(req.URL.EscapedPath(), t.c.base.EscapedPath())
	t.ex.status = resp.StatusCode
	t.ex.header = resp.Header
	t.ex.snippet = nil
	if resp.StatusCode >= 300 {
		head, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		t.ex.snippet = head
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(head), resp.Body), resp.Body}
	}
	trace.SpanFromContext(t.ctx).SetAttributes(attrStatus.Int(resp.StatusCode))
	t.c.noteAnswer(t.ctx, resp.StatusCode, resp.Header)
	return resp, nil
}

// gojenkins returns a gojenkins client bound to ctx, and the record of its
// last exchange. It is cheap: one per call keeps contexts apart.
func (c *Client) gojenkins(ctx context.Context) (*gojenkins.Jenkins, *exchange) {
	ex := &exchange{}
	hc := &http.Client{
		Transport:     &boundTransport{ctx: ctx, next: c.rt, c: c, ex: ex},
		Jar:           c.hc.Jar,
		Timeout:       c.hc.Timeout,
		CheckRedirect: noRedirect,
	}
	var j *gojenkins.Jenkins
	if c.user != "" {
		j = gojenkins.CreateJenkins(hc, c.baseStr, c.user, c.secret)
	} else {
		j = gojenkins.CreateJenkins(hc, c.baseStr)
	}
	j.Raw = new(gojenkins.ExecutorResponse)
	return j, ex
}

// result turns what a gojenkins call returned into an error if the
// exchange failed, whether or not gojenkins noticed.
func (c *Client) result(ex *exchange, method, path string, err error) error {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	if ex.method != "" {
		method, path = ex.method, ex.path
	}
	r := request{method: method, path: path}
	if ex.status == 0 {
		if err == nil {
			err = errors.New("no answer")
		}
		return c.transportError(r, err)
	}
	if ex.status >= 300 {
		return c.httpError(r, ex.status, ex.header, ex.snippet)
	}
	if err != nil {
		// A 2xx with an X-Error header, or an answer gojenkins could not read.
		return &HTTPError{Method: method, Path: path, Status: ex.status, Body: c.snippet(http.Header{}, []byte(err.Error())), Err: err}
	}
	return nil
}
