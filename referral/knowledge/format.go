package knowledge

import (
	"math"
	"strconv"
	"strings"
)

// FormatNumber renders a value for people: three significant digits
// (never rounding away integer digits) and at most three decimals, no
// trailing zeros — "178" for 178.08705005887956, "4.27", "0.454",
// "1234", "0.066" for 0.0659.
func FormatNumber(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	a := math.Abs(v)
	dec := 0
	if a > 0 {
		digits := int(math.Floor(math.Log10(a))) + 1 // digits before the point
		dec = 3 - digits
		if dec < 0 {
			dec = 0
		}
		if dec > 3 { // 0.0659 → 0.066; a slope of 1e-14 per year is 0
			dec = 3
		}
	}
	s := strconv.FormatFloat(v, 'f', dec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	if s == "-0" {
		s = "0"
	}
	return s
}

var superscript = strings.NewReplacer("0", "⁰", "1", "¹", "2", "²", "3", "³", "4", "⁴", "5", "⁵", "6", "⁶", "7", "⁷", "8", "⁸", "9", "⁹", "-", "⁻")

// displayUnits are UCUM codes people write differently.
var displayUnits = map[string]string{
	"mm[Hg]": "mmHg", "Cel": "°C", "[degF]": "°F", "kg/m2": "kg/m²", "mL/min/{1.73_m2}": "mL/min/1.73 m²",
	"[lb_av]": "lb", "[in_i]": "in", "[in_us]": "in", "[IU]/L": "IU/L", "m[IU]/L": "mIU/L", "u[IU]/mL": "µIU/mL",
	"/min": "/min", "{beats}/min": "/min", "{breaths}/min": "/min", "L/L": "L/L", "1": "",
}

// DisplayUnit renders a UCUM unit for people ("mmHg", "×10⁹/L", "µmol/L");
// annotations such as {score} are dropped.
func DisplayUnit(u string) string {
	u = strings.TrimSpace(u)
	if d, ok := displayUnits[u]; ok {
		return d
	}
	// drop annotations
	for {
		a := strings.IndexByte(u, '{')
		b := strings.IndexByte(u, '}')
		if a < 0 || b < a {
			break
		}
		u = u[:a] + u[b+1:]
	}
	var sb strings.Builder
	for i := 0; i < len(u); i++ {
		switch {
		case strings.HasPrefix(u[i:], "10*") || strings.HasPrefix(u[i:], "10^"):
			j := i + 3
			for j < len(u) && (u[j] >= '0' && u[j] <= '9' || u[j] == '-') {
				j++
			}
			sb.WriteString("×10" + superscript.Replace(u[i+3:j]))
			i = j - 1
		case u[i] == 'u' && (i == 0 || u[i-1] == '/' || u[i-1] == '.') && i+1 < len(u) && strings.ContainsRune("gLlmM", rune(u[i+1])):
			sb.WriteString("µ")
		case u[i] == '[' || u[i] == ']':
		default:
			sb.WriteByte(u[i])
		}
	}
	return sb.String()
}
