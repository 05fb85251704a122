package hl7v2

import (
	"encoding/json"
	"net/url"
	"regexp"
	"strings"

	"github.com/fhirgate/fhirgate/convert/ccda"
)

// Data type conversions, after the HL7 v2-to-FHIR IG's data type maps
// (CWE[CodeableConcept], CX[Identifier], XPN[HumanName], XAD[Address],
// XTN[ContactPoint], XCN[Practitioner], XON[Organization], EI[Identifier],
// DR[Period], NR[Range]…).

// put sets k unless v is empty, since FHIR forbids empty elements.
func put(m map[string]any, k string, v any) {
	switch x := v.(type) {
	case nil:
		return
	case string:
		if x == "" {
			return
		}
	case map[string]any:
		if len(x) == 0 {
			return
		}
	case []any:
		if len(x) == 0 {
			return
		}
	case []string:
		if len(x) == 0 {
			return
		}
	case json.Number:
		if x == "" {
			return
		}
	}
	m[k] = v
}

func obj(kv ...any) map[string]any {
	m := make(map[string]any, max(len(kv)/2, 8))
	for i := 0; i+1 < len(kv); i += 2 {
		put(m, kv[i].(string), kv[i+1])
	}
	return m
}

// appendTo appends v to the list at m[k].
func appendTo(m map[string]any, k string, v any) {
	if v == nil {
		return
	}
	if mv, ok := v.(map[string]any); ok && len(mv) == 0 {
		return
	}
	l, _ := m[k].([]any)
	m[k] = append(l, v)
}

// codeSystems maps HL7 table 0396 names to FHIR system URIs.
var codeSystems = map[string]string{
	"LN": "http://loinc.org", "LOINC": "http://loinc.org",
	"SCT": "http://snomed.info/sct", "SNM": "http://snomed.info/sct", "SNOMED": "http://snomed.info/sct", "SNM3": "http://snomed.info/sct", "SNOMEDCT": "http://snomed.info/sct",
	"I9": "http://hl7.org/fhir/sid/icd-9-cm", "I9C": "http://hl7.org/fhir/sid/icd-9-cm", "I9CM": "http://hl7.org/fhir/sid/icd-9-cm", "I9M": "http://hl7.org/fhir/sid/icd-9-cm", "I9CDX": "http://hl7.org/fhir/sid/icd-9-cm", "I9CP": "http://hl7.org/fhir/sid/icd-9-cm",
	"I10": "http://hl7.org/fhir/sid/icd-10-cm", "I10C": "http://hl7.org/fhir/sid/icd-10-cm", "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm", "I10P": "http://www.cms.gov/Medicare/Coding/ICD10",
	"CVX": "http://hl7.org/fhir/sid/cvx", "NDC": "http://hl7.org/fhir/sid/ndc", "MVX": "http://terminology.hl7.org/CodeSystem/MVX",
	"RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm", "RXN": "http://www.nlm.nih.gov/research/umls/rxnorm", "UCUM": "http://unitsofmeasure.org",
	"NCIT": "http://ncit.nci.nih.gov", "CPT": "http://www.ama-assn.org/go/cpt", "C4": "http://www.ama-assn.org/go/cpt", "C5": "http://www.ama-assn.org/go/cpt",
	"HCPCS": "urn:oid:2.16.840.1.113883.6.285", "HCPT": "urn:oid:2.16.840.1.113883.6.285",
	"DCM": "http://dicom.nema.org/resources/ontology/DCM", "CDCREC": "urn:oid:2.16.840.1.113883.6.238",
	"CDCPHINVS": "urn:oid:2.16.840.1.114222.4.5.274", "ISO": "urn:iso:std:iso:3166", "ISO3166": "urn:iso:std:iso:3166",
	"ISO+": "http://unitsofmeasure.org", "ANSI+": "http://unitsofmeasure.org",
	"NUCCPTX": "http://nucc.org/provider-taxonomy", "UNII": "http://fdasis.nlm.nih.gov", "NDFRT": "http://hl7.org/fhir/ndfrt",
}

var hl7Table = regexp.MustCompile(`^HL7(\d{4})$`)

func systemURI(name, oid string) string {
	if oid != "" {
		if u := ccda.SystemURI(oid); u != "" {
			return u
		}
	}
	name = strings.ToUpper(strings.TrimSpace(name))
	if u, ok := codeSystems[name]; ok {
		return u
	}
	if m := hl7Table.FindStringSubmatch(name); m != nil {
		return "http://terminology.hl7.org/CodeSystem/v2-" + m[1]
	}
	return ""
}

