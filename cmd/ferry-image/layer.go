package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"path"
	"sort"
	"time"
)

// Paths and identities inside the image. The chart runs ferry as 65532:65532
// with a read-only root filesystem and an emptyDir on /tmp.
const (
	binaryPath  = "/usr/local/bin/ferry"
	caCertsPath = "/etc/ssl/certs/ca-certificates.crt"
	nonrootUID  = 65532
	nonrootHome = "/home/nonroot"
)

// passwd and group know root, nobody and nonroot, as distroless does, so
// that tools and libraries that look the user up find a name and a home.
const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group = "root:x:0:\n" +
		"nobody:x:65534:\n" +
		"nonroot:x:65532:\n"
)

// entry is one file or directory of the layer.
type entry struct {
	path     string // absolute
	dir      bool
	mode     int64
	uid, gid int
	data     []byte
}

// layerEntries lists everything the image holds, parents included.
func layerEntries(binary, caCerts []byte) []entry {
	files := []entry{
		{path: binaryPath, mode: 0o755, data: binary},
		{path: caCertsPath, mode: 0o644, data: caCerts},
		{path: "/etc/passwd", mode: 0o644, data: []byte(passwd)},
		{path: "/etc/group", mode: 0o644, data: []byte(group)},
		// Sticky and world-writable, as on any Linux; the chart mounts an
		// emptyDir here since the root filesystem is read-only.
		{path: "/tmp", dir: true, mode: 0o1777},
		{path: nonrootHome, dir: true, mode: 0o755, uid: nonrootUID, gid: nonrootUID},
	}
	dirs := map[string]bool{}
	for _, f := range files {
		if f.dir {
			dirs[f.path] = true
		}
	}
	out := append([]entry(nil), files...)
	for _, f := range files {
		for d := path.Dir(f.path); d != "/"; d = path.Dir(d) {
			if !dirs[d] {
				dirs[d] = true
				out = append(out, entry{path: d, dir: true, mode: 0o755})
			}
		}
	}
	// Lexical order puts every directory before what it holds.
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out
}

// layerTar writes the entries as an uncompressed tar. Nothing of the build
// machine leaks: owners are numeric and fixed, names and times are the
// same on every build, entries are sorted.
func layerTar(entries []entry, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime = mtime.UTC().Truncate(time.Second)
	for _, e := range entries {
		h := &tar.Header{
			Name:    e.path[1:],
			Mode:    e.mode,
			Uid:     e.uid,
			Gid:     e.gid,
			ModTime: mtime,
			Format:  tar.FormatPAX,
		}
		if e.dir {
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("write layer entry %s: %w", e.path, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("write layer entry %s: %w", e.path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close layer tar: %w", err)
	}
	return buf.Bytes(), nil
}
