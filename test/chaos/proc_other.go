//go:build !linux

package chaos

import "os/exec"

// setParentDeathSignal has no portable equivalent outside Linux; the
// cluster's cleanup kills its processes.
func setParentDeathSignal(*exec.Cmd) {}
