package deliveries_test

import (
	"bytes"
	"context"
	"flag"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferryci/ferry/pkg/deliveries/why"
)

var update = flag.Bool("update", false, "rewrite the golden files of `ferry why`")

// `ferry why` against a real delivery API over a seeded store: the output
// for each case is compared with testdata/why-*.txt (-update rewrites them).
func TestWhyOutput(t *testing.T) {
	s := newStore(t)
	Seed(t, s)
	srv := httptest.NewServer(serve(t, s))
	defer srv.Close()
	env := map[string]string{"FERRY_URL": srv.URL, "FERRY_DELIVERIES_API_TOKEN": "tok"}
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"commit", []string{"--repo", "acme/app", "--commit", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}, why.ExitOK},
		{"accepted-built", []string{"--delivery", "d-1"}, why.ExitOK},
		{"ignored", []string{"--delivery", "d-2"}, why.ExitOK},
		{"rejected", []string{"--delivery", "d-3"}, why.ExitOK},
		{"not-found", []string{"--repo", "acme/app", "--commit", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "--ref", "main"}, why.ExitNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := why.Run(context.Background(), tt.args, func(k string) string { return env[k] }, &out, &errOut)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tt.code, errOut.String())
			}
			golden := filepath.Join("testdata", "why-"+tt.name+".txt")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if out.String() != string(want) {
				t.Errorf("output differs from %s:\n--- got\n%s--- want\n%s", golden, out.String(), want)
			}
		})
	}
}

func TestWhyUsageAndAPIErrors(t *testing.T) {
	srv := httptest.NewServer(serve(t, newStore(t)))
	defer srv.Close()
	for _, tc := range []struct {
		args []string
		env  map[string]string
		say  string
	}{
		{[]string{"--repo", "acme/app"}, map[string]string{"FERRY_URL": srv.URL}, "give --repo and --commit, or --delivery"},
		{[]string{"--delivery", "x"}, nil, "--server (or FERRY_URL) is required"},
		{[]string{"--delivery", "x"}, map[string]string{"FERRY_URL": srv.URL, "FERRY_DELIVERIES_API_TOKEN": "wrong"}, "ferry answered 401"},
		{[]string{"--repo", "acme/app", "--commit", "abc"}, map[string]string{"FERRY_URL": srv.URL, "FERRY_PROMOTION_API_TOKEN": "tok"}, "must be the full commit id"},
	} {
		var out, errOut bytes.Buffer
		code := why.Run(context.Background(), tc.args, func(k string) string { return tc.env[k] }, &out, &errOut)
		if code != why.ExitUsage || !bytes.Contains(errOut.Bytes(), []byte(tc.say)) {
			t.Errorf("why %v: exit %d, stderr %q; want 2 saying %q", tc.args, code, errOut.String(), tc.say)
		}
	}
}
