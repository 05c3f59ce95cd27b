package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/event"
)

const minimal = `
jenkins:
  url: http://jenkins.local/
pipelines:
  - name: app
    repo: acme/app
    job: app
`

func TestExampleConfigLoadsAndValidates(t *testing.T) {
	data, err := os.ReadFile("../../examples/ferry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(data)
	if err != nil {
		t.Fatalf("parse example: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("example does not validate: %v", err)
	}
	if got := len(c.Pipelines); got != 2 {
		t.Fatalf("pipelines = %d, want 2", got)
	}
	if c.BackendName() != "redis" || c.Store.Redis.DedupTTL.Duration != 72*time.Hour {
		t.Errorf("store = %+v", c.Store)
	}
	if c.Pipelines[1].Events[0] != KindPush {
		t.Errorf("events = %v", c.Pipelines[1].Events)
	}
}

// Every option of the schema appears in the example, so the example stays
// the complete reference it claims to be.
func TestExampleDocumentsEveryOption(t *testing.T) {
	data, err := os.ReadFile("../../examples/ferry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range jsonKeys(Config{}) {
		if !strings.Contains(string(data), key+":") {
			t.Errorf("examples/ferry.yaml does not mention %q", key)
		}
	}
	for _, env := range EnvVars() {
		if !strings.Contains(string(data), env) && !strings.Contains(string(data), strings.TrimSuffix(env, "S")) {
			t.Errorf("examples/ferry.yaml does not mention %s", env)
		}
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Server.MaxBodyBytes != 25<<20 {
		t.Errorf("maxBodyBytes = %d", c.Server.MaxBodyBytes)
	}
	if c.BackendName() != "memory" {
		t.Errorf("backend = %s, want memory when no redis address", c.BackendName())
	}
	if got := c.Pipelines[0].Events; len(got) != 2 || got[0] != KindPush || got[1] != KindTag {
		t.Errorf("default events = %v", got)
	}
}

func TestValidationErrorsNameFieldAndFix(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown field", "jenkins:\n  ulr: x\n", []string{`unknown field "ulr"`, "2 |   ulr: x"}},
		{"bad duration", "jenkins:\n  timeout: ten\n", []string{"write it like 30s"}},
		{"no jenkins url", "server:\n  listen: ':1'\n", []string{"jenkins.url: must be set"}},
		{"bad backend", minimal + "store:\n  backend: mongo\n", []string{`store.backend: "mongo" is not a backend`}},
		{"redis without addr", minimal + "store:\n  backend: redis\n", []string{"store.redis.addr: must be set"}},
		{"short dedup", minimal + "store:\n  redis:\n    addr: r:1\n    dedupTTL: 1h\n", []string{"store.redis.dedupTTL: must be at least 72h"}},
		{"token without user", minimal + "  \n", nil},
		{"bad url", "jenkins:\n  url: jenkins.local\n", []string{"jenkins.url: \"jenkins.local\" must start with http"}},
		{"pipeline problems", `jenkins: {url: "http://j/"}
pipelines:
  - name: App
    repo: app
    job: /x
    events: [push, merge]
    branches: ["[a"]
    parameters: {FERRY_GIT_SHA: x, "bad-name": y, OK: "{{nope}}"}
  - name: dup
    repo: a/b
    job: j
  - name: dup
    repo: a/c
    job: j
`, []string{
			`pipelines[0].name: "App" must be lower-case`,
			`pipelines[0].repo: "app" must be the repository's full path`,
			`pipelines[0].job: "/x" must be a job path`,
			`pipelines[0].events: "merge" is not an event kind`,
			`pipelines[0].branches: "[a"`,
			`pipelines[0].parameters: "FERRY_GIT_SHA" is set by ferry itself`,
			`pipelines[0].parameters: "bad-name" is not a Jenkins parameter name`,
			`pipelines[0].parameters.OK: unknown placeholder {{nope}}`,
			`pipelines[2].name: "dup" is used by another pipeline`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml))
			if err == nil {
				err = c.Validate()
			}
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestPrecedenceFileEnvFlags(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "ferry.yaml")
	writeFile(t, file, minimal+"server:\n  listen: ':1000'\ntelemetry:\n  logLevel: warn\n  logFormat: text\nstore:\n  redis:\n    addr: file:6379\n")
	env := map[string]string{
		"FERRY_LISTEN":     ":2000",
		"FERRY_REDIS_ADDR": "env:6379",
		"FERRY_LOG_LEVEL":  "debug",
	}
	c, err := Load(Sources{
		File:   file,
		Lookup: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		Flags:  Flags{"listen": ":3000"},
	})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ name, got, want string }{
		{"listen (flag beats env and file)", c.Server.Listen, ":3000"},
		{"redis addr (env beats file)", c.Store.Redis.Addr, "env:6379"},
		{"log level (env beats file)", c.Telemetry.LogLevel, "debug"},
		{"log format (file beats default)", c.Telemetry.LogFormat, "text"},
		{"jenkins url (file)", c.Jenkins.URL, "http://jenkins.local/"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %q, want %q", ch.name, ch.got, ch.want)
		}
	}
}

func TestSecretsFromFilesAndEnv(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	secrets := filepath.Join(dir, "secrets")
	writeFile(t, tok, "s3cr3t-token\n")
	writeFile(t, secrets, "# rotate: new first\nnew-secret\n\nold-secret\n")
	file := filepath.Join(dir, "ferry.yaml")
	writeFile(t, file, "pipelines: []\njenkins:\n  url: http://j/\n  user: ferry\n  apiTokenFile: "+tok+"\ngithub:\n  webhookSecretsFile: "+secrets+"\n")
	c, err := Load(Sources{File: file, Lookup: func(k string) (string, bool) {
		if k == "FERRY_GITLAB_WEBHOOK_TOKENS" {
			return "a, b", true
		}
		return "", false
	}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Jenkins.APIToken != "s3cr3t-token" {
		t.Errorf("api token = %q", c.Jenkins.APIToken)
	}
	if got := strings.Join(c.GitHub.WebhookSecrets, ","); got != "new-secret,old-secret" {
		t.Errorf("github secrets = %q", got)
	}
	if got := strings.Join(c.GitLab.WebhookTokens, ","); got != "a,b" {
		t.Errorf("gitlab tokens = %q", got)
	}
}

func TestSecretErrorsDoNotShowSecrets(t *testing.T) {
	_, err := Load(Sources{Lookup: func(k string) (string, bool) {
		switch k {
		case "FERRY_JENKINS_URL":
			return "http://user:hunter2@jenkins/", true
		case "FERRY_REDIS_DB":
			return "hunter3", true
		}
		return "", false
	}})
	if err == nil {
		t.Fatal("want error for FERRY_REDIS_DB")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error shows a password: %v", err)
	}
	_, err = Load(Sources{Lookup: func(k string) (string, bool) {
		if k == "FERRY_JENKINS_URL" {
			return "ftp://user:hunter2@jenkins/", true
		}
		return "", false
	}})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error = %v; want one without the password", err)
	}
}

func TestMissingSecretFile(t *testing.T) {
	_, err := Load(Sources{Lookup: func(k string) (string, bool) {
		switch k {
		case "FERRY_JENKINS_URL":
			return "http://j/", true
		}
		return "", false
	}, File: writeTemp(t, minimal+"github:\n  tokenFile: /nonexistent/token\n")})
	if err == nil || !strings.Contains(err.Error(), "github.tokenFile") {
		t.Fatalf("error = %v, want one naming github.tokenFile", err)
	}
}

func TestMatch(t *testing.T) {
	c, err := Parse([]byte(`
jenkins: {url: "http://j/"}
pipelines:
  - name: app
    provider: github
    repo: acme/app
    events: [push, tag, pull_request]
    branches: [main, "release/*"]
    tags: ["v*"]
    paths: ["src/**"]
    ignorePaths: ["**/*.md"]
    job: app
  - name: all
    repo: "acme/*"
    job: all
`))
	if err != nil {
		t.Fatal(err)
	}
	push := func(repo, ref string, paths []string) event.Event {
		return event.Event{Provider: event.GitHub, Kind: event.Push, Repo: repo, Ref: ref, ChangedPaths: paths}
	}
	tests := []struct {
		name   string
		ev     event.Event
		want   []string
		reason string
	}{
		{"main push with src change", push("acme/app", "refs/heads/main", []string{"src/a/b.go"}), []string{"app", "all"}, ""},
		{"release branch glob", push("acme/app", "refs/heads/release/1.2", nil), []string{"app", "all"}, ""},
		{"other branch", push("acme/app", "refs/heads/feature", nil), []string{"all"}, ""},
		{"docs only", push("acme/app", "refs/heads/main", []string{"src/README.md"}), []string{"all"}, ""},
		{"outside paths", push("acme/app", "refs/heads/main", []string{"ci/x"}), []string{"all"}, ""},
		{"tag", event.Event{Provider: event.GitHub, Kind: event.Tag, Repo: "acme/app", Ref: "refs/tags/v1.0"}, []string{"app", "all"}, ""},
		{"tag not matching", event.Event{Provider: event.GitHub, Kind: event.Tag, Repo: "acme/app", Ref: "refs/tags/nightly"}, []string{"all"}, ""},
		{"pr into main", event.Event{Provider: event.GitHub, Kind: event.PullRequest, Repo: "acme/app", Ref: "refs/pull/1/head", BaseRef: "main"}, []string{"app"}, ""},
		{"gitlab same repo", event.Event{Provider: event.GitLab, Kind: event.Push, Repo: "acme/app", Ref: "refs/heads/main"}, []string{"all"}, ""},
		{"unknown repo", push("other/x", "refs/heads/main", nil), nil, "no pipeline is configured for github repository other/x"},
		{"pr into other", event.Event{Provider: event.GitHub, Kind: event.PullRequest, Repo: "acme/app", BaseRef: "dev"}, nil, "pipeline all does not build pull_request events"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := c.Match(tt.ev)
			var names []string
			for _, p := range got {
				names = append(names, p.Name)
			}
			if strings.Join(names, ",") != strings.Join(tt.want, ",") {
				t.Errorf("matched %v, want %v", names, tt.want)
			}
			if reason != tt.reason {
				t.Errorf("reason %q, want %q", reason, tt.reason)
			}
		})
	}
}

func TestMatchPattern(t *testing.T) {
	tests := []struct {
		pat, name string
		want      bool
	}{
		{"src/**", "src/a/b.go", true},
		{"src/**", "src", true},
		{"**/*.md", "README.md", true},
		{"**/*.md", "a/b/c.md", true},
		{"**/*.md", "a/b/c.go", false},
		{"release/*", "release/1.0", true},
		{"release/*", "release/1.0/x", false},
		{"main", "main", true},
		{"a/**/z", "a/z", true},
		{"a/**/z", "a/b/c/z", true},
	}
	for _, tt := range tests {
		if got := MatchPattern(tt.pat, tt.name); got != tt.want {
			t.Errorf("MatchPattern(%q, %q) = %v, want %v", tt.pat, tt.name, got, tt.want)
		}
	}
}

func TestParams(t *testing.T) {
	p := Pipeline{Name: "app", Parameters: map[string]string{"TAG": "{{branch}}-{{sha}}", "PR": "pr-{{number}}"}}
	ev := event.Event{ID: "gh-1", SHA: "abc", Ref: "refs/heads/main", RepoURL: "https://x/y.git", Number: 7}
	got := p.Params(ev, "00-trace-span-01")
	want := map[string]string{
		"TAG": "main-abc", "PR": "pr-7", ParamSHA: "abc", ParamRef: "refs/heads/main",
		ParamRepoURL: "https://x/y.git", ParamEventID: "gh-1", ParamPipeline: "app",
		ParamTriggerID: "gh-1/app", ParamTraceParent: "00-trace-span-01",
	}
	if len(got) != len(want) {
		t.Errorf("params = %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func writeFile(t *testing.T, name, data string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeTemp(t *testing.T, data string) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "ferry.yaml")
	writeFile(t, name, data)
	return name
}

// An agent's env may read a Secret: the YAML decoder alone refused
// secretKeyRef's name, which Kubernetes embeds inline.
func TestParseReadsKubernetesTypesLikeTheAPIServer(t *testing.T) {
	c, err := Parse([]byte(`
agents:
  templates:
    - name: a
      labels: [a]
      env:
        - name: TOKEN
          valueFrom:
            secretKeyRef: {name: nexus, key: password}
        - name: MODE
          valueFrom:
            configMapKeyRef: {name: settings, key: mode, optional: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	env := c.Agents.Templates[0].Env
	if got := env[0].ValueFrom.SecretKeyRef; got == nil || got.Name != "nexus" || got.Key != "password" {
		t.Fatalf("secretKeyRef = %+v", got)
	}
	if got := env[1].ValueFrom.ConfigMapKeyRef; got == nil || got.Name != "settings" || !*got.Optional {
		t.Fatalf("configMapKeyRef = %+v", got)
	}
	// A typo is still refused, with the line it is on.
	_, err = Parse([]byte("agents:\n  templates:\n    - name: a\n      envv: []\n"))
	if err == nil || !strings.Contains(err.Error(), `unknown field "envv"`) || !strings.Contains(err.Error(), "4:") {
		t.Fatalf("Parse of a typo = %v", err)
	}
}
