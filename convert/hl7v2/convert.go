package hl7v2

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/convert/ccda"
	"github.com/fhirgate/fhirgate/convert/subject"
	"github.com/fhirgate/fhirgate/fhir"
)

// Conversion errors (besides the parse errors).
var (
	// ErrUnsupported: a message type or event that is not converted.
	ErrUnsupported = errors.New("hl7v2: unsupported message type")
	// ErrMissingSegment: a segment the message type requires is absent.
	ErrMissingSegment = errors.New("hl7v2: required segment missing")
)

// Options tune a conversion.
type Options struct {
	// Now stamps Provenance.recorded; time.Now when nil.
	Now func() time.Time
	// NewID assigns resource ids; ids derived from the message bytes when nil.
	NewID func() string
}

// Result is a converted message.
type Result struct {
	// Resources: the Patient first, then the message's resources, then one
	// Provenance naming them all.
	Resources []*fhir.Resource
	// Issues report what was not converted. Diagnostics may hold patient
	// data: never log them.
	Issues []fhir.Issue
	// PatientID is the id of the Patient made from PID.
	PatientID string
	// Subject is what PID says about the patient, with the fields it was
	// read from, to check it against the Patient it is filed under.
	Subject subject.Demographics
}

// Outcome returns the issues as an OperationOutcome.
func (r *Result) Outcome() *fhir.OperationOutcome { return fhir.NewOutcome(r.Issues...) }

// Bundle returns the resources as a transaction Bundle with urn:uuid fullUrls.
func (r *Result) Bundle() ([]byte, error) { return ccda.TransactionBundle(r.Resources) }

// AckCode tells which acknowledgement an error from Convert or Parse calls for
// (AR for what the sender must fix, AE otherwise) and its ERR-3 code.
func AckCode(err error) (code, errCode string) {
	switch {
	case err == nil:
		return AA, ""
	case errors.Is(err, ErrUnsupported):
		return AR, ErrCodeUnsupportedType
	case errors.Is(err, ErrMissingSegment):
		return AR, ErrCodeSegmentSequence
	case errors.Is(err, ErrTruncated):
		return AR, ErrCodeRequiredMissing
	case errors.Is(err, ErrMalformed):
		return AR, ErrCodeSegmentSequence
	}
	return AE, ErrCodeInternal
}

// ParseAndConvert parses and converts one message.
func ParseAndConvert(data []byte, opts Options) (*Message, *Result, error) {
	m, err := Parse(data)
	if err != nil {
		return nil, nil, err
	}
	if opts.NewID == nil {
		opts.NewID = derivedIDs(data)
	}
	r, err := Convert(m, opts)
	return m, r, err
}

type converter struct {
	m       *Message
	now     time.Time
	newID   func() string
	out     []pending
	issues  []fhir.Issue
	targets []string
	patient map[string]any
	patID   string
	subject subject.Demographics
}

type pending struct {
	typ, id string
	body    map[string]any
}

// Convert converts a parsed message: ADT A01, A04, A08 (and A03, A05, A28,
// A31 the same way), ORU R01, VXU V04, MDM T02 (and T01…T11).
func Convert(m *Message, opts Options) (*Result, error) {
	c := &converter{m: m, now: time.Now(), newID: opts.NewID}
	if opts.Now != nil {
		c.now = opts.Now()
	}
	if c.newID == nil {
		c.newID = derivedIDs([]byte(fmt.Sprint(m.ControlID(), len(m.Segments))))
	}
	code, trigger, _ := m.Type()
	if code == "" && trigger == "" {
		code, trigger = splitType(m.Segments[0].Get(9, 1))
	}
	pid := m.Segment("PID")
	if pid == nil {
		return nil, fmt.Errorf("%w: %s^%s without PID", ErrMissingSegment, code, trigger)
	}
	var err error
	switch code {
	case "ADT":
		switch trigger {
		case "A01", "A04", "A08", "A03", "A05", "A28", "A31":
			c.pid(pid)
			c.encounter(trigger)
		default:
			err = fmt.Errorf("%w: ADT^%s", ErrUnsupported, trigger)
		}
	case "ORU":
		if trigger != "R01" {
			err = fmt.Errorf("%w: ORU^%s", ErrUnsupported, trigger)
			break
		}
		c.pid(pid)
		err = c.oru()
	case "VXU":
		if trigger != "V04" {
			err = fmt.Errorf("%w: VXU^%s", ErrUnsupported, trigger)
			break
		}
		c.pid(pid)
		err = c.vxu()
	case "MDM":
		c.pid(pid)
		err = c.mdm()
	default:
		err = fmt.Errorf("%w: %s^%s", ErrUnsupported, code, trigger)
	}
	if err != nil {
		return nil, err
	}
	c.unconverted(code)
	c.provenance()
	res := &Result{Issues: c.issues, PatientID: c.patID, Subject: c.subject}
	for _, p := range c.out {
		p.body["resourceType"] = p.typ
		p.body["id"] = p.id
		raw, err := json.Marshal(p.body)
		if err != nil {
			return nil, fmt.Errorf("hl7v2: marshal %s: %w", p.typ, err)
		}
		r, err := fhir.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("hl7v2: %s: %w", p.typ, err)
		}
		res.Resources = append(res.Resources, r)
	}
	return res, nil
}