// concept converts a CE/CWE/CNE/CF repetition (code^text^system^alt code^alt
// text^alt system^…^original text (9)^…^system OID (14), alt OID (17)).
func concept(r Repetition) map[string]any {
	var codings []any
	if code := r.Comp(1); code != "" {
		codings = append(codings, obj("system", systemURI(r.Comp(3), r.Comp(14)), "code", code, "display", r.Comp(2)))
	}
	if code := r.Comp(4); code != "" {
		codings = append(codings, obj("system", systemURI(r.Comp(6), r.Comp(17)), "code", code, "display", r.Comp(5)))
	}
	if code := r.Comp(10); code != "" {
		codings = append(codings, obj("system", systemURI(r.Comp(12), r.Comp(20)), "code", code, "display", r.Comp(11)))
	}
	text := r.Comp(9)
	if text == "" && len(codings) == 0 {
		text = r.Comp(2)
	}
	return obj("coding", codings, "text", text)
}

// tableConcept is concept with the system defaulting to an HL7 table when
// the sender named none (user tables are sent bare).
func tableConcept(r Repetition, table string) map[string]any {
	cc := concept(r)
	if cs, ok := cc["coding"].([]any); ok && len(cs) > 0 {
		first := cs[0].(map[string]any)
		if _, has := first["system"]; !has && r.Comp(3) == "" {
			first["system"] = "http://terminology.hl7.org/CodeSystem/v2-" + table
		}
	}
	return cc
}

func cc(system, code, display string) map[string]any {
	return obj("coding", []any{obj("system", system, "code", code, "display", display)})
}

// concepts converts every repetition of a field.
func concepts(f Field) []any {
	var out []any
	for _, r := range f {
		if c := concept(r); len(c) > 0 {
			out = append(out, c)
		}
	}
	return out
}

// identifier converts a CX (id^check^scheme^authority(HD)^type^facility^
// effective^expiration).
func identifier(r Repetition) map[string]any {
	v := r.Comp(1)
	if v == "" {
		return nil
	}
	sys := ""
	if r.Sub(4, 3) == "ISO" && r.Sub(4, 2) != "" {
		sys = ccda.SystemURI(r.Sub(4, 2))
	} else if u := r.Sub(4, 2); strings.HasPrefix(u, "urn:") || strings.HasPrefix(u, "http") {
		sys = u
	}
	id := obj("system", sys, "value", v)
	if t := r.Comp(5); t != "" {
		put(id, "type", cc("http://terminology.hl7.org/CodeSystem/v2-0203", t, ""))
	}
	if a := r.Sub(4, 1); a != "" {
		put(id, "assigner", obj("display", a))
	}
	if p := obj("start", date(r.Comp(7)), "end", date(r.Comp(8))); len(p) > 0 {
		put(id, "period", p)
	}
	return id
}

// identifiers converts every repetition of a CX field.
func identifiers(f Field) []any {
	var out []any
	for _, r := range f {
		if id := identifier(r); id != nil {
			out = append(out, id)
		}
	}
	return out
}

// entityID converts an EI (id^namespace^universal id^type) with an
// identifier type code.
func entityID(r Repetition, typ string) map[string]any {
	v := r.Comp(1)
	if v == "" {
		return nil
	}
	sys := ""
	if r.Comp(4) == "ISO" && r.Comp(3) != "" {
		sys = ccda.SystemURI(r.Comp(3))
	} else if u := r.Comp(3); strings.HasPrefix(u, "urn:") || strings.HasPrefix(u, "http") {
		sys = u
	}
	id := obj("system", sys, "value", v)
	if typ != "" {
		put(id, "type", cc("http://terminology.hl7.org/CodeSystem/v2-0203", typ, ""))
	}
	if ns := r.Comp(2); ns != "" && sys == "" {
		put(id, "assigner", obj("display", ns))
	}
	return id
}

var nameUses = map[string]string{"L": "official", "D": "usual", "A": "nickname", "M": "maiden", "N": "nickname", "B": "official", "C": "old", "I": "anonymous", "R": "official", "S": "anonymous", "T": "temp", "U": "usual", "P": "usual"}

