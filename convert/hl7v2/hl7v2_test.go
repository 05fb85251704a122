package hl7v2

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/internal/sharedtest"
)

func samples(t testing.TB) map[string][]byte {
	dir := sharedtest.Path(t, "hl7v2")
	files, _ := filepath.Glob(filepath.Join(dir, "*.hl7"))
	if len(files) == 0 {
		t.Skip("no HL7 v2 samples")
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	return out
}

func TestSamplesConvertAndValidate(t *testing.T) {
	for name, data := range samples(t) {
		t.Run(name, func(t *testing.T) {
			m, res, err := ParseAndConvert(data, Options{})
			if err != nil {
				t.Fatal(err)
			}
			types := map[string]int{}
			for _, r := range res.Resources {
				types[r.Type]++
				for _, is := range validate.Validate(r) {
					if is.Severity == fhir.SeverityError || is.Severity == fhir.SeverityFatal {
						t.Errorf("%s: %s %v %s", r.Type, is.Details.Text, is.Expression, is.Diagnostics)
					}
				}
			}
			b, err := res.Bundle()
			if err != nil {
				t.Fatal(err)
			}
			br, err := fhir.Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if is := validate.Validate(br); validate.HasErrors(is) {
				t.Errorf("bundle: %+v", is[0])
			}
			code, _, _ := m.Type()
			want := map[string][]string{
				"ADT": {"Patient", "Encounter"},
				"ORU": {"Patient", "DiagnosticReport", "Observation"},
				"VXU": {"Patient", "Immunization"},
				"MDM": {"Patient", "DocumentReference"},
			}[code]
			for _, typ := range append(want, "Provenance") {
				if types[typ] == 0 {
					t.Errorf("no %s in %v", typ, types)
				}
			}
			if code == "ORU" && types["DiagnosticReport"] != count(m, "OBR") {
				t.Errorf("%d DiagnosticReports for %d OBR", types["DiagnosticReport"], count(m, "OBR"))
			}
			if code == "VXU" && types["Immunization"] != count(m, "RXA") {
				t.Errorf("%d Immunizations for %d RXA", types["Immunization"], count(m, "RXA"))
			}
		})
	}
}

// TestORUAgainstSegments checks every Observation of the NIST CBC message
// against its OBX: value, unit, reference range and abnormal flag.
func TestORUAgainstSegments(t *testing.T) {
	data := samples(t)["LRI_2.0-NG_CBC_Typ_Message.hl7"]
	if data == nil {
		t.Skip("sample missing")
	}
	m, res, err := ParseAndConvert(data, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var obs []*fhir.Resource
	for _, r := range res.Resources {
		if r.Type == "Observation" {
			obs = append(obs, r)
		}
	}
	var obx []*Segment
	for _, s := range m.Segments {
		if s.Name == "OBX" {
			obx = append(obx, s)
		}
	}
	if len(obs) != len(obx) || len(obs) == 0 {
		t.Fatalf("%d Observations for %d OBX", len(obs), len(obx))
	}
	checked := 0
	for i, s := range obx {
		o := obs[i].Root()
		if got := o.Get("code").Get("coding").Items[0].Get("code").Str; got != s.Get(3, 1) {
			t.Errorf("OBX %d: code %q, want %q", i+1, got, s.Get(3, 1))
		}
		if s.Get(2, 1) != "NM" {
			continue
		}
		checked++
		q := o.Get("valueQuantity")
		if q == nil || string(q.Get("value").Raw) != s.Get(5, 1) || q.Get("code").Str != s.Get(6, 1) {
			t.Errorf("OBX %d: value %s, want %s %s", i+1, obs[i].Raw, s.Get(5, 1), s.Get(6, 1))
			continue
		}
		if rr := s.Get(7, 1); rr != "" {
			lo, hi, _ := strings.Cut(rr, " to ")
			r := o.Get("referenceRange").Items[0]
			if string(r.Get("low").Get("value").Raw) != lo || string(r.Get("high").Get("value").Raw) != hi {
				t.Errorf("OBX %d: range %s, want %s", i+1, obs[i].Raw, rr)
			}
		}
		if f := s.Get(8, 1); f != "" {
			c := o.Get("interpretation").Items[0].Get("coding").Items[0]
			if c.Get("code").Str != f || c.Get("system").Str != "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation" {
				t.Errorf("OBX %d: interpretation %s, want %s", i+1, obs[i].Raw, f)
			}
		}
	}
	if checked < 10 {
		t.Errorf("only %d numeric results checked", checked)
	}
	// The high WBC (HH) and low haemoglobin (L) of this message, explicitly.
	for _, want := range []string{`"code":"HH"`, `"code":"L"`, `"value":105600`} {
		if !strings.Contains(joinRaw(obs), want) {
			t.Errorf("no %s in the Observations", want)
		}
	}
}

func joinRaw(rs []*fhir.Resource) string {
	var b strings.Builder
	for _, r := range rs {
		b.Write(r.Raw)
	}
	return b.String()
}

func TestParseEncodingAndEscapes(t *testing.T) {
	// Non-standard delimiters declared in MSH, CRLF separators, a BOM,
	// escapes, repetitions and sub-components.
	msg := "\xEF\xBB\xBFMSH#:*!@#A#B#C#D#20240101120000+0000##ADT:A01#42#P#2.5\r\n" +
		"PID#1##X1:::Auth@1.2.3@ISO:MR*X2#;#Smith!F!m!S!T!T!R!R!!E!:John\r\n\r\n"
	m, err := Parse([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	if d := m.Delims; d.Field != '#' || d.Component != ':' || d.Repetition != '*' || d.Escape != '!' || d.Subcomponent != '@' {
		t.Fatalf("delimiters %+v", d)
	}
	pid := m.Segment("PID")
	if got := pid.Field(3).Rep(1).Comp(1); got != "X2" {
		t.Errorf("second repetition %q", got)
	}
	if got := pid.Field(3).Rep(0).Sub(4, 2); got != "1.2.3" {
		t.Errorf("sub-component %q", got)
	}
	if got := pid.Get(5, 1); got != "Smith#m:T@R*!" {
		t.Errorf("unescaped %q", got)
	}
	if code, trig, ver := m.Type(); code != "ADT" || trig != "A01" || ver != "2.5" {
		t.Errorf("type %s %s %s", code, trig, ver)
	}
	var sm Message
	sm.Delims = Delimiters{'|', '^', '~', '\\', '&'}
	if got := sm.unescape(`a\X41420D\b\.br\c\H\d\N\\Z\`); got != "aAB\rb\ncd\\Z\\" {
		t.Errorf("hex/format escapes: %q", got)
	}
}

func TestMalformedMessages(t *testing.T) {
	good := "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPID|1||9^^^X^MR||Doe^J\rPV1|1|I\r"
	for _, tc := range []struct {
		name, msg string
		want      error
	}{
		{"empty", "", ErrNoMSH},
		{"no MSH", "PID|1||9\r", ErrNoMSH},
		{"short MSH", "MSH|^~", ErrTruncated},
		{"three encoding chars", "MSH|^~\\|A|B\r", ErrEncodingChars},
		{"repeated encoding char", "MSH|^^\\&|A|B\r", ErrEncodingChars},
		{"letter as delimiter", "MSH|^~\\A|A|B\r", ErrEncodingChars},
		{"truncated after MSH-8", "MSH|^~\\&|A|B|C|D|20240101|", ErrTruncated},
		{"bad segment name", good + "pid|x\r", ErrBadSegment},
		{"second MSH", good + good, ErrBadSegment},
	} {
		_, err := Parse([]byte(tc.msg))
		if !errors.Is(err, tc.want) || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if code, _ := AckCode(err); code != AR {
			t.Errorf("%s: ack %s, want AR", tc.name, code)
		}
	}
	for _, tc := range []struct {
		name, msg string
		want      error
	}{
		{"unsupported type", "MSH|^~\\&|A|B|C|D|20240101||QRY^Q01|1|P|2.5\rPID|1\r", ErrUnsupported},
		{"no PID", "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPV1|1|I\r", ErrMissingSegment},
		{"ORU without OBR", "MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5\rPID|1||9\r", ErrMissingSegment},
		{"VXU without RXA", "MSH|^~\\&|A|B|C|D|20240101||VXU^V04|1|P|2.5\rPID|1||9\r", ErrMissingSegment},
	} {
		_, _, err := ParseAndConvert([]byte(tc.msg), Options{})
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, _, err := ParseAndConvert([]byte(good), Options{}); err != nil {
		t.Errorf("good message: %v", err)
	}
}

func TestACK(t *testing.T) {
	m, err := Parse([]byte("MSH|^~\\&|LAB|HOSP|GW|FAC|20240101||ORU^R01|CTRL9|P|2.5.1\rPID|1\r"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	ack, err := Parse(ACK(m, AA, "", "", now))
	if err != nil {
		t.Fatal(err)
	}
	msh, msa := ack.Segments[0], ack.Segment("MSA")
	if msh.Get(3, 1) != "GW" || msh.Get(5, 1) != "LAB" || msh.Get(9, 1) != "ACK" || msh.Get(9, 2) != "R01" || msh.Get(12, 1) != "2.5.1" {
		t.Errorf("ACK MSH: %+v", msh)
	}
	if msa.Get(1, 1) != AA || msa.Get(2, 1) != "CTRL9" || ack.Segment("ERR") != nil {
		t.Errorf("MSA %+v", msa)
	}
	ae, err := Parse(ACK(m, AE, ErrCodeInternal, "store|failed^", now))
	if err != nil {
		t.Fatal(err)
	}
	if e := ae.Segment("ERR"); e == nil || e.Get(3, 1) != "207" || e.Get(8, 1) != "store|failed^" {
		t.Errorf("ERR %+v", e)
	}
	// An ACK for what could not be parsed at all.
	ar, err := Parse(ACK(nil, AR, ErrCodeSegmentSequence, "no MSH", now))
	if err != nil || ar.Segment("MSA").Get(1, 1) != AR {
		t.Errorf("AR without message: %v", err)
	}
}

func BenchmarkParseAndConvert(b *testing.B) {
	var msgs [][]byte
	for _, d := range samples(b) {
		msgs = append(msgs, d)
	}
	i := 0
	for b.Loop() {
		if _, _, err := ParseAndConvert(msgs[i%len(msgs)], Options{}); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

func count(m *Message, name string) int {
	n := 0
	for _, s := range m.Segments {
		if s.Name == name {
			n++
		}
	}
	return n
}
