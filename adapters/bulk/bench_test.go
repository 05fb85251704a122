package bulk_test

import (
	"bufio"
	"context"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/adaptertest"
	"github.com/fhirgate/fhirgate/adapters/bulk"
	"github.com/fhirgate/fhirgate/fhir"
)

// peakSampler records the peak live heap while it runs.
type peakSampler struct {
	stop chan struct{}
	done chan struct{}
	peak uint64
}

func samplePeak() *peakSampler {
	p := &peakSampler{stop: make(chan struct{}), done: make(chan struct{})}
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	go func() {
		defer close(p.done)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			p.peak = max(p.peak, s[0].Value.Uint64())
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
		}
	}()
	return p
}

func (p *peakSampler) Stop() uint64 {
	close(p.stop)
	<-p.done
	return p.peak
}

// peakRSS reads the process's high-water resident set size (Linux), in
// bytes, or 0.
func peakRSS() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// BenchmarkExport100k streams a 100,000-resource export (four NDJSON files,
// about 90 MB, from the in-process fake upstream, gzip on the wire) into a
// sink that only counts, and reports the peak live heap sampled during the
// read (the sink keeps nothing, as a store writing batches would not) and
// the process's peak RSS, which includes the fake server.
func BenchmarkExport100k(b *testing.B) {
	const n = 100_000
	up := adaptertest.NewUpstream(b, adaptertest.ServerOptions{Export: true, Synthetic: n, GzipFiles: true, ExportPolls: -1})
	src, err := bulk.New("bench", bulk.Config{Config: up.Config}, up.Options)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var peak uint64
	var bytes int64
	b.ResetTimer()
	for range b.N {
		job, err := src.StartExport(ctx, adapters.ExportRequest{Level: "group", GroupID: adaptertest.GroupID})
		if err != nil {
			b.Fatal(err)
		}
		m, err := src.WaitExport(ctx, job, nil)
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		ps := samplePeak()
		var mu sync.Mutex
		count := 0
		bytes = 0
		res, err := src.ReadExport(ctx, m, func(r *fhir.Resource) error {
			mu.Lock()
			count++
			bytes += int64(len(r.Raw))
			mu.Unlock()
			return nil
		})
		peak = max(peak, ps.Stop())
		if err != nil {
			b.Fatal(err)
		}
		if count != n || res.Resources != n {
			b.Fatalf("%d resources, want %d", count, n)
		}
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
	b.ReportMetric(float64(peakRSS())/(1<<20), "peak-RSS-MB")
	b.ReportMetric(float64(bytes)/(1<<20), "export-MB")
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "resources/s")
}

// exportPeak reads an export of n generated resources and returns the
// peak live heap during the read and the bytes of resources read.
func exportPeak(t testing.TB, n int) (peak uint64, total int64) {
	up := adaptertest.NewUpstream(t, adaptertest.ServerOptions{Export: true, Synthetic: n, ExportPolls: -1})
	src, err := bulk.New("mem", bulk.Config{Config: up.Config}, up.Options)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	job, err := src.StartExport(ctx, adapters.ExportRequest{Level: "group", GroupID: adaptertest.GroupID})
	if err != nil {
		t.Fatal(err)
	}
	m, err := src.WaitExport(ctx, job, nil)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	ps := samplePeak()
	var mu sync.Mutex
	res, err := src.ReadExport(ctx, m, func(r *fhir.Resource) error {
		mu.Lock()
		total += int64(len(r.Raw))
		mu.Unlock()
		return nil
	})
	peak = ps.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if res.Resources != n {
		t.Fatalf("%d resources, want %d", res.Resources, n)
	}
	return peak, total
}

// TestExportMemoryIsFlat: reading five times as many resources does not
// take (much) more heap. A memory bound, not a time one.
func TestExportMemoryIsFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 120,000 resources")
	}
	small, smallBytes := exportPeak(t, 20_000)
	large, largeBytes := exportPeak(t, 100_000)
	t.Logf("peak live heap %d MB for %d MB of resources, %d MB for %d MB", small>>20, smallBytes>>20, large>>20, largeBytes>>20)
	if large > small*3/2+16<<20 {
		t.Errorf("peak heap grew from %d MB to %d MB with the export's size", small>>20, large>>20)
	}
}
