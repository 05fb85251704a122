package fhirrest_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/adaptertest"
	"github.com/fhirgate/fhirgate/adapters/fhirrest"
)

// BenchmarkThreeSources pulls one patient's record split (with overlap)
// over three fake sources that each add 50 ms to every request, all three
// at once, and compares the wall time with that of the slowest source
// pulled alone with the same page size. Each pull starts cold (metadata,
// discovery and token included). Reported: single-ms, three-ms and
// ratio (three / slowest single; the aim is at most 1.2).
func BenchmarkThreeSources(b *testing.B) {
	for _, mode := range []struct {
		name       string
		everything bool
	}{{"everything", true}, {"search", false}} {
		b.Run(mode.name, func(b *testing.B) {
			var ups [3]*adaptertest.Upstream
			for i := range ups {
				ups[i] = adaptertest.NewUpstream(b, adaptertest.ServerOptions{
					Everything: mode.everything, Keep: adaptertest.Overlap(i, 3), Latency: 50 * time.Millisecond, MaxPageSize: 50,
				})
			}
			open := func(up *adaptertest.Upstream) adapters.Source {
				src, err := fhirrest.New("s", fhirrest.Config{Config: up.Config, PageSize: 50}, up.Options)
				if err != nil {
					b.Fatal(err)
				}
				return src
			}
			pull := func(up *adaptertest.Upstream) int {
				_, res, err := adapters.Collect(context.Background(), open(up), adapters.FetchRequest{PatientID: up.Patients()[0]})
				if err != nil {
					b.Fatal(err)
				}
				return res.Requests
			}
			var single, three time.Duration
			requests := 0
			b.ResetTimer()
			for range b.N {
				slowest := time.Duration(0)
				for _, up := range ups {
					start := time.Now()
					requests = max(requests, pull(up))
					slowest = max(slowest, time.Since(start))
				}
				single += slowest
				start := time.Now()
				var wg sync.WaitGroup
				for _, up := range ups {
					wg.Go(func() { pull(up) })
				}
				wg.Wait()
				three += time.Since(start)
			}
			n := float64(b.N)
			b.ReportMetric(single.Seconds()*1000/n, "single-ms")
			b.ReportMetric(three.Seconds()*1000/n, "three-ms")
			b.ReportMetric(three.Seconds()/single.Seconds(), "ratio")
			b.ReportMetric(float64(requests), "requests/source")
		})
	}
}
