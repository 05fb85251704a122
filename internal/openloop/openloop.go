// Package openloop drives benchmarks in an open loop: calls start on a
// fixed schedule, each in its own goroutine, as requests from many
// independent clients arrive, whether or not the earlier ones have
// returned. A closed loop (a fixed number of clients, each waiting for its
// answer) hides a stall: its clients stop asking while it lasts. The
// latencies are timed from when each call was due, so a stall shows in
// every call it delayed.
package openloop

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// Run calls fn b.N times at rate calls a second and returns each call's
// latency, from when it was due (or started, whichever is later: the
// timer that wakes the loop is late by up to a millisecond, which is not
// the latency of what is measured).
func Run(b *testing.B, rate int, fn func()) []time.Duration {
	lat := make([]time.Duration, b.N)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		due := start.Add(time.Duration(i) * time.Second / time.Duration(rate))
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		from := due
		if now := time.Now(); now.After(due) {
			from = now
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn()
			lat[i] = time.Since(from)
		}()
	}
	wg.Wait()
	b.StopTimer()
	return lat
}

// Report reports the 50th and 99th percentiles of ds in microseconds as
// prefix+"p50-µs" and prefix+"p99-µs", and the 99.9th with tail.
func Report(b *testing.B, prefix string, ds []time.Duration, tail bool) {
	if len(ds) == 0 {
		return
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	at := func(q float64) float64 {
		return float64(ds[min(len(ds)-1, int(q*float64(len(ds))))].Microseconds())
	}
	b.ReportMetric(at(0.50), prefix+"p50-µs")
	b.ReportMetric(at(0.99), prefix+"p99-µs")
	if tail {
		b.ReportMetric(at(0.999), prefix+"p999-µs")
	}
}
