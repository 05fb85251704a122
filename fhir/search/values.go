package search

import (
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
)

// MinTime and MaxTime stand for the open ends of a period ("no start",
// "no end") in DateValue and Value bounds. Both are representable in
// PostgreSQL timestamptz and in RFC 3339 text.
var (
	MinTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	MaxTime = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
)

// MaxNumber stands for an open numeric bound (a Quantity with a < or >
// comparator, a Range without low or high); -MaxNumber is the open low end.
// It is finite so that every SQL engine stores it.
const MaxNumber = math.MaxFloat64

// dateRange parses a FHIR date, dateTime or instant, or the partial forms a
// search value may take (YYYY, YYYY-MM, YYYY-MM-DD, with a time to the hour,
// minute, second or fraction, with or without a zone), and returns the
// inclusive range of instants it denotes. A value without a zone is taken
// as UTC.
func dateRange(s string) (lo, hi time.Time, ok bool) {
	n := func(s string, i, w int) (int, bool) {
		if len(s) < i+w {
			return 0, false
		}
		v := 0
		for _, c := range []byte(s[i : i+w]) {
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		return v, true
	}
	y, ok := n(s, 0, 4)
	if !ok {
		return lo, hi, false
	}
	if len(s) == 4 {
		lo = time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)
		return lo, lo.AddDate(1, 0, 0).Add(-1), true
	}
	if s[4] != '-' {
		return lo, hi, false
	}
	mo, ok := n(s, 5, 2)
	if !ok || mo < 1 || mo > 12 {
		return lo, hi, false
	}
	if len(s) == 7 {
		lo = time.Date(y, time.Month(mo), 1, 0, 0, 0, 0, time.UTC)
		return lo, lo.AddDate(0, 1, 0).Add(-1), true
	}
	if s[7] != '-' {
		return lo, hi, false
	}
	d, ok := n(s, 8, 2)
	if !ok || d < 1 || d > time.Date(y, time.Month(mo)+1, 0, 0, 0, 0, 0, time.UTC).Day() {
		return lo, hi, false
	}
	if len(s) == 10 {
		lo = time.Date(y, time.Month(mo), d, 0, 0, 0, 0, time.UTC)
		return lo, lo.AddDate(0, 0, 1).Add(-1), true
	}
	if s[10] != 'T' {
		return lo, hi, false
	}
	rest := s[11:]
	h, ok1 := n(rest, 0, 2)
	mi, ok2 := n(rest, 3, 2)
	if !ok1 || !ok2 || rest[2] != ':' || h > 23 || mi > 59 {
		return lo, hi, false
	}
	rest = rest[5:]
	sec, nsec := 0, 0
	step := time.Minute
	if len(rest) > 0 && rest[0] == ':' {
		var ok bool
		if sec, ok = n(rest, 1, 2); !ok || sec > 60 {
			return lo, hi, false
		}
		rest = rest[3:]
		step = time.Second
		if len(rest) > 0 && rest[0] == '.' {
			j := 1
			for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
				j++
			}
			digits := rest[1:j]
			if digits == "" || len(digits) > 9 {
				return lo, hi, false
			}
			v, _ := strconv.Atoi(digits)
			step = time.Second
			for range digits {
				step /= 10
			}
			nsec = v * int(step)
			rest = rest[j:]
		}
	}
	loc := time.UTC
	switch {
	case rest == "" || rest == "Z":
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		zh, ok1 := n(rest, 1, 2)
		zm, ok2 := n(rest, 4, 2)
		if !ok1 || !ok2 || zh > 14 || zm > 59 {
			return lo, hi, false
		}
		off := zh*3600 + zm*60
		if rest[0] == '-' {
			off = -off
		}
		loc = time.FixedZone("", off)
	default:
		return lo, hi, false
	}
	if sec == 60 { // a leap second: the last instant of the minute
		sec, nsec, step = 59, 999999999, 1
	}
	lo = time.Date(y, time.Month(mo), d, h, mi, sec, nsec, loc).UTC()
	return lo, lo.Add(step - 1), true
}

// numberRange parses a decimal (an integer, a fraction, or an exponent
// form) and returns its value and the range its implicit precision covers:
// 100 -> [99.5, 100.5], 1.50 -> [1.495, 1.505], 1e2 -> [50, 150].
func numberRange(s string) (v, lo, hi float64, ok bool) {
	if v, lo, hi, ok := plainNumberRange(s); ok {
		return v, lo, hi, true
	}
	return exactNumberRange(s)
}

