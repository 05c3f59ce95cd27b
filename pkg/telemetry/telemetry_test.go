package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

func TestMetricsReachPrometheusEndpoint(t *testing.T) {
	tel := Discard()
	c, err := tel.MeterProvider.Meter("test").Int64Counter("ferry_test_things", metric.WithDescription("things"))
	if err != nil {
		t.Fatal(err)
	}
	c.Add(context.Background(), 3, metric.WithAttributes(attribute.String("outcome", "ok")))
	srv := httptest.NewServer(tel.MetricsHandler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), `ferry_test_things_total{outcome="ok"} 3`) {
		t.Fatalf("exposition lacks the counter:\n%s", body)
	}
	if !strings.Contains(string(body), "go_goroutines") {
		t.Errorf("exposition lacks Go runtime metrics")
	}
}

func TestTraceParentRoundTrip(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("t").Start(context.Background(), "parent")
	defer span.End()
	tpHeader := TraceParent(ctx)
	if !strings.HasPrefix(tpHeader, "00-"+span.SpanContext().TraceID().String()+"-") {
		t.Fatalf("traceparent %q does not carry trace %s", tpHeader, span.SpanContext().TraceID())
	}
	ctx2, child := tp.Tracer("t").Start(WithTraceParent(context.Background(), tpHeader), "child")
	defer child.End()
	_ = ctx2
	if child.SpanContext().TraceID() != span.SpanContext().TraceID() {
		t.Errorf("child joined trace %s, want %s", child.SpanContext().TraceID(), span.SpanContext().TraceID())
	}
	if TraceParent(context.Background()) != "" {
		t.Errorf("traceparent of an empty context should be empty")
	}
}

func TestJSONLogger(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(&buf, "warn", "json")
	log.Info("hidden")
	log.Warn("shown", "component", "webhook")
	var rec map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(buf.Bytes()), &rec); err != nil {
		t.Fatalf("not one JSON line: %q", buf.String())
	}
	if rec["msg"] != "shown" || rec["component"] != "webhook" {
		t.Errorf("record = %v", rec)
	}
}

// With an endpoint configured, spans are exported over OTLP/HTTP.
func TestOTLPExport(t *testing.T) {
	var got atomic.Int64
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/traces" {
			got.Add(1)
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer collector.Close()
	tel, err := New(context.Background(), Config{OTLPEndpoint: collector.URL, OTLPInsecure: true, SampleRatio: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tel.TracerProvider.Tracer("t").Start(context.Background(), "webhook.receive")
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if got.Load() == 0 {
		t.Fatal("collector received no trace export")
	}
}
