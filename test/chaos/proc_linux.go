package chaos

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal kills a ferry process when the test binary dies, so
// an interrupted run leaves no process behind.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
