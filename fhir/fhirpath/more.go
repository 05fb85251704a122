package fhirpath

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"html"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// Functions of FHIRPath N2/2.1 the official test suite exercises:
// precision, lowBoundary, highBoundary, type, sort, encode, decode,
// escape, unescape, matchesFull, comparable, conformsTo (core profiles);
// and quantity and date arithmetic.

func init() {
	functions["precision"] = &funcSpec{fn: fnPrecision}
	functions["lowBoundary"] = &funcSpec{maxArgs: 1, fn: boundary(false)}
	functions["highBoundary"] = &funcSpec{maxArgs: 1, fn: boundary(true)}
	functions["type"] = &funcSpec{fn: fnType}
	functions["sort"] = &funcSpec{maxArgs: 8, fn: fnSort}
	functions["encode"] = &funcSpec{minArgs: 1, maxArgs: 1, fn: stringFn(fnEncode)}
	functions["decode"] = &funcSpec{minArgs: 1, maxArgs: 1, fn: stringFn(fnDecode)}
	functions["escape"] = &funcSpec{minArgs: 1, maxArgs: 1, fn: stringFn(fnEscape)}
	functions["unescape"] = &funcSpec{minArgs: 1, maxArgs: 1, fn: stringFn(fnUnescape)}
	functions["matchesFull"] = &funcSpec{minArgs: 1, maxArgs: 1, regexArg: true, fn: stringFn(func(c *ctx, s string, f *funcNode) (Collection, error) {
		re, ok, err := f.regexp(c)
		if err != nil || !ok {
			return nil, err
		}
		loc := re.FindStringIndex(s)
		full := loc != nil && loc[0] == 0 && loc[1] == len(s)
		if !full && loc != nil {
			// the leftmost match need not be the longest: anchor and retry
			anchored, err := cachedRegexp(`^(?s:` + re.String() + `)$`)
			if err != nil {
				return nil, err
			}
			full = anchored.MatchString(s)
		}
		return boolResult(full), nil
	})}
	functions["comparable"] = &funcSpec{minArgs: 1, maxArgs: 1, fn: fnComparable}
	functions["conformsTo"] = &funcSpec{minArgs: 1, maxArgs: 1, fn: fnConformsTo}
}

// --- precision, boundaries ---

func fnPrecision(_ *ctx, in Collection, f *funcNode) (Collection, error) {
	v, ok, err := singleValue(f, in)
	if err != nil || !ok {
		return nil, err
	}
	switch x := v.(type) {
	case Decimal:
		return one(int64(decimals(x))), nil
	case int64:
		return one(int64(0)), nil
	case Date, DateTime, Time:
		return one(int64(dtDigits(x))), nil
	case Quantity:
		return one(int64(decimals(x.Value))), nil
	}
	return nil, fmt.Errorf("fhirpath: precision() on %s", typeNameOf(v))
}

// dtDigits counts the digits of a date, date-time or time (the precision
// FHIRPath's boundary functions speak of: 4 for a year, 17 to the
// millisecond; 9 for a time to the millisecond).
func dtDigits(v any) int {
	s := fmt.Sprint(v)
	if i := strings.IndexAny(s, "Z+"); i >= 0 {
		s = s[:i]
	}
	if t := strings.IndexByte(s, 'T'); t >= 0 {
		if i := strings.LastIndexByte(s[t:], '-'); i >= 0 {
			s = s[:t+i]
		}
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			n++
		}
	}
	return n
}

func boundary(high bool) func(*ctx, Collection, *funcNode) (Collection, error) {
	return func(c *ctx, in Collection, f *funcNode) (Collection, error) {
		v, ok, err := singleValue(f, in)
		if err != nil || !ok {
			return nil, err
		}
		prec := int64(-1)
		if len(f.args) > 0 {
			p, ok, err := f.intArg(c, 0)
			if err != nil {
				return nil, err
			}
			if !ok || p < 0 {
				return nil, nil
			}
			prec = p
		}
		switch x := v.(type) {
		case int64:
			return decimalBoundary(strconv.FormatInt(x, 10), prec, high)
		case Decimal:
			return decimalBoundary(string(x), prec, high)
		case Quantity:
			r, err := decimalBoundary(string(x.Value), prec, high)
			if err != nil || len(r) == 0 {
				return r, err
			}
			return one(Quantity{Value: r[0].Value.(Decimal), Unit: x.Unit}), nil
		case Date, DateTime, Time:
			return dateBoundary(x, prec, high)
		}
		return nil, fmt.Errorf("fhirpath: %s() on %s", f.name, typeNameOf(v))
	}
}

