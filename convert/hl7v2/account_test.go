package hl7v2

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir"
)

// er7 is the test's own reading of a message, independent of Parse: lines,
// fields, repetitions, components, sub-components, with the delimiters of
// MSH-1/2 and the escapes \F\ \S\ \T\ \R\ \E\ undone.
type er7 struct {
	segs           [][]string // raw fields, [0] the name
	fs             string
	cs, rs, ss, es string
}

func readER7(data []byte) *er7 {
	s := strings.TrimPrefix(string(data), "\xEF\xBB\xBF")
	s = strings.TrimLeft(s, " \r\n\t")
	e := &er7{fs: s[3:4], cs: s[4:5], rs: s[5:6], es: s[6:7], ss: s[7:8]}
	for _, line := range strings.FieldsFunc(s, func(r rune) bool { return r == '\r' || r == '\n' }) {
		line = strings.TrimRight(line, " \t")
		if line == "" {
			continue
		}
		f := strings.Split(line, e.fs)
		if f[0] == "MSH" {
			f = append([]string{"MSH", e.fs}, f[1:]...)
		}
		e.segs = append(e.segs, f)
	}
	return e
}

// get returns field n, repetition r (0-based), component c, sub-component
// sc (1-based), unescaped and trimmed.
func (e *er7) get(seg, n, r, c, sc int) string {
	f := e.segs[seg]
	if n >= len(f) {
		return ""
	}
	reps := strings.Split(f[n], e.rs)
	if r >= len(reps) {
		return ""
	}
	comps := strings.Split(reps[r], e.cs)
	if c > len(comps) {
		return ""
	}
	subs := strings.Split(comps[c-1], e.ss)
	if sc > len(subs) {
		return ""
	}
	v := subs[sc-1]
	for _, p := range [][2]string{{"F", e.fs}, {"S", e.cs}, {"T", e.ss}, {"R", e.rs}, {"E", e.es}} {
		v = strings.ReplaceAll(v, e.es+p[0]+e.es, p[1])
	}
	return strings.TrimSpace(v)
}

func (e *er7) reps(seg, n int) int {
	f := e.segs[seg]
	if n >= len(f) || f[n] == "" {
		return 0
	}
	return len(strings.Split(f[n], e.rs))
}

// resources indexes a result's resources by "Type/id", decoded.
func resources(t *testing.T, res *Result) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, r := range res.Resources {
		var m map[string]any
		d := json.NewDecoder(strings.NewReader(string(r.Raw)))
		d.UseNumber()
		if err := d.Decode(&m); err != nil {
			t.Fatal(err)
		}
		out[r.Type+"/"+r.ID] = m
	}
	return out
}

// has reports whether any value under v (walked whole) equals want at a
// key named key ("" for any key).
func has(v any, key, want string) bool {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if s, ok := c.(string); ok && (key == "" || k == key) && s == want {
				return true
			}
			if n, ok := c.(json.Number); ok && (key == "" || k == key) && n.String() == want {
				return true
			}
			if has(c, key, want) {
				return true
			}
		}
	case []any:
		for _, c := range x {
			if cs, ok := c.(string); ok && key == "" && cs == want || has(c, key, want) {
				return true
			}
		}
	case []string:
		for _, s := range x {
			if s == want {
				return true
			}
		}
	}
	return false
}

// contains reports whether any string under v contains want.
func contains(v any, want string) bool {
	switch x := v.(type) {
	case string:
		return strings.Contains(x, want)
	case map[string]any:
		for _, c := range x {
			if contains(c, want) {
				return true
			}
		}
	case []any:
		for _, c := range x {
			if contains(c, want) {
				return true
			}
		}
	}
	return false
}

// accountStats counts what became of the segments of the samples.
type accountStats struct {
	messages, segments, converted, notConverted, envelope int
	byName                                                map[string][3]int
}