// humanName converts an XPN starting at component start (1 for XPN, 2 for
// the name inside an XCN): family^given^second^suffix^prefix^degree^type.
func humanName(r Repetition, start int) map[string]any {
	o := start - 1
	family := r.Sub(o+1, 1)
	given := nonEmpty(r.Comp(o+2), r.Comp(o+3))
	var suffix []string
	suffix = append(suffix, nonEmpty(r.Comp(o+4), r.Comp(o+6))...)
	prefix := nonEmpty(r.Comp(o + 5))
	typ := r.Comp(o + 7)
	if start == 2 {
		typ = r.Comp(10) // XCN-10 name type code
	}
	n := obj("use", nameUses[typ], "family", family, "given", given, "suffix", suffix, "prefix", prefix)
	if len(n) == 0 || len(n) == 1 && n["use"] != nil {
		return nil
	}
	return n
}

// nameText is a name as one line ("Given Family").
func nameText(n map[string]any) string {
	if n == nil {
		return ""
	}
	var parts []string
	if p, ok := n["prefix"].([]string); ok {
		parts = append(parts, p...)
	}
	if g, ok := n["given"].([]string); ok {
		parts = append(parts, g...)
	}
	if f, ok := n["family"].(string); ok {
		parts = append(parts, f)
	}
	return strings.Join(parts, " ")
}

func names(f Field) []any {
	var out []any
	for _, r := range f {
		if n := humanName(r, 1); n != nil {
			out = append(out, n)
		}
	}
	return out
}

var addressUses = map[string]string{"H": "home", "B": "work", "O": "work", "C": "temp", "BA": "old", "M": "home", "P": "home", "BI": "billing", "BR": "home", "BDL": "home", "L": "home", "N": "home", "F": "home", "RH": "home", "SH": "home"}

// address converts an XAD (street^other^city^state^zip^country^type^other
// geo^county).
func address(r Repetition) map[string]any {
	if r.Empty() {
		return nil
	}
	lines := nonEmpty(r.Sub(1, 1), r.Comp(2))
	if r.Sub(1, 1) == "" && (r.Sub(1, 2) != "" || r.Sub(1, 3) != "") {
		lines = append(nonEmpty(strings.TrimSpace(r.Sub(1, 3)+" "+r.Sub(1, 2))), lines...)
	}
	a := obj("use", addressUses[r.Comp(7)], "line", lines, "city", r.Comp(3), "district", r.Comp(9), "state", r.Comp(4), "postalCode", r.Comp(5), "country", r.Comp(6))
	if r.Comp(7) == "M" || r.Comp(7) == "BI" {
		put(a, "type", "postal")
	}
	if r.Comp(7) == "BI" {
		a["use"] = "billing"
	}
	if len(a) == 0 || len(a) == 1 && (a["use"] != nil || a["type"] != nil) {
		return nil
	}
	return a
}

func addresses(f Field) []any {
	var out []any
	for _, r := range f {
		if a := address(r); a != nil {
			out = append(out, a)
		}
	}
	return out
}

