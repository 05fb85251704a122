package postgres

import "testing"

// TestAnalyzeSchedule: the first ANALYZE comes after analyzeAfterRows
// versions, each next one after as many as were written before the
// previous (so a load of n versions runs about log2(n/5000) of them).
func TestAnalyzeSchedule(t *testing.T) {
	var pending, before int64
	var at []int64
	for written := int64(1); written <= 100_000; written++ {
		pending++
		if analyzeDue(pending, before) {
			at = append(at, written)
			before += pending
			pending = 0
		}
	}
	want := []int64{5000, 10000, 20000, 40000, 80000}
	if len(at) != len(want) {
		t.Fatalf("analysed after %v versions, want %v", at, want)
	}
	for i := range want {
		if at[i] != want[i] {
			t.Fatalf("analysed after %v versions, want %v", at, want)
		}
	}
}
