package knowledge

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// This file converts between the UCUM units laboratory results and vital
// signs are reported in. No maintained Go UCUM library exists; the units a
// clinical summary meets are a small, closed set (mass, substance, volume,
// length, time, counts, enzyme activity, pressure, temperature), so a
// parser of the UCUM grammar over the atoms listed here (UCUM 2.1, §2 and
// the tables of base units, prefixes and derived units) is all that is
// needed. A unit outside it is reported as unknown and the value is left
// unjudged rather than guessed at.

// ErrUnit reports a unit that cannot be read or converted.
var ErrUnit = errors.New("unit")

// dims are the exponents of the base dimensions a unit carries.
type dims struct {
	mass, length, time, amount, activity, pressure int8
}

// unit is a parsed unit: a factor to the base (g, m, s, mol, U, mm[Hg]) and
// its dimensions. Counts (10*3, {cells}) are dimensionless.
type unit struct {
	factor float64
	d      dims
}

func (u unit) mul(v unit, sign int8) unit {
	f := v.factor
	if sign < 0 {
		f = 1 / f
	}
	return unit{factor: u.factor * f, d: dims{
		mass: u.d.mass + sign*v.d.mass, length: u.d.length + sign*v.d.length, time: u.d.time + sign*v.d.time,
		amount: u.d.amount + sign*v.d.amount, activity: u.d.activity + sign*v.d.activity, pressure: u.d.pressure + sign*v.d.pressure,
	}}
}

func (u unit) pow(n int) unit {
	out := unit{factor: math.Pow(u.factor, float64(n))}
	k := int8(n)
	out.d = dims{u.d.mass * k, u.d.length * k, u.d.time * k, u.d.amount * k, u.d.activity * k, u.d.pressure * k}
	return out
}

// atoms are the UCUM atoms (case-sensitive codes) the parser knows, with
// their value in base units.
var atoms = map[string]unit{
	"g":       {1, dims{mass: 1}},
	"m":       {1, dims{length: 1}},
	"s":       {1, dims{time: 1}},
	"mol":     {1, dims{amount: 1}},
	"eq":      {1, dims{amount: 1}}, // UCUM: eq = 1 mol; valence is the analyte's business (see Analyte.Valence)
	"L":       {1e-3, dims{length: 3}},
	"l":       {1e-3, dims{length: 3}},
	"min":     {60, dims{time: 1}},
	"h":       {3600, dims{time: 1}},
	"d":       {86400, dims{time: 1}},
	"wk":      {604800, dims{time: 1}},
	"a":       {31557600, dims{time: 1}},
	"U":       {1, dims{activity: 1}},
	"[IU]":    {1, dims{activity: 1}}, // enzyme results given in IU are the same international unit of activity
	"[iU]":    {1, dims{activity: 1}},
	"%":       {0.01, dims{}},
	"[in_i]":  {0.0254, dims{length: 1}},
	"[in_us]": {0.0254000508, dims{length: 1}},
	"[ft_i]":  {0.3048, dims{length: 1}},
	"[lb_av]": {453.59237, dims{mass: 1}},
	"[oz_av]": {28.349523125, dims{mass: 1}},
	"mm[Hg]":  {1, dims{pressure: 1}},
	"cm[H2O]": {0.73555912, dims{pressure: 1}}, // 1 cm H2O = 0.7355591 mm Hg (UCUM derived-unit table)
	"[pH]":    {1, dims{}},
	"1":       {1, dims{}},
}

// prefixes are UCUM's decimal prefixes.
var prefixes = map[string]float64{
	"da": 1e1, "h": 1e2, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
	"d": 1e-1, "c": 1e-2, "m": 1e-3, "u": 1e-6, "n": 1e-9, "p": 1e-12, "f": 1e-15,
}

// noPrefix are atoms UCUM does not allow a prefix on.
var noPrefix = map[string]bool{"%": true, "[in_i]": true, "[in_us]": true, "[ft_i]": true, "[lb_av]": true,
	"[oz_av]": true, "min": true, "h": true, "d": true, "wk": true, "a": true, "[pH]": true, "1": true}