// decimalBoundary: the value plus or minus half a unit of its last digit,
// at prec decimals (8 by default): the high boundary rounds half up, the
// low one truncates; a negative value's boundaries are its magnitude's
// other boundary, negated.
func decimalBoundary(s string, prec int64, high bool) (Collection, error) {
	if prec == -1 {
		prec = 8
	}
	if prec < 0 || prec > 28 {
		return nil, nil
	}
	if strings.HasPrefix(s, "-") {
		r, err := decimalBoundary(s[1:], prec, !high)
		if err != nil || len(r) == 0 {
			return r, err
		}
		return one(Decimal("-" + string(r[0].Value.(Decimal)))), nil
	}
	v, ok := new(big.Rat).SetString(s)
	if !ok {
		return nil, fmt.Errorf("fhirpath: bad decimal %q", s)
	}
	half := new(big.Rat).SetFrac(big.NewInt(5), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(decimals(Decimal(s))+1)), nil))
	if high {
		v.Add(v, half)
	} else {
		v.Sub(v, half)
	}
	scale := new(big.Int).Exp(big.NewInt(10), big.NewInt(prec), nil)
	scaled := new(big.Rat).Mul(v, new(big.Rat).SetInt(scale))
	q, r := new(big.Int).QuoRem(scaled.Num(), scaled.Denom(), new(big.Int))
	if high && r.Sign() != 0 {
		// round half up
		twice := new(big.Int).Mul(r, big.NewInt(2))
		if twice.CmpAbs(scaled.Denom()) >= 0 {
			if scaled.Sign() >= 0 {
				q.Add(q, big.NewInt(1))
			}
		}
	}
	out := new(big.Rat).SetFrac(q, scale)
	return one(Decimal(out.FloatString(int(prec)))), nil
}

// dateBoundary: the earliest (latest) instant a date, date-time or time
// can stand for, at prec digits (a date-time without a zone spans every
// zone from +14:00 to -12:00).
func dateBoundary(v any, prec int64, high bool) (Collection, error) {
	switch x := v.(type) {
	case Date:
		d, ok := parseDT(string(x), kDate)
		if !ok {
			return nil, nil
		}
		if prec == -1 {
			prec = 8
		}
		switch prec {
		case 4, 6, 8:
		default:
			return nil, nil
		}
		fill(&d, high)
		return one(Date(formatDate(d, int(prec)))), nil
	case DateTime:
		d, ok := parseDT(string(x), kDateTime)
		if !ok {
			return nil, nil
		}
		if prec == -1 {
			prec = 17
		}
		if d.prec == 4 {
			d.prec = 5 // an hour alone is read as hh:00
		}
		tz := d.tz
		fill(&d, high)
		switch prec {
		case 4, 6, 8:
			return one(Date(formatDate(d, int(prec)))), nil
		case 10, 12, 14, 17:
		default:
			return nil, nil
		}
		if !tz {
			d.tz = true
			d.off = 14 * 3600
			if high {
				d.off = -12 * 3600
			}
		}
		return one(DateTime(formatDate(d, 8) + "T" + formatClock(d, int(prec)-8) + formatZone(d))), nil
	case Time:
		d, ok := parseTime(string(x))
		if !ok {
			return nil, nil
		}
		if prec == -1 {
			prec = 9
		}
		switch prec {
		case 2, 4, 6, 9:
		default:
			return nil, nil
		}
		fill(&d, high)
		return one(Time(formatClock(d, int(prec)))), nil
	}
	return nil, nil
}

