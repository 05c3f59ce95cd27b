package provision

import (
	"context"
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
