// Command status-outage measures what ferry costs while the commit status
// API cannot be reached: it runs ferry (the app, in process, with its
// in-memory store) against the Jenkins emulator, with github.apiURL on a
// closed port, sends signed pushes whose builds finish at once, waits until
// every build is over, then counts for a while the calls ferry makes to
// Jenkins and the log lines it writes, per second.
//
//	go run ./test/cmd/status-outage -pushes 500 -window 30s
//
// It uses only ferry's public configuration and app API, so the same
// command measures an older commit for a before/after comparison.
package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/ferryci/ferry/pkg/app"
	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/test/jenkinsemu"
)

const secret = "outage-secret"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "status-outage:", err)
		os.Exit(1)
	}
}

// lineCounter counts the lines and bytes written to it.
type lineCounter struct{ lines, bytes atomic.Int64 }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.lines.Add(int64(bytes.Count(p, []byte{'\n'})))
	c.bytes.Add(int64(len(p)))
	return len(p), nil
}

func run() error {
	pushes := flag.Int("pushes", 500, "pushes to send (each one build)")
	window := flag.Duration("window", 30*time.Second, "how long to measure once every build is over")
	settle := flag.Duration("settle", 15*time.Second, "how long to wait after the builds are over before measuring (the tracker's first look at each)")
	flag.Parse()

	closed, err := closedPort()
	if err != nil {
		return err
	}
	emu := jenkinsemu.New(jenkinsemu.Options{BuiltInExecutors: 16})
	defer emu.Close()
	var params []jenkinsemu.Param
	for _, name := range config.ReservedParams {
		params = append(params, jenkinsemu.Param{Name: name, Type: jenkinsemu.StringParam})
	}
	if err := emu.AddJob("app", jenkinsemu.JobSpec{Duration: 0, Params: params}); err != nil {
		return err
	}
	cfg, err := config.Parse([]byte(`
pipelines:
  - name: app
    repo: acme/app
    job: app
`))
	if err != nil {
		return err
	}
	cfg.Server.Listen = "127.0.0.1:0"
	cfg.Jenkins.URL = emu.URL() + "/"
	cfg.Jenkins.User = jenkinsemu.DefaultUser.Name
	cfg.Jenkins.APIToken = jenkinsemu.DefaultUser.Token
	cfg.GitHub.WebhookSecrets = []string{secret}
	cfg.GitHub.Token = "ghp_outage0000000000000000000000000000"
	cfg.GitHub.APIURL = "http://" + closed + "/"
	if err := cfg.Validate(); err != nil {
		return err
	}
	logs := &lineCounter{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := app.New(ctx, app.Options{Config: cfg, Version: "outage", LogOutput: logs})
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	url := "http://" + a.Addr() + "/hooks/github"
	for i := range *pushes {
		if err := push(url, closed, i); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(5 * time.Minute)
	for !allOver(emu, *pushes) {
		if time.Now().After(deadline) {
			return errors.New("the builds did not all run within 5 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(*settle)
	calls0, lines0, bytes0 := total(emu.Calls()), logs.lines.Load(), logs.bytes.Load()
	time.Sleep(*window)
	calls, lines, byts := total(emu.Calls())-calls0, logs.lines.Load()-lines0, logs.bytes.Load()-bytes0
	secs := window.Seconds()
	fmt.Printf("builds %d, status API unreachable, %s after the last build, over %s: Jenkins calls %.1f/s, log lines %.1f/s, log bytes %.0f/s\n",
		*pushes, *settle, *window, float64(calls)/secs, float64(lines)/secs, float64(byts)/secs)
	cancel()
	return <-done
}

// closedPort returns an address nothing listens on.
func closedPort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

func push(url, gitHost string, i int) error {
	sha := fmt.Sprintf("%040x", i+1)
	body := fmt.Sprintf(`{"ref":"refs/heads/main","before":"%040x","after":"%s","created":false,"deleted":false,
"head_commit":{"id":"%s","message":"change %d","timestamp":"2026-12-06T10:00:00Z"},
"repository":{"id":1,"name":"app","full_name":"acme/app","clone_url":"http://%s/acme/app.git","default_branch":"main"},
"pusher":{"name":"dev"},"sender":{"login":"dev"}}`, 0, sha, sha, i, gitHost)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(body))
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewBufferString(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("outage-%d", i))
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(m.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("push %d: %d %s", i, resp.StatusCode, b)
	}
	return nil
}

func allOver(emu *jenkinsemu.Server, n int) bool {
	builds := emu.Builds("app")
	if len(builds) < n {
		return false
	}
	for _, b := range builds {
		if b.Building {
			return false
		}
	}
	return true
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
