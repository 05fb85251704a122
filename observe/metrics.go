// Package observe is the gateway's telemetry: Prometheus metrics (what a
// dashboard and an alert need: request rates, latencies and errors by
// route, the store's latency, the audit writer, River's queues, pull jobs,
// MLLP and notification delivery), OpenTelemetry traces exported over
// OTLP when configured, and the request id that ties a request's log
// lines, OperationOutcome and trace together. It uses the ecosystem's
// libraries (prometheus/client_golang, the OpenTelemetry Go SDK); the
// packages it observes call a few typed methods and never see them.
//
// Labels never carry patient data: routes are the server's patterns
// ("/:type/:id"), never request paths, queries or ids. Nor does a label
// take any value a client chooses: an HTTP method outside the standard
// ones is "_OTHER" (MethodLabel), or any caller could mint a new series,
// each a histogram kept for the life of the process, with every request.
package observe

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the gateway's Prometheus collectors. A nil *Metrics is
// valid and records nothing, so that callers need no checks.
type Metrics struct {
	reg *prometheus.Registry

	requests       *prometheus.CounterVec
	requestSeconds *prometheus.HistogramVec
	inFlight       prometheus.Gauge
	storeSeconds   *prometheus.HistogramVec
	auditFlushes   *prometheus.CounterVec
	auditEvents    prometheus.Counter
	auditPending   *prometheus.CounterVec
	auditRole      prometheus.Gauge
	auditSeconds   prometheus.Histogram
	jobs           *prometheus.CounterVec
	jobSeconds     *prometheus.HistogramVec
	mllpMessages   *prometheus.CounterVec
	mllpSeconds    prometheus.Histogram
	mllpConns      prometheus.Gauge
	notifications  *prometheus.CounterVec
	notifySeconds  *prometheus.HistogramVec

	mu     sync.Mutex
	queues func(ctx context.Context) ([]QueueCount, error)

	// served caches the request series by method, route and status
	// (bounded: methods by MethodLabel, routes by the router, statuses
	// by net/http), so that a request does not hash its labels twice.
	served sync.Map // requestKey -> *requestSeries
}

type requestKey struct {
	method, route string
	status        int
}

type requestSeries struct {
	count   prometheus.Counter
	latency prometheus.Observer
}

// methods are the HTTP methods that label requests as themselves.
var methods = map[string]string{}

func init() {
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace} {
		methods[m] = m
	}
}

// MethodLabel is how a request's method appears in metrics and span
// names: itself when it is a standard HTTP method, else "_OTHER" (the
// OpenTelemetry convention), so that no caller can add series or names.
func MethodLabel(method string) string {
	if m, ok := methods[method]; ok {
		return m
	}
	return "_OTHER"
}

// QueueCount is the number of River jobs of one queue in one state.
type QueueCount struct {
	Queue, State string
	Count        int64
}

