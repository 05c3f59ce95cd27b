package scm_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferryci/ferry/pkg/scm"
)

func TestLoadToken(t *testing.T) {
	t.Parallel()
	const secret = "ghp_fileTokenValue0123456789"
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatalf("write %s: %v", p, err)
		}
		return p
	}
	withNewline := write("newline", secret+"\n")
	crlf := write("crlf", "  "+secret+"\r\n")
	empty := write("empty", " \n")
	twoLines := write("two", secret+"\nsecond-line-"+secret+"\n")

	tests := []struct {
		name        string
		value, file string
		want        string
		wantErr     string // substring; "" means no error
	}{
		{"nothing configured", "", "", "", ""},
		{"inline value", secret, "", secret, ""},
		{"inline value is trimmed", "  " + secret + "\n", "", secret, ""},
		{"file with trailing newline", "", withNewline, secret, ""},
		{"file with CRLF and spaces", "", crlf, secret, ""},
		{"both set", secret, withNewline, "", "both"},
		{"missing file", "", filepath.Join(dir, "absent"), "", "absent"},
		{"empty file", "", empty, "", "empty"},
		{"two lines in file", "", twoLines, "", "more than one line"},
		{"two lines inline", secret + "\n" + secret, "", "", "more than one line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := scm.LoadToken(tt.value, tt.file)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("LoadToken: %v", err)
				}
				if got != tt.want {
					t.Errorf("token = %q, want %q", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadToken: got %q, nil; want an error with %q", got, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error leaks the token: %q", err)
			}
			if got != "" {
				t.Errorf("token = %q alongside an error, want empty", got)
			}
		})
	}
}
