package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/ferryci/ferry/pkg/promote/cli"
	"github.com/ferryci/ferry/pkg/store"
)

// Each subcommand sends its flags to its endpoint and prints one answer.
func TestCLISubcommands(t *testing.T) {
	p := store.Promotion{
		ID: "p1", Kind: store.KindPromote, App: "web", State: store.PromotionWaiting, Source: "r/web:1",
		SourceDigest: "sha256:abc", Target: "t/web@sha256:abc", RollbackOf: "p0",
		Environments: []store.PromotionEnv{{Name: "test", Phase: store.EnvSucceeded}, {Name: "production", Phase: store.EnvAwaitingApprove}},
		Audit:        []store.AuditEntry{{Actor: "system:serviceaccount:team:bob", Action: "approved"}},
	}
	type sent struct{ method, path, body string }
	tests := []struct {
		name   string
		args   []string
		env    map[string]string
		reply  any
		sent   sent
		code   int
		stdout string
		stderr string
	}{
		{"create", []string{"create", "--app", "web", "--image", "r/web:1", "--version", "1.2"},
			map[string]string{"GIT_COMMIT": "4f2a9c0d", "BUILD_URL": "http://j/1/", "TRACEPARENT": "00-t-s-01"}, p,
			sent{"POST", "/api/v1/promotions", `{"app":"web","image":"r/web:1","commit":"4f2a9c0d","build_url":"http://j/1/","version":"1.2","traceparent":"00-t-s-01"}`},
			cli.ExitOK, "promotion p1 created: web r/web:1 -> sha256:abc\n", ""},
		{"create never names who acts", []string{"create", "--app", "web", "--image", "r/web:1"},
			map[string]string{"BUILD_USER_ID": "alice", "USER": "jenkins"}, p,
			sent{"POST", "/api/v1/promotions", `{"app":"web","image":"r/web:1"}`},
			cli.ExitOK, "promotion p1 created", ""},
		{"status", []string{"status", "p1"}, nil, p, sent{"GET", "/api/v1/promotions/p1", ""}, cli.ExitOK,
			"promotion p1 (promote) of web: waiting_approval\n  source  r/web:1\n  digest  sha256:abc\n  target  t/web@sha256:abc\n" +
				"  env test         succeeded\n  env production   awaiting_approval\n", ""},
		{"status as JSON, flag after the id", []string{"status", "p1", "--json"}, nil, p, sent{"GET", "/api/v1/promotions/p1", ""}, cli.ExitOK,
			`"source_digest": "sha256:abc"`, ""},
		{"approve", []string{"approve", "p1", "--env", "production"}, nil, p,
			sent{"POST", "/api/v1/promotions/p1/approve", `{"environment":"production"}`},
			cli.ExitOK, "promotion p1 approved by system:serviceaccount:team:bob: now waiting_approval\n", ""},
		{"--as is gone", []string{"approve", "p1", "--as", "bob"}, nil, p, sent{}, cli.ExitUsage, "", "flag provided but not defined: -as"},
		{"reject", []string{"reject", "p1", "--reason", "not today"}, nil, p,
			sent{"POST", "/api/v1/promotions/p1/reject", `{"reason":"not today"}`},
			cli.ExitOK, "promotion p1 rejected by system:serviceaccount:team:bob: now waiting_approval\n", ""},
		{"rollback", []string{"rollback", "--app", "web", "--env", "production", "--to", "p0", "--reason", "500s"}, nil, p,
			sent{"POST", "/api/v1/rollbacks", `{"app":"web","environment":"production","to":"p0","reason":"500s"}`},
			cli.ExitOK, "rollback p1 of production to t/web@sha256:abc (promotion p0)\n", ""},
		{"list", []string{"list", "--app", "web"}, nil, map[string]any{"promotions": []store.Promotion{p}},
			sent{"GET", "/api/v1/promotions?app=web", ""}, cli.ExitOK,
			"p1  web      waiting_approval promote    t/web@sha256:abc\n", ""},
		{"refused", []string{"approve", "p1"}, nil, nil, sent{"POST", "/api/v1/promotions/p1/approve", `{}`},
			cli.ExitUsage, "", "ferry promote approve: ferry answered 409: not waiting\n"},
		{"no id", []string{"wait"}, nil, p, sent{}, cli.ExitUsage, "", "ferry promote wait: a promotion id is required\n"},
		{"rollback without env", []string{"rollback", "--app", "web"}, nil, p, sent{}, cli.ExitUsage, "", "--app and --env are required"},
		{"no server", []string{"list"}, map[string]string{"FERRY_URL": ""}, p, sent{}, cli.ExitUsage, "", "ferry promote list: --server (or FERRY_URL) is required\n"},
		{"no credential", []string{"list"}, map[string]string{"FERRY_PROMOTION_API_TOKEN": "", "KUBECONFIG": "/nonexistent/kubeconfig"}, p, sent{}, cli.ExitUsage, "",
			"ferry promote list: no credential: set FERRY_TOKEN (or FERRY_PROMOTION_API_TOKEN in pipelines), or use a kubeconfig with a token"},
		{"bad flag", []string{"status", "p1", "--jsn"}, nil, p, sent{}, cli.ExitUsage, "", "flag provided but not defined: -jsn"},
		{"unknown command", []string{"bogus"}, nil, p, sent{}, cli.ExitUsage, "", "ferry promote bogus: unknown command\n"},
		{"help", []string{"help"}, nil, p, sent{}, cli.ExitOK, "", "usage: ferry promote <command>"},
		{"nothing", nil, nil, p, sent{}, cli.ExitUsage, "", "usage: ferry promote <command>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got sent
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				got = sent{r.Method, r.URL.RequestURI(), strings.TrimSpace(string(body))}
				if tt.reply == nil {
					w.WriteHeader(http.StatusConflict)
					_ = json.NewEncoder(w).Encode(map[string]string{"error": "not waiting"})
					return
				}
				_ = json.NewEncoder(w).Encode(tt.reply)
			}))
			defer srv.Close()
			env := map[string]string{"FERRY_URL": srv.URL, "FERRY_PROMOTION_API_TOKEN": "tok"}
			for k, v := range tt.env {
				env[k] = v
			}
			var out, errOut bytes.Buffer
			code := cli.Run(context.Background(), tt.args, func(k string) string { return env[k] }, &out, &errOut)
			if code != tt.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.code, errOut.String())
			}
			if got != tt.sent {
				t.Errorf("sent %+v\nwant %+v", got, tt.sent)
			}
			if !strings.Contains(out.String(), tt.stdout) || (tt.stdout == "" && out.Len() > 0) {
				t.Errorf("stdout %q, want %q", out.String(), tt.stdout)
			}
			if !strings.Contains(errOut.String(), tt.stderr) || (tt.stderr == "" && errOut.Len() > 0) {
				t.Errorf("stderr %q, want %q", errOut.String(), tt.stderr)
			}
		})
	}
}

