package server_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/server"
)

// pdfStream yields a PDF header then n pseudo-random bytes without ever
// holding them: the client side of an upload costs no memory.
type pdfStream struct {
	n, off int64
	seed   uint64
}

func (p *pdfStream) Read(b []byte) (int, error) {
	const head = "%PDF-1.7\n"
	if p.off >= p.n+int64(len(head)) {
		return 0, io.EOF
	}
	k := 0
	for k < len(b) && p.off < p.n+int64(len(head)) {
		if p.off < int64(len(head)) {
			b[k] = head[p.off]
		} else {
			p.seed = p.seed*6364136223846793005 + 1442695040888963407
			b[k] = byte(p.seed >> 56)
		}
		k++
		p.off++
	}
	return k, nil
}

// peakHeap samples the live heap while fn runs and returns the highest
// value above the starting point.
func peakHeap(fn func()) uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapAlloc > base && m.HeapAlloc-base > peak.Load() {
				peak.Store(m.HeapAlloc - base)
			}
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	fn()
	close(done)
	wg.Wait()
	return peak.Load()
}

// discard is a ResponseWriter that keeps nothing (a recorder would hold
// the whole download).
type discard struct {
	h    http.Header
	code int
	n    int64
}

func (d *discard) Header() http.Header { return d.h }
func (d *discard) Write(b []byte) (int, error) {
	d.n += int64(len(b))
	return len(b), nil
}
func (d *discard) WriteHeader(code int) { d.code = code }

// BenchmarkUploadPDF uploads a 64 MiB PDF through $import, then downloads
// it natively and as FHIR JSON, reporting MB/s and the peak heap growth of
// each (the file streams: the heap stays far below the file's size).
// FHIRGATE_BENCH_UPLOAD_MB changes the size.
func BenchmarkUploadPDF(b *testing.B) {
	size := int64(64 << 20)
	if v, err := strconv.Atoi(os.Getenv("FHIRGATE_BENCH_UPLOAD_MB")); err == nil && v > 0 {
		size = int64(v) << 20
	}
	for _, k := range storeKinds {
		b.Run(k.name, func(b *testing.B) {
			if k.name == "postgres" && os.Getenv("FHIRGATE_TEST_POSTGRES") == "" {
				b.Skip("set FHIRGATE_TEST_POSTGRES")
			}
			h := newHarness(b, k, server.Config{MaxUploadBytes: 1 << 30})
			mustStatus(b, h.do(http.MethodPut, "/Patient/bench", []byte(`{"resourceType":"Patient","id":"bench"}`)), http.StatusCreated)
			b.SetBytes(size)
			var upPeak, nativePeak, jsonPeak uint64
			var upTime, nativeTime, jsonTime time.Duration
			for i := 0; i < b.N; i++ {
				var binID string
				t0 := time.Now()
				upPeak = max(upPeak, peakHeap(func() {
					req := httptest.NewRequest(http.MethodPost, "/Patient/bench/$import", &pdfStream{n: size, seed: uint64(i + 1)})
					req.ContentLength = -1
					req.Header.Set("Content-Type", "application/pdf")
					w := httptest.NewRecorder()
					h.srv.ServeHTTP(w, req)
					if w.Code != http.StatusOK {
						b.Fatalf("upload: %d %.300s", w.Code, w.Body.String())
					}
					for _, e := range jsonMap(b, w.Body.Bytes())["entry"].([]any) {
						if r := e.(map[string]any)["resource"].(map[string]any); r["resourceType"] == "Binary" {
							binID = r["id"].(string)
						}
					}
				}))
				upTime += time.Since(t0)
				for _, native := range []bool{true, false} {
					t0 = time.Now()
					p := peakHeap(func() {
						req := httptest.NewRequest(http.MethodGet, "/Binary/"+binID, nil)
						if native {
							req.Header.Set("Accept", "application/pdf")
						}
						d := &discard{h: http.Header{}}
						h.srv.ServeHTTP(d, req)
						if d.code != http.StatusOK || d.n < size {
							b.Fatalf("download: %d, %d bytes", d.code, d.n)
						}
					})
					if native {
						nativePeak, nativeTime = max(nativePeak, p), nativeTime+time.Since(t0)
					} else {
						jsonPeak, jsonTime = max(jsonPeak, p), jsonTime+time.Since(t0)
					}
				}
			}
			mb := float64(size) / (1 << 20) * float64(b.N)
			b.ReportMetric(float64(upPeak)/(1<<20), "upload-peak-heap-MiB")
			b.ReportMetric(float64(nativePeak)/(1<<20), "native-read-peak-heap-MiB")
			b.ReportMetric(float64(jsonPeak)/(1<<20), "json-read-peak-heap-MiB")
			b.ReportMetric(mb/upTime.Seconds(), "upload-MB/s")
			b.ReportMetric(mb/nativeTime.Seconds(), "native-read-MB/s")
			b.ReportMetric(mb/jsonTime.Seconds(), "json-read-MB/s")
		})
	}
}
