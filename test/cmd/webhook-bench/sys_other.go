//go:build !linux

package main

import "time"

// fsType is only known on Linux.
func fsType(string) string { return "unknown" }

// processCPU is only measured on Linux.
func processCPU() time.Duration { return 0 }

// machineBusy is only known on Linux.
func machineBusy() (time.Duration, bool) { return 0, false }