// --wait follows the promotion to the approval gate with --until-approval,
// and runs out of --timeout with exit 3.
func TestCLIWaitStops(t *testing.T) {
	waiting := store.Promotion{ID: "p1", App: "web", State: store.PromotionWaiting}
	running := store.Promotion{ID: "p1", App: "web", State: store.PromotionRunning}
	tests := []struct {
		name  string
		args  []string
		reply store.Promotion
		code  int
		out   string
	}{
		{"until approval", []string{"create", "--app", "web", "--image", "r/web:1", "--wait", "--until-approval"}, waiting, cli.ExitOK, "promotion p1 waits for approval\n"},
		{"timeout", []string{"wait", "p1", "--timeout", "50ms"}, running, cli.ExitTimedOut, "promotion p1 still running after 50ms\n"},
		{"rollback --wait", []string{"rollback", "--app", "web", "--env", "test", "--wait", "--timeout", "50ms"}, running, cli.ExitTimedOut, "still running"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_ = json.NewEncoder(w).Encode(tt.reply)
			}))
			defer srv.Close()
			env := map[string]string{"FERRY_URL": srv.URL, "FERRY_PROMOTION_API_TOKEN": "tok"}
			var out, errOut bytes.Buffer
			code := cli.Run(context.Background(), tt.args, func(k string) string { return env[k] }, &out, &errOut)
			if code != tt.code || !strings.Contains(out.String(), tt.out) {
				t.Errorf("exit %d, output %q (stderr %q); want %d containing %q", code, out.String(), errOut.String(), tt.code, tt.out)
			}
		})
	}
}

