package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestServeTraces: with OTEL_EXPORTER_OTLP_ENDPOINT set, fhirgate serve
// exports its spans over OTLP/HTTP to that endpoint: a request that
// carries a W3C traceparent continues the caller's trace in a server span
// named by its route, with the store's operations under it, all flushed by
// the time serve returns. (The collector here is an HTTP server that keeps
// what it receives; the protobuf holds the trace id as its 16 bytes and the
// span names as strings.)
func TestServeTraces(t *testing.T) {
	var (
		mu       sync.Mutex
		received []byte
	)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/v1/traces" {
			mu.Lock()
			received = append(received, body...)
			mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "none")
	t.Setenv("OTEL_SERVICE_NAME", "fhirgate-trace-test")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- cmdServe(ctx, []string{"--auth=none", "--addr", "127.0.0.1:0", "--db", "sqlite:" + filepath.Join(t.TempDir(), "g.db")}, &logs)
	}()
	addr := logAddr(t, &logs, "fhirgate serving", done)
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/Patient/nobody", nil)
	req.Header.Set("traceparent", "00-"+traceID+"-"+parentID+"-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /Patient/nobody: %d", resp.StatusCode)
	}
	if !strings.Contains(logs.String(), "exporting traces over OTLP") {
		t.Error("serve did not say it exports traces")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	id, _ := hex.DecodeString(traceID)
	parent, _ := hex.DecodeString(parentID)
	for _, want := range [][]byte{id, parent, []byte("GET /:type/:id"), []byte("store.read"), []byte("fhirgate-trace-test")} {
		if !bytes.Contains(received, want) {
			t.Errorf("the exported spans (%d bytes) lack %q", len(received), want)
		}
	}
}
