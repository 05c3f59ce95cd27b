package webhook

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"hash"
	"testing"
)

// X-Hub-Signature-256 carries an HMAC-SHA256. go-github's validator reads
// the algorithm from the value's prefix, so a valid HMAC under another
// algorithm would pass it; ferry accepts only sha256= there.
func TestSignatureHeaderAcceptsOnlySHA256(t *testing.T) {
	push := fixture(t, "github_push.json")
	hmacOf := func(prefix string, h func() hash.Hash) string {
		m := hmac.New(h, []byte(ghSecret))
		m.Write(push)
		return prefix + "=" + hex.EncodeToString(m.Sum(nil))
	}
	tests := []struct {
		name, signature string
		code            int
	}{
		{"sha256", hmacOf("sha256", sha256.New), 202},
		{"sha1 under the sha256 header", hmacOf("sha1", sha1.New), 401},
		{"sha512 under the sha256 header", hmacOf("sha512", sha512.New), 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := &fakeStore{}
			req := githubReq("push", "sig-"+tt.name, "", push)
			req.Header.Set("X-Hub-Signature-256", tt.signature)
			code, a := do(newServer(t, st, 0), req)
			if code != tt.code {
				t.Fatalf("X-Hub-Signature-256: %s… answered %d (%+v), want %d", tt.signature[:12], code, a, tt.code)
			}
			if code != 202 && len(st.stored()) != 0 {
				t.Errorf("a delivery signed with %s was stored", tt.name)
			}
		})
	}
}
