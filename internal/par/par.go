// Package par runs the iterations of a CPU-bound loop on all cores.
package par

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// For calls fn for each of 0..n-1, on up to GOMAXPROCS goroutines (at
// most eight), and returns when every call has returned. Iterations are
// taken in order; fn must be safe to run concurrently with itself.
func For(n int, fn func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), 8, n)
	if workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		}()
	}
	wg.Wait()
}