// The credential comes from FERRY_TOKEN, else FERRY_PROMOTION_API_TOKEN,
// else the kubeconfig's context (its token file here) as kubectl finds it;
// create sends an Idempotency-Key derived from the build.
func TestCLICredentialAndIdempotencyKey(t *testing.T) {
	dir := t.TempDir()
	tokenFile := dir + "/token"
	kubeconfig := dir + "/config"
	writeFile(t, tokenFile, "kube-token-of-alice\n")
	writeFile(t, kubeconfig, `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://kube.invalid:6443"}}]
users:
  - {name: alice, user: {tokenFile: `+tokenFile+`}}
  - {name: certs, user: {client-certificate-data: Zm9v, client-key-data: YmFy}}
contexts:
  - {name: alice, context: {cluster: c, user: alice}}
  - {name: certs, context: {cluster: c, user: certs}}
current-context: alice
`)
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantAuth string
		wantKey  string
		code     int
	}{
		{"person token first", []string{"list"}, map[string]string{"FERRY_TOKEN": "p", "FERRY_PROMOTION_API_TOKEN": "ci"}, "Bearer p", "", cli.ExitOK},
		{"pipeline token", []string{"list"}, map[string]string{"FERRY_PROMOTION_API_TOKEN": "ci"}, "Bearer ci", "", cli.ExitOK},
		{"kubeconfig token file", []string{"list"}, nil, "Bearer kube-token-of-alice", "", cli.ExitOK},
		{"kubeconfig context without a token", []string{"list", "--context", "certs"}, nil, "", "", cli.ExitUsage},
		{"key from the build", []string{"create", "--app", "web", "--image", "r/web:1"}, map[string]string{"BUILD_URL": "http://j/job/web/7/"},
			"Bearer kube-token-of-alice", cli.IdempotencyKey("http://j/job/web/7/", "web", "r/web:1"), cli.ExitOK},
		{"key given", []string{"create", "--app", "web", "--image", "r/web:1", "--idempotency-key", "k-1"}, map[string]string{"BUILD_URL": "http://j/"},
			"Bearer kube-token-of-alice", "k-1", cli.ExitOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var auth, key string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				auth, key = r.Header.Get("Authorization"), r.Header.Get("Idempotency-Key")
				_ = json.NewEncoder(w).Encode(store.Promotion{ID: "p1"})
			}))
			defer srv.Close()
			env := map[string]string{"FERRY_URL": srv.URL, "KUBECONFIG": kubeconfig}
			for k, v := range tt.env {
				env[k] = v
			}
			var out, errOut bytes.Buffer
			code := cli.Run(context.Background(), tt.args, func(k string) string { return env[k] }, &out, &errOut)
			if code != tt.code || auth != tt.wantAuth || key != tt.wantKey {
				t.Errorf("exit %d, Authorization %q, Idempotency-Key %q (stderr %q); want %d, %q, %q",
					code, auth, key, errOut.String(), tt.code, tt.wantAuth, tt.wantKey)
			}
		})
	}
	if a, b := cli.IdempotencyKey("http://j/7/", "web", "r/web:1"), cli.IdempotencyKey("http://j/8/", "web", "r/web:1"); a == b || a == "" {
		t.Errorf("keys of two builds: %q and %q, want different", a, b)
	}
}

func writeFile(t *testing.T, name, data string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
