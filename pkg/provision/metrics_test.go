package provision

import (
	"context"
	"slices"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// gauge returns the last value of an Int64 gauge with the attributes.
func gauge(t *testing.T, r *sdkmetric.ManualReader, name string, attrs ...attribute.KeyValue) (int64, bool) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	want := attribute.NewSet(attrs...)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			for _, dp := range m.Data.(metricdata.Gauge[int64]).DataPoints {
				if dp.Attributes.Equals(&want) {
					return dp.Value, true
				}
			}
		}
	}
	return 0, false
}

// TestGaugesFallToZero: a state no agent is in any more, or a reason no
// item waits for any more, reads zero, not the last count it had.
func TestGaugesFallToZero(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	p := deciding(t, func(c *Config) { c.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)) })
	ctx := context.Background()
	building := []attribute.KeyValue{attribute.String("state", "building"), attribute.String("template", "linux")}
	capped := []attribute.KeyValue{attribute.String("template", "linux"), attribute.String("why", "cap")}

	p.record(ctx, &decision{agents: linux("building", 1), waiting: linux("cap", 2)})
	if v, ok := gauge(t, reader, "ferry_provision_agents", building...); !ok || v != 1 {
		t.Fatalf("building agents = %d (recorded %v), want 1", v, ok)
	}
	p.record(ctx, &decision{agents: linux("terminating", 1), waiting: tally{}})
	if v, _ := gauge(t, reader, "ferry_provision_agents", building...); v != 0 {
		t.Errorf("building agents = %d once none builds, want 0", v)
	}
	if v, _ := gauge(t, reader, "ferry_provision_waiting_items", capped...); v != 0 {
		t.Errorf("items waiting for a cap = %d once none waits, want 0", v)
	}
}

// sum returns the value of a counter with the attributes.
func sum[N int64 | float64](t *testing.T, r *sdkmetric.ManualReader, name string, attrs ...attribute.KeyValue) N {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	want := attribute.NewSet(attrs...)
	var v N
	for _, sm := range rm.ScopeMetrics {
		i := slices.IndexFunc(sm.Metrics, func(m metricdata.Metrics) bool { return m.Name == name })
		if s, ok := metricAt(sm.Metrics, i).Data.(metricdata.Sum[N]); ok {
			for _, dp := range s.DataPoints {
				if dp.Attributes.Equals(&want) {
					v = dp.Value
				}
			}
		}
	}
	return v
}

func metricAt(ms []metricdata.Metrics, i int) metricdata.Metrics {
	if i < 0 {
		return metricdata.Metrics{}
	}
	return ms[i]
}

// TestWarmMetrics: warm agents by state, the pool's size, hits and misses
// and idle pod-seconds are recorded as decided.
func TestWarmMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	p := deciding(t, func(c *Config) { c.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)) })
	ctx := context.Background()
	tmpl := attribute.String("template", "linux")
	p.record(ctx, &decision{agents: tally{}, waiting: tally{}, warm: linux(warmReady, 2), warmDesired: map[string]int{"linux": 3},
		warmBuilds: linux("hit", 2, "miss", 1), warmIdle: []warmIdle{{"linux", 30}, {"linux", 12.5}}})
	p.record(ctx, &decision{agents: tally{}, waiting: tally{}, warm: linux(warmServing, 1), warmBuilds: linux("hit", 1)})
	if v, _ := gauge(t, reader, "ferry_provision_warm_agents", tmpl, attribute.String("state", warmReady)); v != 0 {
		t.Errorf("ready warm agents = %d once none is, want 0", v)
	}
	if v, _ := gauge(t, reader, "ferry_provision_warm_agents", tmpl, attribute.String("state", warmServing)); v != 1 {
		t.Errorf("serving warm agents = %d, want 1", v)
	}
	if v, _ := gauge(t, reader, "ferry_provision_warm_desired", tmpl); v != 3 {
		t.Errorf("desired = %d, want 3", v)
	}
	if v := sum[int64](t, reader, "ferry_provision_warm_builds", tmpl, attribute.String("result", "hit")); v != 3 {
		t.Errorf("hits = %d, want 3", v)
	}
	if v := sum[int64](t, reader, "ferry_provision_warm_builds", tmpl, attribute.String("result", "miss")); v != 1 {
		t.Errorf("misses = %d, want 1", v)
	}
	if v := sum[float64](t, reader, "ferry_provision_warm_idle_seconds", tmpl); v != 42.5 {
		t.Errorf("idle pod-seconds = %v, want 42.5", v)
	}
}