// latency buckets: from a cached read (tens of microseconds) to a large
// transaction or $everything (seconds).
var buckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// NewMetrics registers the gateway's collectors (and Go's runtime and
// process collectors) in a registry of their own. version and commit
// label fhirgate_build_info.
func NewMetrics(version, commit string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "fhirgate_build_info", Help: "The running build: always 1, labelled by version and commit."}, []string{"version", "commit"})
	info.WithLabelValues(version, commit).Set(1)
	f(info)
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fhirgate_http_requests_total",
		Help: "HTTP requests answered, by method, route pattern and status code."}, []string{"method", "route", "status"})
	m.requestSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "fhirgate_http_request_duration_seconds",
		Help: "Time to answer an HTTP request, by method, route pattern and status class (2xx, 4xx...).", Buckets: buckets}, []string{"method", "route", "class"})
	m.inFlight = prometheus.NewGauge(prometheus.GaugeOpts{Name: "fhirgate_http_requests_in_flight", Help: "HTTP requests being answered."})
	m.storeSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "fhirgate_store_operation_duration_seconds",
		Help: "Time of store operations (read, search, transaction...), by operation and outcome (ok, error).", Buckets: buckets}, []string{"op", "outcome"})
	m.auditFlushes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fhirgate_audit_flushes_total",
		Help: "Writes of the audit trail, by outcome (ok, error)."}, []string{"outcome"})
	m.auditEvents = prometheus.NewCounter(prometheus.CounterOpts{Name: "fhirgate_audit_events_total", Help: "Audit events written."})
	m.auditPending = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fhirgate_audit_pending_events_total",
		Help: "Audit events this process stored pending, because another replica holds the appender's role or another appender held the trail's head (stored), and pending events its sealer moved into the trail (sealed) or refused because their MAC did not hold (refused: someone wrote to the database without the key)."}, []string{"what"})
	m.auditRole = prometheus.NewGauge(prometheus.GaugeOpts{Name: "fhirgate_audit_appender_role",
		Help: "1 when this process holds the audit trail's appender role (it appends to the chain and seals what the other replicas stored pending), 0 when another replica does."})
	m.auditSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fhirgate_audit_flush_duration_seconds", Help: "Time of one write of the audit trail.", Buckets: buckets})
	m.jobs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fhirgate_jobs_total",
		Help: "River jobs this process finished, by kind, queue and outcome (completed, retryable, discarded, cancelled, snoozed)."}, []string{"kind", "queue", "outcome"})
	m.jobSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "fhirgate_job_duration_seconds",
		Help: "Time River jobs ran, by kind.", Buckets: buckets}, []string{"kind"})
	m.mllpMessages = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fhirgate_mllp_messages_total",
		Help: "HL7 v2 messages received over MLLP, by acknowledgement code (AA, AE, AR)."}, []string{"ack"})
	m.mllpSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fhirgate_mllp_message_duration_seconds", Help: "Time from an MLLP message to its acknowledgement.", Buckets: buckets})
	m.mllpConns = prometheus.NewGauge(prometheus.GaugeOpts{Name: "fhirgate_mllp_connections", Help: "Open MLLP connections."})
	m.notifications = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fhirgate_notifications_total",
		Help: "Subscription notification attempts, by type (handshake, heartbeat, event-notification) and outcome (delivered, failed)."}, []string{"type", "outcome"})
	m.notifySeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "fhirgate_notification_duration_seconds",
		Help: "Time to post one notification, by type.", Buckets: buckets}, []string{"type"})
	for _, c := range []prometheus.Collector{m.requests, m.requestSeconds, m.inFlight, m.storeSeconds, m.auditFlushes, m.auditEvents, m.auditPending, m.auditRole,
		m.auditSeconds, m.jobs, m.jobSeconds, m.mllpMessages, m.mllpSeconds, m.mllpConns, m.notifications, m.notifySeconds} {
		f(c)
	}
	f(&queueCollector{m: m, desc: prometheus.NewDesc("fhirgate_river_jobs", "River jobs in the database, by queue and state (shared by every replica).", []string{"queue", "state"}, nil)})
	return m
}

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Registry is the registry the collectors live in (tests gather from it).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// RequestStarted counts a request in flight until the returned function
// records its end.
func (m *Metrics) RequestStarted() (done func(method, route string, status int)) {
	if m == nil {
		return func(string, string, int) {}
	}
	start := time.Now()
	m.inFlight.Inc()
	return func(method, route string, status int) {
		m.inFlight.Dec()
		if route == "" {
			route = "unmatched" // no route: a 404 or 405 of the router itself
		}
		m.series(MethodLabel(method), route, status).observe(time.Since(start))
	}
}

func (m *Metrics) series(method, route string, status int) *requestSeries {
	k := requestKey{method, route, status}
	if s, ok := m.served.Load(k); ok {
		return s.(*requestSeries)
	}
	s, _ := m.served.LoadOrStore(k, &requestSeries{
		count:   m.requests.WithLabelValues(method, route, strconv.Itoa(status)),
		latency: m.requestSeconds.WithLabelValues(method, route, strconv.Itoa(status/100)+"xx"),
	})
	return s.(*requestSeries)
}

