package webhook

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferryci/ferry/pkg/event"
)

var allowedCodes = map[int]bool{200: true, 202: true, 400: true, 401: true, 413: true}

// FuzzDelivery drives arbitrary bodies and event types through the whole
// verify → parse → normalize → enqueue path of both providers. Bodies are
// signed half of the time so the parsers see them. Nothing may panic, every
// answer must be one of the documented codes, and whatever is stored must
// be a complete event.
func FuzzDelivery(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		typ := map[string]string{
			"github_push": "push", "github_tag_push": "push", "github_branch_delete": "push",
			"github_push_skip_ci": "push", "github_create_tag": "create", "github_ping": "ping",
			"github_pull_request_opened": "pull_request", "github_pull_request_closed": "pull_request",
			"gitlab_push": "Push Hook", "gitlab_tag_push": "Tag Push Hook", "gitlab_branch_delete": "Push Hook",
		}[filepath.Base(name[:len(name)-5])]
		if typ == "" {
			typ = "Merge Request Hook"
		}
		f.Add(typ, b, true, "application/json")
	}
	f.Add("push", []byte(`{"ref":"refs/heads/x","after":"","repository":{"full_name":"acme/app"}}`), true, "application/json")
	f.Add("push", []byte(`payload=%7B%7D`), true, "application/x-www-form-urlencoded")
	f.Add("Push Hook", []byte(`{"ref":"refs/heads/main","after":"1","project":{"path_with_namespace":"acme/app"}}`), false, "")

	f.Fuzz(func(t *testing.T, typ string, body []byte, signed bool, contentType string) {
		st := &fakeStore{}
		h := newServer(t, st, 64<<10)
		for _, gh := range []bool{true, false} {
			var req *http.Request
			if gh {
				secret := "wrong"
				if signed {
					secret = ghSecret
				}
				req = githubReq(typ, "fuzz", secret, body)
			} else {
				tok := "wrong"
				if signed {
					tok = glToken
				}
				req = gitlabReq(typ, "fuzz", tok, body)
			}
			if contentType != "" {
				req.Header.Set("Content-Type", contentType)
			}
			code, a := do(h, req)
			if !allowedCodes[code] {
				t.Fatalf("unexpected code %d (%+v)", code, a)
			}
			if !signed && code != 401 && code != 413 {
				t.Fatalf("unverified delivery answered %d", code)
			}
		}
		for _, ev := range st.stored() {
			if err := ev.Validate(); err != nil {
				t.Fatalf("stored an incomplete event: %v (%+v)", err, ev)
			}
			if ev.Provider != event.GitHub && ev.Provider != event.GitLab {
				t.Fatalf("stored event with provider %q", ev.Provider)
			}
		}
	})
}
