package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

var (
	testTime    = time.Date(2026, 11, 29, 6, 9, 44, 0, time.UTC)
	testCACerts = []byte("-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n")
	amd64       = v1.Platform{OS: "linux", Architecture: "amd64"}
	arm64       = v1.Platform{OS: "linux", Architecture: "arm64"}
)

func testMeta() meta {
	return meta{
		source: source{Dir: "/somewhere/on/the/build/machine", Version: "v1.2.3", Revision: "8d34cd93d29c9322adf935ec829c62a04a073d8b", Created: testTime},
		URL:    defaultSource,
	}
}

// tarEntry is a read-back layer entry.
type tarEntry struct {
	hdr  *tar.Header
	data []byte
}

func readTar(t *testing.T, r io.Reader) []tarEntry {
	t.Helper()
	var out []tarEntry
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("read tar entry %s: %v", h.Name, err)
		}
		out = append(out, tarEntry{h, data})
	}
}

func TestLayer(t *testing.T) {
	binary := []byte("\x7fELF a ferry binary")
	data, err := layerTar(layerEntries(binary, testCACerts), testTime.Add(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	entries := readTar(t, bytes.NewReader(data))
	got := map[string]tarEntry{}
	var names []string
	for _, e := range entries {
		got[e.hdr.Name] = e
		names = append(names, e.hdr.Name)
	}

	wantNames := []string{
		"etc/", "etc/group", "etc/passwd", "etc/ssl/", "etc/ssl/certs/", "etc/ssl/certs/ca-certificates.crt",
		"home/", "home/nonroot/", "tmp/", "usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/ferry",
	}
	if !reflect.DeepEqual(names, wantNames) {
		t.Fatalf("layer entries, in order:\n got %q\nwant %q", names, wantNames)
	}

	tests := []struct {
		name     string
		typ      byte
		mode     int64
		uid, gid int
		data     []byte
	}{
		{"usr/local/bin/ferry", tar.TypeReg, 0o755, 0, 0, binary},
		{"etc/ssl/certs/ca-certificates.crt", tar.TypeReg, 0o644, 0, 0, testCACerts},
		{"etc/passwd", tar.TypeReg, 0o644, 0, 0, nil},
		{"etc/group", tar.TypeReg, 0o644, 0, 0, nil},
		{"tmp/", tar.TypeDir, 0o1777, 0, 0, nil},
		{"home/nonroot/", tar.TypeDir, 0o755, 65532, 65532, nil},
		{"usr/local/bin/", tar.TypeDir, 0o755, 0, 0, nil},
		{"etc/", tar.TypeDir, 0o755, 0, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := got[tt.name]
			if e.hdr.Typeflag != tt.typ || e.hdr.Mode != tt.mode || e.hdr.Uid != tt.uid || e.hdr.Gid != tt.gid {
				t.Errorf("type %c mode %o owner %d:%d, want type %c mode %o owner %d:%d",
					e.hdr.Typeflag, e.hdr.Mode, e.hdr.Uid, e.hdr.Gid, tt.typ, tt.mode, tt.uid, tt.gid)
			}
			if tt.data != nil && !bytes.Equal(e.data, tt.data) {
				t.Errorf("content %q, want %q", e.data, tt.data)
			}
		})
	}

	t.Run("nothing of the build machine", func(t *testing.T) {
		for _, e := range entries {
			h := e.hdr
			if h.Uname != "" || h.Gname != "" || len(h.PAXRecords) > 0 || !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() {
				t.Errorf("%s: uname %q gname %q pax %v atime %v ctime %v; want none", h.Name, h.Uname, h.Gname, h.PAXRecords, h.AccessTime, h.ChangeTime)
			}
			if !h.ModTime.Equal(testTime) {
				t.Errorf("%s: mtime %v, want the commit time %v (whole seconds)", h.Name, h.ModTime, testTime)
			}
		}
	})

	t.Run("passwd and group", func(t *testing.T) {
		p := string(got["etc/passwd"].data)
		if !strings.Contains(p, "\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n") {
			t.Errorf("passwd has no nonroot 65532 entry:\n%s", p)
		}
		if !strings.HasPrefix(p, "root:x:0:0:") {
			t.Errorf("passwd does not start with root:\n%s", p)
		}
		if g := string(got["etc/group"].data); !strings.Contains(g, "\nnonroot:x:65532:\n") {
			t.Errorf("group has no nonroot 65532 entry:\n%s", g)
		}
	})
}

func TestConfig(t *testing.T) {
	m := testMeta()
	img, err := newImage(arm64, mustLayer(t, "bin"), m)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	checks := []struct {
		name      string
		got, want any
	}{
		{"os", cf.OS, "linux"},
		{"architecture", cf.Architecture, "arm64"},
		{"created", cf.Created.UTC(), testTime},
		{"user", c.User, "65532:65532"},
		{"entrypoint", c.Entrypoint, []string{"/usr/local/bin/ferry"}},
		{"cmd", c.Cmd, []string{"serve", "--config", "/etc/ferry/config/ferry.yaml"}},
		{"workingdir", c.WorkingDir, "/home/nonroot"},
		{"env", c.Env, []string{"PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}},
		{"label source", c.Labels["org.opencontainers.image.source"], defaultSource},
		{"label version", c.Labels["org.opencontainers.image.version"], "v1.2.3"},
		{"label revision", c.Labels["org.opencontainers.image.revision"], m.Revision},
		{"label created", c.Labels["org.opencontainers.image.created"], "2026-11-29T06:09:44Z"},
		{"no license label without --license", c.Labels["org.opencontainers.image.licenses"], ""},
		{"diff ids", len(cf.RootFS.DiffIDs), 1},
		{"history", len(cf.History), 1},
	}
	for _, tt := range checks {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Errorf("got %#v, want %#v", tt.got, tt.want)
			}
		})
	}

	t.Run("media types", func(t *testing.T) {
		mt, _ := img.MediaType()
		mf, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if mt != types.OCIManifestSchema1 || mf.Config.MediaType != types.OCIConfigJSON || len(mf.Layers) != 1 || mf.Layers[0].MediaType != types.OCILayer {
			t.Errorf("manifest %s, config %s, layers %v: want OCI throughout, one layer", mt, mf.Config.MediaType, mf.Layers)
		}
	})

	t.Run("license label when given", func(t *testing.T) {
		m := testMeta()
		m.License = "Apache-2.0"
		if got := m.labels()["org.opencontainers.image.licenses"]; got != "Apache-2.0" {
			t.Errorf("licenses label %q, want Apache-2.0", got)
		}
	})
}