func splitType(s string) (string, string) {
	a, b, _ := strings.Cut(s, "_")
	return a, b
}

func derivedIDs(data []byte) func() string {
	seed := sha256.Sum256(data)
	var n uint64
	return func() string {
		n++
		var buf [40]byte
		copy(buf[:], seed[:])
		binary.BigEndian.PutUint64(buf[32:], n)
		h := sha256.Sum256(buf[:])
		h[6] = h[6]&0x0f | 0x50
		h[8] = h[8]&0x3f | 0x80
		return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
	}
}

func (c *converter) warn(code, text, where string) {
	c.issues = append(c.issues, fhir.Issue{Severity: fhir.SeverityWarning, Code: code, Details: &fhir.IssueDetails{Text: text}, Expression: []string{where}})
}

func (c *converter) emit(typ string, body map[string]any) map[string]any {
	id := c.newID()
	c.out = append(c.out, pending{typ: typ, id: id, body: body})
	c.targets = append(c.targets, typ+"/"+id)
	return map[string]any{"reference": typ + "/" + id}
}

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
	m := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		put(m, kv[i].(string), kv[i+1])
	}
	return m
}

// codeSystems maps HL7 table 0396 names to FHIR system URIs.
var codeSystems = map[string]string{
	"LN": "http://loinc.org", "LOINC": "http://loinc.org",
	"SCT": "http://snomed.info/sct", "SNM": "http://snomed.info/sct", "SNOMED": "http://snomed.info/sct", "SNM3": "http://snomed.info/sct",
	"I9": "http://hl7.org/fhir/sid/icd-9-cm", "I9C": "http://hl7.org/fhir/sid/icd-9-cm", "I9CM": "http://hl7.org/fhir/sid/icd-9-cm", "I9M": "http://hl7.org/fhir/sid/icd-9-cm",
	"I10": "http://hl7.org/fhir/sid/icd-10-cm", "I10C": "http://hl7.org/fhir/sid/icd-10-cm", "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm",
	"CVX": "http://hl7.org/fhir/sid/cvx", "NDC": "http://hl7.org/fhir/sid/ndc", "MVX": "http://hl7.org/fhir/sid/mvx",
	"RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm", "UCUM": "http://unitsofmeasure.org",
	"NCIT": "http://ncit.nci.nih.gov", "CPT": "http://www.ama-assn.org/go/cpt", "C4": "http://www.ama-assn.org/go/cpt",
	"DCM": "http://dicom.nema.org/resources/ontology/DCM", "CDCREC": "urn:oid:2.16.840.1.113883.6.238",
	"CDCPHINVS": "urn:oid:2.16.840.1.114222.4.5.274", "ISO": "urn:iso:std:iso:3166",
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

// concept converts a CE/CWE/CNE repetition (code^text^system^alt code^alt
// text^alt system^…^original text (9)^…^system OID (14), alt OID (17)).
func concept(r Repetition) map[string]any {
	var codings []any
	if code := r.Comp(1); code != "" {
		codings = append(codings, obj("system", systemURI(r.Comp(3), r.Comp(14)), "code", code, "display", r.Comp(2)))
	}
	if code := r.Comp(4); code != "" {
		codings = append(codings, obj("system", systemURI(r.Comp(6), r.Comp(17)), "code", code, "display", r.Comp(5)))
	}
	text := r.Comp(9)
	if text == "" && len(codings) == 0 {
		text = r.Comp(2)
	}
	return obj("coding", codings, "text", text)
}

func cc(system, code, display string) map[string]any {
	return obj("coding", []any{obj("system", system, "code", code, "display", display)})
}

// dateTime converts a DTM/TS (first component).
func (c *converter) dateTime(v, where string) string {
	if v == "" {
		return ""
	}
	dt, _, ok := ccda.DateTime(v)
	if !ok {
		c.warn("value", "unparseable timestamp dropped", where)
	}
	return dt
}

func date(v string) string {
	dt, _, ok := ccda.DateTime(v)
	if !ok {
		return ""
	}
	if len(dt) > 10 {
		dt = dt[:10]
	}
	return dt
}

// --- PID ---

func (c *converter) pid(s *Segment) {
	p := map[string]any{}
	var ids []any
	for _, r := range s.Field(3) {
		if id := identifier(r); id != nil {
			ids = append(ids, id)
		}
	}
	// PID-2 (external id, 2.3) and PID-4 (alternate id) are kept too.
	for _, n := range []int{2, 4} {
		for _, r := range s.Field(n) {
			if id := identifier(r); id != nil {
				ids = append(ids, id)
			}
		}
	}
	put(p, "identifier", ids)
	for _, n := range []int{3, 2, 4} {
		for i, r := range s.Field(n) {
			if id := identifier(r); id != nil {
				sys, _ := id["system"].(string)
				c.subject.Identifiers = append(c.subject.Identifiers, subject.Identifier{System: sys, Value: id["value"].(string), Path: fmt.Sprintf("PID-%d[%d]", n, i+1)})
			}
		}
	}
	var names []any
	for i, r := range s.Field(5) {
		family := r.Sub(1, 1)
		var given []string
		for _, g := range []string{r.Comp(2), r.Comp(3)} {
			if g != "" {
				given = append(given, g)
			}
		}
		use := map[string]string{"L": "official", "D": "usual", "A": "nickname", "M": "maiden", "N": "nickname"}[r.Comp(7)]
		n := obj("use", use, "family", family, "given", given, "suffix", nonEmpty(r.Comp(4), r.Comp(6)), "prefix", nonEmpty(r.Comp(5)))
		if len(n) > 0 {
			names = append(names, n)
			c.subject.Names = append(c.subject.Names, subject.Name{Family: family, Given: given, Path: fmt.Sprintf("PID-5[%d]", i+1)})
		}
	}
	put(p, "name", names)
	var tel []any
	for i, n := range []int{13, 14} {
		for _, r := range s.Field(n) {
			use := []string{"home", "work"}[i]
			if r.Comp(2) == "ORN" || r.Comp(3) == "CP" {
				use = "mobile"
			}
			if email := r.Comp(4); email != "" && (r.Comp(3) == "Internet" || r.Comp(3) == "X.400" || strings.Contains(email, "@")) {
				tel = append(tel, obj("system", "email", "value", email, "use", use))
				continue
			}
			num := r.Comp(1)
			if num == "" && r.Comp(7) != "" {
				num = strings.TrimSpace(r.Comp(5) + " " + r.Comp(6) + " " + r.Comp(7))
			}
			if num != "" {
				tel = append(tel, obj("system", "phone", "value", num, "use", use))
			}
		}
	}
	put(p, "telecom", tel)
	sex := map[string]string{"M": "male", "F": "female", "O": "other", "A": "other", "U": "unknown", "N": "unknown"}[s.Get(8, 1)]
	put(p, "gender", sex)
	put(p, "birthDate", date(s.Get(7, 1)))
	c.subject.Gender = subject.Value{Value: sex, Path: "PID-8"}
	c.subject.BirthDate = subject.Value{Value: date(s.Get(7, 1)), Path: "PID-7"}
	if dd := s.Get(29, 1); dd != "" {
		put(p, "deceasedDateTime", c.dateTime(dd, "PID-29"))
	} else if s.Get(30, 1) == "Y" {
		p["deceasedBoolean"] = true
	}
	var addrs []any
	for _, r := range s.Field(11) {
		if r.Empty() {
			continue
		}
		lines := nonEmpty(r.Sub(1, 1), r.Comp(2))
		use := map[string]string{"H": "home", "B": "work", "O": "work", "C": "temp", "BA": "old", "M": "home"}[r.Comp(7)]
		a := obj("use", use, "line", lines, "city", r.Comp(3), "state", r.Comp(4), "postalCode", r.Comp(5), "country", r.Comp(6))
		if len(a) > 0 {
			addrs = append(addrs, a)
		}
	}
	put(p, "address", addrs)
	if ms := s.Field(16).Rep(0); ms.Comp(1) != "" {
		put(p, "maritalStatus", cc("http://terminology.hl7.org/CodeSystem/v2-0002", ms.Comp(1), ms.Comp(2)))
	}
	c.patient = c.emit("Patient", p)
	c.patID = strings.TrimPrefix(c.patient["reference"].(string), "Patient/")
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

// identifier converts a CX (id^check^scheme^authority(HD)^type).
func identifier(r Repetition) map[string]any {
	v := r.Comp(1)
	if v == "" {
		return nil
	}
	sys := ""
	if r.Sub(4, 3) == "ISO" && r.Sub(4, 2) != "" {
		sys = ccda.SystemURI(r.Sub(4, 2))
	}
	id := obj("system", sys, "value", v)
	if t := r.Comp(5); t != "" {
		put(id, "type", cc("http://terminology.hl7.org/CodeSystem/v2-0203", t, ""))
	}
	if a := r.Sub(4, 1); a != "" {
		put(id, "assigner", obj("display", a))
	}
	return id
}

// --- ADT ---

func (c *converter) encounter(trigger string) {
	pv1 := c.m.Segment("PV1")
	if pv1 == nil {
		c.warn("incomplete", "ADT without PV1: no Encounter", "PV1")
		return
	}
	class := map[string][2]string{"I": {"IMP", "inpatient encounter"}, "O": {"AMB", "ambulatory"}, "E": {"EMER", "emergency"}, "P": {"PRENC", "pre-admission"}, "R": {"AMB", "ambulatory"}, "B": {"AMB", "ambulatory"}, "C": {"AMB", "ambulatory"}, "N": {"AMB", "ambulatory"}}[pv1.Get(2, 1)]
	if class[0] == "" {
		class = [2]string{"AMB", "ambulatory"}
		if pv1.Get(2, 1) != "" {
			c.warn("code-invalid", "unknown patient class (PV1-2); ambulatory assumed", "PV1-2")
		}
	}
	status := "in-progress"
	end := c.dateTime(pv1.Get(45, 1), "PV1-45")
	if trigger == "A03" || end != "" {
		status = "finished"
	}
	if trigger == "A05" {
		status = "planned"
	}
	e := obj("status", status,
		"class", obj("system", "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code", class[0], "display", class[1]),
		"subject", c.patient,
		"period", obj("start", c.dateTime(pv1.Get(44, 1), "PV1-44"), "end", end))
	if id := identifier(pv1.Field(19).Rep(0)); id != nil {
		put(e, "identifier", []any{id})
	}
	var parts []any
	for _, f := range []struct {
		n    int
		code string
	}{{7, "ATND"}, {8, "REF"}, {9, "CON"}, {17, "ADM"}} {
		for _, r := range pv1.Field(f.n) {
			name := strings.TrimSpace(strings.Join(nonEmpty(r.Comp(6), r.Comp(3), r.Sub(2, 1)), " "))
			if name == "" {
				name = r.Comp(1)
			}
			if name == "" {
				continue
			}
			parts = append(parts, obj("type", []any{cc("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", f.code, "")}, "individual", obj("display", name)))
		}
	}
	put(e, "participant", parts)
	if loc := pv1.Field(3).Rep(0); !loc.Empty() {
		disp := strings.Join(nonEmpty(loc.Sub(1, 1), loc.Comp(2), loc.Comp(3), loc.Comp(4)), " ")
		put(e, "location", []any{obj("location", obj("display", disp))})
	}
	if pv2 := c.m.Segment("PV2"); pv2 != nil {
		if r := concept(pv2.Field(3).Rep(0)); len(r) > 0 {
			put(e, "reasonCode", []any{r})
		}
	}
	c.emit("Encounter", e)
}

// --- ORU ---

var resultStatus = map[string]string{"F": "final", "P": "preliminary", "C": "corrected", "X": "cancelled", "R": "registered", "I": "registered", "S": "partial", "A": "partial", "O": "registered", "D": "entered-in-error", "W": "entered-in-error", "U": "final", "N": "unknown"}

func (c *converter) oru() error {
	var obr *Segment
	var results []any
	var obxs int
	flush := func() {
		if obr == nil {
			return
		}
		status := resultStatus[obr.Get(25, 1)]
		if status == "" {
			status = "final"
		}
		code := concept(obr.Field(4).Rep(0))
		if len(code) == 0 {
			code = obj("text", "unknown")
			c.warn("incomplete", "OBR without a universal service id (OBR-4)", "OBR-4")
		}
		var ids []any
		for _, n := range []int{2, 3} {
			if v := obr.Get(n, 1); v != "" {
				ids = append(ids, obj("value", v, "type", cc("http://terminology.hl7.org/CodeSystem/v2-0203", []string{"", "", "PLAC", "FILL"}[n], "")))
			}
		}
		dr := obj("identifier", ids, "status", status,
			"category", []any{cc("http://terminology.hl7.org/CodeSystem/v2-0074", firstNonEmpty(obr.Get(24, 1), "LAB"), "")},
			"code", code, "subject", c.patient,
			"effectiveDateTime", c.dateTime(obr.Get(7, 1), "OBR-7"), "result", results)
		if iss := c.dateTime(obr.Get(22, 1), "OBR-22"); len(iss) > 10 {
			put(dr, "issued", iss)
		}
		c.emit("DiagnosticReport", dr)
		obr, results = nil, nil
	}
	for _, s := range c.m.Segments {
		switch s.Name {
		case "OBR":
			flush()
			obr = s
		case "OBX":
			obxs++
			if obr == nil {
				c.warn("not-supported", "OBX before any OBR not converted", fmt.Sprintf("OBX[%d]", obxs))
				continue
			}
			ref := c.observation(s, obr, fmt.Sprintf("OBX[%d]", obxs))
			if ref != nil {
				results = append(results, ref)
			}
		}
	}
	if obxs == 0 && c.m.Segment("OBR") == nil {
		return fmt.Errorf("%w: ORU^R01 without OBR", ErrMissingSegment)
	}
	flush()
	return nil
}

var rangePattern = regexp.MustCompile(`^\s*(-?\d+(?:\.\d+)?)\s*(?:-|to|\^)\s*(-?\d+(?:\.\d+)?)\s*$`)
var boundPattern = regexp.MustCompile(`^\s*(<=|>=|<|>)\s*(-?\d+(?:\.\d+)?)\s*$`)

// observation converts one OBX and returns its reference (nil if skipped).
func (c *converter) observation(s, obr *Segment, where string) map[string]any {
	status := resultStatus[s.Get(11, 1)]
	if status == "" {
		status = "final"
	}
	code := concept(s.Field(3).Rep(0))
	if len(code) == 0 {
		c.warn("incomplete", "OBX without an observation identifier (OBX-3); recorded with data-absent-reason", where)
		code = cc("http://terminology.hl7.org/CodeSystem/data-absent-reason", "unknown", "Unknown")
	}
	o := obj("status", status, "code", code, "subject", c.patient,
		"effectiveDateTime", c.dateTime(firstNonEmpty(s.Get(14, 1), obr.Get(7, 1)), where+"-14"))
	if cat := map[string]string{"LAB": "laboratory", "": "laboratory"}[obr.Get(24, 1)]; cat != "" && c.m.Segments[0].Get(9, 1) == "ORU" {
		put(o, "category", []any{cc("http://terminology.hl7.org/CodeSystem/observation-category", cat, "")})
	}
	unit := s.Field(6).Rep(0)
	vals := s.Field(5)
	if len(vals) > 1 {
		c.warn("not-supported", fmt.Sprintf("OBX-5 has %d repetitions; only the first converted", len(vals)), where+"-5")
	}
	c.value(o, s.Get(2, 1), vals.Rep(0), unit, where)
	var interp []any
	for _, r := range s.Field(8) {
		if f := r.Comp(1); f != "" {
			interp = append(interp, cc("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", f, interpretations[f]))
		}
	}
	put(o, "interpretation", interp)
	if rr := strings.TrimSpace(s.Get(7, 1)); rr != "" {
		put(o, "referenceRange", []any{referenceRange(rr, unit)})
	}
	return c.emit("Observation", o)
}

var interpretations = map[string]string{"L": "Low", "H": "High", "LL": "Critical low", "HH": "Critical high", "N": "Normal", "A": "Abnormal", "AA": "Critical abnormal", "<": "Off scale low", ">": "Off scale high", "S": "Susceptible", "R": "Resistant", "I": "Intermediate", "POS": "Positive", "NEG": "Negative"}

func quantity(v string, unit Repetition) map[string]any {
	q := obj("value", json.Number(v))
	if u := unit.Comp(1); u != "" {
		sys := systemURI(unit.Comp(3), "")
		if sys == "" && (unit.Comp(3) == "" || unit.Comp(3) == "ISO+" || unit.Comp(3) == "ANSI+") {
			sys = "http://unitsofmeasure.org"
		}
		put(q, "unit", firstNonEmpty(unit.Comp(2), u))
		if sys == "http://unitsofmeasure.org" {
			put(q, "system", sys)
			put(q, "code", u)
		}
	}
	return q
}

func referenceRange(rr string, unit Repetition) map[string]any {
	if m := rangePattern.FindStringSubmatch(rr); m != nil {
		return obj("low", quantity(decimal(m[1]), unit), "high", quantity(decimal(m[2]), unit), "text", rr)
	}
	if m := boundPattern.FindStringSubmatch(rr); m != nil {
		if strings.HasPrefix(m[1], "<") {
			return obj("high", quantity(decimal(m[2]), unit), "text", rr)
		}
		return obj("low", quantity(decimal(m[2]), unit), "text", rr)
	}
	return obj("text", rr)
}

var decimalPattern = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?$`)

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
	if neg {
		s = "-" + s
	}
	if !decimalPattern.MatchString(s) {
		return ""
	}
	return s
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// value sets value[x] from OBX-2 (value type) and OBX-5.
func (c *converter) value(o map[string]any, typ string, v Repetition, unit Repetition, where string) {
	if v.Empty() {
		return
	}
	switch typ {
	case "NM":
		if d := decimal(v.Comp(1)); d != "" {
			put(o, "valueQuantity", quantity(d, unit))
			return
		}
	case "SN":
		// comparator ^ num1 ^ separator/suffix ^ num2
		cmp, n1, sep, n2 := v.Comp(1), decimal(v.Comp(2)), v.Comp(3), decimal(v.Comp(4))
		switch {
		case n1 != "" && sep == "" && n2 == "":
			q := quantity(n1, unit)
			if cmp == "<" || cmp == "<=" || cmp == ">" || cmp == ">=" {
				q["comparator"] = cmp
			}
			put(o, "valueQuantity", q)
			return
		case n1 != "" && n2 != "" && sep == "-":
			put(o, "valueRange", obj("low", quantity(n1, unit), "high", quantity(n2, unit)))
			return
		case n1 != "" && n2 != "" && (sep == ":" || sep == "/"):
			put(o, "valueRatio", obj("numerator", obj("value", json.Number(n1)), "denominator", obj("value", json.Number(n2))))
			return
		}
	case "ST", "TX", "FT", "ID", "IS", "RP", "HD":
		parts := nonEmpty(v.Comp(1))
		if typ == "RP" || typ == "HD" {
			parts = nonEmpty(v.Comp(1), v.Comp(2))
		}
		put(o, "valueString", strings.Join(parts, " "))
		return
	case "CE", "CWE", "CNE", "CF":
		if cc := concept(v); len(cc) > 0 {
			put(o, "valueCodeableConcept", cc)
			return
		}
	case "DT", "TS", "DTM":
		if dt := c.dateTime(v.Comp(1), where+"-5"); dt != "" {
			put(o, "valueDateTime", dt)
			return
		}
	case "ED":
		c.warn("not-supported", "encapsulated data (ED) in OBX-5 not converted: R4 Observation has no attachment value", where+"-5")
		return
	}
	c.warn("not-supported", "OBX-5 of type "+typ+" not converted", where+"-5")
}

// --- VXU ---

func (c *converter) vxu() error {
	var n int
	var rxr *Segment
	for i, s := range c.m.Segments {
		if s.Name != "RXA" {
			continue
		}
		n++
		rxr = nil
		if i+1 < len(c.m.Segments) && c.m.Segments[i+1].Name == "RXR" {
			rxr = c.m.Segments[i+1]
		}
		c.immunization(s, rxr, fmt.Sprintf("RXA[%d]", n))
	}
	if n == 0 {
		return fmt.Errorf("%w: VXU^V04 without RXA", ErrMissingSegment)
	}
	if k := count(c.m, "OBX"); k > 0 {
		c.warn("not-supported", fmt.Sprintf("%d OBX segments of the VXU (funding, VIS, eligibility) not converted", k), "OBX")
	}
	return nil
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

func (c *converter) immunization(rxa, rxr *Segment, where string) {
	status := "completed"
	switch rxa.Get(20, 1) {
	case "RE", "NA":
		status = "not-done"
	case "":
	}
	if rxa.Get(21, 1) == "D" {
		status = "entered-in-error"
	}
	vaccine := concept(rxa.Field(5).Rep(0))
	if len(vaccine) == 0 {
		c.warn("incomplete", "RXA without an administered code (RXA-5)", where+"-5")
		vaccine = cc("http://terminology.hl7.org/CodeSystem/data-absent-reason", "unknown", "Unknown")
	}
	im := obj("status", status, "vaccineCode", vaccine, "patient", c.patient)
	if dt := c.dateTime(rxa.Get(3, 1), where+"-3"); dt != "" {
		im["occurrenceDateTime"] = dt
	} else {
		im["occurrenceString"] = "unknown"
		c.warn("incomplete", "RXA without an administration date (RXA-3)", where+"-3")
	}
	if src := rxa.Get(9, 1); src != "" {
		im["primarySource"] = src == "00"
	}
	put(im, "lotNumber", rxa.Get(15, 1))
	put(im, "expirationDate", date(rxa.Get(16, 1)))
	if mvx := rxa.Field(17).Rep(0); !mvx.Empty() {
		put(im, "manufacturer", obj("display", firstNonEmpty(mvx.Comp(2), mvx.Comp(1))))
	}
	if d := decimal(rxa.Get(6, 1)); d != "" && d != "999" {
		put(im, "doseQuantity", quantity(d, rxa.Field(7).Rep(0)))
	}
	if rxr != nil {
		put(im, "route", concept(rxr.Field(1).Rep(0)))
		put(im, "site", concept(rxr.Field(2).Rep(0)))
	}
	if status == "not-done" {
		put(im, "statusReason", concept(rxa.Field(18).Rep(0)))
	}
	c.emit("Immunization", im)
}

// --- MDM ---

func (c *converter) mdm() error {
	txa := c.m.Segment("TXA")
	if txa == nil {
		return fmt.Errorf("%w: MDM without TXA", ErrMissingSegment)
	}
	var text []string
	var attachment map[string]any
	for i, s := range c.m.Segments {
		if s.Name != "OBX" {
			continue
		}
		where := fmt.Sprintf("OBX[%d]", i)
		switch s.Get(2, 1) {
		case "TX", "FT", "ST":
			for _, r := range s.Field(5) {
				text = append(text, strings.Join(nonEmptyAll(r), " "))
			}
		case "ED":
			r := s.Field(5).Rep(0)
			data := r.Comp(5)
			if data == "" {
				c.warn("incomplete", "encapsulated document (ED) without data", where)
				continue
			}
			if r.Comp(4) != "Base64" && r.Comp(4) != "A" {
				c.warn("not-supported", "encapsulated data encoding "+r.Comp(4)+" not converted", where)
				continue
			}
			ct := strings.ToLower(r.Comp(2) + "/" + r.Comp(3))
			if r.Comp(4) == "A" {
				data = base64.StdEncoding.EncodeToString([]byte(data))
			} else if _, err := base64.StdEncoding.DecodeString(data); err != nil {
				c.warn("invalid", "encapsulated data is not valid base64", where)
				continue
			}
			attachment = obj("contentType", ct, "data", data)
		default:
			c.warn("not-supported", "OBX of type "+s.Get(2, 1)+" in MDM not converted", where)
		}
	}
	var att map[string]any
	switch {
	case attachment != nil:
		bin := c.emit("Binary", obj("contentType", attachment["contentType"], "securityContext", c.patient, "data", attachment["data"]))
		att = obj("contentType", attachment["contentType"], "url", bin["reference"])
	case len(text) > 0:
		body := strings.Join(text, "\n")
		bin := c.emit("Binary", obj("contentType", "text/plain", "securityContext", c.patient, "data", base64.StdEncoding.EncodeToString([]byte(body))))
		att = obj("contentType", "text/plain", "url", bin["reference"], "size", len(body))
	default:
		c.warn("incomplete", "MDM carries no document content; the DocumentReference only describes it", "OBX")
		att = obj("contentType", "text/plain", "title", "content not sent")
	}
	docStatus := map[string]string{"AU": "final", "LA": "final", "DO": "preliminary", "IP": "preliminary", "IN": "preliminary", "PA": "preliminary", "CA": "entered-in-error", "OB": "amended", "DI": "preliminary"}[txa.Get(17, 1)]
	dr := obj("status", "current", "docStatus", docStatus,
		"type", cc("http://terminology.hl7.org/CodeSystem/v2-0270", txa.Get(2, 1), ""),
		"subject", c.patient,
		"content", []any{obj("attachment", att)})
	if u := txa.Field(12).Rep(0); u.Comp(1) != "" {
		sys := ""
		if u.Comp(4) == "ISO" {
			sys = ccda.SystemURI(u.Comp(3))
		}
		put(dr, "masterIdentifier", obj("system", sys, "value", u.Comp(1)))
	}
	if created := c.dateTime(firstNonEmpty(txa.Get(6, 1), txa.Get(4, 1)), "TXA-6"); len(created) > 10 {
		put(dr, "date", created)
	}
	if auth := txa.Field(9).Rep(0); !auth.Empty() {
		put(dr, "author", []any{obj("display", strings.Join(nonEmpty(auth.Comp(3), auth.Comp(2), auth.Comp(1)), " "))})
	}
	c.emit("DocumentReference", dr)
	return nil
}

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

// used lists, per message code, the segments the conversion reads; the
// others are reported, so that nothing is dropped silently.
var used = map[string]map[string]bool{
	"ADT": {"PID": true, "PV1": true, "PV2": true},
	"ORU": {"PID": true, "OBR": true, "OBX": true},
	"VXU": {"PID": true, "RXA": true, "RXR": true, "OBX": true},
	"MDM": {"PID": true, "TXA": true, "OBX": true},
}

// envelope segments carry nothing clinical.
var envelope = map[string]bool{"MSH": true, "SFT": true, "EVN": true, "UAC": true, "ARV": true}

func (c *converter) unconverted(code string) {
	counts := map[string]int{}
	var order []string
	for _, s := range c.m.Segments {
		if envelope[s.Name] || used[code][s.Name] {
			continue
		}
		if counts[s.Name] == 0 {
			order = append(order, s.Name)
		}
		counts[s.Name]++
	}
	for _, name := range order {
		c.issues = append(c.issues, fhir.Issue{Severity: fhir.SeverityInformation, Code: "informational",
			Details: &fhir.IssueDetails{Text: fmt.Sprintf("%d %s segment(s) not converted", counts[name], name)}, Expression: []string{name}})
	}
}

// provenance names every converted resource; the message itself is its
// source entity, identified by MSH-10 and the sending application.
func (c *converter) provenance() {
	var targets []any
	for _, t := range c.targets {
		targets = append(targets, obj("reference", t))
	}
	msh := c.m.Segments[0]
	sender := strings.Join(nonEmpty(msh.Get(3, 1), msh.Get(4, 1)), "@")
	body := obj("target", targets,
		"recorded", c.now.UTC().Format(time.RFC3339Nano),
		"activity", obj("text", "converted from HL7 v2 "+msh.Get(9, 1)+"^"+msh.Get(9, 2)),
		"agent", []any{obj("type", cc("http://terminology.hl7.org/CodeSystem/provenance-participant-type", "author", ""),
			"who", obj("display", firstNonEmpty(sender, "HL7 v2 sender")))},
		"entity", []any{obj("role", "source", "what", obj("identifier", obj("system", "urn:fhirgate:hl7v2:control-id", "value", c.m.ControlID()), "display", "HL7 v2 message "+c.m.ControlID()))})
	id := c.newID()
	c.out = append(c.out, pending{typ: "Provenance", id: id, body: body})
}
