package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
)

// shownMetrics are the metric families whereNext shows samples of.
var shownMetrics = []string{
	"ferry_webhook_requests", "ferry_dispatch_triggers", "ferry_provision_agents_created",
	"ferry_provision_agents_deleted", "ferry_builds_finished",
}

// whereNext shows `ferry why` for the commit and a few of ferry's metrics,
// read from the running ferry, and says where to look in a real setup.
func (d *demo) whereNext(ctx context.Context) {
	fmt.Fprintf(d.out, "\nwhere to look next\n\n$ ferry why --repo %s --commit %s\n", repo, d.res.SHA)
	out, err := d.cli.run(ctx, []string{"FERRY_DELIVERIES_API_TOKEN=" + d.pipelineToken}, "why", "--repo", repo, "--commit", d.res.SHA)
	if err != nil {
		fmt.Fprintf(d.out, "  (%v)\n", err)
	}
	fmt.Fprint(d.out, indent(out))

	fmt.Fprintf(d.out, "\n$ curl -s %s/metrics | grep -E '^(%s)'\n", d.ferry.url, strings.Join(shownMetrics, "|"))
	lines, err := d.metrics(ctx)
	if err != nil {
		fmt.Fprintf(d.out, "  (%v)\n", err)
	}
	for _, l := range lines {
		fmt.Fprintln(d.out, "  "+l)
	}
	fmt.Fprint(d.out, `
With your own ferry: FERRY_URL=https://ferry.example.com and
FERRY_DELIVERIES_API_TOKEN for ferry why; ferry promote status ID
(FERRY_PROMOTION_API_TOKEN) for a promotion's audit trail; /metrics for
Prometheus (the chart's ServiceMonitor); kubectl get pods -l ferry.dev/agent
for the agents in flight. The README's "How it works" explains each stage.
`)
}

// metrics returns the sample lines of shownMetrics from ferry's /metrics.
func (d *demo) metrics(ctx context.Context) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.ferry.url+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET /metrics: %w", err)
	}
	defer resp.Body.Close()
	var out []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, m := range shownMetrics {
			if strings.HasPrefix(line, m) {
				out = append(out, line)
				break
			}
		}
	}
	return out, sc.Err()
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}