// fill sets what a partial date/time leaves open to its lowest or highest.
func fill(d *dt, high bool) {
	if high {
		if d.prec < 2 && d.kind != kTime {
			d.mo = 12
		}
		if d.prec < 3 && d.kind != kTime {
			d.d = daysIn(d.y, d.mo)
		}
		if d.prec < 4 {
			d.h = 23
		}
		if d.prec < 5 {
			d.mi = 59
		}
		if d.prec < 6 {
			d.s = 59
		}
		if d.prec < 7 && d.ns == 0 {
			d.ns = 999000000
		}
	}
	d.prec = 7
}

func formatDate(d dt, digits int) string {
	s := fmt.Sprintf("%04d", d.y)
	if digits >= 6 {
		s += fmt.Sprintf("-%02d", d.mo)
	}
	if digits >= 8 {
		s += fmt.Sprintf("-%02d", d.d)
	}
	return s
}

// formatClock writes hh[:mm[:ss[.fff]]] at 2, 4, 6 or 9 digits.
func formatClock(d dt, digits int) string {
	s := fmt.Sprintf("%02d", d.h)
	if digits >= 4 {
		s += fmt.Sprintf(":%02d", d.mi)
	}
	if digits >= 6 {
		s += fmt.Sprintf(":%02d", d.s)
	}
	if digits >= 9 {
		s += fmt.Sprintf(".%03d", d.ns/1000000)
	}
	return s
}

func formatZone(d dt) string {
	if !d.tz {
		return ""
	}
	if d.off == 0 {
		return "Z"
	}
	sign := "+"
	off := d.off
	if off < 0 {
		sign, off = "-", -off
	}
	return fmt.Sprintf("%s%02d:%02d", sign, off/3600, off%3600/60)
}

// --- type() ---

func fnType(_ *ctx, in Collection, _ *funcNode) (Collection, error) {
	var out Collection
	for _, it := range in {
		ns, name := "System", ""
		if it.Type != "" && lookupType(it.Type) != nil || it.Type != "" && isPrimitiveName(it.Type) {
			ns, name = "FHIR", it.Type
		} else if v, ok := it.value(); ok {
			name = typeNameOf(v)
		} else if it.Type != "" {
			ns, name = "FHIR", it.Type
		}
		if name == "" || name == "complex value" {
			continue
		}
		obj := fmt.Sprintf(`{"namespace":%q,"name":%q}`, ns, name)
		v, err := fjson.Parse([]byte(obj))
		if err != nil {
			return nil, err
		}
		out = append(out, Item{Node: v, Type: "SimpleTypeInfo"})
	}
	return out, nil
}

// --- sort() ---

// fnSort orders the input by its items (no argument) or by the criteria
// given, each ascending, or descending when written with a leading minus.
func fnSort(c *ctx, in Collection, f *funcNode) (Collection, error) {
	type keyed struct {
		it   Item
		keys []any
	}
	ks := make([]keyed, len(in))
	for i, it := range in {
		ks[i].it = it
		if len(f.args) == 0 {
			v, _ := it.value()
			ks[i].keys = []any{v}
			continue
		}
		for _, a := range f.args {
			expr, _ := stripNeg(a)
			sub := *c
			sub.this = Collection{it}
			sub.index = i
			r, err := expr.eval(&sub, sub.this)
			if err != nil {
				return nil, err
			}
			var k any
			if len(r) > 0 {
				k, _ = r[0].value()
			}
			ks[i].keys = append(ks[i].keys, k)
		}
	}
	var sortErr error
	sort.SliceStable(ks, func(i, j int) bool {
		for n := range ks[i].keys {
			a, b := ks[i].keys[n], ks[j].keys[n]
			desc := n < len(f.args) && isNeg(f.args[n])
			if a == nil || b == nil {
				if a == b {
					continue
				}
				return a == nil // empty first, whichever the direction
			}
			cmp, ok, err := compareValues(a, b)
			if err != nil && sortErr == nil {
				sortErr = err
			}
			if !ok || cmp == 0 {
				continue
			}
			return (cmp < 0) != desc
		}
		return false
	})
	if sortErr != nil {
		return nil, sortErr
	}
	out := make(Collection, len(ks))
	for i := range ks {
		out[i] = ks[i].it
	}
	return out, nil
}

func isNeg(n node) bool { _, neg := stripNeg(n); return neg }

