package ccda

import (
	"encoding/json"
	"regexp"
	"strings"
)

// systems maps code-system OIDs used in C-CDA to FHIR system URIs
// (from the FHIR R4 terminology page and the C-CDA on FHIR mappings).
var systems = map[string]string{
	"2.16.840.1.113883.6.96":        "http://snomed.info/sct",
	"2.16.840.1.113883.6.1":         "http://loinc.org",
	"2.16.840.1.113883.6.88":        "http://www.nlm.nih.gov/research/umls/rxnorm",
	"2.16.840.1.113883.12.292":      "http://hl7.org/fhir/sid/cvx",
	"2.16.840.1.113883.6.90":        "http://hl7.org/fhir/sid/icd-10-cm",
	"2.16.840.1.113883.6.3":         "http://hl7.org/fhir/sid/icd-10",
	"2.16.840.1.113883.6.103":       "http://hl7.org/fhir/sid/icd-9-cm",
	"2.16.840.1.113883.6.104":       "http://hl7.org/fhir/sid/icd-9-cm",
	"2.16.840.1.113883.6.69":        "http://hl7.org/fhir/sid/ndc",
	"2.16.840.1.113883.6.8":         "http://unitsofmeasure.org",
	"2.16.840.1.113883.6.12":        "http://www.ama-assn.org/go/cpt",
	"2.16.840.1.113883.6.285":       "urn:oid:2.16.840.1.113883.6.285", // HCPCS has no FHIR URI in R4
	"2.16.840.1.113883.6.101":       "http://nucc.org/provider-taxonomy",
	"2.16.840.1.113883.6.238":       "urn:oid:2.16.840.1.113883.6.238", // CDC race & ethnicity
	"2.16.840.1.113883.4.9":         "http://fdasis.nlm.nih.gov",
	"2.16.840.1.113883.3.26.1.1":    "http://ncit.nci.nih.gov",
	"2.16.840.1.113883.6.59":        "http://hl7.org/fhir/sid/cvx",
	"2.16.840.1.113883.5.1":         "http://terminology.hl7.org/CodeSystem/v3-AdministrativeGender",
	"2.16.840.1.113883.5.2":         "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
	"2.16.840.1.113883.5.4":         "http://terminology.hl7.org/CodeSystem/v3-ActCode",
	"2.16.840.1.113883.5.6":         "http://terminology.hl7.org/CodeSystem/v3-ActClass",
	"2.16.840.1.113883.5.8":         "http://terminology.hl7.org/CodeSystem/v3-ActReason",
	"2.16.840.1.113883.5.25":        "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
	"2.16.840.1.113883.5.83":        "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
	"2.16.840.1.113883.5.88":        "http://terminology.hl7.org/CodeSystem/v3-ParticipationFunction",
	"2.16.840.1.113883.5.110":       "http://terminology.hl7.org/CodeSystem/v3-RoleClass",
	"2.16.840.1.113883.5.111":       "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
	"2.16.840.1.113883.5.112":       "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration",
	"2.16.840.1.113883.5.1063":      "http://terminology.hl7.org/CodeSystem/v3-SeverityObservation",
	"2.16.840.1.113883.5.1076":      "http://terminology.hl7.org/CodeSystem/v3-ReligiousAffiliation",
	"2.16.840.1.113883.5.14":        "http://terminology.hl7.org/CodeSystem/v3-ActStatus",
	"2.16.840.1.113883.5.1008":      "http://terminology.hl7.org/CodeSystem/v3-NullFlavor",
	"2.16.840.1.113883.5.85":        "http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm",
	"2.16.840.1.113883.3.26.1.5":    "http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm",
	"2.16.840.1.113883.5.1119":      "http://terminology.hl7.org/CodeSystem/v3-AddressUse",
	"2.16.840.1.113883.5.143":       "http://terminology.hl7.org/CodeSystem/v3-TelecomAddressUse",
	"1.0.639.1":                     "urn:ietf:bcp:47",
	"2.16.840.1.113883.4.642.3.251": "http://terminology.hl7.org/CodeSystem/v3-ActPriority",
}

