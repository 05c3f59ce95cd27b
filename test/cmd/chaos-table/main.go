// Command chaos-table prints the fault suite's figures as a table: it reads
// the report file the suite appends to (FERRY_CHAOS_REPORT, one line of
// key=value figures per run) and, per fault, gives how many runs there
// were, the leader hand-off (p50 and max: time until another replica held
// the Lease and work resumed), deliveries sent, answered 202 and built,
// events built twice, builds re-run after a loss, and objects left
// behind. A line with unit=promotions counts promotions instead of
// deliveries: requested, accepted, succeeded, and environments rolled
// more than once as doubled. make chaos runs it last.
//
//	go run ./test/cmd/chaos-table bin/chaos-report.txt
package main

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

type fault struct {
	runs                                                    int
	handoffs                                                []time.Duration
	sent, accepted, builds, reruns, doubles, missing, leaks int
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: chaos-table REPORT-FILE")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos-table: %v\n", err)
		os.Exit(1)
	}
	defer f.Close()
	faults := map[string]*fault{}
	var order []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		kv := map[string]string{}
		for _, field := range strings.Fields(sc.Text()) {
			if k, v, ok := strings.Cut(field, "="); ok {
				kv[k] = v
			}
		}
		name := kv["fault"]
		if name == "" {
			// A crash round of TestKillDuringTriggersBuildsEachEventOnce.
			if kv["delay"] == "" {
				continue
			}
			name = "ferry-SIGKILL-mid-trigger answer " + kv["delay"]
		}
		if u := kv["unit"]; u != "" {
			name += " (" + u + ")"
		}
		fa := faults[name]
		if fa == nil {
			fa = &fault{}
			faults[name] = fa
			order = append(order, name)
		}
		fa.runs++
		if d, err := time.ParseDuration(kv["handoff"]); err == nil && d > 0 {
			fa.handoffs = append(fa.handoffs, d)
		}
		n := func(k string) int { v, _ := strconv.Atoi(kv[k]); return v }
		fa.sent += n("sent")
		fa.accepted += n("accepted")
		fa.builds += n("builds")
		fa.reruns += n("reruns")
		fa.doubles += n("doubles")
		fa.missing += n("missing")
		fa.leaks += n("leaked")
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "chaos-table: read %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "fault\truns\thand-off p50\thand-off max\tsent\tanswered 202\tbuilt\tre-run\tdoubled\tmissing\tleaked\t")
	for _, name := range order {
		fa := faults[name]
		p50, worst := "-", "-"
		if len(fa.handoffs) > 0 {
			slices.Sort(fa.handoffs)
			p50 = fa.handoffs[(len(fa.handoffs)-1)/2].Round(10 * time.Millisecond).String()
			worst = fa.handoffs[len(fa.handoffs)-1].Round(10 * time.Millisecond).String()
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", name, fa.runs, p50, worst,
			fa.sent, fa.accepted, fa.builds, fa.reruns, fa.doubles, fa.missing, fa.leaks)
	}
	_ = w.Flush()
}