// TestCmdMatchesChart keeps the image's default command in step with the
// args the chart passes, so the image runs the same with and without them.
func TestCmdMatchesChart(t *testing.T) {
	tpl, err := os.ReadFile("../../charts/ferry/templates/deployment.yaml")
	if err != nil {
		t.Fatalf("read the chart's deployment: %v", err)
	}
	want := "args: [" + strings.Join(cmd, ", ") + "]"
	if !strings.Contains(string(tpl), want) {
		t.Errorf("the chart's deployment does not pass %q; keep cmd in image.go and the chart in step", want)
	}
}

func mustLayer(t *testing.T, binary string) []byte {
	t.Helper()
	data, err := layerTar(layerEntries([]byte(binary), testCACerts), testTime)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func mustIndex(t *testing.T, m meta, binaries map[string]string) v1.ImageIndex {
	t.Helper()
	var imgs []platformImage
	for _, p := range []v1.Platform{amd64, arm64} {
		img, err := newImage(p, mustLayer(t, binaries[p.Architecture]), m)
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, platformImage{p, img})
	}
	idx, err := newIndex(imgs, m)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

func TestIndex(t *testing.T) {
	bins := map[string]string{"amd64": "x86 ferry", "arm64": "arm ferry"}
	idx := mustIndex(t, testMeta(), bins)
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex || len(im.Manifests) != 2 {
		t.Fatalf("index %s with %d manifests, want an OCI index of 2", im.MediaType, len(im.Manifests))
	}
	for i, want := range []v1.Platform{amd64, arm64} {
		if p := im.Manifests[i].Platform; p == nil || !p.Equals(want) {
			t.Errorf("manifest %d has platform %v, want %v", i, p, want)
		}
	}
	if got := im.Annotations["org.opencontainers.image.revision"]; got != testMeta().Revision {
		t.Errorf("index revision annotation %q, want %q", got, testMeta().Revision)
	}
}

func TestReproducible(t *testing.T) {
	bins := map[string]string{"amd64": "x86 ferry", "arm64": "arm ferry"}
	first := digestOf(t, mustIndex(t, testMeta(), bins))

	t.Run("same inputs, same digest", func(t *testing.T) {
		if again := digestOf(t, mustIndex(t, testMeta(), bins)); again != first {
			t.Errorf("second build %s, first %s", again, first)
		}
	})
	t.Run("build directory does not matter", func(t *testing.T) {
		m := testMeta()
		m.Dir = t.TempDir()
		if again := digestOf(t, mustIndex(t, m, bins)); again != first {
			t.Errorf("build in %s gave %s, want %s", m.Dir, again, first)
		}
	})
	changes := []struct {
		name   string
		change func(*meta, map[string]string)
	}{
		{"binary", func(_ *meta, b map[string]string) { b["arm64"] = "another arm ferry" }},
		{"version", func(m *meta, _ map[string]string) { m.Version = "v1.2.4" }},
		{"commit time", func(m *meta, _ map[string]string) { m.Created = m.Created.Add(time.Second) }},
	}
	for _, tt := range changes {
		t.Run("a different "+tt.name+" changes the digest", func(t *testing.T) {
			m := testMeta()
			b := map[string]string{"amd64": bins["amd64"], "arm64": bins["arm64"]}
			tt.change(&m, b)
			if d := digestOf(t, mustIndex(t, m, b)); d == first {
				t.Errorf("digest %s did not change", d)
			}
		})
	}
}

func digestOf(t *testing.T, idx v1.ImageIndex) string {
	t.Helper()
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func TestArchive(t *testing.T) {
	bins := map[string]string{"amd64": "x86 ferry", "arm64": "arm ferry"}
	idx := mustIndex(t, testMeta(), bins)
	dir := t.TempDir()
	file := filepath.Join(dir, "out", "ferry-image.tar")
	if err := writeArchiveFile(file, idx, "ferryci/ferry:v1.2.3", testTime); err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("byte for byte the same twice", func(t *testing.T) {
		var again bytes.Buffer
		if err := writeArchive(&again, mustIndex(t, testMeta(), bins), "ferryci/ferry:v1.2.3", testTime); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again.Bytes(), first) {
			t.Error("the second archive differs from the first")
		}
	})

	t.Run("an OCI layout that go-containerregistry reads back", func(t *testing.T) {
		root := filepath.Join(dir, "layout")
		for _, e := range readTar(t, bytes.NewReader(first)) {
			if want, ok := strings.CutPrefix(e.hdr.Name, "blobs/sha256/"); ok && want != "" {
				if sum := sha256Hex(e.data); sum != want {
					t.Errorf("blob %s holds content of digest %s", want, sum)
				}
			}
			p := filepath.Join(root, filepath.FromSlash(e.hdr.Name))
			if e.hdr.Typeflag == tar.TypeDir {
				if err := os.MkdirAll(p, 0o755); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err := os.WriteFile(p, e.data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		top, err := layout.ImageIndexFromPath(root)
		if err != nil {
			t.Fatal(err)
		}
		tm, err := top.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		if len(tm.Manifests) != 1 {
			t.Fatalf("index.json lists %d entries, want the one index", len(tm.Manifests))
		}
		desc := tm.Manifests[0]
		if desc.Digest.String() != digestOf(t, idx) || desc.Annotations["org.opencontainers.image.ref.name"] != "v1.2.3" ||
			desc.Annotations["io.containerd.image.name"] != "index.docker.io/ferryci/ferry:v1.2.3" {
			t.Errorf("index.json entry %+v, want the index %s named ferryci/ferry:v1.2.3", desc, digestOf(t, idx))
		}
		back, err := top.ImageIndex(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		bm, err := back.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range bm.Manifests {
			img, err := back.Image(d.Digest)
			if err != nil {
				t.Fatalf("image %s of the archive: %v", d.Digest, err)
			}
			if _, err := img.ConfigFile(); err != nil {
				t.Errorf("config of %s: %v", d.Digest, err)
			}
			layers, err := img.Layers()
			if err != nil || len(layers) != 1 {
				t.Fatalf("layers of %s: %d, %v; want one", d.Digest, len(layers), err)
			}
			rc, err := layers[0].Uncompressed()
			if err != nil {
				t.Fatal(err)
			}
			entries := readTar(t, rc)
			_ = rc.Close()
			if len(entries) == 0 || entries[len(entries)-1].hdr.Name != "usr/local/bin/ferry" {
				t.Errorf("layer of %s does not end with the ferry binary", d.Digest)
			}
		}
	})
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