// identifierSystems maps well-known identifier OIDs to URIs.
var identifierSystems = map[string]string{
	"2.16.840.1.113883.4.1": "http://hl7.org/fhir/sid/us-ssn",
	"2.16.840.1.113883.4.6": "http://hl7.org/fhir/sid/us-npi",
}

var oidPattern = regexp.MustCompile(`^[0-2](\.(0|[1-9][0-9]*))+$`)
var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// SystemURI maps a code-system OID to its FHIR system URI; an unknown OID
// becomes urn:oid:OID. It answers "" for what is neither an OID nor a URI.
func SystemURI(oid string) string {
	oid = strings.TrimSpace(oid)
	if u, ok := systems[oid]; ok {
		return u
	}
	if oidPattern.MatchString(oid) {
		return "urn:oid:" + oid
	}
	if uuidPattern.MatchString(oid) {
		return "urn:uuid:" + strings.ToLower(oid)
	}
	return ""
}

// identifierSystem maps an II root to a FHIR Identifier.system.
func identifierSystem(root string) string {
	if u, ok := identifierSystems[root]; ok {
		return u
	}
	return SystemURI(root)
}

// identifier converts an II; nil when it carries no usable value.
func identifier(n *node) obj {
	if n.nullFlavored() {
		return nil
	}
	root, ext := n.attr("root"), n.attr("extension")
	if ext == "" {
		// A root alone is the identifier itself.
		if u := identifierSystem(root); u != "" && root != "" {
			return obj{}.add("system", "urn:ietf:rfc:3986").add("value", u)
		}
		return nil
	}
	return obj{}.add("system", identifierSystem(root)).add("value", ext)
}

func identifiers(ns []*node) []obj {
	var out []obj
	for _, n := range ns {
		if id := identifier(n); id != nil {
			out = append(out, id)
		}
	}
	return out
}

// coding converts one CD/CE/CV (code + codeSystem + displayName); nil when
// there is no code.
func coding(n *node) obj {
	if n == nil {
		return nil
	}
	code := strings.TrimSpace(n.attr("code"))
	if code == "" || n.attr("nullFlavor") != "" {
		return nil
	}
	sys := SystemURI(n.attr("codeSystem"))
	return obj{}.add("system", sys).add("code", code).add("display", n.attr("displayName"))
}

// concept converts a CD with its translations into a CodeableConcept; the
// original text (inline or referenced into the narrative) becomes text. nil
// when nothing at all is known.
func (c *converter) concept(n *node) obj {
	if n == nil {
		return nil
	}
	var codings []obj
	if cd := coding(n); cd != nil {
		codings = append(codings, cd)
	}
	for _, t := range n.all("translation") {
		if cd := coding(t); cd != nil {
			codings = append(codings, cd)
		}
	}
	text := c.originalText(n.child("originalText"))
	if text == "" && len(codings) == 0 {
		text = n.attr("displayName")
	}
	if len(codings) == 0 && text == "" {
		return nil
	}
	return obj{}.add("coding", codings).add("text", text)
}

// originalText resolves an ED: inline text, else the narrative element its
// reference points at.
func (c *converter) originalText(n *node) string {
	if n == nil {
		return ""
	}
	if t := strings.TrimSpace(n.text.String()); t != "" {
		return strings.Join(strings.Fields(t), " ")
	}
	return c.narrative(n.child("reference"))
}

// narrative resolves <reference value="#id"/>.
func (c *converter) narrative(ref *node) string {
	v := ref.attr("value")
	if !strings.HasPrefix(v, "#") {
		return ""
	}
	if t := c.ids[v[1:]]; t != nil {
		return t.textContent()
	}
	return ""
}

