package fhirpath

import (
	"math/big"
	"strconv"
	"strings"
)

// A small UCUM: enough to compare, convert, multiply and divide the
// quantities FHIR data carries (metric units with prefixes, time, the
// common customary units). A unit is a factor to the base units and a
// dimension vector; units with the same dimensions convert into each
// other. Units outside this table are only equal to themselves.

// dims: m, g, s, mol, K, A, cd (the base units UCUM uses).
type dims [7]int8

type unitDef struct {
	factor *big.Rat
	dims   dims
	// metric units take prefixes
	metric bool
}

func rat(s string) *big.Rat {
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		panic("ucum: bad factor " + s)
	}
	return r
}

var ucumAtoms = map[string]unitDef{
	"m":       {rat("1"), dims{1}, true},
	"g":       {rat("1"), dims{0, 1}, true},
	"s":       {rat("1"), dims{0, 0, 1}, true},
	"mol":     {rat("1"), dims{0, 0, 0, 1}, true},
	"K":       {rat("1"), dims{0, 0, 0, 0, 1}, true},
	"A":       {rat("1"), dims{0, 0, 0, 0, 0, 1}, true},
	"cd":      {rat("1"), dims{0, 0, 0, 0, 0, 0, 1}, true},
	"L":       {rat("1/1000"), dims{3}, true},
	"l":       {rat("1/1000"), dims{3}, true},
	"min":     {rat("60"), dims{0, 0, 1}, false},
	"h":       {rat("3600"), dims{0, 0, 1}, false},
	"d":       {rat("86400"), dims{0, 0, 1}, false},
	"wk":      {rat("604800"), dims{0, 0, 1}, false},
	"mo":      {rat("2629800"), dims{0, 0, 1}, false},  // mean Julian month
	"a":       {rat("31557600"), dims{0, 0, 1}, false}, // Julian year
	"Hz":      {rat("1"), dims{0, 0, -1}, true},
	"N":       {rat("1000"), dims{1, 1, -2}, true},
	"Pa":      {rat("1000"), dims{-1, 1, -2}, true},
	"J":       {rat("1000"), dims{2, 1, -2}, true},
	"W":       {rat("1000"), dims{2, 1, -3}, true},
	"eq":      {rat("1"), dims{0, 0, 0, 1}, true},
	"%":       {rat("1/100"), dims{}, false},
	"[in_i]":  {rat("127/5000"), dims{1}, false},
	"[ft_i]":  {rat("381/1250"), dims{1}, false},
	"[lb_av]": {rat("45359237/100000"), dims{0, 1}, false},
	"[oz_av]": {rat("45359237/1600000"), dims{0, 1}, false},
	"mm[Hg]":  {rat("133322/1000"), dims{-1, 1, -2}, false}, // 133.322 kPa/1000 in g/(m·s²)
	"[iU]":    {rat("1"), dims{}, false},
	"[IU]":    {rat("1"), dims{}, false},
	"{beats}": {rat("1"), dims{}, false},
	"1":       {rat("1"), dims{}, false},
}

var ucumPrefixes = map[string]string{
	"Y": "1000000000000000000000000", "Z": "1000000000000000000000", "E": "1000000000000000000", "P": "1000000000000000",
	"T": "1000000000000", "G": "1000000000", "M": "1000000", "k": "1000", "h": "100", "da": "10",
	"d": "1/10", "c": "1/100", "m": "1/1000", "u": "1/1000000", "n": "1/1000000000", "p": "1/1000000000000",
	"f": "1/1000000000000000", "a": "1/1000000000000000000",
}

// parseUnit reads a UCUM unit expression: terms joined by '.' and '/',
// each a prefixed atom with an optional integer exponent ("mg/dL",
// "cm.m", "m2", "km/h", "/min"). Curly-brace annotations count as 1.
func parseUnit(u string) (*big.Rat, dims, bool) {
	factor := big.NewRat(1, 1)
	var d dims
	if u == "" {
		return factor, d, true
	}
	sign := 1
	i := 0
	if u[0] == '/' {
		sign, i = -1, 1
	}
	for i <= len(u) {
		j := i
		depth := 0
		for j < len(u) && (depth > 0 || u[j] != '.' && u[j] != '/') {
			switch u[j] {
			case '[', '{', '(':
				depth++
			case ']', '}', ')':
				depth--
			}
			j++
		}
		f, td, ok := parseTerm(u[i:j])
		if !ok {
			return nil, d, false
		}
		if sign > 0 {
			factor.Mul(factor, f)
		} else {
			factor.Quo(factor, f)
		}
		for k := range d {
			d[k] += int8(sign) * td[k]
		}
		if j >= len(u) {
			break
		}
		if u[j] == '/' {
			sign = -1
		} else {
			sign = 1
		}
		i = j + 1
	}
	return factor, d, true
}