// aliases are spellings that real sources send in place of UCUM codes
// (C-CDA and HL7 v2 feeds in ../shared/testdata carry most of them). Each
// maps, by exact case-insensitive match, to the UCUM code it means; a
// spelling absent here is an unknown unit, never a guess.
var aliases = map[string]string{
	"mmhg": "mm[Hg]", "mm hg": "mm[Hg]",
	"lb": "[lb_av]", "lbs": "[lb_av]", "pound": "[lb_av]", "pounds": "[lb_av]",
	"in": "[in_i]", "inch": "[in_i]", "inches": "[in_i]",
	"kg/m²": "kg/m2", "kg/m^2": "kg/m2",
	"k/ul": "10*3/uL", "x10e3/ul": "10*3/uL", "10^3/ul": "10*3/uL", "10+3/ul": "10*3/uL", "thou/ul": "10*3/uL", "x10^3/ul": "10*3/uL",
	"m/ul": "10*6/uL", "x10e6/ul": "10*6/uL", "10^6/ul": "10*6/uL", "mil/ul": "10*6/uL",
	"x10e9/l": "10*9/L", "10^9/l": "10*9/L", "giga.l-1": "10*9/L", "x10e12/l": "10*12/L", "10^12/l": "10*12/L", "tera.l-1": "10*12/L",
	"um3": "fL", "µm3": "fL", "uug": "pg", "µµg": "pg",
	"g/dl": "g/dL", "mg/dl": "mg/dL", "mmol/l": "mmol/L", "umol/l": "umol/L", "µmol/l": "umol/L", "meq/l": "meq/L", "ng/ml": "ng/mL",
	"iu/l": "[IU]/L", "u/l": "U/L", "ul": "uL", "ml": "mL",
	"beats/min": "/min", "beats/minute": "/min", "bpm": "/min", "breaths/min": "/min", "/min": "/min",
	"ml/min/1.73m2": "mL/min/{1.73_m2}", "ml/min/1.73 m2": "mL/min/{1.73_m2}", "ml/min/1.73m²": "mL/min/{1.73_m2}",
	"mg/mmol": "mg/mmol", "mg/g": "mg/g", "degf": "[degF]", "°f": "[degF]", "°c": "Cel", "c": "Cel", "f": "[degF]",
}

// parseUnit reads a UCUM expression (or a known alias). Annotations in
// braces count as 1, as UCUM says.
func parseUnit(s string) (unit, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return unit{}, fmt.Errorf("%w: empty", ErrUnit)
	}
	if u, err := parseUCUM(s); err == nil {
		return u, nil
	}
	if a, ok := aliases[strings.ToLower(s)]; ok {
		return parseUCUM(a)
	}
	return unit{}, fmt.Errorf("%w: %q is not a UCUM unit this gateway knows", ErrUnit, s)
}

func parseUCUM(s string) (unit, error) {
	out := unit{factor: 1}
	sign := int8(1)
	i := 0
	if strings.HasPrefix(s, "/") {
		sign = -1
		i = 1
	}
	for i <= len(s) {
		j := i
		depth := 0
		for j < len(s) {
			c := s[j]
			if c == '[' || c == '{' {
				depth++
			} else if c == ']' || c == '}' {
				depth--
			} else if depth == 0 && (c == '.' || c == '/') {
				break
			}
			j++
		}
		term, err := parseTerm(s[i:j])
		if err != nil {
			return unit{}, err
		}
		out = out.mul(term, sign)
		if j >= len(s) {
			break
		}
		if s[j] == '/' {
			sign = -1
		} else {
			sign = 1
		}
		i = j + 1
	}
	return out, nil
}

