package app

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/config"
)

// With promotion enabled, ferry serves the promotion API behind its token
// and runs the promoter (without leader election it needs no cluster until
// a promotion rolls something).
func TestPromotionAPIMounted(t *testing.T) {
	cfg, err := config.Parse([]byte(`
server: {listen: "127.0.0.1:0"}
jenkins: {url: "http://127.0.0.1:1/"}
telemetry: {logLevel: error}
promotion:
  enabled: true
  apiToken: app-test-token
  leaderElection: {enabled: false}
  apps:
    - name: web
      source: 127.0.0.1:5000/ci/web
      target: 127.0.0.1:5000/release/web
      environments:
        - {name: test, namespace: web-test, deployments: [web]}
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

	tests := []struct {
		name, method, path, token, body string
		want                            int
	}{
		{"list without token", "GET", "/api/v1/promotions", "", "", http.StatusUnauthorized},
		{"list", "GET", "/api/v1/promotions", "app-test-token", "", http.StatusOK},
		{"unknown app", "POST", "/api/v1/promotions", "app-test-token", `{"app":"api","image":"x"}`, http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, "http://"+a.Addr()+tt.path, strings.NewReader(tt.body))
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			c := &http.Client{Timeout: 10 * time.Second}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("%s %s = %d, want %d", tt.method, tt.path, resp.StatusCode, tt.want)
			}
		})
	}
}
