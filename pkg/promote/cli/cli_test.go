package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/promote/cli"
	"github.com/ferryci/ferry/pkg/store"
)

// The CLI prints a line per step and exits with the outcome.
func TestCLIExitCodes(t *testing.T) {
	at := time.Date(2026, 3, 14, 15, 0, 0, 0, time.UTC)
	answer := func(state, reason string) store.Promotion {
		return store.Promotion{ID: "p1", App: "web", State: state, Reason: reason, SourceDigest: "sha256:abc",
			Audit: []store.AuditEntry{{At: at, Actor: "jenkins", Action: "requested"}, {At: at, Actor: "ferry", Action: "rolled out", Environment: "test"}}}
	}
	tests := []struct {
		name  string
		args  []string
		reply store.Promotion
		code  int
		out   string
	}{
		{"succeeded", []string{"create", "--app", "web", "--image", "r/web:1", "--wait"}, answer(store.PromotionSucceeded, ""), cli.ExitOK, "rolled out [test]"},
		{"failed", []string{"wait", "p1"}, answer(store.PromotionFailed, "test: GET failed"), cli.ExitFailed, "failed: test: GET failed"},
		{"rejected", []string{"wait", "p1", "--timeout", "1m"}, answer(store.PromotionRejected, "production rejected by bob"), cli.ExitFailed, "rejected"},
		{"missing flags", []string{"create", "--app", "web"}, answer(store.PromotionSucceeded, ""), cli.ExitUsage, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotAuth string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gotAuth = r.Header.Get("Authorization")
				_ = json.NewEncoder(w).Encode(tt.reply)
			}))
			defer srv.Close()
			env := map[string]string{"FERRY_URL": srv.URL, "FERRY_PROMOTION_API_TOKEN": "tok"}
			var out, errOut bytes.Buffer
			code := cli.Run(context.Background(), tt.args, func(k string) string { return env[k] }, &out, &errOut)
			if code != tt.code || !strings.Contains(out.String(), tt.out) {
				t.Errorf("exit %d, output %q (stderr %q); want %d containing %q", code, out.String(), errOut.String(), tt.code, tt.out)
			}
			if tt.code != cli.ExitUsage && gotAuth != "Bearer tok" {
				t.Errorf("Authorization = %q", gotAuth)
			}
			if strings.Contains(out.String()+errOut.String(), "tok\n") {
				t.Errorf("the token was printed")
			}
		})
	}
}