// stripNeg removes a leading unary minus, also at the start of a path
// (-given.first() parses as (-given).first()).
func stripNeg(n node) (node, bool) {
	switch x := n.(type) {
	case *negNode:
		return x.x, true
	case *pathNode:
		if inner, ok := stripNeg(x.left); ok {
			return &pathNode{left: inner, right: x.right}, true
		}
	}
	return n, false
}

// --- encode, decode, escape, unescape ---

func fnEncode(c *ctx, s string, f *funcNode) (Collection, error) {
	how, ok, err := f.stringArg(c, 0)
	if err != nil || !ok {
		return nil, err
	}
	switch how {
	case "base64":
		return one(base64.StdEncoding.EncodeToString([]byte(s))), nil
	case "urlbase64":
		return one(base64.URLEncoding.EncodeToString([]byte(s))), nil
	case "hex":
		return one(hex.EncodeToString([]byte(s))), nil
	}
	return nil, fmt.Errorf("fhirpath: encode(): unknown encoding %q", how)
}

func fnDecode(c *ctx, s string, f *funcNode) (Collection, error) {
	how, ok, err := f.stringArg(c, 0)
	if err != nil || !ok {
		return nil, err
	}
	var b []byte
	switch how {
	case "base64":
		b, err = base64.StdEncoding.DecodeString(s)
	case "urlbase64":
		b, err = base64.URLEncoding.DecodeString(s)
	case "hex":
		b, err = hex.DecodeString(s)
	default:
		return nil, fmt.Errorf("fhirpath: decode(): unknown encoding %q", how)
	}
	if err != nil {
		return nil, nil // not decodable: empty
	}
	return one(string(b)), nil
}

func fnEscape(c *ctx, s string, f *funcNode) (Collection, error) {
	how, ok, err := f.stringArg(c, 0)
	if err != nil || !ok {
		return nil, err
	}
	switch how {
	case "html":
		return one(htmlEscaper.Replace(s)), nil
	case "json":
		var b strings.Builder
		for _, r := range s {
			switch {
			case r == '"' || r == '\\':
				b.WriteByte('\\')
				b.WriteRune(r)
			case r == '\n':
				b.WriteString(`\n`)
			case r == '\r':
				b.WriteString(`\r`)
			case r == '\t':
				b.WriteString(`\t`)
			case r < 0x20:
				fmt.Fprintf(&b, `\u%04x`, r)
			default:
				b.WriteRune(r)
			}
		}
		return one(b.String()), nil
	}
	return nil, fmt.Errorf("fhirpath: escape(): unknown target %q", how)
}

func fnUnescape(c *ctx, s string, f *funcNode) (Collection, error) {
	how, ok, err := f.stringArg(c, 0)
	if err != nil || !ok {
		return nil, err
	}
	switch how {
	case "html":
		return one(html.UnescapeString(s)), nil
	case "json":
		// JSON string escapes undone; everything else stays
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			if s[i] != '\\' || i+1 == len(s) {
				b.WriteByte(s[i])
				continue
			}
			i++
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'u':
				if i+4 < len(s) {
					if n, err := strconv.ParseUint(s[i+1:i+5], 16, 32); err == nil {
						b.WriteRune(rune(n))
						i += 4
						continue
					}
				}
				b.WriteString(`\u`)
			default:
				b.WriteByte(s[i])
			}
		}
		return one(b.String()), nil
	}
	return nil, fmt.Errorf("fhirpath: unescape(): unknown source %q", how)
}

var htmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#39;")

// --- comparable(), conformsTo() ---

func fnComparable(c *ctx, in Collection, f *funcNode) (Collection, error) {
	v, ok, err := singleValue(f, in)
	if err != nil || !ok {
		return nil, err
	}
	other, err := f.arg(c, 0)
	if err != nil || len(other) != 1 {
		return nil, err
	}
	w, _ := other[0].value()
	a, ok1 := v.(Quantity)
	b, ok2 := w.(Quantity)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("fhirpath: comparable() needs two quantities")
	}
	_, _, same := quantitiesComparable(a, b)
	if same {
		_, _, ka, _ := canonicalQuantity(a)
		same = !strings.HasPrefix(ka, "unit:") || a.Unit == b.Unit
	}
	return boolResult(same), nil
}

