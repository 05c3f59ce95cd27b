// Command ferry-image builds ferry's container image — a static ferry binary
// in one layer, for linux/amd64 and linux/arm64 in one index — and pushes it
// to a registry or writes it to an OCI archive.
//
//	go run ./cmd/ferry-image --push REGISTRY/REPO:TAG [--insecure]
//	go run ./cmd/ferry-image --tarball bin/ferry-image.tar
//
// Why not Docker: a Dockerfile needs a Docker engine (or BuildKit) with
// root-like rights, which neither this repository's CI nor most users' CI
// runners have, and a base image pulled from the internet. ferry is a static
// Go binary, so the image needs no distribution at all: like ko, this
// command cross-compiles it with CGO_ENABLED=0 and GOARCH, and assembles the
// image with go-containerregistry from the binary, the build machine's CA
// bundle and a passwd/group for the nonroot user (65532) the Helm chart runs
// as. Every timestamp is the commit's time and every tar entry is owned by
// 0/0 (the home of nonroot excepted) in a fixed order, so one commit built
// with one Go toolchain gives one digest.
//
// The archive is an OCI image layout in a tar (an "oci-archive"), which
// `skopeo copy --all oci-archive:FILE docker://REF`, `ctr images import
// --all-platforms FILE`, `docker load -i FILE` (Docker 25+) and `crane push
// --index DIR` (after `tar -xf FILE -C DIR`) read.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "ferry-image:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// run builds the image as opts say and prints its digest on stdout; progress
// goes to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("component", "ferry-image")
	return buildAndShip(ctx, opts, stdout, log)
}
