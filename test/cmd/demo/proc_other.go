//go:build !linux

package main

import (
	"os/exec"
	"syscall"
)

// detach runs a child in its own process group, so a Ctrl-C in the
// terminal reaches the demo alone and the demo stops its children in order.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}
