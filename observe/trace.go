package observe

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// tracing is set once StartTracing has installed an exporting provider:
// until then the gateway makes no spans at all (a no-op span still cost
// every request an allocation and a context).
var tracing atomic.Bool

// Tracing reports whether spans are exported (StartTracing installed a
// provider).
func Tracing() bool { return tracing.Load() }

// TracerName is the instrumentation scope of the gateway's spans.
const TracerName = "github.com/fhirgate/fhirgate"

// TracingConfigured reports whether the environment asks for traces: the
// standard OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
// is set (and OTEL_SDK_DISABLED is not "true").
func TracingConfigured(getenv func(string) string) bool {
	if getenv("OTEL_SDK_DISABLED") == "true" {
		return false
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// StartTracing installs an OpenTelemetry tracer provider that exports
// spans over OTLP/HTTP to the endpoint the standard OTEL_* environment
// variables name (endpoint, headers, TLS, sampler via
// OTEL_TRACES_SAMPLER), and the W3C trace-context propagator, so that a
// caller's traceparent continues into the gateway's spans. Without those
// variables tracing stays off: spans cost a no-op call. The returned
// function flushes and stops the exporter.
func StartTracing(ctx context.Context, version string) (shutdown func(context.Context) error, err error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	if !TracingConfigured(os.Getenv) {
		return func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	name := os.Getenv("OTEL_SERVICE_NAME")
	if name == "" {
		name = "fhirgate"
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		attribute.String("service.name", name), attribute.String("service.version", version)))
	if err != nil {
		return nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	tracing.Store(true)
	return func(ctx context.Context) error {
		tracing.Store(false)
		return tp.Shutdown(ctx)
	}, nil
}

// Tracer is the gateway's tracer (a no-op until StartTracing installs a
// provider).
func Tracer() trace.Tracer { return otel.Tracer(TracerName) }

// Span starts a span for an internal operation (a store call, a
// consolidation batch); end it with End(err).
func Span(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, *SpanEnd) {
	if !Tracing() {
		return ctx, noSpan
	}
	ctx, sp := Tracer().Start(ctx, name, trace.WithAttributes(attrs...))
	return ctx, &SpanEnd{sp}
}

// noSpan is the span of every operation while tracing is off.
var noSpan = &SpanEnd{noop.Span{}}

// SpanEnd ends a span, recording an error.
type SpanEnd struct{ sp trace.Span }

// End ends the span; a non-nil err marks it failed (its message only: the
// gateway's errors carry no patient data, see server.fail).
func (e *SpanEnd) End(err error) {
	if err != nil {
		e.sp.RecordError(err)
		e.sp.SetStatus(codes.Error, err.Error())
	}
	e.sp.End()
}

// spanContext is the trace id of ctx's span when it is recorded, or "".
func spanContext(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	return sc.TraceID().String()
}