// addressText is an address as one line.
func addressText(a map[string]any) string {
	if a == nil {
		return ""
	}
	var parts []string
	if l, ok := a["line"].([]string); ok {
		parts = append(parts, l...)
	}
	for _, k := range []string{"city", "state", "postalCode", "country"} {
		if s, ok := a[k].(string); ok {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, ", ")
}

// telecom converts an XTN; defaultUse when the repetition does not say
// (home for PID-13, work for PID-14).
func telecom(r Repetition, defaultUse string) map[string]any {
	use := defaultUse
	switch r.Comp(2) {
	case "PRN", "ORN", "VHN":
		use = "home"
	case "WPN":
		use = "work"
	}
	if r.Comp(3) == "CP" || r.Comp(3) == "BP" {
		use = "mobile"
	}
	if email := r.Comp(4); email != "" && (r.Comp(3) == "Internet" || r.Comp(3) == "X.400" || r.Comp(2) == "NET" || strings.Contains(email, "@")) {
		return obj("system", "email", "value", email, "use", use)
	}
	num := r.Comp(12) // unformatted number
	if num == "" {
		num = strings.TrimSpace(strings.Join(nonEmpty(plus(r.Comp(5)), paren(r.Comp(6)), r.Comp(7)), " "))
		if x := r.Comp(8); x != "" && num != "" {
			num += " ext. " + x
		}
	}
	if num == "" {
		num = r.Comp(1)
	}
	if num == "" {
		return nil
	}
	sys := "phone"
	switch r.Comp(3) {
	case "FX":
		sys = "fax"
	case "BP":
		sys = "pager"
	}
	return obj("system", sys, "value", num, "use", use)
}

func plus(s string) string {
	if s == "" {
		return ""
	}
	return "+" + s
}

func paren(s string) string {
	if s == "" {
		return ""
	}
	return "(" + s + ")"
}

func telecoms(f Field, use string) []any {
	var out []any
	for _, r := range f {
		if t := telecom(r, use); t != nil {
			out = append(out, t)
		}
	}
	return out
}

var genders = map[string]string{"M": "male", "F": "female", "O": "other", "A": "other", "U": "unknown", "N": "unknown", "X": "other"}

// dtm converts a DTM/TS (the first component of a TS) to a FHIR dateTime;
// "" when it is not one.
func dtm(v string) string {
	if v == "" {
		return ""
	}
	dt, _, ok := ccda.DateTime(v)
	if !ok {
		return ""
	}
	return dt
}

// date converts a DT (or the date of a DTM).
func date(v string) string {
	dt := dtm(v)
	if len(dt) > 10 {
		dt = dt[:10]
	}
	return dt
}

// instant is a DTM with a time and zone, or "".
func instant(v string) string {
	dt := dtm(v)
	if len(dt) <= 10 {
		return ""
	}
	return dt
}

// tm converts a TM (HH[MM[SS[.S+]]][+/-ZZZZ]) to a FHIR time.
func tm(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.IndexAny(v, "+-"); i >= 0 {
		v = v[:i] // a FHIR time has no zone
	}
	frac := ""
	if i := strings.IndexByte(v, '.'); i >= 0 {
		frac, v = v[i:], v[:i]
	}
	if !allDigits(v) || len(v) < 2 || len(v) > 6 || len(v)%2 != 0 {
		return ""
	}
	for len(v) < 6 {
		v += "00"
	}
	if v[0:2] > "23" || v[2:4] > "59" || v[4:6] > "59" {
		return ""
	}
	if frac != "" && !allDigits(frac[1:]) {
		frac = ""
	}
	return v[0:2] + ":" + v[2:4] + ":" + v[4:6] + frac
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// decimal normalises an NM to a FHIR decimal; "" when it is not a number.
func decimal(s string) string {
	s = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s), "+"))
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	if strings.HasPrefix(s, ".") {
		s = "0" + s
	}
	for len(s) > 1 && s[0] == '0' && s[1] != '.' {
		s = s[1:]
	}
	// digits, then optionally a point and at least one digit
	intPart, frac, hasPoint := strings.Cut(s, ".")
	if intPart == "" || !allDigits(intPart) || hasPoint && (frac == "" || !allDigits(frac)) {
		return ""
	}
	if neg {
		s = "-" + s
	}
	return s
}

// quantity makes a Quantity of a decimal and a CWE unit (UCUM when the
// unit says so or names no system).
func quantity(v string, unit Repetition) map[string]any {
	q := obj("value", json.Number(v))
	if u := unit.Comp(1); u != "" {
		// units without a system, or in UCUM or ISO+/ANSI+ (UCUM's
		// forerunners in v2), are UCUM codes; ISO 2955 and local units
		// keep only their text
		sys := ""
		switch strings.ToUpper(unit.Comp(3)) {
		case "", "UCUM", "ISO+", "ANSI+":
			sys = "http://unitsofmeasure.org"
		}
		put(q, "unit", firstNonEmpty(unit.Comp(2), u))
		if sys != "" {
			put(q, "system", sys)
			put(q, "code", u)
		}
	}
	return q
}

// money converts an MO (quantity^denomination) to a Quantity in ISO 4217.
func money(amount, currency string) map[string]any {
	d := decimal(amount)
	if d == "" {
		return nil
	}
	q := obj("value", json.Number(d))
	if currency != "" {
		put(q, "unit", currency)
		put(q, "system", "urn:iso:std:iso:4217")
		put(q, "code", currency)
	}
	return q
}

// attachmentURL is u when it is an absolute URI an Attachment may carry.
func attachmentURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Scheme == "" || strings.ContainsAny(u, " \t") {
		return ""
	}
	return u
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// nonEmptyAll lists every non-empty sub-component of a repetition.
func nonEmptyAll(r Repetition) []string {
	var out []string
	for _, comp := range r {
		for _, s := range comp {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// positiveInt parses a positive integer, 0 when it is not one.
func positiveInt(s string) int {
	n := 0
	if s == "" || len(s) > 9 || !allDigits(s) {
		return 0
	}
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}
