package main

import (
	"bytes"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The container's command line. The chart passes the same args (its
// ConfigMap is mounted at /etc/ferry/config), so the image runs the same with
// or without it.
var (
	entrypoint = []string{binaryPath}
	cmd        = []string{"serve", "--config", "/etc/ferry/config/ferry.yaml"}
)

// meta is what the labels and annotations say about the build.
type meta struct {
	source
	// URL is org.opencontainers.image.source.
	URL string
	// License is org.opencontainers.image.licenses; "" leaves it out.
	License string
}

// labels are the OCI annotations of the image, also set as config labels
// (what docker inspect and most scanners read).
func (m meta) labels() map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":    "ferry",
		"org.opencontainers.image.source":   m.URL,
		"org.opencontainers.image.version":  m.Version,
		"org.opencontainers.image.revision": m.Revision,
		"org.opencontainers.image.created":  m.Created.UTC().Format("2006-01-02T15:04:05Z"),
	}
	if m.License != "" {
		l["org.opencontainers.image.licenses"] = m.License
	}
	return l
}

// configFile is the image config for platform p.
func configFile(p v1.Platform, m meta) *v1.ConfigFile {
	created := v1.Time{Time: m.Created.UTC()}
	return &v1.ConfigFile{
		Architecture: p.Architecture,
		OS:           p.OS,
		Variant:      p.Variant,
		Created:      created,
		Config: v1.Config{
			User:       fmt.Sprintf("%d:%d", nonrootUID, nonrootUID),
			Entrypoint: entrypoint,
			Cmd:        cmd,
			WorkingDir: nonrootHome,
			Env: []string{
				"PATH=/usr/local/bin:/usr/bin:/bin",
				"SSL_CERT_FILE=" + caCertsPath,
			},
			Labels: m.labels(),
		},
		RootFS: v1.RootFS{Type: "layers"},
	}
}

// newImage assembles the single-layer OCI image of one platform.
func newImage(p v1.Platform, layerData []byte, m meta) (v1.Image, error) {
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerData)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("make the %s layer: %w", p, err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, configFile(p, m))
	if err != nil {
		return nil, fmt.Errorf("set the %s image config: %w", p, err)
	}
	img, err = mutate.Append(img, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: m.Created.UTC()},
			CreatedBy: "ferry-image: go build -trimpath " + ferryPkg + "; CA certificates, passwd, group, /tmp",
			Comment:   "ferry " + m.Version,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("add the %s layer: %w", p, err)
	}
	// Compress and hash now, so a broken layer fails here and the index
	// can be written from memory.
	if _, err := img.Digest(); err != nil {
		return nil, fmt.Errorf("hash the %s image: %w", p, err)
	}
	return img, nil
}

// platformImage is one entry of the index.
type platformImage struct {
	platform v1.Platform
	image    v1.Image
}

// newIndex puts the images in one OCI index, in the order given.
func newIndex(imgs []platformImage, m meta) (v1.ImageIndex, error) {
	adds := make([]mutate.IndexAddendum, 0, len(imgs))
	for _, pi := range imgs {
		p := pi.platform
		adds = append(adds, mutate.IndexAddendum{
			Add:        pi.image,
			Descriptor: v1.Descriptor{Platform: &p},
		})
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	idx = mutate.AppendManifests(idx, adds...)
	idx, ok := mutate.Annotations(idx, m.labels()).(v1.ImageIndex)
	if !ok {
		return nil, fmt.Errorf("annotate the index: go-containerregistry returned no index")
	}
	if _, err := idx.Digest(); err != nil {
		return nil, fmt.Errorf("hash the index: %w", err)
	}
	return idx, nil
}
