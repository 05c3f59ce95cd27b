package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/deliveries/why"
	"github.com/ferryci/ferry/pkg/recovery"
	"github.com/ferryci/ferry/pkg/store/redisstore"
	"github.com/ferryci/ferry/test/jenkinsemu"
	"github.com/ferryci/ferry/test/scmfake"
)

// freeAddr returns a loopback address nothing listens on (yet).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// Ferry is down while GitHub delivers 20 pushes through an ingress that
// answers 502 for a missing backend. Started, ferry's first recovery pass
// redelivers all 20; each is built exactly once; a second pass (another
// replica, the same Redis) redelivers nothing.
func TestMissedDeliveriesAreRecoveredOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: skipped under -short")
	}
	addr := freeAddr(t)
	backend, _ := url.Parse("http://" + addr)
	ingress := httputil.NewSingleHostReverseProxy(backend) // 502 while nothing listens
	ingress.ErrorLog = nil
	ingress.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, _ error) { w.WriteHeader(http.StatusBadGateway) }
	srv := httptest.NewServer(ingress)
	t.Cleanup(srv.Close)
	front := srv.URL

	// This test's own GitHub, so its hook can deliver before ferry starts.
	gh := scmfake.NewGitHub(t)
	var hook int64
	w := start(t, func(c *config.Config) {
		c.GitHub.APIURL = gh.EnterpriseURL()
		c.Server.Listen = addr
		c.Deliveries.APIToken = "why-token"
		c.Deliveries.Recovery.Enabled = true
		c.Deliveries.Recovery.LeaderElection.Enabled = false
		c.Deliveries.Recovery.Interval = config.Duration{Duration: time.Hour}
		c.Deliveries.Recovery.PublicURL = front
		c.Deliveries.Recovery.GitHub = []config.GitHubHook{{Repo: "acme/app"}} // found by URL
		hook = gh.AddHook("acme/app", "", front+"/hooks/github", ghSecret)
		for i := 0; i < 20; i++ {
			sha := fmt.Sprintf("%040x", 0xf0000+i)
			body := strings.NewReplacer("https://github.com/", strings.TrimSuffix(gh.EnterpriseURL(), "api/v3/"), ghSHA, sha).
				Replace(string(fixture(t, "github_push.json")))
			d, err := gh.Deliver(hook, "push", []byte(body))
			if err != nil || d.StatusCode != http.StatusBadGateway || d.Status != "Invalid HTTP Response: 502" {
				t.Fatalf("delivery %d while ferry is down = %+v, %v; want a 502", i, d, err)
			}
		}
	})
	// Four executors: finish what runs so the queue drains.
	w.eventually("20 builds from the recovered deliveries", func() bool {
		for _, b := range w.builds("acme/app") {
			if b.Building {
				_ = w.jenkins.FinishBuild("acme/app", b.Number, jenkinsemu.Success)
			}
		}
		return len(w.builds("acme/app")) >= 20
	})
	gh.WaitRedeliveries()
	seen := map[string]int{}
	for _, b := range w.builds("acme/app") {
		seen[b.Params[config.ParamSHA]]++
	}
	if len(seen) != 20 {
		t.Fatalf("%d distinct commits built, want 20: %v", len(seen), seen)
	}
	for sha, n := range seen {
		if n != 1 {
			t.Errorf("commit %s built %d times", sha, n)
		}
	}
	// `ferry why` tells the recovered push's story: accepted, built.
	var out, errOut bytes.Buffer
	env := map[string]string{"FERRY_URL": w.url, "FERRY_DELIVERIES_API_TOKEN": "why-token"}
	sha := fmt.Sprintf("%040x", 0xf0000+7)
	if code := why.Run(context.Background(), []string{"--repo", "acme/app", "--commit", sha}, func(k string) string { return env[k] }, &out, &errOut); code != why.ExitOK {
		t.Fatalf("ferry why exited %d: %s", code, errOut.String())
	}
	for _, want := range []string{"202 accepted: builds app", "queued    Jenkins queue item", "pipeline  app (Jenkins job acme/app)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("ferry why does not say %q:\n%s", want, out.String())
		}
	}

	// A second pass, as another replica would run it on the same Redis.
	st, err := redisstore.New(context.Background(), redisstore.Config{Addr: w.redis.Addr(), Prefix: w.cfg.Store.Redis.Prefix, Group: w.cfg.Store.Redis.Group})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	src, err := recovery.NewGitHubHook(recovery.GitHubConfig{Token: w.cfg.GitHub.Token, BaseURL: w.cfg.GitHub.APIURL, Repo: "acme/app", ID: hook})
	if err != nil {
		t.Fatal(err)
	}
	r, err := recovery.New(recovery.Config{Sources: []recovery.Source{src}, Marks: st})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := r.Pass(context.Background())
	if err != nil || sum.Redelivered != 0 || sum.Verdicts[recovery.Delivered] != 20 {
		t.Fatalf("second pass = %+v, %v; want nothing redelivered and 20 delivered", sum, err)
	}
	if n := len(gh.HookDeliveries(hook)); n != 40 {
		t.Errorf("%d attempts at GitHub, want 20 failed + 20 redelivered", n)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(w.builds("acme/app")); n != 20 {
		t.Errorf("%d builds, want 20", n)
	}
}
