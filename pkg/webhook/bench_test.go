package webhook

import (
	"fmt"
	"net/http/httptest"
	"testing"
)

// BenchmarkReceiveGitHubPush measures the receiver's own CPU per signed
// ~8 KB push (verify, parse, normalize, match; the store is an in-memory
// fake). The end-to-end figure with Redis is test/cmd/webhook-bench.
func BenchmarkReceiveGitHubPush(b *testing.B) {
	st := &fakeStore{}
	h := newServer(&testing.T{}, st, 0)
	body := fixture(&testing.T{}, "github_push.json")
	sig := sign(ghSecret, body)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	i := 0
	for b.Loop() {
		req := githubReq("push", fmt.Sprint("bench-", i), "", body)
		req.Header.Set("X-Hub-Signature-256", sig)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 202 {
			b.Fatalf("code %d", w.Code)
		}
		i++
	}
}
