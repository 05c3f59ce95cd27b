package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/test/jenkinsemu"
	"github.com/ferryci/ferry/test/testbed"
)

const (
	uiAlice = "ui-e2e-alice-token-0123456789"
	uiBob   = "ui-e2e-bob-token-0123456789"
)

func sha256hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// chromium finds Debian's headless-capable Chromium, or skips saying so.
func chromium(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test: skipped under -short")
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("browser test: no chromium on PATH (apt-get install chromium; test/bed/ci-setup.sh installs it)")
	return ""
}

// browser is one headless Chromium watching what its pages do.
type browser struct {
	t    *testing.T
	ctx  context.Context
	host string
	dir  string

	mu       sync.Mutex
	problems []string
	requests int
}

func newBrowser(t *testing.T, exe, ferryURL string) *browser {
	t.Helper()
	u, _ := url.Parse(ferryURL)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true), chromedp.WindowSize(1280, 900),
		// Keep Chromium's own traffic (updates, safe browsing) out of the count.
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	b := &browser{t: t, host: u.Host, dir: t.ArtifactDir()}
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithListener(b.event))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b.ctx = ctx
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	if _, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("chromium log domain: %v", err)
	}
	return b
}

func (b *browser) event(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			b.problems = append(b.problems, fmt.Sprintf("console.%s: %s", ev.Type, args(ev.Args)))
		}
	case *runtime.EventExceptionThrown:
		b.problems = append(b.problems, "exception: "+ev.ExceptionDetails.Text)
	case *cdplog.EventEntryAdded:
		// CSP violations and failed loads are reported here. The 403 the
		// test provokes (bob's refused approval) is not a fault of a page.
		if ev.Entry.Level == cdplog.EntryLevelError && !strings.Contains(ev.Entry.Text, "status of 403") {
			b.problems = append(b.problems, "log: "+ev.Entry.Text+" "+ev.Entry.URL)
		}
	case *network.EventRequestWillBeSent:
		b.requests++
		r, err := url.Parse(ev.Request.URL)
		if err != nil || (r.Host != b.host && r.Scheme != "data" && r.Scheme != "about") {
			b.problems = append(b.problems, "request leaving the host: "+ev.Request.URL)
		}
	}
}

func args(as []*runtime.RemoteObject) string {
	var out []string
	for _, a := range as {
		out = append(out, strings.Trim(string(a.Value), `"`)+a.Description)
	}
	return strings.Join(out, " ")
}

func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func (b *browser) shot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, name+".png"), png, 0o600); err != nil {
		b.t.Fatal(err)
	}
}

// waitText waits until the element sel shows want, reading the page as it
// is (no navigation).
func (b *browser) waitText(sel, want string) {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var got string
	for time.Now().Before(deadline) {
		got = eval[string](b, fmt.Sprintf(`(document.querySelector(%q) || {innerText: ""}).innerText`, sel))
		if strings.Contains(got, want) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Fatalf("%s never showed %q; last: %q", sel, want, got)
}

func (b *browser) signIn(base, token, next string) {
	b.t.Helper()
	b.do("sign in", chromedp.Navigate(base+"/ui/login?next="+url.QueryEscape(next)),
		chromedp.WaitVisible(chromedp.CSS(`#token`)), chromedp.SendKeys(chromedp.CSS(`#token`), token),
		chromedp.Click(chromedp.CSS(`form.stack button[type=submit]`)), chromedp.WaitVisible(chromedp.CSS(`.who span`)))
}

func (b *browser) colorScheme(scheme string) {
	b.t.Helper()
	if _, err := chromedp.Call(b.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}}); err != nil {
		b.t.Fatal(err)
	}
}

func (b *browser) check() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.requests == 0 {
		b.t.Error("no request was seen: the network listener is not working")
	}
	for _, p := range b.problems {
		b.t.Error(p)
	}
}

// The web UI in headless Chromium against ferry run whole (real Redis,
// the Jenkins emulator, the GitHub fake): nothing but the sign-in for an
// anonymous visitor; a push shows up on the activity page and turns from
// queued to success without a reload; its commit's page is `ferry why`,
// in light and dark. No console error, no request off the host.
func TestWebUIInABrowser(t *testing.T) {
	exe := chromium(t)
	w := start(t, func(c *config.Config) {
		c.UI.SessionKey = strings.Repeat("ab", 32)
		c.UI.Refresh = config.Duration{Duration: 500 * time.Millisecond}
		c.Promotion.Auth.Tokens = []config.PromotionToken{{Name: "alice", SHA256: sha256hex(uiAlice),
			Roles: []config.PromotionRole{{Apps: []string{"*"}, Environments: []string{"*"}, Verbs: []string{"get"}}}}}
	})
	b := newBrowser(t, exe, w.url)

	// Anonymous: the sign-in, nothing else.
	b.do("anonymous activity", chromedp.Navigate(w.url+"/ui/activity"), chromedp.WaitVisible(chromedp.CSS(`#token`)))
	b.shot("login")

	// A push, live: the job takes one build at a time, so the second
	// push's build waits in Jenkins' queue behind the first.
	if err := w.jenkins.UpdateJob("acme/app", func(j *jenkinsemu.JobSpec) { j.DisableConcurrentBuilds = true }); err != nil {
		t.Fatal(err)
	}
	b.signIn(w.url, uiAlice, "/ui/activity")
	eval[bool](b, `window.ferryNoReload = true`)
	if code, r := w.githubHook("push", "ui-delivery-1", w.payload("github_push.json")); code != 202 {
		t.Fatalf("first push answered %d %+v", code, r)
	}
	w.eventually("the first build", func() bool { return len(w.builds("acme/app")) == 1 })
	const second = "5ec0d0000000000000000000000000000000beef"
	if code, r := w.githubHook("push", "ui-delivery-2", []byte(strings.ReplaceAll(string(w.payload("github_push.json")), ghSHA, second))); code != 202 {
		t.Fatalf("second push answered %d %+v", code, r)
	}
	row := `tr:has(a.sha[href*="` + second + `"]) td.builds`
	b.waitText(row, "queue")
	b.waitText(row, "pending")
	b.shot("activity-queued")
	if err := w.jenkins.FinishBuild("acme/app", 1, jenkinsemu.Success); err != nil {
		t.Fatal(err)
	}
	w.eventually("the second build", func() bool { return len(w.builds("acme/app")) == 2 })
	b.waitText(row, "#2")
	if err := w.jenkins.FinishBuild("acme/app", 2, jenkinsemu.Success); err != nil {
		t.Fatal(err)
	}
	b.waitText(row, "success")
	if !eval[bool](b, `window.ferryNoReload === true`) {
		t.Error("the page was reloaded: the status must change in place")
	}
	b.shot("activity")
	b.do("open the commit", chromedp.Click(chromedp.CSS(`table.deliveries a.sha`)), chromedp.WaitVisible(chromedp.CSS(`article.chain`)))
	b.waitText("article.chain", "closed")
	b.shot("why")
	b.colorScheme("dark")
	b.shot("why-dark")
	b.colorScheme("light")

	b.check()
	t.Logf("screenshots in %s", b.dir)
}

