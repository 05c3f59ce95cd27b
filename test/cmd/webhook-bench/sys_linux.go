package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// Magic numbers of statfs(2) for the file systems a data dir is likely on.
var fsNames = map[int64]string{
	0xEF53:     "ext4",
	0x01021994: "tmpfs",
	0x58465342: "xfs",
	0x9123683E: "btrfs",
	0x794C7630: "overlayfs",
	0x6969:     "nfs",
	0x2FC12FC1: "zfs",
}

// fsType names the file system dir is on: Redis' fsync costs nothing on
// tmpfs, which would flatter ferry.
func fsType(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "unknown"
	}
	if name, ok := fsNames[int64(st.Type)]; ok {
		return name
	}
	return fmt.Sprintf("fs type %#x", st.Type)
}

// processCPU is the CPU time (user + system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// userHZ is the unit of /proc/stat; 100 on every Linux architecture Go
// supports.
const userHZ = 100

// machineBusy is the CPU time every process on the machine has used since
// boot (/proc/stat's first line but idle, iowait and steal), so a run can
// tell how much of the machine others took meanwhile.
func machineBusy() (time.Duration, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	fields := bytes.Fields(line)
	if len(fields) < 5 || string(fields[0]) != "cpu" {
		return 0, false
	}
	var busy int64
	for i, f := range fields[1:] {
		v, err := strconv.ParseInt(string(f), 10, 64)
		if err != nil {
			return 0, false
		}
		// user nice system idle iowait irq softirq steal guest guest_nice;
		// guest time is already counted in user, steal is the hypervisor's.
		switch i {
		case 3, 4, 7, 8, 9:
			continue
		}
		busy += v
	}
	return time.Duration(busy) * time.Second / userHZ, true
}
