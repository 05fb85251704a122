package search

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// TestPlainNumberRangeExact checks the float fast path against the exact
// rational one: on every decimal it takes it must give the same value and
// bounds, bit for bit, and it must leave every other form to the exact
// path.
func TestPlainNumberRangeExact(t *testing.T) {
	same := func(s string) {
		t.Helper()
		v, lo, hi, ok := plainNumberRange(s)
		ev, elo, ehi, eok := exactNumberRange(s)
		if !ok {
			return
		}
		if !eok {
			t.Fatalf("%q: the fast path took what the exact one refuses", s)
		}
		if math.Float64bits(v) != math.Float64bits(ev) || lo != elo || hi != ehi {
			t.Fatalf("%q: fast %v [%v, %v], exact %v [%v, %v]", s, v, lo, hi, ev, elo, ehi)
		}
	}
	taken := func(s string, want bool) {
		t.Helper()
		if _, _, _, ok := plainNumberRange(s); ok != want {
			t.Fatalf("%q: fast path ok %v, want %v", s, ok, want)
		}
		same(s)
	}
	for _, s := range []string{"0", "-0", "+0", "1", "100", "1.50", "-1.50", "5.4", "0.1", "0.3",
		"98.6", "0.000000000000000000001", "899999999999999", "89999999999999.9", "4.35", "7.000"} {
		taken(s, true)
	}
	for _, s := range []string{"", "-", ".5", "1.", "1e2", "1E-3", "1.5e+3", "0x10", "1..2", "1-2", "++1",
		"900000000000000", "123456789012345678", "1.0000000000000000000000", "NaN", "Inf", " 1",
		strings.Repeat("0", 70) + "5"} {
		taken(s, false)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200000; i++ {
		var b strings.Builder
		if r.IntN(3) == 0 {
			b.WriteByte('-')
		}
		b.WriteString(strconv.FormatInt(r.Int64N(int64(math.Pow10(1+r.IntN(15)))), 10))
		if r.IntN(2) == 0 {
			b.WriteByte('.')
			for n := 1 + r.IntN(12); n > 0; n-- {
				b.WriteByte(byte('0' + r.IntN(10)))
			}
		}
		same(b.String())
	}
}
