package main

import (
	"os/exec"
	"syscall"
)

// detach runs a child in its own process group, so a Ctrl-C in the
// terminal reaches the demo alone and the demo stops its children in order;
// the kernel kills the child if the demo itself is killed.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