// fnConformsTo answers for the core profiles of R4 (a resource conforms to
// the StructureDefinition of its type and of the types it derives from);
// other profiles need a validator: the function fails for them.
func fnConformsTo(c *ctx, in Collection, f *funcNode) (Collection, error) {
	url, ok, err := f.stringArg(c, 0)
	if err != nil || !ok {
		return nil, err
	}
	const core = "http://hl7.org/fhir/StructureDefinition/"
	name, isCore := strings.CutPrefix(url, core)
	if !isCore {
		return nil, fmt.Errorf("fhirpath: conformsTo(): profile %s is not a core profile", url)
	}
	var out Collection
	for _, it := range in {
		out = append(out, Item{Value: it.Type != "" && isSubtype(it.Type, name)})
	}
	return out, nil
}

// --- date arithmetic ---

// dateArithmetic adds (sign 1) or subtracts (sign -1) a time quantity to
// a date, date-time or time: calendar words and the definite UCUM times
// ('d', 'wk', 'h', 'min', 's', 'ms'); 'a' and 'mo' (of no fixed calendar
// length) are errors. The amount is truncated to a whole number of its
// unit; the result keeps the operand's precision and zone.
func dateArithmetic(v any, q Quantity, sign int) (any, error) {
	unit := q.Unit
	switch unit {
	case "a", "mo":
		return nil, fmt.Errorf("fhirpath: cannot add %s to a date (a UCUM year or month has no calendar length)", q)
	}
	ucum := map[string]string{"d": "day", "wk": "week", "h": "hour", "min": "minute", "s": "second", "ms": "millisecond"}
	if u, ok := ucum[unit]; ok {
		unit = u
	}
	if _, ok := calendarUnits[unit]; !ok {
		return nil, fmt.Errorf("fhirpath: cannot add %s to a date", q)
	}
	unit = calendarUnits[unit]
	r, ok := new(big.Rat).SetString(string(q.Value))
	if !ok {
		return nil, fmt.Errorf("fhirpath: bad quantity %s", q)
	}
	n := new(big.Int).Quo(r.Num(), r.Denom()).Int64() * int64(sign)
	var s string
	var kind valueKind
	switch x := v.(type) {
	case Date:
		s, kind = string(x), kDate
	case DateTime:
		s, kind = string(x), kDateTime
	case Time:
		s, kind = string(x), kTime
	default:
		return nil, fmt.Errorf("fhirpath: date arithmetic on %s", typeNameOf(v))
	}
	var d dt
	if kind == kTime {
		d, ok = parseTime(s)
	} else {
		d, ok = parseDT(s, kind)
	}
	if !ok {
		return nil, fmt.Errorf("fhirpath: bad date %q", s)
	}
	loc := time.UTC
	if d.tz {
		loc = time.FixedZone("", d.off)
	}
	y, mo, dd := d.y, d.mo, d.d
	if kind == kTime {
		y, mo, dd = 2000, 1, 1
	}
	t := time.Date(y, time.Month(mo), dd, d.h, d.mi, d.s, d.ns, loc)
	switch unit {
	case "year":
		t = addMonths(t, int(n)*12)
	case "month":
		t = addMonths(t, int(n))
	case "week":
		t = t.AddDate(0, 0, int(n)*7)
	case "day":
		t = t.AddDate(0, 0, int(n))
	case "hour":
		t = t.Add(time.Duration(n) * time.Hour)
	case "minute":
		t = t.Add(time.Duration(n) * time.Minute)
	case "second":
		t = t.Add(time.Duration(n) * time.Second)
	case "millisecond":
		t = t.Add(time.Duration(n) * time.Millisecond)
	}
	frac := ""
	if i := strings.IndexByte(s, '.'); i >= 0 {
		j := i + 1
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		frac = fmt.Sprintf(".%0*d", j-i-1, t.Nanosecond()/pow10(9-(j-i-1)))
	}
	out := dt{kind: kind, y: t.Year(), mo: int(t.Month()), d: t.Day(), h: t.Hour(), mi: t.Minute(), s: t.Second(), tz: d.tz, off: d.off}
	switch kind {
	case kDate:
		return Date(formatDate(out, []int{0, 4, 6, 8}[min(d.prec, 3)])), nil
	case kTime:
		return Time(formatClock(out, []int{0, 0, 0, 0, 2, 4, 6}[min(d.prec, 6)]) + frac), nil
	}
	if d.prec <= 3 {
		return DateTime(formatDate(out, []int{0, 4, 6, 8}[d.prec])), nil
	}
	return DateTime(formatDate(out, 8) + "T" + formatClock(out, []int{0, 0, 0, 0, 2, 4, 6}[min(d.prec, 6)]) + frac + formatZone(out)), nil
}