// DateTime converts an HL7 TS (YYYY[MM[DD[HH[MM[SS[.S…]]]]]][±ZZZZ]) to a FHIR
// dateTime, keeping its precision. A time without a timezone cannot be a
// FHIR dateTime and is cut to its date (ok is still true, exact false).
func DateTime(ts string) (v string, exact, ok bool) {
	ts = strings.TrimSpace(ts)
	tz := ""
	if i := strings.IndexAny(ts, "+-"); i >= 0 {
		tz, ts = ts[i:], ts[:i]
		if len(tz) != 5 || !digits(tz[1:]) {
			return "", false, false
		}
		tz = tz[:3] + ":" + tz[3:]
		if tz == "-00:00" || tz == "+00:00" {
			tz = "Z"
		}
	}
	frac := ""
	if i := strings.IndexByte(ts, '.'); i >= 0 {
		frac, ts = ts[i:], ts[:i]
		if len(frac) < 2 || !digits(frac[1:]) {
			return "", false, false
		}
	}
	if !digits(ts) {
		return "", false, false
	}
	switch len(ts) {
	case 4:
		if ts == "0000" {
			return "", false, false
		}
		return ts, true, true
	case 6:
		if !validMonth(ts[4:6]) {
			return "", false, false
		}
		return ts[:4] + "-" + ts[4:6], true, true
	case 8:
		if !validMonth(ts[4:6]) || !validDay(ts[6:8]) {
			return "", false, false
		}
		return ts[:4] + "-" + ts[4:6] + "-" + ts[6:8], true, true
	case 10, 12, 14:
		date := ts[:4] + "-" + ts[4:6] + "-" + ts[6:8]
		if !validMonth(ts[4:6]) || !validDay(ts[6:8]) {
			return "", false, false
		}
		if tz == "" {
			return date, false, true
		}
		hh, mm, ss := ts[8:10], "00", "00"
		if len(ts) >= 12 {
			mm = ts[10:12]
		}
		if len(ts) == 14 {
			ss = ts[12:14]
		} else {
			frac = ""
		}
		if hh > "23" || mm > "59" || ss > "60" {
			return "", false, false
		}
		return date + "T" + hh + ":" + mm + ":" + ss + frac + tz, true, true
	}
	return "", false, false
}

func validMonth(m string) bool { return m >= "01" && m <= "12" }
func validDay(d string) bool   { return d >= "01" && d <= "31" }

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ts converts a TS element's value; "" when absent or unusable (reported).
func (c *converter) ts(n *node, where string) string {
	if n == nil {
		return ""
	}
	v := n.attr("value")
	if v == "" {
		return ""
	}
	dt, exact, ok := DateTime(v)
	if !ok {
		c.warn("value", "unparseable timestamp dropped", where)
		return ""
	}
	if !exact {
		// Reported once per document (see Convert): vendors omit the zone on
		// almost every timestamp and one issue per value drowns the rest.
		c.noZone++
	}
	return dt
}

// period converts an IVL_TS (or a plain TS) into start/end; single holds
// the point value when the element had one.
func (c *converter) period(n *node, where string) (start, end, single string) {
	if n == nil {
		return
	}
	if n.attr("value") != "" {
		single = c.ts(n, where)
		return
	}
	start = c.ts(n.child("low"), where)
	end = c.ts(n.child("high"), where)
	if start == "" && end == "" {
		single = c.ts(n.child("center"), where)
	}
	return
}

// periodObj is a Period, nil when empty.
func (c *converter) periodObj(n *node, where string) obj {
	s, e, one := c.period(n, where)
	if one != "" {
		s = one
	}
	if s != "" && e != "" && e < s && len(e) == len(s) {
		c.warn("value", "period end before start; end dropped", where)
		e = ""
	}
	return obj{}.add("start", s).add("end", e)
}

// quantity converts a PQ; nil when there is no numeric value.
func quantity(n *node) obj {
	if n == nil || n.attr("nullFlavor") != "" {
		return nil
	}
	v := decimal(n.attr("value"))
	if v == "" {
		return nil
	}
	q := obj{}.add("value", json.Number(v))
	if u := n.attr("unit"); u != "" && u != "1" {
		q = q.add("unit", u).add("system", "http://unitsofmeasure.org").add("code", u)
	}
	return q
}

var decimalPattern = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// decimal normalises a decimal literal to FHIR's JSON number grammar
// ("0.5" for ".5", no leading "+"), keeping its digits; "" when not one.
func decimal(s string) string {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "+")
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	if strings.HasPrefix(s, ".") {
		s = "0" + s
	}
	for len(s) > 1 && s[0] == '0' && s[1] != '.' {
		s = s[1:]
	}
	if neg {
		s = "-" + s
	}
	if !decimalPattern.MatchString(s) {
		return ""
	}
	return s
}
