package postgres

import (
	"fmt"
	"testing"
)

// TestRebindBounded: placeholders are numbered, and the texts kept stop
// at maxRebound however many different statements callers make.
func TestRebindBounded(t *testing.T) {
	if got := rebind("SELECT ? FROM t WHERE a = ? AND b IN (?, ?)"); got != "SELECT $1 FROM t WHERE a = $2 AND b IN ($3, $4)" {
		t.Fatalf("rebind: %q", got)
	}
	for i := range maxRebound + 1000 {
		q := fmt.Sprintf("SELECT ? FROM t%d WHERE x = ?", i)
		if got, want := rebind(q), fmt.Sprintf("SELECT $1 FROM t%d WHERE x = $2", i); got != want {
			t.Fatalf("rebind %d: %q", i, got)
		}
	}
	n := 0
	rebound.Range(func(any, any) bool { n++; return true })
	if n > maxRebound || nRebound.Load() > maxRebound {
		t.Fatalf("%d texts kept (counted %d), at most %d", n, nRebound.Load(), maxRebound)
	}
}