func parseTerm(t string) (*big.Rat, dims, bool) {
	var d dims
	if t == "" {
		return nil, d, false
	}
	if strings.HasPrefix(t, "{") && strings.HasSuffix(t, "}") {
		return big.NewRat(1, 1), d, true
	}
	if i := strings.IndexByte(t, '{'); i > 0 && strings.HasSuffix(t, "}") {
		t = t[:i] // an annotation on a unit ("mg{creat}")
	}
	// exponent: trailing digits (with an optional sign) after the atom
	exp := 1
	j := len(t)
	for j > 0 && t[j-1] >= '0' && t[j-1] <= '9' {
		j--
	}
	if j > 0 && (t[j-1] == '-' || t[j-1] == '+') && j < len(t) {
		j--
	}
	atom := t
	if j > 0 && j < len(t) && !strings.HasSuffix(t, "]") {
		if e, err := strconv.Atoi(t[j:]); err == nil {
			exp, atom = e, t[:j]
		}
	}
	if t == "1" || allDigitsStr(t) {
		n, ok := new(big.Rat).SetString(t)
		return n, d, ok
	}
	def, ok := ucumAtoms[atom]
	factor := new(big.Rat)
	if ok {
		factor.Set(def.factor)
	} else {
		// a metric prefix before a metric atom
		for p, pf := range ucumPrefixes {
			if strings.HasPrefix(atom, p) {
				if ad, ok2 := ucumAtoms[atom[len(p):]]; ok2 && ad.metric {
					def, ok = ad, true
					factor.Mul(rat(pf), ad.factor)
					break
				}
			}
		}
		if !ok {
			return nil, d, false
		}
	}
	out := big.NewRat(1, 1)
	for k := 0; k < abs(exp); k++ {
		out.Mul(out, factor)
	}
	if exp < 0 {
		out.Inv(out)
	}
	for k := range d {
		d[k] = def.dims[k] * int8(exp)
	}
	return out, d, true
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

func allDigitsStr(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// calendarSeconds are the calendar durations that equal a definite UCUM
// time (a week is 7 days; a calendar year or month is not a UCUM 'a' or
// 'mo').
var calendarSeconds = map[string]string{"week": "wk", "day": "d", "hour": "h", "minute": "min", "second": "s", "millisecond": "ms"}

// canonicalQuantity converts a quantity to base units: its value as a
// rational, and its dimensions. Calendar years and months are only
// comparable with each other (in months).
func canonicalQuantity(q Quantity) (*big.Rat, dims, string, bool) {
	v, ok := new(big.Rat).SetString(string(q.Value))
	if !ok {
		return nil, dims{}, "", false
	}
	unit := q.Unit
	switch unit {
	case "year":
		return v.Mul(v, big.NewRat(12, 1)), dims{}, "calendar-month", true
	case "month":
		return v, dims{}, "calendar-month", true
	}
	if u, ok := calendarSeconds[unit]; ok {
		unit = u
	}
	f, d, ok := parseUnit(unit)
	if !ok {
		return v, dims{}, "unit:" + q.Unit, true // comparable only with itself
	}
	return v.Mul(v, f), d, "", true
}

// quantitiesComparable reports whether two quantities convert into each
// other, and their values in the same units when they do.
func quantitiesComparable(a, b Quantity) (*big.Rat, *big.Rat, bool) {
	va, da, ka, ok1 := canonicalQuantity(a)
	vb, db, kb, ok2 := canonicalQuantity(b)
	if !ok1 || !ok2 || ka != kb || da != db {
		return nil, nil, false
	}
	return va, vb, true
}
