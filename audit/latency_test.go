package audit_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/internal/openloop"
)

// BenchmarkRecordLatency records read events in an open loop (each event
// from its own goroutine, started on a fixed schedule, as requests from
// many clients arrive) on each store, and reports the percentiles of how
// long Record took (what the trail adds to a read's latency: p50-µs,
// p99-µs, p999-µs) and of how long the appends took (the store's commits:
// append-p50-µs …). The server's BenchmarkReadLatency measures the same
// through the HTTP handler; this one leaves out the rest of a read, and
// its events name a different resource each (new references to index, as
// reads of many records do).
func BenchmarkRecordLatency(b *testing.B) {
	for _, k := range kinds {
		for _, rate := range []int{2000, 8000} {
			b.Run(fmt.Sprintf("%s/rate=%d", k.name, rate), func(b *testing.B) {
				var mu sync.Mutex
				var appends []time.Duration
				tr := open(b, k.open(b), audit.Options{OnAppend: func(n int, d time.Duration, err error) {
					mu.Lock()
					appends = append(appends, d)
					mu.Unlock()
				}})
				ctx := context.Background()
				var n atomic.Int64 // numbers the events
				lat := openloop.Run(b, rate, func() {
					if err := tr.Record(ctx, read(int(n.Add(1)), "Patient/p1")); err != nil {
						b.Error(err)
					}
				})
				mu.Lock()
				defer mu.Unlock()
				openloop.Report(b, "", lat, true)
				openloop.Report(b, "append-", appends, true)
				b.ReportMetric(float64(b.N)/float64(max(1, len(appends))), "events/append")
			})
		}
	}
}
