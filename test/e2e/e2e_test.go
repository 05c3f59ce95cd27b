// Package e2e runs ferry whole — the app as `ferry serve` builds it — against
// a real redis-server, the Jenkins emulator and recording GitHub/GitLab APIs,
// and checks the promises of the webhook → Jenkins path end to end.
package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ferryci/ferry/pkg/app"
	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/test/jenkinsemu"
	"github.com/ferryci/ferry/test/redisserver"
	"github.com/ferryci/ferry/test/scmfake"
)

const (
	ghSecret = "e2e-github-secret"
	glSecret = "e2e-gitlab-token"
	ghSHA    = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	glSHA    = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
)

type world struct {
	t       *testing.T
	redis   *redisserver.Server
	rdb     *redis.Client
	jenkins *jenkinsemu.Server
	github  *scmfake.GitHub
	gitlab  *scmfake.GitLab
	url     string
	cfg     config.Config
	// stop stops the running ferry (start and restart run one).
	stop func()
	// ferry is the running ferry.
	ferry *app.App
}

func (w *world) app() *app.App { return w.ferry }

func ferryParams() []jenkinsemu.Param {
	var out []jenkinsemu.Param
	for _, name := range config.ReservedParams {
		out = append(out, jenkinsemu.Param{Name: name, Type: jenkinsemu.StringParam})
	}
	return append(out, jenkinsemu.Param{Name: "IMAGE_TAG", Type: jenkinsemu.StringParam})
}