// parseTerm reads one component: an annotation, 10*N / 10^N, or an atom
// with an optional prefix and integer exponent, followed by annotations.
func parseTerm(t string) (unit, error) {
	// strip annotations
	for {
		a := strings.IndexByte(t, '{')
		if a < 0 {
			break
		}
		b := strings.IndexByte(t[a:], '}')
		if b < 0 {
			return unit{}, fmt.Errorf("%w: unclosed annotation", ErrUnit)
		}
		t = t[:a] + t[a+b+1:]
	}
	if t == "" {
		return unit{factor: 1}, nil
	}
	if strings.HasPrefix(t, "10*") || strings.HasPrefix(t, "10^") {
		n, err := strconv.Atoi(t[3:])
		if err != nil || n < -24 || n > 24 {
			return unit{}, fmt.Errorf("%w: bad power of ten %q", ErrUnit, t)
		}
		return unit{factor: math.Pow(10, float64(n))}, nil
	}
	// trailing exponent (digits, optionally signed) outside brackets
	exp := 1
	k := len(t)
	for k > 0 && t[k-1] >= '0' && t[k-1] <= '9' {
		k--
	}
	if k > 0 && (t[k-1] == '-' || t[k-1] == '+') && k < len(t) {
		k--
	}
	if k > 0 && k < len(t) {
		n, err := strconv.Atoi(t[k:])
		if err != nil {
			return unit{}, fmt.Errorf("%w: bad exponent in %q", ErrUnit, t)
		}
		exp = n
		t = t[:k]
	}
	if u, ok := atoms[t]; ok {
		return u.pow(exp), nil
	}
	for _, plen := range []int{2, 1} {
		if len(t) <= plen {
			continue
		}
		p, ok := prefixes[t[:plen]]
		if !ok {
			continue
		}
		a := t[plen:]
		if u, ok := atoms[a]; ok && !noPrefix[a] {
			return unit{factor: u.factor * p, d: u.d}.pow(exp), nil
		}
	}
	return unit{}, fmt.Errorf("%w: unknown atom %q", ErrUnit, t)
}

// temperature units are affine, not multiplicative.
func toCelsius(v float64, code string) (float64, bool) {
	switch strings.ToLower(strings.TrimSpace(code)) {
	case "cel", "°c", "c", "degc":
		return v, true
	case "[degf]", "°f", "f", "degf":
		return (v - 32) * 5 / 9, true
	}
	return 0, false
}

// Convert converts v from one unit to another. molarMass (g/mol, 0 when
// unknown) allows mass ↔ substance conversions for one analyte; valence
// (0 or 1 when unknown) allows eq ↔ mol for ions.
func Convert(v float64, from, to string, molarMass float64) (float64, error) {
	if from == to {
		return v, nil
	}
	if c, ok := toCelsius(v, from); ok {
		if _, ok := toCelsius(0, to); !ok {
			return 0, fmt.Errorf("%w: cannot convert %s to %s", ErrUnit, from, to)
		}
		if strings.EqualFold(to, "Cel") || to == "°C" {
			return c, nil
		}
		return c*9/5 + 32, nil
	}
	fu, err := parseUnit(from)
	if err != nil {
		return 0, err
	}
	tu, err := parseUnit(to)
	if err != nil {
		return 0, err
	}
	if fu.d == tu.d {
		return v * fu.factor / tu.factor, nil
	}
	// mass ↔ substance through the analyte's molar mass
	if molarMass > 0 {
		if d := fu.d; d.mass == tu.d.amount && d.amount == tu.d.mass && d.mass != d.amount &&
			d.length == tu.d.length && d.time == tu.d.time && d.activity == tu.d.activity && d.pressure == tu.d.pressure {
			base := v * fu.factor // in g·… or mol·…
			if d.mass == 1 {
				base /= molarMass // g → mol
			} else {
				base *= molarMass // mol → g
			}
			return base / tu.factor, nil
		}
	}
	return 0, fmt.Errorf("%w: cannot convert %s to %s", ErrUnit, from, to)
}

// KnownUnit reports whether a unit can be read.
func KnownUnit(s string) bool {
	if _, ok := toCelsius(0, s); ok {
		return true
	}
	_, err := parseUnit(s)
	return err == nil
}
