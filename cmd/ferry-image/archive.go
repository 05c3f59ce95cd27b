package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// blob is one file under blobs/ of the OCI layout.
type blob struct {
	digest v1.Hash
	size   int64
	open   func() (io.ReadCloser, error)
}

func bytesBlob(d v1.Hash, b []byte) blob {
	return blob{digest: d, size: int64(len(b)), open: func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}}
}

// writeArchiveFile writes idx as an OCI archive to path (through a
// temporary file, so a failed build leaves no half archive).
func writeArchiveFile(path string, idx v1.ImageIndex, imageName string, mtime time.Time) (err error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil { //nolint:gosec // an output directory like bin/, readable as the build tree is
			return fmt.Errorf("write OCI archive: %w", err)
		}
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".ferry-image-*.tar")
	if err != nil {
		return fmt.Errorf("write OCI archive: %w", err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err := writeArchive(f, idx, imageName, mtime); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write OCI archive %s: %w", path, err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil { //nolint:gosec // an image archive is meant to be read by ctr, skopeo, docker
		return fmt.Errorf("write OCI archive %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write OCI archive %s: %w", path, err)
	}
	return nil
}

// writeArchive writes an OCI image layout as a tar: oci-layout, index.json
// naming idx imageName, and every blob, in a fixed order.
func writeArchive(w io.Writer, idx v1.ImageIndex, imageName string, mtime time.Time) error {
	blobs, err := indexBlobs(idx)
	if err != nil {
		return fmt.Errorf("write OCI archive: %w", err)
	}
	rawIdx, err := idx.RawManifest()
	if err != nil {
		return fmt.Errorf("write OCI archive: read the index: %w", err)
	}
	digest, err := idx.Digest()
	if err != nil {
		return fmt.Errorf("write OCI archive: hash the index: %w", err)
	}
	tag, err := name.NewTag(imageName)
	if err != nil {
		return fmt.Errorf("write OCI archive: image name %q: %w", imageName, err)
	}
	top := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: types.OCIImageIndex,
			Digest:    digest,
			Size:      int64(len(rawIdx)),
			Annotations: map[string]string{
				// skopeo and docker load read the tag; ctr import the full name.
				"org.opencontainers.image.ref.name": tag.TagStr(),
				"io.containerd.image.name":          tag.Name(),
			},
		}},
	}
	indexJSON, err := json.Marshal(top)
	if err != nil {
		return fmt.Errorf("write OCI archive: encode index.json: %w", err)
	}

	tw := tar.NewWriter(w)
	mtime = mtime.UTC().Truncate(time.Second)
	dir := func(n string) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: n, Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX})
	}
	file := func(n string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Size: size, Mode: 0o644, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	}
	if err := dir("blobs/"); err != nil {
		return fmt.Errorf("write OCI archive: %w", err)
	}
	if err := dir("blobs/sha256/"); err != nil {
		return fmt.Errorf("write OCI archive: %w", err)
	}
	for _, b := range blobs {
		rc, err := b.open()
		if err != nil {
			return fmt.Errorf("write OCI archive: open blob %s: %w", b.digest, err)
		}
		err = file("blobs/sha256/"+b.digest.Hex, b.size, rc)
		_ = rc.Close()
		if err != nil {
			return fmt.Errorf("write OCI archive: blob %s: %w", b.digest, err)
		}
	}
	if err := file("index.json", int64(len(indexJSON)), strings.NewReader(string(indexJSON))); err != nil {
		return fmt.Errorf("write OCI archive: index.json: %w", err)
	}
	layoutJSON := `{"imageLayoutVersion":"1.0.0"}`
	if err := file("oci-layout", int64(len(layoutJSON)), strings.NewReader(layoutJSON)); err != nil {
		return fmt.Errorf("write OCI archive: oci-layout: %w", err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("write OCI archive: %w", err)
	}
	return nil
}

// indexBlobs lists the blobs of idx and its images, sorted by digest, each
// once.
func indexBlobs(idx v1.ImageIndex) ([]blob, error) {
	byDigest := map[v1.Hash]blob{}
	add := func(b blob) { byDigest[b.digest] = b }

	raw, err := idx.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("read the index: %w", err)
	}
	d, err := idx.Digest()
	if err != nil {
		return nil, fmt.Errorf("hash the index: %w", err)
	}
	add(bytesBlob(d, raw))
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("read the index: %w", err)
	}
	for _, desc := range im.Manifests {
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return nil, fmt.Errorf("read image %s: %w", desc.Digest, err)
		}
		raw, err := img.RawManifest()
		if err != nil {
			return nil, fmt.Errorf("read image %s: %w", desc.Digest, err)
		}
		add(bytesBlob(desc.Digest, raw))
		cfg, err := img.RawConfigFile()
		if err != nil {
			return nil, fmt.Errorf("read the config of %s: %w", desc.Digest, err)
		}
		cfgName, err := img.ConfigName()
		if err != nil {
			return nil, fmt.Errorf("hash the config of %s: %w", desc.Digest, err)
		}
		add(bytesBlob(cfgName, cfg))
		layers, err := img.Layers()
		if err != nil {
			return nil, fmt.Errorf("read the layers of %s: %w", desc.Digest, err)
		}
		for _, l := range layers {
			ld, err := l.Digest()
			if err != nil {
				return nil, fmt.Errorf("hash a layer of %s: %w", desc.Digest, err)
			}
			size, err := l.Size()
			if err != nil {
				return nil, fmt.Errorf("size a layer of %s: %w", desc.Digest, err)
			}
			add(blob{digest: ld, size: size, open: l.Compressed})
		}
	}
	out := make([]blob, 0, len(byDigest))
	for _, b := range byDigest {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].digest.String() < out[j].digest.String() })
	return out, nil
}