// start brings up Redis, Jenkins, the Git APIs and ferry itself.
func start(t *testing.T, tweak func(*config.Config)) *world {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped under -short")
	}
	w := &world{t: t}
	w.redis = redisserver.Run(t, redisserver.Options{})
	w.rdb = redis.NewClient(&redis.Options{Addr: w.redis.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = w.rdb.Close() })
	w.jenkins = jenkinsemu.New(jenkinsemu.Options{BuiltInExecutors: 4})
	t.Cleanup(w.jenkins.Close)
	for _, job := range []string{"acme/app", "platform/terraform"} {
		if err := w.jenkins.AddJob(job, jenkinsemu.JobSpec{Duration: jenkinsemu.Forever, Params: ferryParams()}); err != nil {
			t.Fatal(err)
		}
	}
	w.github = scmfake.NewGitHub(t)
	w.github.AddRepo("acme/app")
	w.gitlab = scmfake.NewGitLab(t)
	w.gitlab.AddProject(15, "platform/infra/terraform")

	cfg, err := config.Parse([]byte(`
pipelines:
  - name: app
    provider: github
    repo: acme/app
    events: [push, tag, pull_request]
    job: acme/app
    parameters: {IMAGE_TAG: "{{sha}}"}
  - name: terraform
    provider: gitlab
    repo: platform/infra/terraform
    job: platform/terraform
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Server.Listen = "127.0.0.1:0"
	cfg.Server.ShutdownTimeout = config.Duration{Duration: 5 * time.Second}
	cfg.Store.Redis.Addr = w.redis.Addr()
	cfg.Jenkins.URL = w.jenkins.URL() + "/"
	cfg.Jenkins.User = jenkinsemu.DefaultUser.Name
	cfg.Jenkins.APIToken = jenkinsemu.DefaultUser.Token
	cfg.Jenkins.Timeout = config.Duration{Duration: 2 * time.Second}
	cfg.GitHub.WebhookSecrets = []string{ghSecret}
	cfg.GitHub.Token = scmfake.GitHubToken
	cfg.GitHub.APIURL = w.github.EnterpriseURL()
	cfg.GitLab.WebhookTokens = []string{glSecret}
	cfg.GitLab.Token = scmfake.GitLabToken
	cfg.GitLab.BaseURL = w.gitlab.BaseURL()
	cfg.Dispatch.ReclaimAfter = config.Duration{Duration: time.Second}
	cfg.Dispatch.RetryInitial = config.Duration{Duration: 20 * time.Millisecond}
	cfg.Dispatch.RetryMax = config.Duration{Duration: 200 * time.Millisecond}
	cfg.Dispatch.StatusInterval = config.Duration{Duration: 50 * time.Millisecond}
	if tweak != nil {
		tweak(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	w.cfg = cfg
	w.run()
	return w
}

// run starts ferry with w.cfg; w.stop stops it (and the test's end does).
func (w *world) run() {
	t := w.t
	logs := io.Writer(io.Discard)
	if os.Getenv("FERRY_E2E_LOGS") != "" {
		logs = os.Stderr
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, app.Options{Config: w.cfg, Version: "e2e", LogOutput: logs})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	w.ferry = a
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	w.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("ferry stopped with: %v", err)
			}
		})
	}
	t.Cleanup(w.stop)
	w.url = "http://" + a.Addr()
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../../pkg/webhook/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// payload reads a fixture with its clone URLs on the fake GitHub and
// GitLab: ferry takes clone URLs only from the configured Git hosts, and
// a delivery from GitHub Enterprise or a self-managed GitLab names its own.
func (w *world) payload(name string) []byte {
	gh := strings.TrimSuffix(w.github.EnterpriseURL(), "/api/v3/")
	return []byte(strings.NewReplacer("https://github.com/", gh+"/",
		"https://gitlab.example.com/", w.gitlab.BaseURL()+"/").Replace(string(fixture(w.t, name))))
}

type reply struct {
	Status string `json:"status"`
	ID     string `json:"id"`
	Reason string `json:"reason"`
	Error  string `json:"error"`
}

func (w *world) post(path string, header map[string]string, body []byte) (int, reply) {
	w.t.Helper()
	req, err := http.NewRequest(http.MethodPost, w.url+path, bytes.NewReader(body))
	if err != nil {
		w.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	var r reply
	_ = json.NewDecoder(resp.Body).Decode(&r)
	return resp.StatusCode, r
}

func sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func (w *world) githubHook(event, delivery string, body []byte) (int, reply) {
	return w.post("/hooks/github", map[string]string{
		"X-GitHub-Event": event, "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": sign(ghSecret, body),
	}, body)
}

func (w *world) gitlabPush(key string, body []byte) (int, reply) {
	return w.post("/hooks/gitlab", map[string]string{
		"X-Gitlab-Event": "Push Hook", "Idempotency-Key": key, "X-Gitlab-Webhook-UUID": "uuid-" + key, "X-Gitlab-Token": glSecret,
	}, body)
}

func (w *world) eventually(what string, cond func() bool) {
	w.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			w.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// streamLen is how many events Redis holds in ferry's queue.
func (w *world) streamLen() int64 {
	n, err := w.rdb.XLen(context.Background(), w.cfg.Store.Redis.Prefix+"events").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		w.t.Fatal(err)
	}
	return n
}

func (w *world) builds(job string) []jenkinsemu.Build { return w.jenkins.Builds(job) }

func TestGitHubPushBuildsOnceAndReportsStatus(t *testing.T) {
	w := start(t, nil)
	code, r := w.githubHook("push", "gh-delivery-1", w.payload("github_push.json"))
	if code != http.StatusAccepted || r.Status != "accepted" {
		t.Fatalf("push answered %d %+v", code, r)
	}
	w.eventually("one build of acme/app", func() bool { return len(w.builds("acme/app")) == 1 })
	b := w.builds("acme/app")[0]
	if b.Params[config.ParamSHA] != ghSHA || b.Params["IMAGE_TAG"] != ghSHA || b.Params[config.ParamRef] != "refs/heads/main" {
		t.Fatalf("build params = %v", b.Params)
	}
	w.github.WaitFor(t, scmfake.HasStates(ghSHA, "ferry/app", "pending"), 20*time.Second)
	if err := w.jenkins.FinishBuild("acme/app", b.Number, jenkinsemu.Success); err != nil {
		t.Fatal(err)
	}
	w.github.WaitFor(t, scmfake.HasStates(ghSHA, "ferry/app", "pending", "success"), 20*time.Second)

	// Redelivery of the same delivery id builds nothing.
	code, r = w.githubHook("push", "gh-delivery-1", w.payload("github_push.json"))
	if code != http.StatusOK || r.Status != "duplicate" {
		t.Fatalf("redelivery answered %d %+v", code, r)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(w.builds("acme/app")); n != 1 {
		t.Fatalf("%d builds after a redelivery, want 1", n)
	}
	if n := len(w.builds("platform/terraform")); n != 0 {
		t.Fatalf("a GitHub push built the GitLab pipeline %d times", n)
	}
}

func TestGitLabPushBuildsOnceAndReportsStatus(t *testing.T) {
	w := start(t, nil)
	body := w.payload("gitlab_push.json")
	if code, r := w.gitlabPush("idem-1", body); code != http.StatusAccepted {
		t.Fatalf("push answered %d %+v", code, r)
	}
	// GitLab's retry: same Idempotency-Key, new webhook UUID.
	if code, r := w.post("/hooks/gitlab", map[string]string{"X-Gitlab-Event": "Push Hook", "Idempotency-Key": "idem-1",
		"X-Gitlab-Webhook-UUID": "another", "X-Gitlab-Token": glSecret}, body); code != http.StatusOK || r.Status != "duplicate" {
		t.Fatalf("retry answered %d %+v", code, r)
	}
	w.eventually("one build of platform/terraform", func() bool { return len(w.builds("platform/terraform")) == 1 })
	b := w.builds("platform/terraform")[0]
	if b.Params[config.ParamSHA] != glSHA {
		t.Fatalf("build params = %v", b.Params)
	}
	w.gitlab.WaitFor(t, scmfake.HasStates(glSHA, "ferry/terraform", "pending"), 20*time.Second)
	if err := w.jenkins.FinishBuild("platform/terraform", b.Number, jenkinsemu.Failure); err != nil {
		t.Fatal(err)
	}
	w.gitlab.WaitFor(t, scmfake.HasStates(glSHA, "ferry/terraform", "pending", "failed"), 20*time.Second)
	if n := len(w.builds("platform/terraform")); n != 1 {
		t.Fatalf("%d builds, want 1", n)
	}
}

func TestRejectedDeliveriesStoreNothing(t *testing.T) {
	w := start(t, func(c *config.Config) { c.Server.MaxBodyBytes = 4096 })
	body := fixture(t, "github_push.json")  // ~9 KB, over the 4 KB cap
	small := fixture(t, "gitlab_push.json") // under the cap: reaches verification
	tests := []struct {
		name   string
		header map[string]string
		body   []byte
		code   int
	}{
		{"bad signature", map[string]string{"X-GitHub-Event": "push", "X-GitHub-Delivery": "bad-1",
			"X-Hub-Signature-256": sign("not-the-secret", small)}, small, http.StatusUnauthorized},
		{"no signature", map[string]string{"X-GitHub-Event": "push", "X-GitHub-Delivery": "bad-2"}, small, http.StatusUnauthorized},
		{"oversized", map[string]string{"X-GitHub-Event": "push", "X-GitHub-Delivery": "big-1",
			"X-Hub-Signature-256": sign(ghSecret, body)}, body, http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		code, r := w.post("/hooks/github", tt.header, tt.body)
		if code != tt.code {
			t.Errorf("%s: answered %d %+v, want %d", tt.name, code, r, tt.code)
		}
	}
	if n := w.streamLen(); n != 0 {
		t.Fatalf("Redis holds %d events after rejected deliveries, want 0", n)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(w.builds("acme/app")); n != 0 {
		t.Fatalf("%d builds from rejected deliveries", n)
	}
}

func TestRedisDownAnswers503AndNothingIsLost(t *testing.T) {
	w := start(t, nil)
	if err := w.redis.Stop(); err != nil {
		t.Fatal(err)
	}
	code, r := w.githubHook("push", "while-down", w.payload("github_push.json"))
	if code != http.StatusServiceUnavailable {
		t.Fatalf("with Redis stopped the receiver answered %d %+v, want 503", code, r)
	}
	resp, err := http.Get(w.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d with Redis down, want 503", resp.StatusCode)
	}
	if err := w.redis.Start(); err != nil {
		t.Fatal(err)
	}
	// The sender redelivers; now it is accepted and built once.
	w.eventually("ferry to accept the redelivery", func() bool {
		code, _ := w.githubHook("push", "while-down", w.payload("github_push.json"))
		return code == http.StatusAccepted || code == http.StatusOK
	})
	w.eventually("one build", func() bool { return len(w.builds("acme/app")) == 1 })
	time.Sleep(300 * time.Millisecond)
	if n := len(w.builds("acme/app")); n != 1 {
		t.Fatalf("%d builds, want 1", n)
	}
}

func TestJenkinsDownThenBackBuildsOnce(t *testing.T) {
	w := start(t, nil)
	w.jenkins.SetDown(jenkinsemu.Refuse)
	if code, r := w.githubHook("push", "jd-1", w.payload("github_push.json")); code != http.StatusAccepted {
		t.Fatalf("answered %d %+v", code, r)
	}
	time.Sleep(500 * time.Millisecond) // several failed attempts
	if n := w.streamLen(); n != 1 {
		t.Fatalf("the event must stay queued while Jenkins is down: stream has %d", n)
	}
	w.jenkins.SetDown(jenkinsemu.Up)
	w.eventually("the build once Jenkins is back", func() bool { return len(w.builds("acme/app")) == 1 })
	w.eventually("the event acknowledged", func() bool { return w.streamLen() == 0 })
	time.Sleep(300 * time.Millisecond)
	if n := len(w.builds("acme/app")); n != 1 {
		t.Fatalf("%d builds, want 1", n)
	}
}

func TestMetricsAndProbes(t *testing.T) {
	w := start(t, nil)
	w.githubHook("push", "m-1", w.payload("github_push.json"))
	w.post("/hooks/github", map[string]string{"X-GitHub-Event": "push", "X-GitHub-Delivery": "m-2"}, []byte("{}"))
	var body []byte
	w.eventually("the trigger to be counted", func() bool {
		resp, err := http.Get(w.url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.Contains(string(body), `ferry_dispatch_triggers_total{outcome="triggered"} 1`)
	})
	for _, want := range []string{
		`ferry_webhook_requests_total{event="push",outcome="accepted",provider="github"} 1`,
		`ferry_webhook_requests_total{event="push",outcome="unauthorized",provider="github"} 1`,
		`ferry_dispatch_latency_seconds_bucket`,
		`ferry_dispatch_triggers_total{outcome="triggered"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(string(body), ghSecret) {
		t.Error("/metrics shows the webhook secret")
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(w.url + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s = %d", p, resp.StatusCode)
		}
	}
}
