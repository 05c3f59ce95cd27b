package main

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryci/ferry/test/testbed"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// The tests here compile ferry for both platforms (about 20 s each on a warm
// Go cache, minutes on a cold one), so -short skips them.

func skipSlow(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("compiles ferry for linux/amd64 and linux/arm64; skipped under -short")
	}
}

// cleanCheckout clones the committed tree into a temporary directory and
// makes it the working directory: the builds must not see edits made in
// the checkout meanwhile (a shared checkout changes under a running test).
func cleanCheckout(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "ferry")
	if out, err := exec.Command("git", "clone", "--quiet", root, dir).CombinedOutput(); err != nil {
		t.Fatalf("clone the committed tree: %v\n%s", err, out)
	}
	t.Chdir(dir)
	return dir
}

// runCLI runs ferry-image as a user would and returns what it printed.
func runCLI(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	if err := run(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("ferry-image %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	t.Logf("ferry-image %s: %s", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	return strings.TrimSpace(stdout.String())
}

// TestBuildIsReproducible builds the real image twice from the checkout:
// the digests and the archives must be the same.
func TestBuildIsReproducible(t *testing.T) {
	skipSlow(t)
	cleanCheckout(t)
	dir := t.TempDir()
	first := runCLI(t, "--tarball", filepath.Join(dir, "a.tar"), "--version", "v0.0.0-test")
	second := runCLI(t, "--tarball", filepath.Join(dir, "b.tar"), "--version", "v0.0.0-test")
	if !strings.HasPrefix(first, "sha256:") || first != second {
		t.Fatalf("digests %q and %q, want one sha256 digest twice", first, second)
	}
	a, err := os.ReadFile(filepath.Join(dir, "a.tar"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "b.tar"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("the two archives differ (%d and %d bytes)", len(a), len(b))
	}
}

// TestImageOnTestBed pushes the real image to the bed's registry, pulls it
// back and runs the ferry it holds.
func TestImageOnTestBed(t *testing.T) {
	addr := testbed.RegistryAddr(t)
	skipSlow(t)
	src := cleanCheckout(t)
	tag := "t" + time.Now().UTC().Format("20060102t150405")
	out := runCLI(t, "--push", addr+"/ferry-image-test:"+tag, "--insecure")

	ref, err := name.ParseReference(addr+"/ferry-image-test:"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(ref)
	if err != nil {
		t.Fatalf("pull the index back: %v", err)
	}
	digest := digestOf(t, idx)
	if want := ref.Context().Name() + "@" + digest; out != want {
		t.Errorf("printed %q, want %q", out, want)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 2 {
		t.Fatalf("the index holds %d manifests, want 2", len(im.Manifests))
	}
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	bins := map[string]string{}
	var version string
	for i, want := range []v1.Platform{amd64, arm64} {
		d := im.Manifests[i]
		if d.Platform == nil || !d.Platform.Equals(want) {
			t.Fatalf("manifest %d is for %v, want %v", i, d.Platform, want)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Architecture != want.Architecture || cf.Config.User != "65532:65532" {
			t.Errorf("%s config: architecture %s user %s", want, cf.Architecture, cf.Config.User)
		}
		bin := extractBinary(t, img, filepath.Join(t.TempDir(), "ferry"))
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatalf("%s binary: %v", want, err)
		}
		if f.Machine != machines[want.Architecture] {
			t.Errorf("%s binary is for %v", want, f.Machine)
		}
		if f.Section(".interp") != nil {
			t.Errorf("%s binary is dynamically linked; the image has no libc", want)
		}
		_ = f.Close()
		bins[want.Architecture] = bin
		version = cf.Config.Labels["org.opencontainers.image.version"]
	}

	t.Run("no build machine paths in the binary", func(t *testing.T) {
		data, err := os.ReadFile(bins["amd64"])
		if err != nil {
			t.Fatal(err)
		}
		leaks := []string{src + "/", filepath.Join(os.Getenv("HOME"), "go", "pkg", "mod")}
		if gomodcache, err := exec.Command("go", "env", "GOMODCACHE").Output(); err == nil {
			leaks = append(leaks, strings.TrimSpace(string(gomodcache)))
		}
		for _, leak := range leaks {
			if bytes.Contains(data, []byte(leak)) {
				t.Errorf("the binary contains the build machine's path %s", leak)
			}
		}
	})

	// The amd64 ferry runs here: its version and an offline configuration
	// check prove the image holds a working ferry.
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"version", []string{"version"}, "ferry " + version + "\n"},
		{"check-config", []string{"check-config", "--config", filepath.Join(src, "examples", "local.yaml")}, "configuration is valid: store memory"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			out, err := exec.Command(bins["amd64"], tt.args...).CombinedOutput()
			if err != nil {
				t.Fatalf("ferry %s: %v\n%s", strings.Join(tt.args, " "), err, out)
			}
			if !strings.HasPrefix(string(out), tt.want) {
				t.Errorf("ferry %s printed %q, want it to start with %q", strings.Join(tt.args, " "), out, tt.want)
			}
		})
	}
}

// extractBinary writes /usr/local/bin/ferry of img's layer to dst.
func extractBinary(t *testing.T, img v1.Image, dst string) string {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v; want one", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatal("the layer has no usr/local/bin/ferry")
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name != "usr/local/bin/ferry" {
			continue
		}
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, tr); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		return dst
	}
}
