package main

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// memSample is one look at this process's memory.
type memSample struct {
	// RSS is VmRSS from /proc/self/status.
	RSS uint64
	// HeapLive is the heap marked live by the last GC (/gc/heap/live).
	HeapLive uint64
	// HeapObjects is the heap occupied by objects, live or not yet swept
	// (/memory/classes/heap/objects).
	HeapObjects uint64
	// GoTotal is all memory mapped by the Go runtime
	// (/memory/classes/total).
	GoTotal uint64
}

var memMetrics = []string{"/gc/heap/live:bytes", "/memory/classes/heap/objects:bytes", "/memory/classes/total:bytes"}

func sampleMem() memSample {
	s := make([]metrics.Sample, len(memMetrics))
	for i, n := range memMetrics {
		s[i].Name = n
	}
	metrics.Read(s)
	v := func(i int) uint64 {
		if s[i].Value.Kind() == metrics.KindUint64 {
			return s[i].Value.Uint64()
		}
		return 0
	}
	return memSample{RSS: procStatus("VmRSS"), HeapLive: v(0), HeapObjects: v(1), GoTotal: v(2)}
}

// settledMem collects garbage first, so the sample is the live state.
func settledMem() memSample {
	runtime.GC()
	return sampleMem()
}

// procStatus reads a kB field of /proc/self/status in bytes (0 if absent).
func procStatus(field string) uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != field {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0
		}
		return kb * 1024
	}
	return 0
}

// memPeak samples memory every interval until stopped and keeps the peaks.
type memPeak struct {
	mu     sync.Mutex
	peak   memSample
	stop   chan struct{}
	done   chan struct{}
	sample func()
}

func startMemPeak(interval time.Duration, extra func()) *memPeak {
	m := &memPeak{stop: make(chan struct{}), done: make(chan struct{}), sample: extra}
	go func() {
		defer close(m.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			m.observe()
			select {
			case <-m.stop:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

func (m *memPeak) observe() {
	s := sampleMem()
	m.mu.Lock()
	m.peak.RSS = max(m.peak.RSS, s.RSS)
	m.peak.HeapLive = max(m.peak.HeapLive, s.HeapLive)
	m.peak.HeapObjects = max(m.peak.HeapObjects, s.HeapObjects)
	m.peak.GoTotal = max(m.peak.GoTotal, s.GoTotal)
	m.mu.Unlock()
	if m.sample != nil {
		m.sample()
	}
}

// Stop ends sampling and returns the peaks.
func (m *memPeak) Stop() memSample {
	close(m.stop)
	<-m.done
	m.observe()
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.peak
}

// cpuTime is the CPU time (user + system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineCPU is the CPU time every process on the machine has used (busy)
// since boot, from /proc/stat (idle, iowait, steal and guest excluded).
func machineCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	fields := bytes.Fields(line)
	if len(fields) < 5 || string(fields[0]) != "cpu" {
		return 0
	}
	var busy int64
	for i, f := range fields[1:] {
		v, err := strconv.ParseInt(string(f), 10, 64)
		if err != nil {
			return 0
		}
		switch i {
		case 3, 4, 7, 8, 9:
			continue
		}
		busy += v
	}
	return time.Duration(busy) * time.Second / 100 // USER_HZ
}

// machineFacts describes the machine in one line.
func machineFacts() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := "?"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if l, _, ok := strings.Cut(string(b), "\n"); ok {
			mem = strings.Join(strings.Fields(strings.TrimPrefix(l, "MemTotal:")), " ")
		}
	}
	load := "?"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			load = strings.Join(f[:3], " ")
		}
	}
	kernel := "?"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	return model + ", " + strconv.Itoa(runtime.NumCPU()) + " CPUs (GOMAXPROCS " + strconv.Itoa(runtime.GOMAXPROCS(0)) +
		"), " + mem + " RAM, Linux " + kernel + ", load " + load + ", " + runtime.Version()
}
