package adaptertest

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Action is what a fault does to a request.
type Action int

// Fault actions.
const (
	// Status answers Fault.Status (with Retry-After when set) and an
	// OperationOutcome.
	Status Action = iota
	// Reset closes the connection without answering.
	Reset
	// Hang never answers; the client must give up.
	Hang
	// CutBody announces the full Content-Length, sends half the body and
	// closes the connection.
	CutBody
	// TruncateJSON sends a complete 200 response whose JSON body is cut in
	// half.
	TruncateJSON
	// MalformedJSON sends a 200 response that is not valid JSON.
	MalformedJSON
	// HTML sends a 200 HTML page (a login page or a proxy's error page).
	HTML
	// LoopNext makes a search page's next link point back at itself.
	LoopNext
	// ExpireToken revokes every access token before the request is
	// checked, as if the token expired mid-pull.
	ExpireToken
	// ExportFail answers an export status poll with a 500 and a fatal
	// OperationOutcome: the job failed.
	ExportFail
	// Stall sends the headers and half the body, then nothing more until
	// the client gives up.
	Stall
)

var actionNames = map[Action]string{
	Status: "status", Reset: "reset", Hang: "hang", CutBody: "cut-body", TruncateJSON: "truncate-json",
	MalformedJSON: "malformed-json", HTML: "html", LoopNext: "loop-next", ExpireToken: "expire-token",
	ExportFail: "export-fail", Stall: "stall",
}

func (a Action) String() string { return actionNames[a] }

// Forever is a Fault.Times that never stops.
const Forever = -1

// Fault injects a failure into the requests it selects.
type Fault struct {
	Do Action
	// On lists the request kinds it applies to (default DataKinds).
	On []Kind
	// Nth is the first matching request hit (1-based, default 1); Times is
	// how many in a row (default 1, Forever for all).
	Nth, Times int
	// Status is the HTTP status of a Status fault.
	Status int
	// RetryAfter is sent as Retry-After in seconds; RetryAfterDate, when
	// set, sends an HTTP date that far ahead of the fake clock instead.
	RetryAfter     string
	RetryAfterDate time.Duration

	mu         sync.Mutex
	seen, hits int
}

func (f *Fault) String() string {
	s := f.Do.String()
	if f.Do == Status {
		s += " " + strconv.Itoa(f.Status)
	}
	return s
}

// Hits returns how many requests the fault hit.
func (f *Fault) Hits() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits
}

func (f *Fault) hit(k Kind) bool {
	on := f.On
	if len(on) == 0 {
		on = DataKinds
	}
	if !slices.Contains(on, k) {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen++
	nth := max(f.Nth, 1)
	times := f.Times
	if times == 0 {
		times = 1
	}
	if f.seen < nth || times != Forever && f.seen >= nth+times {
		return false
	}
	f.hits++
	return true
}

// preFault carries out the faults that replace the answer; it reports
// whether the request was answered.
func (u *Upstream) preFault(w http.ResponseWriter, r *http.Request, f *Fault) bool {
	switch f.Do {
	case Status:
		if f.RetryAfterDate > 0 {
			w.Header().Set("Retry-After", u.Clock.Now().Add(f.RetryAfterDate).UTC().Format(http.TimeFormat))
		} else if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		code := "exception"
		switch {
		case f.Status == http.StatusTooManyRequests:
			code = "throttled"
		case f.Status >= 500:
			code = "transient"
		case f.Status == http.StatusUnauthorized:
			code = "login"
		}
		writeOutcome(w, f.Status, code, fmt.Sprintf("injected %d", f.Status))
	case Reset:
		hijackClose(w, nil)
	case Hang:
		select {
		case <-r.Context().Done():
		case <-u.closed:
		}
	case MalformedJSON:
		writeJSON(w, http.StatusOK, "application/fhir+json", []byte(`{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Observation",,}}]}`))
	case HTML:
		writeJSON(w, http.StatusOK, "text/html; charset=utf-8", []byte("<!DOCTYPE html><html><body><h1>Please log in</h1></body></html>"))
	case ExportFail:
		writeOutcome(w, http.StatusInternalServerError, "exception", "the export job failed")
	default:
		return false
	}
	return true
}

// postFault sends a recorded answer damaged as the fault says.
func (u *Upstream) postFault(w http.ResponseWriter, rec *httptest.ResponseRecorder, f *Fault) {
	body := rec.Body.Bytes()
	switch f.Do {
	case TruncateJSON:
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		half := body[:len(body)/2]
		w.Header().Set("Content-Length", strconv.Itoa(len(half)))
		w.WriteHeader(rec.Code)
		w.Write(half)
	case CutBody, Stall:
		head := fmt.Sprintf("HTTP/1.1 %d %s\r\n", rec.Code, http.StatusText(rec.Code))
		for k, vs := range rec.Header() {
			if k == "Content-Length" {
				continue
			}
			for _, v := range vs {
				head += k + ": " + v + "\r\n"
			}
		}
		head += fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body))
		data := append([]byte(head), body[:len(body)/2]...)
		if f.Do == Stall {
			hijackStall(w, data)
			return
		}
		hijackClose(w, data)
	}
}

// hijackStall writes data on the raw connection and then waits for the
// client to close it.
func hijackStall(w http.ResponseWriter, data []byte) {
	conn, buf, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	buf.Write(data)
	buf.Flush()
	io.Copy(io.Discard, conn) // returns when the client hangs up
}

// hijackClose writes data on the raw connection and closes it; with no
// data the close is a reset (SO_LINGER 0).
func hijackClose(w http.ResponseWriter, data []byte) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("adaptertest: response writer cannot hijack")
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		return
	}
	if len(data) > 0 {
		buf.Write(data)
		buf.Flush()
	} else if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}
