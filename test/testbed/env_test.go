package testbed

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestParseEnv(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		want    map[string]string
		wantErr string
	}{
		{
			name: "comments, blanks and export prefixes",
			data: "# written by bed.sh\n\nREDIS_ADDR=127.0.0.1:6380\nexport REGISTRY_ADDR=127.0.0.1:5001\n",
			want: map[string]string{"REDIS_ADDR": "127.0.0.1:6380", "REGISTRY_ADDR": "127.0.0.1:5001"},
		},
		{
			name: "value keeps everything after the first =",
			data: "REDIS_URL=redis://127.0.0.1:6380/0?a=b\nEMPTY=\n",
			want: map[string]string{"REDIS_URL": "redis://127.0.0.1:6380/0?a=b", "EMPTY": ""},
		},
		{
			name:    "line without =",
			data:    "REDIS_ADDR 127.0.0.1\n",
			wantErr: "line 1",
		},
		{
			name:    "key with a space",
			data:    "OK=1\nBAD KEY=2\n",
			wantErr: "line 2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, err := ParseEnv("env", []byte(tt.data))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseEnv error = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseEnv: %v", err)
			}
			for k, want := range tt.want {
				got, ok := env.Lookup(k)
				if !ok || got != want {
					t.Errorf("Lookup(%q) = %q, %v; want %q, true", k, got, ok, want)
				}
			}
			if got, want := len(env.vars), len(tt.want); got != want {
				t.Errorf("parsed %d keys, want %d: %v", got, want, env.vars)
			}
		})
	}
}

func TestRequireNamesEveryMissingKey(t *testing.T) {
	env, err := ParseEnv("/x/env", []byte("A=1\nB=\n"))
	if err != nil {
		t.Fatal(err)
	}
	if vals, err := env.Require("A"); err != nil || vals[0] != "1" {
		t.Fatalf("Require(A) = %v, %v; want [1], nil", vals, err)
	}
	_, err = env.Require("A", "B", "C")
	if err == nil {
		t.Fatal("Require(A, B, C) succeeded; want an error for B (empty) and C (absent)")
	}
	for _, want := range []string{"/x/env", "B", "C"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Require error %q does not mention %q", err, want)
		}
	}
}

func TestEnvPath(t *testing.T) {
	t.Run("variable wins", func(t *testing.T) {
		t.Setenv(EnvFileVar, "/somewhere/env")
		got, err := EnvPath()
		if err != nil || got != "/somewhere/env" {
			t.Fatalf("EnvPath() = %q, %v; want /somewhere/env", got, err)
		}
	})
	t.Run("default is test/.bed/env at the module root", func(t *testing.T) {
		t.Setenv(EnvFileVar, "")
		got, err := EnvPath()
		if err != nil {
			t.Fatal(err)
		}
		// This package lives in <root>/test/testbed.
		wd, _ := os.Getwd()
		want := filepath.Join(filepath.Dir(filepath.Dir(wd)), "test", ".bed", "env")
		if got != want {
			t.Fatalf("EnvPath() = %q, want %q", got, want)
		}
	})
}

func TestMissingBedMessage(t *testing.T) {
	for _, short := range []bool{true, false} {
		msg := unavailableMessage("no env file at /r/test/.bed/env", short)
		for _, want := range []string{"no env file at /r/test/.bed/env", "make testbed-up"} {
			if !strings.Contains(msg, want) {
				t.Errorf("short=%v: message %q does not mention %q", short, msg, want)
			}
		}
	}
}

func TestNamespaceName(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	for _, name := range []string{
		"TestDeploymentRollout",
		"TestSimulations/image-pull-failure",
		"Test_With__Odd///Chars",
		strings.Repeat("VeryLongTestName", 10),
		"///",
	} {
		got := namespaceName(name)
		if len(got) > 63 || !valid.MatchString(got) {
			t.Errorf("namespaceName(%q) = %q: not a valid namespace name", name, got)
		}
		if !strings.HasPrefix(got, "tb-") {
			t.Errorf("namespaceName(%q) = %q, want prefix tb-", name, got)
		}
		if again := namespaceName(name); again == got {
			t.Errorf("namespaceName(%q) returned %q twice; want unique names", name, got)
		}
	}
}
