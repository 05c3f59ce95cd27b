package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string // "" means valid
		check   func(t *testing.T, o options)
	}{
		{name: "push with defaults", args: []string{"--push", "127.0.0.1:5000/ferry:v1"}, check: func(t *testing.T, o options) {
			if o.push.Name() != "127.0.0.1:5000/ferry:v1" || len(o.platforms) != 2 || o.platforms[0].Architecture != "amd64" || o.platforms[1].Architecture != "arm64" || o.caCerts != defaultCACerts {
				t.Errorf("options %+v", o)
			}
		}},
		{name: "tarball only", args: []string{"--tarball", "bin/x.tar", "--platforms", "linux/arm/v7"}, check: func(t *testing.T, o options) {
			if o.push != nil || o.tarball != "bin/x.tar" || len(o.platforms) != 1 || o.platforms[0].Variant != "v7" {
				t.Errorf("options %+v", o)
			}
		}},
		{name: "insecure", args: []string{"--push", "registry.internal:5000/ferry:v1", "--insecure"}, check: func(t *testing.T, o options) {
			if s := o.push.Context().Scheme(); s != "http" {
				t.Errorf("scheme %s, want http", s)
			}
		}},
		{name: "nothing to do", args: nil, wantErr: "nothing to do"},
		{name: "extra argument", args: []string{"--tarball", "x.tar", "push"}, wantErr: "unexpected arguments: push"},
		{name: "unknown flag", args: []string{"--tarbal", "x.tar"}, wantErr: "flag provided but not defined"},
		{name: "bad reference", args: []string{"--push", "Registry/UPPER:tag"}, wantErr: "is not an image reference"},
		{name: "digest reference", args: []string{"--push", "r.internal/ferry@sha256:" + strings.Repeat("a", 64)}, wantErr: "push to a tag"},
		{name: "insecure without push", args: []string{"--tarball", "x.tar", "--insecure"}, wantErr: "--insecure only applies to --push"},
		{name: "windows", args: []string{"--tarball", "x.tar", "--platforms", "linux/amd64,windows/amd64"}, wantErr: "Linux only"},
		{name: "no arch", args: []string{"--tarball", "x.tar", "--platforms", "linux"}, wantErr: "is not linux/ARCH"},
		{name: "twice", args: []string{"--tarball", "x.tar", "--platforms", "linux/amd64,linux/amd64"}, wantErr: "listed twice"},
		{name: "empty platforms", args: []string{"--tarball", "x.tar", "--platforms", " , "}, wantErr: "--platforms is empty"},
		{name: "unknown variant", args: []string{"--tarball", "x.tar", "--platforms", "linux/arm64/v9"}, wantErr: "not one go build knows"},
		{name: "bad name", args: []string{"--tarball", "x.tar", "--name", "ferry@sha256:abc"}, wantErr: "--name"},
		{name: "no CA bundle", args: []string{"--tarball", "x.tar", "--ca-certs", ""}, wantErr: "needs a CA bundle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFlags(tt.args, io.Discard)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				tt.check(t, o)
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			if !errors.Is(err, errUsage) {
				t.Errorf("error %v is not a usage error (exit code 2)", err)
			}
		})
	}

	t.Run("help", func(t *testing.T) {
		var out strings.Builder
		if _, err := parseFlags([]string{"-h"}, &out); !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("error %v, want flag.ErrHelp", err)
		}
		if !strings.Contains(out.String(), "--push") || !strings.Contains(out.String(), "docker login") {
			t.Errorf("help does not explain --push and credentials:\n%s", out.String())
		}
	})
}

func TestCACertsErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "empty.crt")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, file, want string }{
		{"missing", filepath.Join(dir, "nope.crt"), "apt-get install ca-certificates"},
		{"not PEM", notPEM, "holds no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := options{caCerts: tt.file, platforms: []v1.Platform{amd64}, goCmd: "go"}
			_, err := buildIndex(context.Background(), o, testMeta(), discardLogger())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestPush(t *testing.T) {
	idx := mustIndex(t, testMeta(), map[string]string{"amd64": "x86 ferry", "arm64": "arm ferry"})

	t.Run("to a registry", func(t *testing.T) {
		srv := httptest.NewServer(registry.New(registry.Logger(discardStdLogger())))
		defer srv.Close()
		ref := mustRef(t, strings.TrimPrefix(srv.URL, "http://")+"/ferry:v1.2.3")
		if err := push(context.Background(), ref, idx); err != nil {
			t.Fatal(err)
		}
		back, err := remote.Index(ref)
		if err != nil {
			t.Fatal(err)
		}
		if digestOf(t, back) != digestOf(t, idx) {
			t.Errorf("pulled %s, pushed %s", digestOf(t, back), digestOf(t, idx))
		}
	})

	refusals := []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{"unauthorized", http.StatusUnauthorized, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, "docker login"},
		{"denied", http.StatusForbidden, `{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}`, "refused the credentials"},
		{"no repository", http.StatusNotFound, `{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}`, "does not exist"},
		{"invalid", http.StatusBadRequest, `{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid"}]}`, "refused the push (HTTP 400)"},
	}
	for _, tt := range refusals {
		t.Run("refused: "+tt.name, func(t *testing.T) {
			// The registry asks for credentials, takes them at /v2/, and
			// refuses the upload.
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if _, _, ok := r.BasicAuth(); !ok {
					w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
					w.WriteHeader(http.StatusUnauthorized)
					return
				}
				if r.URL.Path == "/v2/" {
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			host := strings.TrimPrefix(srv.URL, "http://")
			withDockerConfig(t, host, "ferry", "s3cret")
			ref := mustRef(t, host+"/ferry:v1")
			err := push(context.Background(), ref, idx)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
			for _, secret := range []string{"s3cret", base64.StdEncoding.EncodeToString([]byte("ferry:s3cret"))} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %v reveals the credential", err)
				}
			}
		})
	}

	t.Run("plain HTTP registry without --insecure", func(t *testing.T) {
		ref := mustRef(t, "registry.internal:5000/ferry:v1")
		err := explainPushError(ref, errors.New(`Get "https://registry.internal:5000/v2/": http: server gave HTTP response to HTTPS client`))
		if !strings.Contains(err.Error(), "registry.internal:5000 speaks plain HTTP: add --insecure") {
			t.Errorf("error %v does not suggest --insecure", err)
		}
	})

	t.Run("nothing listening", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		addr := strings.TrimPrefix(srv.URL, "http://")
		srv.Close()
		err := push(context.Background(), mustRef(t, addr+"/ferry:v1"), idx)
		if err == nil || !strings.Contains(err.Error(), "nothing answers at "+addr) {
			t.Fatalf("error %v, want it to say nothing answers at %s", err, addr)
		}
	})
}

// withDockerConfig points the default keychain at a Docker config holding
// user:password for host.
func withDockerConfig(t *testing.T, host, user, password string) {
	t.Helper()
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	cfg := `{"auths":{"` + host + `":{"auth":"` + auth + `"}}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func discardStdLogger() *log.Logger { return log.New(io.Discard, "", 0) }

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}
