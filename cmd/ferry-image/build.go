package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ferryPkg is the package compiled into the image.
const ferryPkg = "./cmd/ferry"

// source describes the commit an image is built from; it stamps the binary
// and fills the labels, and its time is every timestamp in the image.
type source struct {
	// Dir is the root of the ferry module.
	Dir string
	// Version is stamped with -X main.version, as the Makefile's build does.
	Version string
	// Revision is the full commit id.
	Revision string
	// Created is the commit's time: reproducible, unlike the build's time.
	Created time.Time
}

// readSource finds the ferry module above the working directory and reads
// its commit with git.
func readSource(ctx context.Context, goCmd, version string) (source, error) {
	gomod, err := output(ctx, "", goCmd, "env", "GOMOD")
	if err != nil {
		return source{}, fmt.Errorf("find the ferry module: %w", err)
	}
	if gomod == "" || gomod == os.DevNull {
		return source{}, errors.New("find the ferry module: the working directory is not inside a Go module; run ferry-image from the ferry checkout")
	}
	s := source{Dir: filepath.Dir(gomod), Version: version}
	if s.Version == "" {
		// The Makefile's VERSION: git describe --tags --always --dirty.
		if s.Version, err = output(ctx, s.Dir, "git", "describe", "--tags", "--always", "--dirty"); err != nil {
			return source{}, fmt.Errorf("read the version (or pass --version): %w", err)
		}
	}
	if s.Revision, err = output(ctx, s.Dir, "git", "rev-parse", "HEAD"); err != nil {
		return source{}, fmt.Errorf("read the commit: %w", err)
	}
	ct, err := output(ctx, s.Dir, "git", "log", "-1", "--format=%ct", "HEAD")
	if err != nil {
		return source{}, fmt.Errorf("read the commit time: %w", err)
	}
	sec, err := strconv.ParseInt(ct, 10, 64)
	if err != nil {
		return source{}, fmt.Errorf("read the commit time: git printed %q: %w", ct, err)
	}
	s.Created = time.Unix(sec, 0).UTC()
	return s, nil
}

// compile builds a static ferry for p into dir and returns the binary's
// path. -trimpath keeps the build machine's paths out; the ldflags are the
// Makefile's build target's.
func compile(ctx context.Context, goCmd string, strip bool, src source, p v1.Platform, dir string) (string, error) {
	env, err := goEnv(p)
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "ferry-"+strings.ReplaceAll(p.String(), "/", "-"))
	ldflags := "-X main.version=" + src.Version
	if strip {
		ldflags = "-s -w " + ldflags
	}
	cmd := exec.CommandContext(ctx, goCmd, "build", "-trimpath", "-ldflags", ldflags, "-o", out, ferryPkg) //nolint:gosec // the user names the go command (--go)
	cmd.Dir = src.Dir
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("compile ferry for %s (%s): %w\n%s", p, strings.Join(env, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// output runs a command and returns its trimmed stdout.
func output(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...) //nolint:gosec // go and git, with fixed arguments
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}
