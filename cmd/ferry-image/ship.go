package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// buildAndShip builds the index and writes it where opts say, printing the
// digest (and the pushed reference) on stdout.
func buildAndShip(ctx context.Context, opts options, stdout io.Writer, log *slog.Logger) error {
	start := time.Now()
	src, err := readSource(ctx, opts.goCmd, opts.version)
	if err != nil {
		return err
	}
	m := meta{source: src, URL: opts.source, License: opts.license}
	idx, err := buildIndex(ctx, opts, m, log)
	if err != nil {
		return err
	}
	digest, err := idx.Digest()
	if err != nil {
		return fmt.Errorf("hash the index: %w", err)
	}
	log.Info("built ferry image", "version", src.Version, "revision", src.Revision,
		"digest", digest.String(), "seconds", time.Since(start).Seconds())

	if opts.tarball != "" {
		imageName := opts.name
		switch {
		case imageName != "":
		case opts.push != nil:
			imageName = opts.push.Name()
		default:
			imageName = defaultName + ":" + tagSafe(src.Version)
		}
		if err := writeArchiveFile(opts.tarball, idx, imageName, src.Created); err != nil {
			return err
		}
		log.Info("wrote OCI archive", "file", opts.tarball, "name", imageName)
	}
	if opts.push != nil {
		if err := push(ctx, opts.push, idx); err != nil {
			return err
		}
		log.Info("pushed", "reference", opts.push.Name(), "digest", digest.String())
		fmt.Fprintf(stdout, "%s@%s\n", opts.push.Context().Name(), digest)
		return nil
	}
	fmt.Fprintln(stdout, digest)
	return nil
}

// buildIndex compiles ferry for every platform and assembles the index. The
// platforms are built at the same time: linking and compressing are largely
// single-threaded.
func buildIndex(ctx context.Context, opts options, m meta, log *slog.Logger) (v1.ImageIndex, error) {
	caCerts, err := os.ReadFile(opts.caCerts)
	if err != nil {
		return nil, fmt.Errorf("read the CA bundle for the image: %w; install it (Debian: apt-get install ca-certificates) or point --ca-certs at a PEM bundle", err)
	}
	if !strings.Contains(string(caCerts), "-----BEGIN CERTIFICATE-----") {
		return nil, fmt.Errorf("read the CA bundle for the image: %s holds no PEM certificate; point --ca-certs at a PEM bundle", opts.caCerts)
	}
	dir, err := os.MkdirTemp("", "ferry-image-")
	if err != nil {
		return nil, fmt.Errorf("make a build directory: %w", err)
	}
	defer os.RemoveAll(dir)

	imgs := make([]platformImage, len(opts.platforms))
	errs := make([]error, len(opts.platforms))
	var wg sync.WaitGroup
	for i, p := range opts.platforms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			img, err := buildImage(ctx, opts.goCmd, opts.strip, m, p, caCerts, dir)
			if err != nil {
				errs[i] = err
				return
			}
			imgs[i] = platformImage{platform: p, image: img}
			d, _ := img.Digest()
			log.Info("built platform image", "platform", p.String(), "digest", d.String(), "seconds", time.Since(start).Seconds())
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return newIndex(imgs, m)
}

// buildImage compiles ferry for p and assembles its image.
func buildImage(ctx context.Context, goCmd string, strip bool, m meta, p v1.Platform, caCerts []byte, dir string) (v1.Image, error) {
	bin, err := compile(ctx, goCmd, strip, m.source, p, dir)
	if err != nil {
		return nil, err
	}
	binary, err := os.ReadFile(bin) //nolint:gosec // the binary just compiled into our temporary directory
	if err != nil {
		return nil, fmt.Errorf("read the %s binary: %w", p, err)
	}
	data, err := layerTar(layerEntries(binary, caCerts), m.Created)
	if err != nil {
		return nil, fmt.Errorf("make the %s layer: %w", p, err)
	}
	return newImage(p, data, m)
}

// tagSafe turns a version into a valid tag (git describe may give anything
// a tag allows, but be safe about '+').
func tagSafe(v string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			return r
		}
		return '-'
	}, v)
}

// push writes the index and its images to ref with the Docker config's
// credentials.
func push(ctx context.Context, ref name.Reference, idx v1.ImageIndex) error {
	err := remote.WriteIndex(ref, idx,
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithUserAgent("ferry-image"))
	if err != nil {
		return explainPushError(ref, err)
	}
	return nil
}

// explainPushError says what a failed push means and how to fix it. The
// registry's words are kept (go-containerregistry redacts credentials from
// URLs); credentials themselves are never part of the message.
func explainPushError(ref name.Reference, err error) error {
	reg := ref.Context().RegistryStr()
	hint := ""
	var terr *transport.Error
	var opErr *net.OpError
	switch {
	case errors.As(err, &terr) && (terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden ||
		hasCode(terr, transport.UnauthorizedErrorCode, transport.DeniedErrorCode)):
		hint = fmt.Sprintf("the registry refused the credentials: log in to %s (docker login, crane auth login) so that ~/.docker/config.json or $DOCKER_CONFIG has them, and check the account may push to %s", reg, ref.Context().RepositoryStr())
	case errors.As(err, &terr) && hasCode(terr, transport.NameUnknownErrorCode):
		hint = fmt.Sprintf("the repository %s does not exist on %s: create it first (e.g. in the Alibaba Cloud ACR console) or push to one that does", ref.Context().RepositoryStr(), reg)
	case errors.As(err, &terr):
		hint = fmt.Sprintf("the registry %s refused the push (HTTP %d)", reg, terr.StatusCode)
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		hint = fmt.Sprintf("%s speaks plain HTTP: add --insecure", reg)
	case strings.Contains(err.Error(), "x509:") || strings.Contains(err.Error(), "tls:"):
		hint = fmt.Sprintf("the TLS certificate of %s is not trusted here: add its CA to the system bundle (or SSL_CERT_FILE)", reg)
	case errors.Is(err, syscall.ECONNREFUSED) || (errors.As(err, &opErr) && opErr.Op == "dial"):
		hint = fmt.Sprintf("nothing answers at %s: check the registry address and that it is running", reg)
	}
	if hint == "" {
		return fmt.Errorf("push %s: %w", ref.Name(), err)
	}
	return fmt.Errorf("push %s: %s: %w", ref.Name(), hint, err)
}

func hasCode(e *transport.Error, codes ...transport.ErrorCode) bool {
	for _, d := range e.Errors {
		for _, c := range codes {
			if d.Code == c {
				return true
			}
		}
	}
	return false
}
