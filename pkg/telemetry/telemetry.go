// Package telemetry sets up ferry's logs (log/slog), traces (OpenTelemetry,
// exported over OTLP/HTTP when an endpoint is configured) and metrics
// (OpenTelemetry instruments exposed for Prometheus on /metrics).
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Config selects what telemetry ferry emits.
type Config struct {
	LogLevel     string // debug, info, warn, error
	LogFormat    string // json or text
	OTLPEndpoint string // empty: tracing off
	OTLPInsecure bool
	SampleRatio  float64
	ServiceName  string
	Version      string
	// LogOutput receives the logs; nil means io.Discard.
	LogOutput io.Writer
}

// Telemetry holds the providers every part of ferry is given.
type Telemetry struct {
	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	Propagator     propagation.TextMapPropagator
	registry       *prometheus.Registry
	shutdown       []func(context.Context) error
}

// New builds the logger, the meter provider with its Prometheus registry,
// and the tracer provider (a no-op one when no OTLP endpoint is set).
func New(ctx context.Context, cfg Config) (*Telemetry, error) {
	t := &Telemetry{
		Logger:     NewLogger(cfg.LogOutput, cfg.LogLevel, cfg.LogFormat),
		Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		registry:   prometheus.NewRegistry(),
	}
	t.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if cfg.ServiceName == "" {
		cfg.ServiceName = "ferry"
	}
	res := resource.NewSchemaless(semconv.ServiceName(cfg.ServiceName), semconv.ServiceVersion(cfg.Version))

	exp, err := otelprom.New(otelprom.WithRegisterer(t.registry), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("create prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res))
	t.MeterProvider = mp
	t.shutdown = append(t.shutdown, mp.Shutdown)

	if cfg.OTLPEndpoint == "" {
		t.TracerProvider = noop.NewTracerProvider()
		return t, nil
	}
	opts := []otlptracehttp.Option{}
	if strings.Contains(cfg.OTLPEndpoint, "://") {
		u := cfg.OTLPEndpoint
		// A bare collector URL means its standard traces path, as with
		// OTEL_EXPORTER_OTLP_ENDPOINT.
		if rest := u[strings.Index(u, "://")+3:]; !strings.Contains(strings.TrimSuffix(rest, "/"), "/") {
			u = strings.TrimSuffix(u, "/") + "/v1/traces"
		}
		opts = append(opts, otlptracehttp.WithEndpointURL(u))
	} else {
		opts = append(opts, otlptracehttp.WithEndpoint(cfg.OTLPEndpoint))
	}
	if cfg.OTLPInsecure {
		opts = append(opts, otlptracehttp.WithInsecure())
	}
	te, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("create OTLP trace exporter: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(te),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
	)
	t.TracerProvider = tp
	t.shutdown = append(t.shutdown, tp.Shutdown)
	return t, nil
}

// Discard is telemetry that records nothing, for tests and embedding.
func Discard() *Telemetry {
	t, err := New(context.Background(), Config{})
	if err != nil {
		panic(err) // only fails on a broken Prometheus registry
	}
	return t
}

// MetricsHandler serves the Prometheus exposition of every instrument.
func (t *Telemetry) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{})
}

// Registry is the Prometheus registry behind /metrics.
func (t *Telemetry) Registry() *prometheus.Registry { return t.registry }

// Shutdown flushes spans and stops the providers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for _, f := range t.shutdown {
		errs = append(errs, f(ctx))
	}
	return errors.Join(errs...)
}

// NewLogger returns a slog logger writing JSON or text at the given level.
func NewLogger(w io.Writer, level, format string) *slog.Logger {
	if w == nil {
		w = io.Discard
	}
	var lv slog.Level
	switch level {
	case "debug":
		lv = slog.LevelDebug
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// DiscardLogger logs nothing.
func DiscardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TraceParent returns the W3C traceparent of the span in ctx, or "".
func TraceParent(ctx context.Context) string {
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	return carrier["traceparent"]
}

// WithTraceParent returns ctx carrying the remote span context described
// by a W3C traceparent, so new spans join that trace.
func WithTraceParent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}

// Fill replaces nil providers with ones that record nothing, so parts of
// ferry and their tests may leave them out.
func Fill(logger **slog.Logger, tp *trace.TracerProvider, mp *metric.MeterProvider) {
	if *logger == nil {
		*logger = DiscardLogger()
	}
	if *tp == nil {
		*tp = noop.NewTracerProvider()
	}
	if *mp == nil {
		*mp = metricnoop.NewMeterProvider()
	}
}
