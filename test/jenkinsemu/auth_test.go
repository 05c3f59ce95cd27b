package jenkinsemu

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

var readOnlyUser = User{Name: "viewer", Password: "viewer-password", Token: "viewer-token", ReadOnly: true}

func TestAuthentication(t *testing.T) {
	s, _ := newTestServer(t, Options{Users: []User{DefaultUser, readOnlyUser}})
	if err := s.AddJob("app", JobSpec{Label: "ferry", Params: []Param{{Name: "SHA"}}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		user, pass string
		method     string
		path       string
		wantStatus int
		wantBody   string
		wantHeader map[string]string
	}{
		{
			name: "anonymous read is denied", method: "GET", path: "/api/json",
			wantStatus: 403, wantBody: "Authentication required",
			wantHeader: map[string]string{"X-You-Are-Authenticated-As": "anonymous", "X-Required-Permission": "hudson.model.Hudson.Read"},
		},
		{
			name: "anonymous crumb is denied", method: "GET", path: "/crumbIssuer/api/json",
			wantStatus: 403, wantHeader: map[string]string{"X-You-Are-Authenticated-As": "anonymous"},
		},
		{
			name: "anonymous post fails the crumb filter first", method: "POST", path: "/job/app/buildWithParameters",
			wantStatus: 403, wantBody: "No valid crumb was included in the request",
		},
		{
			name: "wrong token", user: "admin", pass: "nope", method: "GET", path: "/api/json",
			wantStatus: 401, wantBody: "Invalid password/token for user: admin",
			wantHeader: map[string]string{"WWW-Authenticate": `Basic realm="Jenkins"`},
		},
		{
			name: "unknown user", user: "mallory", pass: "x", method: "GET", path: "/queue/api/json",
			wantStatus: 401, wantBody: "Invalid password/token for user: mallory",
		},
		{
			name: "token read", user: "admin", pass: DefaultUser.Token, method: "GET", path: "/api/json",
			wantStatus: 200, wantHeader: map[string]string{"Content-Type": "application/json;charset=utf-8"},
		},
		{
			name: "password read", user: "admin", pass: DefaultUser.Password, method: "GET", path: "/queue/api/json",
			wantStatus: 200,
		},
		{
			name: "token post needs no crumb", user: "admin", pass: DefaultUser.Token, method: "POST", path: "/job/app/buildWithParameters",
			wantStatus: 201,
		},
		{
			name: "password post without crumb", user: "admin", pass: DefaultUser.Password, method: "POST", path: "/job/app/buildWithParameters",
			wantStatus: 403, wantBody: "No valid crumb was included in the request",
		},
		{
			name: "read-only user may read", user: "viewer", pass: "viewer-token", method: "GET", path: "/job/app/api/json",
			wantStatus: 200,
		},
		{
			name: "read-only user may not build", user: "viewer", pass: "viewer-token", method: "POST", path: "/job/app/buildWithParameters",
			wantStatus: 403, wantBody: "viewer is missing the Job/Build permission",
			wantHeader: map[string]string{"X-Required-Permission": "hudson.model.Item.Build", "X-You-Are-Authenticated-As": "viewer"},
		},
		{
			name: "read-only user may not create nodes", user: "viewer", pass: "viewer-token", method: "POST", path: "/computer/doCreateItem",
			wantStatus: 403, wantBody: "viewer is missing the Agent/Create permission",
			wantHeader: map[string]string{"X-Required-Permission": "hudson.model.Computer.Create"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, s, tt.user, tt.pass)
			r := c.do(tt.method, tt.path, url.Values{})
			if r.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %s)", r.status, tt.wantStatus, r.body)
			}
			if !strings.Contains(r.body, tt.wantBody) {
				t.Errorf("body = %q, want it to contain %q", r.body, tt.wantBody)
			}
			for k, v := range tt.wantHeader {
				if got := r.header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if got := r.header.Get("X-Jenkins"); got == "" && r.status != 401 {
				t.Errorf("X-Jenkins header missing")
			}
		})
	}
}

