package server_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/server"
)

// manyItems is a body of about size bytes whose bulk is one array of tiny
// items: the shape that costs the most memory per byte to parse, validate
// and index.
func manyItems(size int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"resourceType":"Patient","identifier":[`)
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"value":"%d"}`, i%10)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// BenchmarkHostileBody posts a 14 MB body of many small array items, three
// at once, and reports the peak heap growth (peak-MB) and what the
// requests were answered.
func BenchmarkHostileBody(b *testing.B) {
	body := manyItems(14 << 20)
	for _, k := range storeKinds {
		b.Run(k.name, func(b *testing.B) {
			h := newHarness(b, k, server.Config{Validator: noValidation{}})
			var worst uint64
			statuses := map[int]int{}
			for i := 0; i < b.N; i++ {
				worst = max(worst, peakHeap(func() {
					var wg sync.WaitGroup
					var mu sync.Mutex
					for j := 0; j < 3; j++ {
						wg.Add(1)
						go func() {
							defer wg.Done()
							w := h.do(http.MethodPost, "/Patient", body)
							mu.Lock()
							statuses[w.Code]++
							mu.Unlock()
						}()
					}
					wg.Wait()
				}))
			}
			b.ReportMetric(float64(worst)/(1<<20), "peak-MB")
			b.Logf("%s: statuses %v, peak heap growth %.0f MB", k.name, statuses, float64(worst)/(1<<20))
		})
	}
}

// BenchmarkStalledReaders: ten clients ask for an $everything of about
// 86 MB and never read it. It reports the peak heap growth while the
// server answers them (peak-MB), how long until the server gave up on all
// ten (cutoff-s), and the heap growth left once it had (after-MB): the
// responses' memory is freed instead of pinned for as long as the
// clients keep their connections.
func BenchmarkStalledReaders(b *testing.B) {
	const idle = 2 * time.Second
	logs := &syncBuffer{}
	h := newHarness(b, storeKinds[0], server.Config{Validator: noValidation{}, IdleIOTimeout: idle,
		Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	ts := httptest.NewServer(h.srv)
	defer ts.Close()
	mustStatus(b, h.do(http.MethodPut, "/Patient/big", []byte(`{"resourceType":"Patient","id":"big"}`)), http.StatusCreated)
	data := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("scan"), 215<<10))
	for i := 0; i < 100; i++ {
		body := fmt.Sprintf(`{"resourceType":"DocumentReference","status":"current","subject":{"reference":"Patient/big"},"content":[{"attachment":{"contentType":"image/png","data":"%s"}}]}`, data)
		mustStatus(b, h.do(http.MethodPost, "/DocumentReference", []byte(body)), http.StatusCreated)
	}
	ended := func() int {
		logs.mu.Lock()
		defer logs.mu.Unlock()
		return strings.Count(logs.b.String(), `"path":"/Patient/big/$everything"`)
	}
	for i := 0; i < b.N; i++ {
		before := ended()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base := ms.HeapAlloc
		start := time.Now()
		var conns []net.Conn
		var cutoff time.Duration
		peak := peakHeap(func() {
			for j := 0; j < 10; j++ {
				c, err := net.Dial("tcp", ts.Listener.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				fmt.Fprintf(c, "GET /Patient/big/$everything HTTP/1.1\r\nHost: x\r\n\r\n")
				conns = append(conns, c)
			}
			for ended() < before+10 {
				if time.Since(start) > 5*time.Minute {
					b.Fatalf("the server still holds %d stalled responses after 5 minutes", before+10-ended())
				}
				time.Sleep(50 * time.Millisecond)
			}
			cutoff = time.Since(start)
		})
		runtime.GC()
		runtime.ReadMemStats(&ms)
		after := int64(ms.HeapAlloc) - int64(base)
		for _, c := range conns {
			c.Close()
		}
		b.ReportMetric(float64(peak)/(1<<20), "peak-MB")
		b.ReportMetric(cutoff.Seconds(), "cutoff-s")
		b.ReportMetric(float64(after)/(1<<20), "after-MB")
	}
}