// plainNumberRange is numberRange for the common decimal: an optional
// sign, digits, an optional fraction, no exponent, at most 15
// significant digits (below 9e14) and 21 decimals (a lab value, a dose). Such a value
// and its bounds are m/10^d and (10m∓5)/10^(d+1) with every part exactly
// a float64, so one IEEE division rounds each correctly, to the float
// exactNumberRange's big.Rat arithmetic gives (about a tenth of a bulk
// load's CPU went there). Anything else is not ok, for exactNumberRange.
func plainNumberRange(s string) (v, lo, hi float64, ok bool) {
	if len(s) > 64 { // exactNumberRange's bound (leading zeros are not digits here)
		return 0, 0, 0, false
	}
	i, neg := 0, false
	if len(s) > 0 && (s[0] == '-' || s[0] == '+') {
		neg, i = s[0] == '-', 1
	}
	var m int64
	digits, decimals, dot := 0, 0, false
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			if m >= 9e13 {
				return 0, 0, 0, false // 10m+5 must stay below 2^53
			}
			m = m*10 + int64(c-'0')
			digits++
			if dot {
				decimals++
			}
		case c == '.' && !dot && digits > 0:
			dot = true
		default:
			return 0, 0, 0, false
		}
	}
	if digits == 0 || (dot && decimals == 0) || decimals+1 > 22 { // 10^22: the last exact float64 power of ten
		return 0, 0, 0, false
	}
	if neg {
		m = -m
	}
	scale := math.Pow10(decimals) // exact for 0..22
	v = float64(m) / scale
	lo = float64(10*m-5) / (scale * 10)
	hi = float64(10*m+5) / (scale * 10)
	return v, lo, hi, true
}

// exactNumberRange is numberRange for any decimal, with exact rational
// arithmetic.
func exactNumberRange(s string) (v, lo, hi float64, ok bool) {
	if s == "" || len(s) > 64 {
		return 0, 0, 0, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E') {
			return 0, 0, 0, false
		}
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return 0, 0, 0, false
	}
	v, _ = r.Float64()
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, 0, 0, false
	}
	mant, exp := strings.ToLower(s), 0
	if i := strings.IndexByte(mant, 'e'); i >= 0 {
		e, err := strconv.Atoi(mant[i+1:])
		if err != nil || e > 300 || e < -300 {
			return 0, 0, 0, false
		}
		mant, exp = mant[:i], e
	}
	decimals := 0
	if i := strings.IndexByte(mant, '.'); i >= 0 {
		decimals = len(mant) - i - 1
	}
	// half = 5 * 10^(exp-decimals-1), computed exactly so that the bounds
	// are the nearest floats to the decimal bounds (5.35, not 5.3500000000000005).
	half := new(big.Rat).SetFrac(big.NewInt(5), big.NewInt(10))
	p := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(exp-decimals))), nil)
	if exp-decimals >= 0 {
		half.Mul(half, new(big.Rat).SetInt(p))
	} else {
		half.Quo(half, new(big.Rat).SetInt(p))
	}
	lo, _ = new(big.Rat).Sub(r, half).Float64()
	hi, _ = new(big.Rat).Add(r, half).Float64()
	return v, lo, hi, true
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// splitReference interprets a reference string. A relative reference
// ("Patient/1", "Patient/1/_history/2") gives type and id; an absolute URL
// gives url and, when its tail is [type]/[id], type and id too; anything
// else ("urn:uuid:...", a canonical) gives url only. base, the server's own
// FHIR base, turns absolute references to this server into relative ones.
// References to contained resources ("#x") give nothing.
func splitReference(ref, base string) (typ, id, url string) {
	if ref == "" || ref[0] == '#' {
		return "", "", ""
	}
	if base != "" && strings.HasPrefix(ref, base+"/") {
		ref = ref[len(base)+1:]
	}
	path := ref
	if i := strings.Index(path, "/_history/"); i >= 0 {
		path = path[:i]
	}
	absolute := strings.Contains(ref, ":")
	if absolute {
		url = path
	}
	segs := strings.Split(path, "/")
	if n := len(segs); n >= 2 && fhir.IsResourceType(segs[n-2]) && fhir.ValidID(segs[n-1]) && (absolute || n == 2) {
		typ, id = segs[n-2], segs[n-1]
	}
	return typ, id, url
}

// splitCanonical splits "url|version".
func splitCanonical(s string) (url, version string) {
	url, version, _ = strings.Cut(s, "|")
	return url, version
}
