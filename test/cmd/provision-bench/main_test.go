package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferryci/ferry/test/jenkinsemu"
	"github.com/ferryci/ferry/test/testbed"
)

// TestBench runs the benchmark at a tiny N on the test bed so that it
// cannot rot. It asserts what happened (every build served and cleaned up,
// the calls made), never how fast.
func TestBench(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the provisioner benchmark on the test bed (Kubernetes with kwok virtual nodes); skipped with -short")
	}
	env := testbed.Kube(t) // fails, naming what is missing, when the bed is down
	const n = 3
	o := DefaultOptions()
	o.Sizes = []int{n}
	o.Build = time.Second
	o.StartDelay = "0s"
	o.Timeout = 3 * time.Minute
	o.EnvFile = env.Path
	o.WarmBuilds, o.WarmSize, o.WarmGap = 3, 2, 200*time.Millisecond
	var log bytes.Buffer
	o.Log = &log
	rep, err := Bench(context.Background(), o)
	if err != nil {
		t.Fatalf("Bench: %v\nlog:\n%s", err, log.String())
	}
	if w := rep.Warm; w == nil || len(w.Cold.Starts) != 3 || len(w.Warm.Starts) != 3 || w.Cold.Hits != 0 || w.Warm.Hits < 2 {
		t.Errorf("cold vs warm: %+v, want 3 builds each, none of the cold run's on a warm agent and the first 2 of the warm run's", w)
	}
	if len(rep.Sizes) != 1 {
		t.Fatalf("%d sizes in the report, want 1", len(rep.Sizes))
	}
	b, f := rep.Sizes[0].Bare, rep.Sizes[0].Ferry
	if !b.Done || b.Errors != 0 || b.Calls["create pods"] != n || b.Calls["delete pods"] != n || b.AllExist <= 0 {
		t.Errorf("bare loop: done %v, errors %d, calls %v, all exist %s; want done, no errors, %d creates and deletes", b.Done, b.Errors, b.Calls, b.AllExist, n)
	}
	if !f.Done || f.Builds != n || f.Cancelled != 0 {
		t.Errorf("ferry: done %v, builds ended %d, cancelled %d; want done, %d, 0", f.Done, f.Builds, f.Cancelled, n)
	}
	if f.Pods != n || f.PeakInFlight < 1 {
		t.Errorf("ferry: %d pods, peak in flight %d; want %d pods", f.Pods, f.PeakInFlight, n)
	}
	if f.PodsLeft+f.SecretsLeft+f.NodesLeft != 0 {
		t.Errorf("left: %d pods, %d Secrets, %d nodes; want none", f.PodsLeft, f.SecretsLeft, f.NodesLeft)
	}
	if got := f.JenkinsCalls[jenkinsemu.RouteCreateNode]; got != n {
		t.Errorf("Jenkins node creations = %d, want %d (calls %v)", got, n, f.JenkinsCalls)
	}
	if _, ok := f.JenkinsCalls[jenkinsemu.RouteBuildWithParameters]; ok {
		t.Errorf("the bench's own triggers are counted as ferry's: %v", f.JenkinsCalls)
	}
	if got := f.KubeCalls["create pods"]; got != n {
		t.Errorf("ferry's pod creations = %d, want %d (calls %v)", got, n, f.KubeCalls)
	}
	if f.BuildSeconds < n*o.Build.Seconds() || f.PodSeconds < f.BuildSeconds {
		t.Errorf("pod-seconds %.1f, build-seconds %.1f; want builds of %s each inside their pods' lives", f.PodSeconds, f.BuildSeconds, o.Build)
	}
	if f.MemPeak.RSS == 0 || f.MemPeak.HeapObjects == 0 {
		t.Errorf("memory peaks not sampled: %+v", f.MemPeak)
	}
	var out bytes.Buffer
	rep.Print(&out)
	for _, want := range []string{"N = 3", "every pod exists after", "billed pod-s / build-s", "create pods 3"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRequestKey(t *testing.T) {
	for _, tc := range []struct {
		method, url, want string
	}{
		{http.MethodPost, "/api/v1/namespaces/ns/pods", "create pods"},
		{http.MethodDelete, "/api/v1/namespaces/ns/pods/p", "delete pods"},
		{http.MethodPatch, "/api/v1/namespaces/ns/secrets/s", "patch secrets"},
		{http.MethodPut, "/api/v1/namespaces/ns/pods/p/status", "update pods/status"},
		{http.MethodGet, "/api/v1/namespaces/ns/pods?labelSelector=a%3Db", "list pods"},
		{http.MethodGet, "/api/v1/namespaces/ns/pods?watch=true&resourceVersion=1", "watch pods"},
		{http.MethodGet, "/api/v1/namespaces/ns/secrets/s", "get secrets"},
		{http.MethodGet, "/api/v1/namespaces/ns", "get namespaces"},
		{http.MethodPost, "/apis/events.k8s.io/v1/namespaces/ns/events", "create events"},
		{http.MethodGet, "/api/v1/nodes", "list nodes"},
		{http.MethodGet, "/version", "get /version"},
	} {
		t.Run(tc.method+" "+tc.url, func(t *testing.T) {
			r, err := http.NewRequest(tc.method, "https://127.0.0.1:6443"+tc.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := requestKey(r); got != tc.want {
				t.Errorf("requestKey = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	for _, tc := range []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"median of odd", ms(3, 1, 2), 50, 2 * time.Millisecond},
		{"p99 of 100 is the 99th", ms(seq(100)...), 99, 99 * time.Millisecond},
		{"p99 of 1000 is the 990th", ms(seq(1000)...), 99, 990 * time.Millisecond},
		{"p50 of 100 is the 50th", ms(seq(100)...), 50, 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.in, tc.p); got != tc.want {
				t.Errorf("percentile(p%g) = %s, want %s", tc.p, got, tc.want)
			}
		})
	}
}

// seq returns 1..n.
func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i + 1
	}
	return s
}