// The agents page on the test bed: a push's agent pod shows up with its
// template, ECI spec and state, turns to building when its agent connects,
// and once it is gone its pod- and build-seconds are counted.
func TestWebUIAgentsOnTheBed(t *testing.T) {
	exe := chromium(t)
	env := testbed.Kube(t)
	ns := testbed.Namespace(t)
	const label = "ferry-agent"
	w := start(t, func(c *config.Config) {
		c.UI.Refresh = config.Duration{Duration: 500 * time.Millisecond}
		c.Promotion.Auth.Tokens = []config.PromotionToken{{Name: "alice", SHA256: sha256hex(uiAlice),
			Roles: []config.PromotionRole{{Apps: []string{"*"}, Environments: []string{"*"}, Verbs: []string{"get"}}}}}
		c.Agents.Enabled = true
		c.Agents.Namespace = ns
		c.Agents.Kubeconfig = env.Get(testbed.KeyKubeconfigFerry)
		c.Agents.Resync = config.Duration{Duration: 500 * time.Millisecond}
		c.Agents.LeaderElection.LeaseDuration = config.Duration{Duration: 4 * time.Second}
		c.Agents.LeaderElection.RenewDeadline = config.Duration{Duration: 3 * time.Second}
		c.Agents.LeaderElection.RetryPeriod = config.Duration{Duration: 500 * time.Millisecond}
		c.Agents.Templates = []eci.Template{{Name: "ui-e2e", Labels: []string{label}}}
	})
	if err := w.jenkins.UpdateJob("acme/app", func(s *jenkinsemu.JobSpec) { s.Label = label }); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, exe, w.url)
	b.signIn(w.url, uiAlice, "/ui/agents")
	eval[bool](b, `window.ferryNoReload = true`)
	if code, r := w.githubHook("push", "ui-agent-1", w.payload("github_push.json")); code != http.StatusAccepted {
		t.Fatalf("push answered %d %+v", code, r)
	}
	b.waitText("#agents-now tbody", "ferry-agent-")
	w.eventually("the build queued", func() bool { return len(w.jenkins.QueueItems()) > 0 || len(w.builds("acme/app")) > 0 })
	var agent string
	w.eventually("the agent pod running", func() bool {
		for _, n := range w.jenkins.Nodes() {
			if strings.HasPrefix(n.Name, "ferry-agent-") {
				agent = n.Name
			}
		}
		return agent != "" && strings.Contains(eval[string](b, `document.querySelector("#agents-now tbody").innerText`), "starting")
	})
	b.shot("agents-starting")
	if err := w.jenkins.ConnectAgent(agent, w.jenkins.AgentSecret(agent)); err != nil {
		t.Fatalf("connect agent %s: %v", agent, err)
	}
	b.waitText("#agents-now tbody", "building")
	b.shot("agents")
	if err := w.jenkins.FinishBuild("acme/app", 1, jenkinsemu.Success); err != nil {
		t.Fatal(err)
	}
	b.waitText("#agents-now tbody", "No agents right now")
	// The provisioner's figures of the agent that ended, in the usage table.
	b.waitText("#usage tbody", "ui-e2e")
	if !eval[bool](b, `window.ferryNoReload === true`) {
		t.Error("the page was reloaded: it must change in place")
	}
	b.shot("agents-after")
	ended := `document.querySelector("#usage tbody tr td:nth-child(2)").innerText + " " + document.querySelector("#usage tbody tr td:nth-child(3)").innerText`
	w.eventually("the ended agent counted", func() bool { return strings.HasPrefix(eval[string](b, ended), "1 ") })
	before := eval[string](b, ended)
	b.check()

	// The figures are the store's: a new ferry (a new provisioner, a new
	// UI) shows the same count, the agent not counted again. The page
	// leaves first, so its polls do not hit the stopped server.
	b.do("leave the page", chromedp.Navigate("about:blank"))
	w.stop()
	w.run()
	u, err := url.Parse(w.url)
	if err != nil {
		t.Fatal(err)
	}
	b.host = u.Host
	b.signIn(w.url, uiAlice, "/ui/agents")
	b.waitText("#usage tbody", "ui-e2e")
	if after := eval[string](b, ended); after != before {
		t.Errorf("after a restart the usage row reads %q (agents ended, pod-seconds), before %q", after, before)
	}
	b.check()
}
