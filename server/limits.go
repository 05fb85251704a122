package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/gin-gonic/gin"
	"golang.org/x/sync/semaphore"
)

// Defaults of the limits that keep one client from taking the process's
// memory or connections (Config fields of the same names).
const (
	// DefaultMaxElements bounds the JSON values of one request body. A
	// parsed value costs about a hundred bytes, several hundred once
	// validated and indexed; ordinary FHIR JSON has one value per 35-60
	// bytes, so a 32 MiB body of real resources stays under it while a
	// body of tiny array items is refused before it is parsed.
	DefaultMaxElements = 1_000_000
	// DefaultMaxDepth bounds the nesting of a request body (Synthea's
	// deepest is 12).
	DefaultMaxDepth = 100
	// DefaultBodyMemoryBytes bounds the memory that the request bodies
	// being worked on may take at once, as estimated from their size and
	// their count of JSON values (bytesPerValue each).
	DefaultBodyMemoryBytes = 1 << 30
	// DefaultBodyWait is how long a body waits for room in the budget
	// before the request is answered 503.
	DefaultBodyWait = 30 * time.Second
	// DefaultIdleIOTimeout ends a request whose client sent no byte of its
	// body, or took none of the response, for this long.
	DefaultIdleIOTimeout = 30 * time.Second
	// DefaultMinBodyRate is the slowest average rate (bytes per second,
	// after the first DefaultIdleIOTimeout) at which a body may arrive: a
	// phone on a poor network uploads faster, a client that trickles bytes
	// to hold a connection does not.
	DefaultMinBodyRate = 8 << 10
)

// bytesPerValue is what one JSON value of a request body costs until its
// request ends: parsed, validated, indexed (measured: 640-700 bytes for
// a body of tiny identifiers, the costliest shape; BENCHMARKS.md).
// Bodies that are not JSON (C-CDA, HL7 v2) count bytesPerOtherByte for
// each of their bytes.
const (
	bytesPerValue     = 700
	bytesPerOtherByte = 16
)

// writeChunk is how much of a response one write deadline covers.
const writeChunk = 64 << 10

// bodyBudget is a semaphore over the bytes of request bodies being held.
type bodyBudget struct {
	sem  *semaphore.Weighted
	size int64
	wait time.Duration
}

func newBodyBudget(size int64, wait time.Duration) *bodyBudget {
	return &bodyBudget{sem: semaphore.NewWeighted(size), size: size, wait: wait}
}

const ctxBodyHeld = "fhirgate.bodyHeld"

// admitBody makes the request hold n bytes of the body budget for the
// rest of the request (a request needing more than the whole budget takes
// all of it, and so runs alone), waiting for others to finish; 503 with
// Retry-After when the wait runs out. A request that already holds some
// gives it back before it waits for more, so two growing requests cannot
// wait on each other.
func (s *Server) admitBody(c *gin.Context, n int64) error {
	b := s.budget
	n = min(max(n, 1), b.size)
	held := c.GetInt64(ctxBodyHeld)
	if held >= n {
		return nil
	}
	if held > 0 {
		b.sem.Release(held)
		c.Set(ctxBodyHeld, int64(0))
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), b.wait)
	defer cancel()
	if err := b.sem.Acquire(ctx, n); err != nil {
		c.Header("Retry-After", strconv.Itoa(max(1, int(b.wait.Seconds()/2))))
		return fhir.Errorf(http.StatusServiceUnavailable, "transient", nil,
			"the server is busy with other large requests (server.bodyMemoryBytes); retry later")
	}
	c.Set(ctxBodyHeld, n)
	return nil
}

// releaseBody gives back what the request took of the body budget when it
// ends (the parsed body lives as long as its handler).
func (s *Server) releaseBody() gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() { // a panic too
			if held := c.GetInt64(ctxBodyHeld); held > 0 {
				s.budget.sem.Release(held)
				c.Set(ctxBodyHeld, int64(0))
			}
		}()
		c.Next()
	}
}