// TestEverySegmentAccounted converts every HL7 v2 sample and checks that
// each segment is accounted for: envelope, converted (the resources its
// account names exist and carry the values the test reads from the
// segment itself), or not converted and listed in the issues.
func TestEverySegmentAccounted(t *testing.T) {
	st := accountStats{byName: map[string][3]int{}}
	names := []string{}
	all := samples(t)
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			checkAccounts(t, all[name], &st)
		})
	}
	for _, extra := range extraMessages {
		t.Run(extra.name, func(t *testing.T) {
			checkAccounts(t, []byte(extra.msg), &st)
		})
	}
	var parts []string
	for n, c := range st.byName {
		parts = append(parts, fmt.Sprintf("%s %d/%d/%d", n, c[0], c[1], c[2]))
	}
	sort.Strings(parts)
	t.Logf("%d messages, %d segments: %d converted, %d not converted (listed), %d envelope; per segment converted/not/envelope: %s",
		st.messages, st.segments, st.converted, st.notConverted, st.envelope, strings.Join(parts, ", "))
}

func checkAccounts(t *testing.T, data []byte, st *accountStats) {
	t.Helper()
	_, res, err := ParseAndConvert(data, Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := readER7(data)
	if len(res.Segments) != len(e.segs) {
		t.Fatalf("%d segments accounted for, the message has %d", len(res.Segments), len(e.segs))
	}
	rs := resources(t, res)
	listed := map[string]bool{}
	for _, is := range res.Issues {
		if len(is.Expression) > 0 && strings.Contains(is.Details.Text, "not converted") {
			listed[is.Expression[0]] = true
		}
	}
	st.messages++
	for i, a := range res.Segments {
		st.segments++
		c := st.byName[a.Name]
		if a.Name != e.segs[i][0] {
			t.Fatalf("%s accounts for segment %d, which is %s", a.Where, i, e.segs[i][0])
		}
		switch {
		case a.Envelope:
			st.envelope++
			c[2]++
			if a.Name != "MSH" && a.Name != "SFT" && a.Name != "UAC" && a.Name != "RGS" && !(a.Name == "NTE" && e.get(i, 3, 0, 1, 1) == "") {
				t.Errorf("%s called envelope", a.Where)
			}
		case a.NotConverted != "":
			st.notConverted++
			c[1]++
			if !listed[a.Where] {
				t.Errorf("%s not converted (%s) but not listed in the issues", a.Where, a.NotConverted)
			}
		default:
			st.converted++
			c[0]++
			if len(a.Resources) == 0 {
				t.Errorf("%s: neither converted, nor envelope, nor listed", a.Where)
				break
			}
			var got []map[string]any
			for _, ref := range a.Resources {
				r := rs[ref]
				if r == nil {
					t.Errorf("%s names %s, which the result does not hold", a.Where, ref)
					continue
				}
				got = append(got, r)
			}
			if err := checkSegment(e, i, got); err != "" {
				t.Errorf("%s: %s", a.Where, err)
			}
		}
		st.byName[a.Name] = c
	}
}

// checkSegment checks the resources a segment went into against values
// read from the segment; "" when they agree.
func checkSegment(e *er7, i int, rs []map[string]any) string {
	of := func(typ string) []map[string]any {
		var out []map[string]any
		for _, r := range rs {
			if r["resourceType"] == typ {
				out = append(out, r)
			}
		}
		return out
	}
	any := func(typ, key, want string) string {
		if want == "" {
			return ""
		}
		for _, r := range of(typ) {
			if has(r, key, want) {
				return ""
			}
		}
		return fmt.Sprintf("no %s with %s %q", typ, key, want)
	}
	g := func(n, c int) string { return e.get(i, n, 0, c, 1) }
	switch name := e.segs[i][0]; name {
	case "EVN":
		if len(of("Provenance")) != 1 {
			return "EVN did not go into the Provenance"
		}
	case "PID":
		if msg := any("Patient", "value", g(3, 1)); msg != "" {
			return msg
		}
		if msg := any("Patient", "family", g(5, 1)); msg != "" {
			return msg
		}
		if b := g(7, 1); len(b) >= 8 {
			return any("Patient", "birthDate", b[:4]+"-"+b[4:6]+"-"+b[6:8])
		}
	case "PD1":
		if msg := any("Practitioner", "value", g(4, 1)); g(4, 1) != "" && msg != "" {
			return msg
		}
		if g(3, 1) != "" {
			return any("Organization", "name", g(3, 1))
		}
	case "NK1", "GT1":
		field := map[string]int{"NK1": 2, "GT1": 3}[name]
		return any("RelatedPerson", "family", g(field, 1))
	case "PV1":
		if v := g(19, 1); v != "" {
			return any("Encounter", "value", v)
		}
		return any("Encounter", "code", map[string]string{"I": "IMP", "O": "AMB", "E": "EMER", "P": "PRENC"}[g(2, 1)])
	case "PV2":
		if v := g(3, 1); v != "" {
			return any("Encounter", "code", v)
		}
		if v := g(12, 1); v != "" {
			return any("Encounter", "text", v)
		}
	case "ROL", "PRT":
		field := map[string]int{"ROL": 4, "PRT": 5}[name]
		if v := g(field, 1); v != "" {
			if msg := any("Practitioner", "value", v); msg == "" {
				return ""
			}
			// PRT naming an organization
			return any("Organization", "name", g(8, 1))
		}
		return any("Organization", "name", g(8, 1))
	case "AL1", "IAM":
		return any("AllergyIntolerance", "code", g(3, 1))
	case "DG1":
		if v := g(3, 1); v != "" {
			return any("Condition", "code", v)
		}
		return any("Condition", "text", g(4, 1))
	case "PR1":
		return any("Procedure", "code", g(3, 1))
	case "IN1":
		if strings.Contains(strings.ToUpper(g(4, 1)), "SELF PAY") {
			return any("Coverage", "code", "pay")
		}
		if msg := any("Coverage", "start", dateOf(g(12, 1))); msg != "" {
			return msg
		}
		if g(4, 1) != "" {
			return any("Organization", "name", g(4, 1))
		}
	case "IN2":
		for _, f := range []int{6, 8} {
			if v := g(f, 1); v != "" {
				return any("Coverage", "value", v)
			}
		}
		return any("RelatedPerson", "value", g(2, 1))
	case "ORC":
		v := firstNonEmpty(g(2, 1), g(3, 1))
		if msg := any("ServiceRequest", "value", v); msg == "" {
			return ""
		}
		return any("Immunization", "value", v)
	case "OBR":
		if msg := any("ServiceRequest", "code", g(4, 1)); msg != "" {
			return msg
		}
		if e.segs[0][9] != "" && strings.HasPrefix(e.get(0, 9, 0, 1, 1), "ORU") {
			return any("DiagnosticReport", "code", g(4, 1))
		}
	case "TQ1":
		for _, r := range of("ServiceRequest") {
			if r["occurrenceDateTime"] != nil || r["occurrencePeriod"] != nil || r["priority"] != nil {
				return ""
			}
		}
		return "no ServiceRequest with the timing"
	case "NTE":
		return anyContains(rs, firstWords(g(3, 1)))
	case "SPM":
		return any("Specimen", "code", g(4, 1))
	case "TXA":
		return any("DocumentReference", "code", g(2, 1))
	case "RXA":
		if msg := any("Immunization", "code", g(5, 1)); msg != "" {
			return msg
		}
		return any("Immunization", "lotNumber", g(15, 1))
	case "RXR":
		return any("Immunization", "code", g(1, 1))
	case "OBX":
		return checkOBX(e, i, rs)
	case "SCH":
		return any("Appointment", "value", firstNonEmpty(g(2, 1), g(1, 1)))
	case "AIS":
		return any("Appointment", "code", g(3, 1))
	case "AIP":
		return any("Practitioner", "value", g(3, 1))
	case "AIL", "AIG":
		return anyContains(rs, g(3, 1))
	case "PDA":
		if v := g(1, 1); v != "" {
			if msg := any("Observation", "code", v); msg != "" {
				return msg
			}
			if msg := any("Observation", "code", "69453-9"); msg != "" {
				return msg
			}
		}
		if v := g(2, 1); v != "" {
			if msg := anyContains(of("Observation"), v); msg != "" {
				return msg
			}
		}
		if strings.EqualFold(g(6, 1), "Y") {
			if msg := any("Procedure", "code", "29240004"); msg != "" {
				return msg
			}
			if s := g(7, 1); len(s) >= 8 {
				return any("Procedure", "start", s[:4]+"-"+s[4:6]+"-"+s[6:8]+"T"+s[8:10]+":"+s[10:12]+":"+s[12:14]+s[14:17]+":"+s[17:19])
			}
		}
	case "DB1":
		if msg := any("Observation", "text", "Disability"); msg != "" {
			return msg
		}
		if v := g(5, 1); v != "" {
			return any("Observation", "start", dateOf(v))
		}
	case "RF1":
		if msg := any("ServiceRequest", "code", "3457005"); msg != "" {
			return msg
		}
		if v := g(10, 1); v != "" {
			if msg := any("ServiceRequest", "code", v); msg != "" {
				return msg
			}
		}
		for _, n := range []int{14, 24} {
			if v := g(n, 1); v != "" {
				if msg := anyContains(of("ServiceRequest"), v); msg != "" {
					return msg
				}
			}
		}
	case "ACC":
		if msg := any("Observation", "text", "Accident"); msg != "" {
			return msg
		}
		if v := g(1, 1); v != "" {
			if msg := any("Observation", "effectiveDateTime", dateOf(v)); msg != "" {
				return msg
			}
		}
		for _, n := range []int{3, 8} {
			if v := g(n, 1); v != "" {
				if msg := anyContains(of("Observation"), v); msg != "" {
					return msg
				}
			}
		}
	case "CTD":
		if msg := any("RelatedPerson", "family", g(2, 1)); msg != "" {
			return msg
		}
		return any("RelatedPerson", "code", g(1, 1))
	default:
		return "no check for " + name + " (add one)"
	}
	return ""
}

// checkOBX checks an OBX's value in what it went into: the Observation's
// value (each repetition), the document's content, the Immunization's
// detail.
func checkOBX(e *er7, i int, rs []map[string]any) string {
	code, typ := e.get(i, 3, 0, 1, 1), e.get(i, 2, 0, 1, 1)
	for _, r := range rs {
		switch r["resourceType"] {
		case "DocumentReference":
			if typ == "HD" {
				if contains(r, e.get(i, 5, 0, 1, 1)) {
					return ""
				}
				return "the study UID is not in the DocumentReference"
			}
			return "" // text lines and attachments: checked by the MDM test
		case "Immunization":
			v := firstNonEmpty(e.get(i, 5, 0, 1, 1))
			if code == "29768-9" || code == "29769-7" {
				v = dateOf(v)
			}
			if has(r, "", v) || contains(r["education"], v) || contains(r, v) {
				return ""
			}
			return fmt.Sprintf("OBX %s value %q not in the Immunization", code, v)
		case "Observation":
			if !has(r["code"], "code", code) && !(code == "" && has(r["code"], "code", "unknown")) {
				continue
			}
			for rep := 0; rep < e.reps(i, 5); rep++ {
				v := e.get(i, 5, rep, 1, 1)
				switch typ {
				case "NM":
					if !has(r, "value", v) {
						return fmt.Sprintf("OBX value %q (repetition %d) not in the Observation", v, rep+1)
					}
				case "CE", "CWE", "CNE":
					if !has(r, "code", v) {
						return fmt.Sprintf("OBX code value %q not in the Observation", v)
					}
				case "ST", "TX", "FT":
					if !contains(r["valueString"], v) {
						return fmt.Sprintf("OBX text %q not in the Observation", v)
					}
				case "SN":
					if n := e.get(i, 5, rep, 2, 1); n != "" && !has(r, "value", n) {
						return fmt.Sprintf("OBX number %q not in the Observation", n)
					}
				}
			}
			return ""
		}
	}
	return "no Observation with code " + code
}

func dateOf(v string) string {
	if len(v) < 8 {
		return v
	}
	return v[:4] + "-" + v[4:6] + "-" + v[6:8]
}

func firstWords(s string) string {
	f := strings.Fields(s)
	if len(f) > 3 {
		f = f[:3]
	}
	return strings.Join(f, " ")
}

func anyContains(rs []map[string]any, want string) string {
	for _, r := range rs {
		if contains(r, want) {
			return ""
		}
	}
	return fmt.Sprintf("%q is in none of the resources", want)
}

var _ = fhir.SeverityError
