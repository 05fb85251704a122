package fhirpath

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// Decimal is a FHIRPath Decimal kept as its literal text (for example
// "1.50"), so that precision survives.
type Decimal string

// Date is a FHIRPath Date literal such as "2019", "2019-02" or "2019-02-03".
type Date string

// DateTime is a FHIRPath DateTime such as "2019-02-03T10:00:00Z"; it may be
// partial ("2019-02-03T10").
type DateTime string

// Time is a FHIRPath Time such as "10:00" or "10:00:00.000" (without the T).
type Time string

// Quantity is a FHIRPath Quantity: a decimal value and a unit, which is a
// UCUM code or a calendar duration word (year, month, week, day, hour,
// minute, second, millisecond).
type Quantity struct {
	Value Decimal
	Unit  string
}

func (q Quantity) String() string {
	if _, ok := calendarUnits[q.Unit]; ok {
		return string(q.Value) + " " + q.Unit
	}
	return string(q.Value) + " '" + q.Unit + "'"
}

// valueKind classifies FHIR primitive type names by the System type they
// map to.
type valueKind uint8

const (
	kNone valueKind = iota
	kBool
	kInt
	kDecimal
	kString
	kDate
	kDateTime
	kTime
)

func primitiveKind(fhirType string) valueKind {
	switch fhirType {
	case "boolean":
		return kBool
	case "integer", "positiveInt", "unsignedInt", "integer64":
		return kInt
	case "decimal":
		return kDecimal
	case "string", "code", "id", "uri", "url", "canonical", "oid", "uuid", "markdown", "base64Binary", "xhtml":
		return kString
	case "date":
		return kDate
	case "dateTime", "instant":
		return kDateTime
	case "time":
		return kTime
	}
	return kNone
}

func isQuantityType(t string) bool {
	switch t {
	case "Quantity", "Age", "Duration", "Distance", "Count", "SimpleQuantity", "MoneyQuantity":
		return true
	}
	return false
}

// value returns the System value of an item: the computed value, the value
// of a JSON primitive converted by its FHIR type, or a Quantity for a
// Quantity-typed object. ok is false for other nodes (complex elements and
// primitives that carry only an extension).
func (it Item) value() (any, bool) {
	if it.Value != nil {
		return it.Value, true
	}
	n := it.Node
	if n == nil {
		return nil, false
	}
	switch n.Kind {
	case fjson.Bool:
		return n.Str == "true", true
	case fjson.Number:
		switch primitiveKind(it.Type) {
		case kDecimal:
			return Decimal(n.Str), true
		case kInt:
			if v, err := strconv.ParseInt(n.Str, 10, 64); err == nil {
				return v, true
			}
			return Decimal(n.Str), true
		}
		if strings.ContainsAny(n.Str, ".eE") {
			return Decimal(n.Str), true
		}
		if v, err := strconv.ParseInt(n.Str, 10, 64); err == nil {
			return v, true
		}
		return Decimal(n.Str), true
	case fjson.String:
		switch primitiveKind(it.Type) {
		case kDate:
			return Date(n.Str), true
		case kDateTime:
			return DateTime(n.Str), true
		case kTime:
			return Time(n.Str), true
		}
		return n.Str, true
	case fjson.Object:
		if isQuantityType(it.Type) {
			v := n.Get("value")
			if v == nil || v.Kind != fjson.Number {
				return nil, false
			}
			unit := n.Get("code").String()
			if unit == "" {
				unit = n.Get("unit").String()
			}
			return Quantity{Value: Decimal(v.Str), Unit: unit}, true
		}
	}
	return nil, false
}

// dt is a parsed date, date-time or time with its precision.
type dt struct {
	kind                   valueKind // kDate, kDateTime or kTime
	y, mo, d, h, mi, s, ns int
	prec                   int // 1 year, 2 month, 3 day, 4 hour, 5 minute, 6 second
	tz                     bool
	off                    int // offset east of UTC, seconds
}

func parseDateLiteral(s string) (any, error) {
	if strings.HasPrefix(s, "T") {
		if _, ok := parseTime(s[1:]); !ok {
			return nil, fmt.Errorf("bad time literal @%s", s)
		}
		return Time(s[1:]), nil
	}
	if strings.HasSuffix(s, "T") {
		if _, ok := parseDT(s[:len(s)-1], kDateTime); !ok {
			return nil, fmt.Errorf("bad date/time literal @%s", s)
		}
		return DateTime(s[:len(s)-1]), nil
	}
	if strings.Contains(s, "T") {
		if _, ok := parseDT(s, kDateTime); !ok {
			return nil, fmt.Errorf("bad date/time literal @%s", s)
		}
		return DateTime(s), nil
	}
	if _, ok := parseDT(s, kDate); !ok {
		return nil, fmt.Errorf("bad date literal @%s", s)
	}
	return Date(s), nil
}

