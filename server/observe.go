package server

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/observe"
	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// RequestIDExtension is the extension on every OperationOutcome the
// gateway answers with that carries the request's id (X-Request-Id), so
// that a client's bug report points at the gateway's log lines.
const RequestIDExtension = "https://fhirgate.org/fhir/StructureDefinition/request-id"

// observeRequests runs first on every request: it takes the caller's
// X-Request-Id (or makes one) and sends it back, puts it in the request's
// context (where the logger finds it for every line the request causes),
// continues the caller's trace (W3C traceparent) in a server span named by
// the route pattern, and records the request in the metrics.
func (s *Server) observeRequests() gin.HandlerFunc {
	tracer := observe.Tracer()
	return func(c *gin.Context) {
		id := observe.AcceptRequestID(c.GetHeader(observe.RequestIDHeader))
		c.Header(observe.RequestIDHeader, id)
		ctx := observe.WithRequestID(c.Request.Context(), id)
		if carrier := propagation.HeaderCarrier(c.Request.Header); carrier.Get("traceparent") != "" || carrier.Get("baggage") != "" {
			// the caller's trace id reaches the log lines even while
			// the gateway exports no spans of its own
			ctx = otel.GetTextMapPropagator().Extract(ctx, carrier)
		}
		route := c.FullPath()
		method := observe.MethodLabel(c.Request.Method)
		var span trace.Span
		if observe.Tracing() {
			name := method + " " + route
			if route == "" {
				name = method
			}
			ctx, span = tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer),
				trace.WithAttributes(attribute.String("http.request.method", method), attribute.String("http.route", route),
					attribute.String("fhirgate.request_id", id)))
		}
		c.Request = c.Request.WithContext(ctx)
		done := s.cfg.Metrics.RequestStarted()
		defer func() {
			status := c.Writer.Status()
			if span != nil {
				span.SetAttributes(attribute.Int("http.response.status_code", status))
				if status >= 500 {
					span.SetStatus(codes.Error, strconv.Itoa(status))
				}
				span.End()
			}
			done(c.Request.Method, route, status)
		}()
		c.Next()
	}
}

// outcome is an OperationOutcome of this request: its issues and the
// request id.
func (s *Server) outcome(c *gin.Context, issues ...fhir.Issue) *fhir.OperationOutcome {
	o := fhir.NewOutcome(issues...)
	if id := observe.RequestID(c.Request.Context()); id != "" {
		o.Extension = []fhir.Extension{{URL: RequestIDExtension, ValueString: id}}
	}
	return o
}

// Readiness is implemented by stores that can tell whether they are ready
// to serve: reachable, and their schema migrated to what this build needs.
type Readiness interface {
	Ready(ctx context.Context) error
}

// SetDraining makes /readyz answer 503 from now on, so that a load
// balancer stops sending requests before the server shuts down; requests
// still arriving are served.
func (s *Server) SetDraining() { s.draining.Store(true) }

func (s *Server) readyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	c.Header("Content-Type", "application/json")
	c.Header("Cache-Control", "no-store")
	if s.draining.Load() {
		c.String(http.StatusServiceUnavailable, `{"status":"shutting down"}`)
		return
	}
	var err error
	if s.ready != nil {
		err = s.ready.Ready(ctx)
	} else {
		err = s.cfg.Store.Ping(ctx)
	}
	if err != nil {
		s.log.WarnContext(c.Request.Context(), "readiness check failed", "err", err)
		c.String(http.StatusServiceUnavailable, `{"status":"store not ready"}`)
		return
	}
	c.String(http.StatusOK, `{"status":"ready"}`)
}
