package webhook

import (
	"bytes"
	"encoding/json"
	"github.com/gin-gonic/gin"
	"net/http"
	"strings"
	"testing"
)

// edit decodes a fixture, lets change alter it, and encodes it again.
func edit(t *testing.T, name string, change func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(fixture(t, name), &m); err != nil {
		t.Fatal(err)
	}
	change(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func obj(m map[string]any, path ...string) map[string]any {
	for _, k := range path {
		m = m[k].(map[string]any)
	}
	return m
}

// Under a valid signature, values that would reach Jenkins as build
// parameters (and the Jenkinsfile's git) are checked before the event is
// stored: a commit id, a ref git accepts, a clone URL on the provider's
// own host for the repository the event names. Anything else is a 400
// that says what is wrong and what would be right.
func TestHostileValuesAreRefusedBeforeTheyAreStored(t *testing.T) {
	ghPush := func(change func(m map[string]any)) *http.Request {
		return githubReq("push", "h-1", ghSecret, edit(t, "github_push.json", change))
	}
	glPush := func(change func(m map[string]any)) *http.Request {
		return gitlabReq("Push Hook", "h-2", glToken, edit(t, "gitlab_push.json", change))
	}
	tests := []struct {
		name string
		req  *http.Request
		want []string // in the 400's error
	}{
		{"sha of 40 non-hex characters", ghPush(func(m map[string]any) { m["after"] = strings.Repeat("z", 40) }),
			[]string{"sha", strings.Repeat("z", 40), "40 or 64 hexadecimal digits"}},
		{"sha of 10,000 characters", ghPush(func(m map[string]any) { m["after"] = strings.Repeat("a", 10000) }),
			[]string{"sha", "10000 bytes", "40 or 64 hexadecimal digits"}},
		{"all-zero sha of a tag's commit", ghPush(func(m map[string]any) {
			m["ref"] = "refs/tags/v1"
			obj(m, "head_commit")["id"] = strings.Repeat("0", 40)
		}), []string{"names no commit"}},
		{"10 KB ref", ghPush(func(m map[string]any) { m["ref"] = "refs/heads/" + strings.Repeat("b", 10<<10) }),
			[]string{`ref "refs/heads/bbb`, "…(truncated)", "10251 bytes", "at most 1024"}},
		{"ref with a shell command", ghPush(func(m map[string]any) { m["ref"] = "refs/heads/x;rm -rf /" }),
			[]string{`"refs/heads/x;rm -rf /"`, "space", "git check-ref-format"}},
		{"ref with ..", glPush(func(m map[string]any) { m["ref"] = "refs/heads/a/../../b" }), []string{`".."`}},
		{"clone URL file:///etc/passwd", ghPush(func(m map[string]any) { obj(m, "repository")["clone_url"] = "file:///etc/passwd" }),
			[]string{`"file:///etc/passwd"`, "https://github.com/acme/app.git"}},
		{"clone URL ext::", ghPush(func(m map[string]any) { obj(m, "repository")["clone_url"] = "ext::sh -c touch% /tmp/pwned" }),
			[]string{"ext::", "remote helper", "https://github.com/acme/app.git"}},
		{"clone URL on another host", ghPush(func(m map[string]any) { obj(m, "repository")["clone_url"] = "https://evil.example/acme/app.git" }),
			[]string{`host "evil.example" is not github.com, the Git host of github.apiURL`}},
		{"clone URL on another host and port", ghPush(func(m map[string]any) { obj(m, "repository")["clone_url"] = "https://evil.example:8443/acme/app.git" }),
			[]string{`host "evil.example" is not github.com`}},
		{"clone URL for another repository", ghPush(func(m map[string]any) { obj(m, "repository")["clone_url"] = "https://github.com/mallory/app.git" }),
			[]string{"mallory/app", "acme/app"}},
		{"gitlab clone URL on another host", glPush(func(m map[string]any) {
			obj(m, "project")["git_http_url"] = "https://gitlab.com/platform/infra/terraform.git"
		}), []string{`host "gitlab.com" is not gitlab.example.com, the Git host of gitlab.baseURL`, "https://gitlab.example.com/platform/infra/terraform.git"}},
		{"gitlab clone URL for another project", glPush(func(m map[string]any) {
			obj(m, "project")["git_http_url"] = "https://gitlab.example.com/platform/infra/other.git"
		}), []string{"platform/infra/other", "platform/infra/terraform"}},
		{"gitlab checkout_sha not hex", glPush(func(m map[string]any) { m["checkout_sha"] = "HEAD~1" }), []string{`"HEAD~1"`}},
		{"gitlab merge request from an unnamed project", gitlabReq("Merge Request Hook", "h-3", glToken,
			edit(t, "gitlab_merge_request_open.json", func(m map[string]any) {
				obj(m, "object_attributes", "source")["git_http_url"] = "https://gitlab.example.com/mallory/terraform.git"
			})), []string{"mallory/terraform"}},
		{"pull request into a bad base branch", githubReq("pull_request", "h-4", ghSecret,
			edit(t, "github_pull_request_opened.json", func(m map[string]any) { obj(m, "pull_request", "base")["ref"] = "main\x00" })),
			[]string{"base branch"}},
		{"pull request head sha", githubReq("pull_request", "h-5", ghSecret,
			edit(t, "github_pull_request_opened.json", func(m map[string]any) { obj(m, "pull_request", "head")["sha"] = "-oProxyCommand=x" })),
			[]string{"-oProxyCommand=x"}},
		{"repository name with a space", ghPush(func(m map[string]any) {
			obj(m, "repository")["full_name"] = "acme/a b"
			obj(m, "repository")["clone_url"] = "https://github.com/acme/a b.git"
		}), []string{`"acme/a b"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := &fakeStore{}
			h, o := newObservedServer(t, st, nil)
			code, a := do(h, tt.req)
			if code != 400 {
				t.Fatalf("code = %d %+v, want 400", code, a)
			}
			for _, w := range tt.want {
				if !strings.Contains(a.Error, w) {
					t.Errorf("error %q does not say %q", a.Error, w)
				}
			}
			if len(a.Error) > 1024 {
				t.Errorf("error is %d bytes", len(a.Error))
			}
			if n := len(st.stored()); n != 0 {
				t.Errorf("stored %d events", n)
			}
			lines := o.lines()
			if len(lines) != 1 || lines[0]["delivery"] == "" || lines[0]["delivery"] == nil || lines[0]["level"] != "WARN" {
				t.Errorf("log lines = %v, want one warning naming the delivery", lines)
			}
		})
	}
}

// Valid variants must still be accepted, and deletions and other events
// without a buildable commit keep being answered 200 ignored.
func TestValidValuesAreAcceptedAsBefore(t *testing.T) {
	ghPush := func(change func(m map[string]any)) *http.Request {
		return githubReq("push", "ok-1", ghSecret, edit(t, "github_push.json", change))
	}
	tests := []struct {
		name       string
		req        *http.Request
		wantCode   int
		wantSHA    string
		wantStatus string
	}{
		{"upper-case sha is lower-cased", ghPush(func(m map[string]any) { m["after"] = strings.Repeat("AbC", 13) + "D" }), 202, strings.Repeat("abc", 13) + "d", "accepted"},
		{"sha-256 commit", ghPush(func(m map[string]any) { m["after"] = strings.Repeat("4f", 32) }), 202, strings.Repeat("4f", 32), "accepted"},
		{"ssh clone URL", ghPush(func(m map[string]any) { obj(m, "repository")["clone_url"] = "ssh://git@github.com/acme/app.git" }), 202, strings.Repeat("a", 40), "accepted"},
		{"scp-like clone URL", ghPush(func(m map[string]any) { obj(m, "repository")["clone_url"] = "git@github.com:acme/app.git" }), 202, strings.Repeat("a", 40), "accepted"},
		{"clone URL without .git, other case", ghPush(func(m map[string]any) { obj(m, "repository")["clone_url"] = "https://GitHub.com/Acme/App" }), 202, strings.Repeat("a", 40), "accepted"},
		{"no clone URL", ghPush(func(m map[string]any) { delete(obj(m, "repository"), "clone_url") }), 202, strings.Repeat("a", 40), "accepted"},
		{"branch with unusual but valid characters", ghPush(func(m map[string]any) { m["ref"] = "refs/heads/feature/ü-1,2+3@x;$y" }), 202, strings.Repeat("a", 40), "accepted"},
		{"deletion of a hostile ref", ghPush(func(m map[string]any) {
			m["ref"] = "refs/heads/" + strings.Repeat("x", 10<<10)
			m["after"] = strings.Repeat("0", 40)
			m["deleted"] = true
		}), 200, "", "ignored"},
		{"deletion in a sha-256 repository", gitlabReq("Push Hook", "ok-2", glToken, edit(t, "gitlab_push.json", func(m map[string]any) {
			m["after"] = strings.Repeat("0", 64)
			m["checkout_sha"] = nil
		})), 200, "", "ignored"},
		{"fork pull request", githubReq("pull_request", "ok-3", ghSecret, fixture(t, "github_pull_request_opened.json")), 202, strings.Repeat("c", 40), "accepted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := &fakeStore{}
			h, _ := newObservedServer(t, st, nil)
			code, a := do(h, tt.req)
			if code != tt.wantCode || a.Status != tt.wantStatus {
				t.Fatalf("got %d %+v, want %d %s", code, a, tt.wantCode, tt.wantStatus)
			}
			if len(a.Reason) > 512 {
				t.Errorf("reason is %d bytes", len(a.Reason))
			}
			if evs := st.stored(); tt.wantCode == 202 && (len(evs) != 1 || evs[0].SHA != tt.wantSHA) {
				t.Errorf("stored %+v, want sha %s", evs, tt.wantSHA)
			}
		})
	}
}

// A key that appears twice: the last one wins, as in encoding/json. The
// signature covers the whole body, so this is the sender's choice either
// way; pinned so a change of decoder cannot change it silently.
func TestRepeatedKeysLastOneWins(t *testing.T) {
	push := fixture(t, "github_push.json")
	first := append([]byte(`{"after":"`+strings.Repeat("b", 40)+`",`), push[1:]...)
	end := bytes.LastIndexByte(push, '}')
	last := append(append([]byte(nil), push[:end]...), []byte(`,"after":"`+strings.Repeat("b", 40)+`"}`)...)
	caseVariant := append(append([]byte(nil), push[:end]...), []byte(`,"AFTER":"`+strings.Repeat("b", 40)+`"}`)...)
	for name, tt := range map[string]struct {
		body []byte
		want string
	}{
		"repeated before the fixture's": {first, strings.Repeat("a", 40)},
		"repeated after the fixture's":  {last, strings.Repeat("b", 40)},
		"repeated in another case":      {caseVariant, strings.Repeat("b", 40)},
	} {
		t.Run(name, func(t *testing.T) {
			st := &fakeStore{}
			code, a := do(newServer(t, st, 0), githubReq("push", "dupkey", ghSecret, tt.body))
			if code != 202 {
				t.Fatalf("got %d %+v", code, a)
			}
			if evs := st.stored(); len(evs) != 1 || evs[0].SHA != tt.want {
				t.Fatalf("stored %+v, want sha %s", evs, tt.want)
			}
		})
	}
}

func TestRefNames(t *testing.T) {
	valid := []string{
		"refs/heads/main", "refs/tags/v1.2.0", "refs/pull/7/head", "refs/merge-requests/12/head",
		"refs/heads/feature/ü-1", "refs/heads/a;b$c`d", "refs/heads/@", "refs/heads/a@b", "refs/heads/a.b",
		"refs/heads/" + strings.Repeat("x", maxRefBytes-len("refs/heads/")),
	}
	for _, ref := range valid {
		if err := checkRef("ref", ref); err != nil {
			t.Errorf("checkRef(%q) = %v, want nil", ref, err)
		}
	}
	invalid := map[string]string{
		"":                        "empty",
		"@":                       `"@"`,
		"refs/heads/a..b":         `".."`,
		"refs/heads/a b":          "space",
		"refs/heads/a\tb":         "control character",
		"refs/heads/a\x7fb":       "control character",
		"refs/heads/a~1":          `'~'`,
		"refs/heads/a^":           `'^'`,
		"refs/heads/a:b":          `':'`,
		"refs/heads/a?":           `'?'`,
		"refs/heads/a*":           `'*'`,
		"refs/heads/a[0]":         `'['`,
		`refs/heads/a\b`:          `'\\'`,
		"refs/heads/a@{1}":        `"@{"`,
		"/refs/heads/a":           `begins or ends with "/"`,
		"refs/heads/a/":           `begins or ends with "/"`,
		"refs/heads//a":           `"//"`,
		"refs/heads/a.":           `ends with "."`,
		"refs/heads/.hidden":      `".hidden" begins with "."`,
		"refs/heads/a.lock":       `"a.lock" ends with ".lock"`,
		"refs/heads/a.lock/b":     `".lock"`,
		"refs/heads/x;rm -rf /":   "space",
		"refs/heads/" + "y\u2028": "", // U+2028 is not ASCII: git allows it
		"refs/heads/" + strings.Repeat("x", maxRefBytes): "at most 1024",
	}
	for ref, want := range invalid {
		err := checkRef("ref", ref)
		if want == "" {
			if err != nil {
				t.Errorf("checkRef(%q) = %v, want nil", ref, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("checkRef(%.40q) = %v, want an error saying %s", ref, err, want)
		}
	}
}

func TestCommitIDs(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{strings.Repeat("a", 40), strings.Repeat("a", 40), ""},
		{strings.Repeat("A", 64), strings.Repeat("a", 64), ""},
		{strings.Repeat("a", 39), "", "39 bytes"},
		{strings.Repeat("a", 41), "", "41 bytes"},
		{strings.Repeat("a", 63), "", "63 bytes"},
		{strings.Repeat("g", 40), "", "hexadecimal"},
		{"", "", "0 bytes"},
		{" " + strings.Repeat("a", 39), "", "hexadecimal"},
	}
	for _, tt := range tests {
		got, err := checkSHA("sha", tt.in)
		if tt.err == "" && (err != nil || got != tt.want) {
			t.Errorf("checkSHA(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
		if tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("checkSHA(%q) = %v, want an error saying %s", tt.in, err, tt.err)
		}
	}
}

func TestRepositoryPaths(t *testing.T) {
	for _, repo := range []string{"acme/app", "acme/.github", "platform/infra/terraform", "a-b/c_d.e"} {
		if err := checkRepo("repository", repo); err != nil {
			t.Errorf("checkRepo(%q) = %v", repo, err)
		}
	}
	for _, repo := range []string{"", "app", "acme/", "/app", "acme//app", "acme/../app", "acme/./app",
		"acme/a b", "acme/a;b", "acme/a\nb", "acme/ä", strings.Repeat("a/", 600) + "b"} {
		if err := checkRepo("repository", repo); err == nil {
			t.Errorf("checkRepo(%.40q) accepted", repo)
		}
	}
}

func TestOrigins(t *testing.T) {
	tests := []struct {
		name     string
		make     func() (origin, error)
		wantHost string
		wantURL  string // the example clone URL of acme/app
	}{
		{"github.com", func() (origin, error) { return gitHubOrigin("") }, "github.com", "https://github.com/acme/app.git"},
		{"api.github.com", func() (origin, error) { return gitHubOrigin("https://api.github.com/") }, "github.com", "https://github.com/acme/app.git"},
		{"GitHub Enterprise Server", func() (origin, error) { return gitHubOrigin("https://GHE.example.com/api/v3/") }, "ghe.example.com", "https://ghe.example.com/acme/app.git"},
		{"GHE.com", func() (origin, error) { return gitHubOrigin("https://api.acme.ghe.com") }, "acme.ghe.com", "https://acme.ghe.com/acme/app.git"},
		{"GHES on a host named api.*", func() (origin, error) { return gitHubOrigin("https://api.corp.example/api/v3") }, "api.corp.example", "https://api.corp.example/acme/app.git"},
		{"gitlab.com", func() (origin, error) { return gitLabOrigin("") }, "gitlab.com", "https://gitlab.com/acme/app.git"},
		{"GitLab on plain http with a port and a relative root", func() (origin, error) { return gitLabOrigin("http://git.lan:8080/gitlab/") },
			"git.lan", "http://git.lan:8080/gitlab/acme/app.git"},
	}
	for _, tt := range tests {
		o, err := tt.make()
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if o.host != tt.wantHost || o.cloneURL("acme/app") != tt.wantURL {
			t.Errorf("%s: host %q, clone URL %q; want %q, %q", tt.name, o.host, o.cloneURL("acme/app"), tt.wantHost, tt.wantURL)
		}
	}
	for _, bad := range []string{"ftp://x", "://", "https://"} {
		if _, err := gitLabOrigin(bad); err == nil {
			t.Errorf("gitLabOrigin(%q) accepted", bad)
		}
	}
}

func TestCloneURLs(t *testing.T) {
	gh, _ := gitHubOrigin("")
	lan, _ := gitLabOrigin("http://git.lan:8080/gitlab")
	tests := []struct {
		o    origin
		url  string
		repo string
		want string // "" accepted, else in the error
	}{
		{gh, "https://github.com/acme/app.git", "acme/app", ""},
		{gh, "https://github.com/acme/app", "acme/app", ""},
		{gh, "https://github.com:443/acme/app.git", "acme/app", ""},
		{gh, "ssh://git@github.com/acme/app.git", "acme/app", ""},
		{gh, "ssh://git@github.com:22/acme/app.git", "acme/app", ""},
		{gh, "git@github.com:acme/app.git", "acme/app", ""},
		{gh, "github.com:acme/app.git", "acme/app", ""},
		{gh, "http://github.com/acme/app.git", "acme/app", "plain http"},
		{gh, "https://github.com:8443/acme/app.git", "acme/app", "port 8443"},
		{gh, "https://user:token@github.com/acme/app.git", "acme/app", "credentials"},
		{gh, "ssh://git:pw@github.com/acme/app.git", "acme/app", "credentials"},
		{gh, "https://github.com/acme/app.git?x=1", "acme/app", "query"},
		{gh, "https://github.com/acme/app.git#frag", "acme/app", "fragment"},
		{gh, "https://github.com/acme/%61pp.git", "acme/app", "percent-encoded"},
		{gh, "https://github.com/acme/app/../../mallory/app.git", "acme/app", "names repository"},
		{gh, "https://github.com.evil.example/acme/app.git", "acme/app", "host"},
		{gh, "https://evil.example#@github.com/acme/app.git", "acme/app", "fragment"},
		{gh, "https://evil.example\\@github.com/acme/app.git", "acme/app", "refused"},
		{gh, "file:///etc/passwd", "acme/app", `scheme "file"`},
		{gh, "git://github.com/acme/app.git", "acme/app", `scheme "git"`},
		{gh, "ext::sh -c touch% /tmp/pwned", "acme/app", "remote helper"},
		{gh, "fd::3", "acme/app", "remote helper"},
		{gh, "/srv/git/acme/app.git", "acme/app", "local path"},
		{gh, "./acme:app", "acme/app", "local path"},
		{gh, "-oProxyCommand=x@github.com:acme/app.git", "acme/app", "user name"},
		{gh, "git@github.com:-oProxyCommand=x", "acme/app", "names repository"},
		{gh, "git@github.com:acme/other.git", "acme/app", `"acme/other"`},
		{gh, "https://github.com/acme/app.git x", "acme/app", "space"},
		{gh, strings.Repeat("h", maxURLBytes+1), "acme/app", "at most 2048"},
		{lan, "http://git.lan:8080/gitlab/g/p.git", "g/p", ""},
		{lan, "https://git.lan:8080/gitlab/g/p.git", "g/p", ""},
		{lan, "http://git.lan/gitlab/g/p.git", "g/p", "port 80"},
		{lan, "http://git.lan:8080/g/p.git", "g/p", "not under /gitlab/"},
		{lan, "git@git.lan:g/p.git", "g/p", ""},
	}
	for _, tt := range tests {
		err := tt.o.checkCloneURL(tt.url, tt.repo)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%.60q: %v, want accepted", tt.url, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%.60q: %v, want an error saying %s", tt.url, err, tt.want)
		}
	}
}

// A GitLab reached by an internal URL, whose webhooks carry its external
// address: gitlab.gitURL names the host clone URLs must point at.
func TestGitURLOverridesTheAPIHost(t *testing.T) {
	st := &fakeStore{}
	r, err := New(Config{Store: st, Matcher: testConfig(t), GitLabTokens: []string{glToken},
		GitLabURL: "http://gitlab.internal:8080", GitLabGitURL: "https://gitlab.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	gin.SetMode(gin.TestMode)
	e := gin.New()
	r.Register(e)
	if code, a := do(e, gitlabReq("Push Hook", "g-1", glToken, fixture(t, "gitlab_push.json"))); code != 202 {
		t.Fatalf("push with the external clone URL: %d %+v, want 202", code, a)
	}
	internal := edit(t, "gitlab_push.json", func(m map[string]any) {
		obj(m, "project")["git_http_url"] = "https://gitlab.internal/platform/infra/terraform.git"
	})
	code, a := do(e, gitlabReq("Push Hook", "g-2", glToken, internal))
	if code != 400 || !strings.Contains(a.Error, "gitlab.gitURL") {
		t.Fatalf("push with the internal clone URL: %d %q, want 400 naming gitlab.gitURL", code, a.Error)
	}
	if _, err := New(Config{Store: st, Matcher: testConfig(t), GitHubGitURL: "ftp://x"}); err == nil {
		t.Error("New accepted github.gitURL ftp://x")
	}
}

// A token pasted into a clone URL is refused without being repeated.
func TestCloneURLCredentialsAreNotEchoed(t *testing.T) {
	gh, _ := gitHubOrigin("")
	for _, raw := range []string{"https://ghp_secret123@github.com/acme/app.git", "https://x:ghp_secret123@github.com/acme/app.git"} {
		err := gh.checkCloneURL(raw, "acme/app")
		if err == nil || strings.Contains(err.Error(), "ghp_secret123") {
			t.Errorf("checkCloneURL(%q) = %v, want a refusal without the token", raw, err)
		}
	}
}