func pow10(n int) int {
	p := 1
	for ; n > 0; n-- {
		p *= 10
	}
	return p
}

// addMonths adds months keeping the day, clamped to the month's last day.
func addMonths(t time.Time, n int) time.Time {
	y, m, d := t.Date()
	total := int(m) - 1 + n
	y += total / 12
	total %= 12
	if total < 0 {
		total += 12
		y--
	}
	m = time.Month(total + 1)
	d = min(d, daysIn(y, int(m)))
	return time.Date(y, m, d, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), t.Location())
}

// --- quantity arithmetic ---

// quantityArithmetic multiplies or divides quantities (units combine:
// 'cm' × 'm' is 'cm.m'), multiplies or divides a quantity by a number,
// and adds or subtracts quantities of convertible units (in the left
// operand's unit).
func quantityArithmetic(op binOp, a, b any) (any, error) {
	qa, aq := a.(Quantity)
	qb, bq := b.(Quantity)
	num := func(v any) (*big.Rat, bool) {
		switch x := v.(type) {
		case Quantity:
			return new(big.Rat).SetString(string(x.Value))
		}
		return toRat(v)
	}
	ra, ok1 := num(a)
	rb, ok2 := num(b)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("fhirpath: bad quantity")
	}
	unitOf := func(v any, isQ bool, q Quantity) string {
		if !isQ || q.Unit == "1" {
			return ""
		}
		if u, ok := calendarSeconds[q.Unit]; ok {
			return u
		}
		return q.Unit
	}
	ua, ub := unitOf(a, aq, qa), unitOf(b, bq, qb)
	prec := max(decimals(valueDecimal(a)), decimals(valueDecimal(b)))
	switch op {
	case opMul:
		unit := strings.Trim(ua+"."+ub, ".")
		return Quantity{Value: Decimal(new(big.Rat).Mul(ra, rb).FloatString(decimals(valueDecimal(a)) + decimals(valueDecimal(b)))), Unit: orOne(unit)}, nil
	case opDiv:
		if rb.Sign() == 0 {
			return nil, nil
		}
		unit := ua
		if ub != "" {
			unit = ua + "/" + ub
			if ua == "" {
				unit = "/" + ub
			}
		}
		return Quantity{Value: Decimal(trimDecimal(new(big.Rat).Quo(ra, rb).FloatString(8))), Unit: orOne(unit)}, nil
	case opAdd, opSub:
		if !aq || !bq {
			return nil, fmt.Errorf("fhirpath: cannot add a number and a quantity")
		}
		va, vb, ok := quantitiesComparable(qa, qb)
		if !ok {
			return nil, fmt.Errorf("fhirpath: cannot add %s and %s", qa, qb)
		}
		// back into the left operand's unit
		fa, _, _, _ := canonicalQuantity(Quantity{Value: "1", Unit: qa.Unit})
		res := new(big.Rat)
		if op == opAdd {
			res.Add(va, vb)
		} else {
			res.Sub(va, vb)
		}
		res.Quo(res, fa)
		return Quantity{Value: Decimal(res.FloatString(prec)), Unit: qa.Unit}, nil
	}
	return nil, fmt.Errorf("fhirpath: this arithmetic on quantities is not supported")
}

func orOne(u string) string {
	if u == "" {
		return "1"
	}
	return u
}

func valueDecimal(v any) any {
	if q, ok := v.(Quantity); ok {
		return q.Value
	}
	return v
}