func digits(s string, n int) (int, bool) {
	if len(s) < n {
		return 0, false
	}
	v := 0
	for i := 0; i < n; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

// parseDT parses YYYY[-MM[-DD[Thh[:mm[:ss[.f+]]][Z|±hh:mm]]]].
func parseDT(s string, kind valueKind) (dt, bool) {
	var r dt
	r.kind = kind
	var ok bool
	if r.y, ok = digits(s, 4); !ok {
		return r, false
	}
	r.prec, r.mo, r.d = 1, 1, 1
	s = s[4:]
	if len(s) > 0 && s[0] == '-' {
		if r.mo, ok = digits(s[1:], 2); !ok || r.mo < 1 || r.mo > 12 {
			return r, false
		}
		r.prec, s = 2, s[3:]
		if len(s) > 0 && s[0] == '-' {
			if r.d, ok = digits(s[1:], 2); !ok || r.d < 1 || r.d > daysIn(r.y, r.mo) {
				return r, false
			}
			r.prec, s = 3, s[3:]
		}
	}
	if len(s) == 0 {
		return r, true
	}
	if s[0] != 'T' || r.prec != 3 || kind == kDate {
		return r, false
	}
	s = s[1:]
	t, rest, ok := parseTimePart(s)
	if !ok {
		return r, false
	}
	r.h, r.mi, r.s, r.ns, r.prec = t.h, t.mi, t.s, t.ns, t.prec
	if rest == "" {
		return r, true
	}
	if rest == "Z" {
		r.tz = true
		return r, true
	}
	if len(rest) != 6 || (rest[0] != '+' && rest[0] != '-') || rest[3] != ':' {
		return r, false
	}
	hh, ok1 := digits(rest[1:], 2)
	mm, ok2 := digits(rest[4:], 2)
	if !ok1 || !ok2 || hh > 14 || mm > 59 {
		return r, false
	}
	r.tz, r.off = true, hh*3600+mm*60
	if rest[0] == '-' {
		r.off = -r.off
	}
	return r, true
}

func parseTime(s string) (dt, bool) {
	t, rest, ok := parseTimePart(s)
	if !ok || rest != "" {
		return t, false
	}
	t.kind = kTime
	return t, true
}

// parseTimePart parses hh[:mm[:ss[.f+]]] and returns what follows.
func parseTimePart(s string) (dt, string, bool) {
	var r dt
	var ok bool
	if r.h, ok = digits(s, 2); !ok || r.h > 23 {
		return r, s, false
	}
	r.prec, s = 4, s[2:]
	if len(s) > 0 && s[0] == ':' {
		if r.mi, ok = digits(s[1:], 2); !ok || r.mi > 59 {
			return r, s, false
		}
		r.prec, s = 5, s[3:]
		if len(s) > 0 && s[0] == ':' {
			if r.s, ok = digits(s[1:], 2); !ok || r.s > 60 {
				return r, s, false
			}
			r.prec, s = 6, s[3:]
			if len(s) > 0 && s[0] == '.' {
				j := 1
				for j < len(s) && s[j] >= '0' && s[j] <= '9' {
					j++
				}
				if j == 1 {
					return r, s, false
				}
				frac := s[1:j]
				if len(frac) > 9 {
					frac = frac[:9]
				}
				n, _ := strconv.Atoi(frac)
				for k := len(frac); k < 9; k++ {
					n *= 10
				}
				r.ns, s = n, s[j:]
			}
		}
	}
	return r, s, true
}

func daysIn(y, m int) int {
	return time.Date(y, time.Month(m)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// normalized returns d with hours and below shifted to UTC when it carries
// a time of day.
func (d dt) normalized() dt {
	if d.kind == kTime || d.prec < 4 || d.off == 0 {
		return d
	}
	t := time.Date(d.y, time.Month(d.mo), d.d, d.h, d.mi, d.s, d.ns, time.FixedZone("", d.off)).UTC()
	d.y, d.mo, d.d, d.h, d.mi, d.s, d.ns = t.Year(), int(t.Month()), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond()
	d.off = 0
	return d
}

// compareDT orders two date/times. ok is false when the answer depends on
// precision that one of them lacks (FHIRPath then returns empty).
func compareDT(a, b dt) (int, bool) {
	a, b = a.normalized(), b.normalized()
	prec := min(a.prec, b.prec)
	var av, bv [6]int
	if a.kind == kTime {
		av = [6]int{0, 0, 0, a.h, a.mi, a.s*1e9 + a.ns}
		bv = [6]int{0, 0, 0, b.h, b.mi, b.s*1e9 + b.ns}
	} else {
		av = [6]int{a.y, a.mo, a.d, a.h, a.mi, a.s*1e9 + a.ns}
		bv = [6]int{b.y, b.mo, b.d, b.h, b.mi, b.s*1e9 + b.ns}
	}
	start := 0
	if a.kind == kTime {
		start = 3
	}
	if a.kind != kTime && prec >= 4 && a.tz != b.tz {
		// one has a zone, the other not: which instant it is is not known
		return 0, false
	}
	for i := start; i < prec; i++ {
		if av[i] != bv[i] {
			if av[i] < bv[i] {
				return -1, true
			}
			return 1, true
		}
	}
	if a.prec != b.prec {
		return 0, false
	}
	return 0, true
}

// asDT converts a date-like value (or a string that parses as one) to dt.
func asDT(v any) (dt, bool) {
	switch x := v.(type) {
	case Date:
		return parseDT(string(x), kDate)
	case DateTime:
		d, ok := parseDT(string(x), kDateTime)
		return d, ok
	case Time:
		return parseTime(string(x))
	case string:
		if strings.Contains(x, "T") {
			return parseDT(x, kDateTime)
		}
		if d, ok := parseDT(x, kDate); ok {
			return d, true
		}
		return parseTime(x)
	}
	return dt{}, false
}

func isDateLike(v any) bool {
	switch v.(type) {
	case Date, DateTime, Time:
		return true
	}
	return false
}

func isNumber(v any) bool {
	switch v.(type) {
	case int64, Decimal:
		return true
	}
	return false
}

func toRat(v any) (*big.Rat, bool) {
	switch x := v.(type) {
	case int64:
		return new(big.Rat).SetInt64(x), true
	case Decimal:
		r, ok := new(big.Rat).SetString(string(x))
		return r, ok
	}
	return nil, false
}

func compareNum(a, b any) (int, bool) {
	if x, ok := a.(int64); ok {
		if y, ok := b.(int64); ok {
			switch {
			case x < y:
				return -1, true
			case x > y:
				return 1, true
			}
			return 0, true
		}
	}
	ra, ok1 := toRat(a)
	rb, ok2 := toRat(b)
	if !ok1 || !ok2 {
		return 0, false
	}
	return ra.Cmp(rb), true
}

// compareValues orders two singleton values for < <= > >=. ok is false when
// the result is empty (uncertain precision); err is set for values that
// cannot be compared.
func compareValues(a, b any) (c int, ok bool, err error) {
	switch {
	case isNumber(a) && isNumber(b):
		c, ok = compareNum(a, b)
		return c, ok, nil
	case isDateLike(a) || isDateLike(b):
		da, ok1 := asDT(a)
		db, ok2 := asDT(b)
		if !ok1 || !ok2 || (da.kind == kTime) != (db.kind == kTime) {
			return 0, false, fmt.Errorf("fhirpath: cannot compare %s with %s", typeNameOf(a), typeNameOf(b))
		}
		c, ok = compareDT(da, db)
		return c, ok, nil
	}
	switch x := a.(type) {
	case string:
		if y, ok := b.(string); ok {
			return strings.Compare(x, y), true, nil
		}
	case Quantity:
		if y, ok := b.(Quantity); ok {
			va, vb, ok := quantitiesComparable(x, y)
			if !ok {
				return 0, false, nil
			}
			return va.Cmp(vb), true, nil
		}
	}
	return 0, false, fmt.Errorf("fhirpath: cannot compare %s with %s", typeNameOf(a), typeNameOf(b))
}

func sameUnit(a, b string) bool {
	if a == b {
		return true
	}
	ca, ok1 := calendarUCUM[a]
	cb, ok2 := calendarUCUM[b]
	return ok1 && ok2 && ca == cb
}

// calendarUCUM maps calendar words and the definite-duration UCUM codes to
// one spelling, so that 1 'd' = 1 day for days, weeks and shorter units.
var calendarUCUM = map[string]string{
	"week": "wk", "wk": "wk", "day": "d", "d": "d", "hour": "h", "h": "h",
	"minute": "min", "min": "min", "second": "s", "s": "s", "millisecond": "ms", "ms": "ms",
}

// equalValues implements = on two singleton values. ok is false when the
// result is empty (date/times of different precision).
func equalValues(a, b any) (eq bool, ok bool) {
	switch {
	case isNumber(a) && isNumber(b):
		c, ok := compareNum(a, b)
		return ok && c == 0, true
	case isDateLike(a) || isDateLike(b):
		da, ok1 := asDT(a)
		db, ok2 := asDT(b)
		if !ok1 || !ok2 || (da.kind == kTime) != (db.kind == kTime) {
			return false, true
		}
		c, ok := compareDT(da, db)
		if !ok {
			return false, false
		}
		return c == 0, true
	}
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		return ok && x == y, true
	case bool:
		y, ok := b.(bool)
		return ok && x == y, true
	case Quantity:
		y, ok := b.(Quantity)
		if !ok {
			return false, true
		}
		va, vb, ok := quantitiesComparable(x, y)
		if !ok {
			// a calendar year or month against a UCUM time: not known
			if calendarVsUCUM(x.Unit, y.Unit) {
				return false, false
			}
			return false, true
		}
		return va.Cmp(vb) == 0, true
	}
	return false, true
}

// calendarVsUCUM reports a calendar year or month against a UCUM time.
func calendarVsUCUM(a, b string) bool {
	cal := func(u string) bool { return u == "year" || u == "month" }
	return cal(a) && !cal(b) && isTimeUnit(b) || cal(b) && !cal(a) && isTimeUnit(a)
}

func isTimeUnit(u string) bool {
	if _, ok := calendarSeconds[u]; ok {
		return true
	}
	_, d, ok := parseUnit(u)
	return ok && d == dims{0, 0, 1}
}

// equivalentValues implements ~ on two singleton values.
func equivalentValues(a, b any) bool {
	switch {
	case isNumber(a) && isNumber(b):
		// Compare at the precision of the less precise operand.
		p := min(decimals(a), decimals(b))
		ra, _ := toRat(a)
		rb, _ := toRat(b)
		if ra == nil || rb == nil {
			return false
		}
		return ra.FloatString(p) == rb.FloatString(p)
	case isDateLike(a) || isDateLike(b):
		da, ok1 := asDT(a)
		db, ok2 := asDT(b)
		if !ok1 || !ok2 {
			return false
		}
		c, ok := compareDT(da, db)
		return ok && c == 0
	}
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		return ok && strings.EqualFold(strings.Join(strings.Fields(x), " "), strings.Join(strings.Fields(y), " "))
	case Quantity:
		y, ok := b.(Quantity)
		if !ok {
			return false
		}
		va, vb, ok := quantitiesComparable(x, y)
		if !ok {
			return false
		}
		// in the left operand's unit, at the precision of the less precise
		f, _, _, _ := canonicalQuantity(Quantity{Value: "1", Unit: x.Unit})
		p := min(decimals(x.Value), decimals(y.Value))
		return new(big.Rat).Quo(va, f).FloatString(p) == new(big.Rat).Quo(vb, f).FloatString(p)
	}
	eq, _ := equalValues(a, b)
	return eq
}

func decimals(v any) int {
	if d, ok := v.(Decimal); ok {
		s := string(d)
		if i := strings.IndexByte(s, '.'); i >= 0 {
			j := i + 1
			for j < len(s) && s[j] >= '0' && s[j] <= '9' {
				j++
			}
			return j - i - 1
		}
	}
	return 0
}

func typeNameOf(v any) string {
	switch v.(type) {
	case bool:
		return "Boolean"
	case string:
		return "String"
	case int64:
		return "Integer"
	case Decimal:
		return "Decimal"
	case Date:
		return "Date"
	case DateTime:
		return "DateTime"
	case Time:
		return "Time"
	case Quantity:
		return "Quantity"
	}
	return "complex value"
}

// toStringValue renders a value as FHIRPath toString() does.
func toStringValue(v any) (string, bool) {
	switch x := v.(type) {
	case bool:
		return strconv.FormatBool(x), true
	case string:
		return x, true
	case int64:
		return strconv.FormatInt(x, 10), true
	case Decimal:
		return string(x), true
	case Date:
		return string(x), true
	case DateTime:
		return string(x), true
	case Time:
		return string(x), true
	case Quantity:
		return x.String(), true
	}
	return "", false
}
