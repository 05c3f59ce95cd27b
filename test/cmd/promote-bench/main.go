// Command promote-bench measures ferry's copy by digest against a plain
// pull-then-push of the same image, in the same run, on the test bed's
// registry: it pushes a multi-layer image to one repository, promotes it to
// a second with ferry's Registry.Copy (blobs mounted across repositories)
// and copies it to a third by pulling every layer and pushing it again,
// then prints bytes moved and wall time side by side.
//
//	go run ./test/cmd/promote-bench [-layers 5] [-layer-mb 10] [-registry host:port]
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ferryci/ferry/pkg/promote"
	"github.com/ferryci/ferry/test/testbed"
)

// counter counts bytes sent and received through it.
type counter struct {
	next     http.RoundTripper
	sent     atomic.Int64
	received atomic.Int64
}

type countingReader struct {
	r io.ReadCloser
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
func (c countingReader) Close() error { return c.r.Close() }

func (c *counter) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		req.Body = countingReader{req.Body, &c.sent}
	}
	resp, err := c.next.RoundTrip(req)
	if resp != nil && resp.Body != nil {
		resp.Body = countingReader{resp.Body, &c.received}
	}
	return resp, err
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "promote-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	layers := flag.Int("layers", 5, "layers in the image")
	layerMB := flag.Int("layer-mb", 10, "size of each layer in MiB (random, incompressible)")
	reg := flag.String("registry", "", "registry host:port (default: the test bed's)")
	flag.Parse()
	if *reg == "" {
		path, err := testbed.EnvPath()
		if err != nil {
			return err
		}
		env, err := testbed.LoadEnv(path)
		if err != nil {
			return fmt.Errorf("%w (start the bed with make testbed-up, or pass -registry)", err)
		}
		*reg = env.Get(testbed.KeyRegistryAddr)
	}
	ctx := context.Background()
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	base := *reg + "/bench/" + hex.EncodeToString(id)

	var ls []v1.Layer
	var size int64
	for i := 0; i < *layers; i++ {
		l, err := random.Layer(int64(*layerMB)<<20, types.OCILayer)
		if err != nil {
			return err
		}
		n, _ := l.Size()
		size += n
		ls = append(ls, l)
	}
	img, err := mutate.AppendLayers(empty.Image, ls...)
	if err != nil {
		return err
	}
	src, _ := name.ParseReference(base + "/ci:build")
	if err := remote.Write(src, img, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("push source image: %w", err)
	}
	digest, _ := img.Digest()
	srcDigest := src.Context().Digest(digest.String())

	// ferry: copy by digest into another repository of the same registry.
	fc := &counter{next: remote.DefaultTransport}
	r := promote.NewRegistry(promote.RegistryConfig{Transport: fc})
	dst, _ := name.NewRepository(base + "/release")
	start := time.Now()
	got, err := r.Copy(ctx, srcDigest, dst, []string{"v1"})
	if err != nil {
		return fmt.Errorf("ferry copy: %w", err)
	}
	ferryTime := time.Since(start)
	if got.DigestStr() != digest.String() {
		return fmt.Errorf("ferry copy changed the digest: %s != %s", got.DigestStr(), digest)
	}

	// Baseline: pull every blob, then push it to a third repository as a
	// client without cross-repository mount would (docker pull + push).
	bc := &counter{next: remote.DefaultTransport}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(bc)}
	start = time.Now()
	pulled, err := remote.Image(srcDigest, opts...)
	if err != nil {
		return fmt.Errorf("pull: %w", err)
	}
	pls, err := pulled.Layers()
	if err != nil {
		return err
	}
	var local []v1.Layer
	for _, l := range pls {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		if _, err := io.Copy(&buf, rc); err != nil {
			return fmt.Errorf("pull layer: %w", err)
		}
		_ = rc.Close()
		mt, _ := l.MediaType()
		local = append(local, static.NewLayer(buf.Bytes(), mt))
	}
	copyImg, err := mutate.AppendLayers(empty.Image, local...)
	if err != nil {
		return err
	}
	plain, _ := name.ParseReference(base + "/plain:v1")
	if err := remote.Write(plain, copyImg, opts...); err != nil {
		return fmt.Errorf("push: %w", err)
	}
	plainTime := time.Since(start)

	mb := func(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
	fmt.Printf("image: %d layers, %s compressed, digest %s\n\n", *layers, mb(size), digest)
	fmt.Printf("%-22s %14s %14s %10s\n", "", "bytes sent", "bytes received", "wall time")
	fmt.Printf("%-22s %14s %14s %10s\n", "ferry copy by digest", mb(fc.sent.Load()), mb(fc.received.Load()), ferryTime.Round(time.Millisecond))
	fmt.Printf("%-22s %14s %14s %10s\n", "pull then push", mb(bc.sent.Load()), mb(bc.received.Load()), plainTime.Round(time.Millisecond))
	fmt.Printf("\nferry moved %.2f%% of the image's bytes; %.1fx faster\n",
		100*float64(fc.sent.Load()+fc.received.Load())/float64(size), float64(plainTime)/float64(ferryTime))
	return nil
}