func TestRealisticHeaders(t *testing.T) {
	s, _ := newTestServer(t, Options{Version: "2.479.1"})
	r := tokenClient(t, s).get("/api/json")
	for k, want := range map[string]string{"X-Jenkins": "2.479.1", "X-Hudson": "1.395", "Content-Type": "application/json;charset=utf-8"} {
		if got := r.header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if r.header.Get("X-Jenkins-Session") == "" {
		t.Errorf("X-Jenkins-Session missing")
	}
	m := r.json(t)
	if m["_class"] != "hudson.model.Hudson" || m["useCrumbs"] != true || m["useSecurity"] != true {
		t.Errorf("root = %v, want _class hudson.model.Hudson with crumbs and security", m)
	}
}

// TestCrumbSession pins that crumbs only work within the HTTP session they
// were issued for, as since Jenkins 2.176.2: a password client must keep
// the session cookie from the crumb request.
func TestCrumbSession(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	if err := s.AddJob("plain", JobSpec{}); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, s, DefaultUser.Name, DefaultUser.Password)
	r := c.get("/crumbIssuer/api/json")
	if r.status != 200 {
		t.Fatalf("crumb status %d", r.status)
	}
	m := r.json(t)
	crumb, _ := m["crumb"].(string)
	if m["crumbRequestField"] != "Jenkins-Crumb" || crumb == "" || m["_class"] != "hudson.security.csrf.DefaultCrumbIssuer" {
		t.Fatalf("crumb answer = %v", m)
	}
	cookie := r.header.Get("Set-Cookie")
	if !strings.HasPrefix(cookie, "JSESSIONID.") {
		t.Fatalf("Set-Cookie = %q, want a JSESSIONID.* session cookie", cookie)
	}
	sessionCookie := strings.SplitN(cookie, ";", 2)[0]

	tests := []struct {
		name   string
		header map[string]string
		form   url.Values
		want   int
	}{
		{"crumb header without the session cookie", map[string]string{"Jenkins-Crumb": crumb}, nil, 403},
		{"session cookie without crumb", map[string]string{"Cookie": sessionCookie}, nil, 403},
		{"wrong crumb", map[string]string{"Jenkins-Crumb": "0123", "Cookie": sessionCookie}, nil, 403},
		{"crumb header and session cookie", map[string]string{"Jenkins-Crumb": crumb, "Cookie": sessionCookie}, nil, 201},
		{"crumb form field and session cookie", map[string]string{"Cookie": sessionCookie}, url.Values{"Jenkins-Crumb": {crumb}}, 201},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, s, DefaultUser.Name, DefaultUser.Password)
			for k, v := range tt.header {
				c.hdr.Set(k, v)
			}
			r := c.post("/job/plain/build", tt.form)
			if r.status != tt.want {
				t.Fatalf("status = %d, want %d (body %s)", r.status, tt.want, r.body)
			}
		})
	}

	t.Run("session cookie alone authenticates", func(t *testing.T) {
		c := newClient(t, s, "", "")
		c.hdr.Set("Cookie", sessionCookie)
		if r := c.get("/api/json"); r.status != http.StatusOK {
			t.Fatalf("status = %d, want 200", r.status)
		}
	})
}

func TestReadOnlyUserActions(t *testing.T) {
	s, _ := newTestServer(t, Options{Users: []User{DefaultUser, readOnlyUser}})
	if err := s.AddJob("app", JobSpec{Label: "ferry", Duration: Forever}); err != nil {
		t.Fatal(err)
	}
	admin := tokenClient(t, s)
	if r := admin.post("/job/app/build", nil); r.status != 201 {
		t.Fatalf("trigger: %d", r.status)
	}
	if r := admin.createNode("agent-1", "other", "NORMAL", 1); r.status != 302 {
		t.Fatalf("create: %d", r.status)
	}
	viewer := newClient(t, s, readOnlyUser.Name, readOnlyUser.Token)
	tests := []struct {
		name     string
		method   string
		path     string
		want     int
		wantBody string
	}{
		{"cancel is not cancellable", "POST", "/queue/cancelItem?id=1", 422, "Item for id (1) is not cancellable"},
		{"delete node", "POST", "/computer/agent-1/doDelete", 403, "viewer is missing the Agent/Delete permission"},
		{"agent jnlp", "GET", "/computer/agent-1/jenkins-agent.jnlp", 403, "viewer is missing the Agent/Connect permission"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := viewer.do(tt.method, tt.path, url.Values{})
			if r.status != tt.want || !strings.Contains(r.body, tt.wantBody) {
				t.Fatalf("got %d %q, want %d containing %q", r.status, r.body, tt.want, tt.wantBody)
			}
		})
	}
	if n := len(s.QueueItems()); n != 1 {
		t.Errorf("queue has %d items after denied cancel, want 1", n)
	}
	if _, ok := s.Node("agent-1"); !ok {
		t.Errorf("node deleted by a read-only user")
	}
}