func (s *requestSeries) observe(d time.Duration) {
	s.count.Inc()
	s.latency.Observe(d.Seconds())
}

// StoreOp times a store operation; the returned function records its end.
func (m *Metrics) StoreOp(op string) func(err error) {
	if m == nil {
		return func(error) {}
	}
	start := time.Now()
	return func(err error) {
		m.storeSeconds.WithLabelValues(op, outcome(err)).Observe(time.Since(start).Seconds())
	}
}

// AuditFlush records one write of the audit trail (the audit writer calls
// it after each batch or transaction it stores).
func (m *Metrics) AuditFlush(events int, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.auditFlushes.WithLabelValues(outcome(err)).Inc()
	m.auditSeconds.Observe(d.Seconds())
	if err == nil {
		m.auditEvents.Add(float64(events))
	}
}

// AuditPending records events stored pending, sealed or refused (the
// audit trail's OnPending).
func (m *Metrics) AuditPending(stored, sealed, refused int) {
	if m == nil {
		return
	}
	for what, n := range map[string]int{"stored": stored, "sealed": sealed, "refused": refused} {
		if n > 0 {
			m.auditPending.WithLabelValues(what).Add(float64(n))
		}
	}
}

// AuditRole records whether this process holds the audit trail's
// appender role (the trail's OnRole).
func (m *Metrics) AuditRole(held bool) {
	if m == nil {
		return
	}
	v := 0.0
	if held {
		v = 1
	}
	m.auditRole.Set(v)
}

// JobDone records a River job this process ran.
func (m *Metrics) JobDone(kind, queue, state string, d time.Duration) {
	if m == nil {
		return
	}
	m.jobs.WithLabelValues(kind, queue, state).Inc()
	m.jobSeconds.WithLabelValues(kind).Observe(d.Seconds())
}

// WatchQueues makes scrapes report River's jobs by queue and state, read
// with count (a query of the shared database, bounded by the scrape's
// timeout).
func (m *Metrics) WatchQueues(count func(ctx context.Context) ([]QueueCount, error)) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.queues = count
}

// MLLPMessage records an HL7 v2 message and its acknowledgement code.
func (m *Metrics) MLLPMessage(ack string, d time.Duration) {
	if m == nil {
		return
	}
	m.mllpMessages.WithLabelValues(ack).Inc()
	m.mllpSeconds.Observe(d.Seconds())
}

// MLLPConnection counts an open MLLP connection until the returned
// function is called.
func (m *Metrics) MLLPConnection() (closed func()) {
	if m == nil {
		return func() {}
	}
	m.mllpConns.Inc()
	return m.mllpConns.Dec
}

// Notification records one attempt to deliver a notification.
func (m *Metrics) Notification(typ string, d time.Duration, err error) {
	if m == nil {
		return
	}
	out := "delivered"
	if err != nil {
		out = "failed"
	}
	m.notifications.WithLabelValues(typ, out).Inc()
	m.notifySeconds.WithLabelValues(typ).Observe(d.Seconds())
}

func outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "error"
}

// queueCollector reads River's queues at scrape time.
type queueCollector struct {
	m    *Metrics
	desc *prometheus.Desc
}

func (q *queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- q.desc }

func (q *queueCollector) Collect(ch chan<- prometheus.Metric) {
	q.m.mu.Lock()
	count := q.m.queues
	q.m.mu.Unlock()
	if count == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rows, err := count(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(q.desc, err)
		return
	}
	for _, r := range rows {
		ch <- prometheus.MustNewConstMetric(q.desc, prometheus.GaugeValue, float64(r.Count), r.Queue, r.State)
	}
}

// RequestCounter is fhirgate_http_requests_total (tests read it).
func (m *Metrics) RequestCounter() *prometheus.CounterVec { return m.requests }
