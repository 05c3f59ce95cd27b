//go:build !linux

package redisserver

import "os/exec"

// setParentDeathSignal has no portable equivalent outside Linux; Run's
// cleanup stops the server.
func setParentDeathSignal(*exec.Cmd) {}
