package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// errUsage marks errors in the command line (exit code 2).
var errUsage = errors.New("usage")

// options is what the command line asks for.
type options struct {
	// push is the reference the index is pushed to; nil when not pushing.
	push name.Reference
	// tarball is the OCI archive written; "" when none.
	tarball string
	// name is the image's name recorded in the archive (ref.name annotations).
	name string
	// platforms to build, in the index's order.
	platforms []v1.Platform
	// version stamped into the binary and the labels; "" means git describe,
	// as the Makefile's build target does.
	version string
	// caCerts is the CA bundle copied into the image.
	caCerts string
	// source is org.opencontainers.image.source.
	source string
	// license is org.opencontainers.image.licenses (SPDX); "" leaves it out.
	license string
	// goCmd is the go command that compiles ferry.
	goCmd string
	// strip adds -s -w to the ldflags: no symbol table nor DWARF, a layer
	// half the size; panics still print file:line.
	strip bool
}

const (
	defaultPlatforms = "linux/amd64,linux/arm64"
	defaultCACerts   = "/etc/ssl/certs/ca-certificates.crt"
	defaultSource    = "https://github.com/ferryci/ferry"
	defaultName      = "ferryci/ferry"
)

func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("ferry-image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: ferry-image (--push REGISTRY/REPO:TAG | --tarball FILE) [flags]

Builds ferry's multi-platform image without Docker and prints its digest.
Registry credentials come from the Docker config (~/.docker/config.json or
$DOCKER_CONFIG, and its credential helpers): log in with docker login, crane
auth login or podman login --authfile.

flags:
`)
		fs.PrintDefaults()
	}
	var (
		o         options
		push      string
		platforms string
		insecure  bool
	)
	fs.StringVar(&push, "push", "", "push the image index to this `reference` (REGISTRY/REPO:TAG)")
	fs.StringVar(&o.tarball, "tarball", "", "write the image index as an OCI archive (OCI image layout in a tar) to this `file`")
	fs.StringVar(&o.name, "name", "", "image `name` recorded in the archive for ctr/skopeo/docker load (default: the --push reference, else "+defaultName+":VERSION)")
	fs.StringVar(&platforms, "platforms", defaultPlatforms, "comma-separated `os/arch[/variant]` list; only linux")
	fs.BoolVar(&insecure, "insecure", false, "the registry speaks plain HTTP (loopback and private addresses need not say so)")
	fs.StringVar(&o.version, "version", "", "`version` stamped into ferry and the labels (default: git describe --tags --always --dirty)")
	fs.StringVar(&o.caCerts, "ca-certs", defaultCACerts, "CA bundle (PEM) copied into the image for HTTPS to Jenkins, GitHub, GitLab and registries")
	fs.StringVar(&o.source, "source", defaultSource, "org.opencontainers.image.source label")
	fs.StringVar(&o.license, "license", "", "org.opencontainers.image.licenses label (SPDX expression); empty leaves it out")
	fs.StringVar(&o.goCmd, "go", "go", "the go `command` that compiles ferry")
	fs.BoolVar(&o.strip, "strip", false, "add -s -w to the Makefile's ldflags: no DWARF or symbol table, about half the layer size")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return o, usageErr("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if push == "" && o.tarball == "" {
		return o, usageErr("nothing to do: give --push REGISTRY/REPO:TAG, --tarball FILE, or both")
	}
	if push != "" {
		var nameOpts []name.Option
		if insecure {
			nameOpts = append(nameOpts, name.Insecure)
		}
		ref, err := name.ParseReference(push, nameOpts...)
		if err != nil {
			return o, usageErr("--push %q is not an image reference (want REGISTRY/REPO:TAG, lower-case repository): %v", push, err)
		}
		if _, ok := ref.(name.Digest); ok {
			return o, usageErr("--push %q names a digest; push to a tag (the digest is printed afterwards)", push)
		}
		o.push = ref
	} else if insecure {
		return o, usageErr("--insecure only applies to --push")
	}
	if o.name != "" {
		if _, err := name.NewTag(o.name); err != nil {
			return o, usageErr("--name %q is not an image name with a tag: %v", o.name, err)
		}
	}
	ps, err := parsePlatforms(platforms)
	if err != nil {
		return o, err
	}
	o.platforms = ps
	if o.caCerts == "" {
		return o, usageErr("--ca-certs is empty; ferry needs a CA bundle for HTTPS")
	}
	return o, nil
}

// parsePlatforms reads "linux/amd64,linux/arm64"; only Linux is built, each
// platform once.
func parsePlatforms(s string) ([]v1.Platform, error) {
	var out []v1.Platform
	seen := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := v1.ParsePlatform(f)
		if err != nil {
			return nil, usageErr("--platforms: %v", err)
		}
		if p.OS != "linux" || p.Architecture == "" || p.OSVersion != "" {
			return nil, usageErr("--platforms: %q is not linux/ARCH[/VARIANT]; ferry's image is Linux only", f)
		}
		if _, err := goEnv(*p); err != nil {
			return nil, usageErr("--platforms: %v", err)
		}
		if seen[p.String()] {
			return nil, usageErr("--platforms: %q is listed twice", f)
		}
		seen[p.String()] = true
		out = append(out, *p)
	}
	if len(out) == 0 {
		return nil, usageErr("--platforms is empty; want e.g. %s", defaultPlatforms)
	}
	return out, nil
}

// goEnv is the environment that makes go build compile for p.
func goEnv(p v1.Platform) ([]string, error) {
	env := []string{"CGO_ENABLED=0", "GOOS=" + p.OS, "GOARCH=" + p.Architecture}
	switch {
	case p.Variant == "":
	case p.Architecture == "arm" && (p.Variant == "v5" || p.Variant == "v6" || p.Variant == "v7"):
		env = append(env, "GOARM="+strings.TrimPrefix(p.Variant, "v"))
	case p.Architecture == "arm64" && p.Variant == "v8":
	case p.Architecture == "amd64" && (p.Variant == "v1" || p.Variant == "v2" || p.Variant == "v3" || p.Variant == "v4"):
		env = append(env, "GOAMD64="+p.Variant)
	default:
		return nil, fmt.Errorf("variant %q of %s is not one go build knows", p.Variant, p.Architecture)
	}
	return env, nil
}
