package app

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/test/jenkinsemu"
)

// A Jenkins forcing Chinese on every request (the Locale plugin) leaves
// ferry ready but says so in /readyz, with the fix.
func TestReadyzReportsUnreadableJenkins(t *testing.T) {
	emu := jenkinsemu.New(jenkinsemu.Options{Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(emu.Close)
	cfg, err := config.Parse([]byte(`
server: {listen: "127.0.0.1:0"}
jenkins: {url: "` + emu.URL() + `", user: admin, apiToken: "` + jenkinsemu.DefaultUser.Token + `"}
telemetry: {logLevel: error}
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(ctx, Options{Config: cfg, DisableDispatch: true})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	readyz := func() (int, map[string]any) {
		t.Helper()
		resp, err := http.Get("http://" + a.Addr() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, body
	}

	if _, err := a.jenkins.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if code, body := readyz(); code != http.StatusOK || body["jenkins"] != nil {
		t.Fatalf("/readyz with an English Jenkins = %d %v", code, body)
	}
	emu.SetLocale("zh_CN", true)
	if _, err := a.jenkins.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	code, body := readyz()
	detail, _ := body["jenkins"].(string)
	if code != http.StatusOK || !strings.Contains(detail, "zh_CN") || !strings.Contains(detail, "Locale") {
		t.Errorf("/readyz with Chinese forced = %d %v; want 200 with a jenkins detail naming zh_CN and the Locale plugin", code, body)
	}
}
