package redisserver

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal kills redis-server when the test binary dies, so an
// interrupted test run leaves no server behind.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