// admitParsed checks a body that was read: a JSON body with more values
// or deeper nesting than the server takes is refused before anything
// parses it (413 naming the limit); then the request holds what working
// on the body is estimated to cost.
func (s *Server) admitParsed(c *gin.Context, body []byte) error {
	t := bytes.TrimLeft(body, " \t\r\n")
	if len(t) == 0 {
		return nil
	}
	if t[0] != '{' && t[0] != '[' {
		return s.admitBody(c, int64(len(body))*bytesPerOtherByte)
	}
	values, err := fjson.CheckLimits(t, s.cfg.MaxElements, s.cfg.MaxDepth)
	var le *fjson.LimitError
	if errors.As(err, &le) {
		setting := "server.maxElements"
		if le.What == "depth" {
			setting = "server.maxDepth"
		}
		return fhir.Errorf(http.StatusRequestEntityTooLarge, "too-costly", nil, "%s (%s)", le.Error(), setting)
	}
	return s.admitBody(c, int64(len(body))+int64(values)*bytesPerValue)
}

// ioDeadlines bounds how long a client may stall a request. The body must
// keep arriving (a byte at least every IdleIOTimeout, and MinBodyRate on
// average after the first IdleIOTimeout); each chunk of the response must
// be taken within IdleIOTimeout. A response of any size streams to a
// client that keeps reading, and one that stops is cut off instead of
// pinning the response's memory. The deadlines are set on the connection
// (http.ResponseController); the HTTP server's own ReadTimeout and
// WriteTimeout are left off so that they do not cut long transfers.
func (s *Server) ioDeadlines() gin.HandlerFunc {
	idle, rate := s.cfg.IdleIOTimeout, int64(s.cfg.MinBodyRate)
	return func(c *gin.Context) {
		rc := http.NewResponseController(c.Writer)
		start := time.Now()
		if c.Request.Body != nil && c.Request.Body != http.NoBody {
			_ = rc.SetReadDeadline(start.Add(idle))
			pb := &progressBody{ReadCloser: c.Request.Body, rc: rc, idle: idle, rate: rate}
			c.Request.Body = pb
			c.Set(ctxBody, pb)
		}
		c.Writer = &progressWriter{ResponseWriter: c.Writer, rc: rc, idle: idle}
		c.Next()
		// what the handler wrote may still sit in the connection's buffer:
		// give its final flush a deadline of its own
		_ = rc.SetWriteDeadline(time.Now().Add(idle))
	}
}

// errSlowBody is what reading a body answers once it arrived too slowly.
var errSlowBody = errors.New("the request body arrived too slowly")

// progressBody sets the read deadline before each read of the body from
// what the client has earned: at most idle from now, and no more than the
// minimum rate allows for the bytes sent so far. Only the time spent
// waiting for the client counts: a server slow to take the body (a busy
// database) does not use up the client's allowance.
type progressBody struct {
	io.ReadCloser
	rc     *http.ResponseController
	idle   time.Duration
	rate   int64
	read   int64
	waited time.Duration
	// failed is set when a read failed other than at the body's end: the
	// server then also cancels the request's context, and the handler may
	// see either first (fail answers the body's failure)
	failed atomic.Bool
}

// ctxBody keys the request's progressBody in the gin context.
const ctxBody = "fhirgate.body"

// bodyFailed reports whether reading the request's body failed.
func bodyFailed(c *gin.Context) bool {
	pb, ok := c.Get(ctxBody)
	return ok && pb.(*progressBody).failed.Load()
}

func (b *progressBody) Read(p []byte) (int, error) {
	allow := b.idle
	if b.rate > 0 {
		if a := b.idle + time.Duration(b.read*int64(time.Second)/b.rate) - b.waited; a < allow {
			allow = a
		}
	}
	if allow <= 0 {
		return 0, errSlowBody
	}
	start := time.Now()
	_ = b.rc.SetReadDeadline(start.Add(allow))
	n, err := b.ReadCloser.Read(p)
	b.waited += time.Since(start)
	b.read += int64(n)
	if err != nil && !errors.Is(err, io.EOF) {
		b.failed.Store(true)
	}
	var ne interface{ Timeout() bool }
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		return n, fmt.Errorf("%w: %w", errSlowBody, err)
	}
	if errors.Is(err, io.EOF) {
		// the whole body arrived: a deadline left armed would fire in the
		// server's background read while the handler still works, and
		// cancel the request's context (a long write would fail)
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// progressWriter writes in chunks, each with its own write deadline.
type progressWriter struct {
	gin.ResponseWriter
	rc   *http.ResponseController
	idle time.Duration
}

func (w *progressWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), writeChunk)
		_ = w.rc.SetWriteDeadline(time.Now().Add(w.idle))
		m, err := w.ResponseWriter.Write(p[:n])
		written += m
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

func (w *progressWriter) WriteString(s string) (int, error) { return w.Write([]byte(s)) }

// Unwrap lets http.ResponseController reach the connection.
func (w *progressWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
