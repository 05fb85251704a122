package hl7v2

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/convert/ccda"
	"github.com/fhirgate/fhirgate/convert/subject"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
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

// SegmentAccount says what became of one segment of the message.
type SegmentAccount struct {
	// Name is the segment id; Where locates it ("OBX[3]": the third OBX).
	Name, Where string
	// Index is its position in the message (MSH is 0).
	Index int
	// Resources are the resources ("Type/id") the segment was converted
	// into or filled in.
	Resources []string
	// Envelope: the segment carries nothing clinical (MSH, SFT…).
	Envelope bool
	// NotConverted says why the segment was not converted; it is then
	// kept only in the original message and listed in Result.Issues.
	NotConverted string
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
	// Segments account for every segment of the message, in order.
	Segments []SegmentAccount
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

// pending is a resource being built; its body may still change until the
// message is converted.
type pending struct {
	typ, id string
	body    map[string]any
}

// anchor is the resource later segments of a group attach to (NTE, PRT,
// ROL, OBX of an order…).
type anchor struct {
	seg  string // the segment that made it
	typ  string
	ref  string
	body map[string]any
}

type converter struct {
	m                *Message
	code, trigger    string
	now              time.Time
	newID            func() string
	out              []pending
	issues           []fhir.Issue
	targets          []string
	patient          map[string]any // reference to the Patient
	patBody          map[string]any
	patID            string
	subject          subject.Demographics
	accounts         []SegmentAccount
	cur              *SegmentAccount
	counts           map[string]int
	encounter        map[string]any // reference, nil before PV1
	encBody          map[string]any
	anchor           anchor // the last resource NTE/PRT/ROL attach to
	order            *order
	immunization     *anchor
	coverage         *anchor
	appointment      *anchor
	document         *mdmDoc
	practitioners    map[string]map[string]any
	organizations    map[string]map[string]any
	generalPractices map[string]bool
	evn              *Segment
}

// Convert converts a parsed message: ADT A01–A08, A28, A31; ORU R01; MDM
// T01–T11; VXU V04; SIU S12–S26; ORM O01; OML O21, O33, O35. Every segment
// is accounted for in Result.Segments: converted (into the resources it
// names), envelope, or not converted (listed in Result.Issues and kept in
// the original message).
func Convert(m *Message, opts Options) (*Result, error) {
	c := &converter{m: m, now: time.Now(), newID: opts.NewID, counts: map[string]int{},
		practitioners: map[string]map[string]any{}, organizations: map[string]map[string]any{}, generalPractices: map[string]bool{}}
	if opts.Now != nil {
		c.now = opts.Now()
	}
	if c.newID == nil {
		c.newID = derivedIDs([]byte(fmt.Sprint(m.ControlID(), len(m.Segments))))
	}
	c.code, c.trigger, _ = m.Type()
	if c.code == "" && c.trigger == "" {
		c.code, c.trigger = splitType(m.Segments[0].Get(9, 1))
	}
	if err := c.supported(); err != nil {
		return nil, err
	}
	if m.Segment("PID") == nil {
		return nil, fmt.Errorf("%w: %s^%s without PID", ErrMissingSegment, c.code, c.trigger)
	}
	if err := c.required(); err != nil {
		return nil, err
	}
	for i, s := range m.Segments {
		c.counts[s.Name]++
		c.accounts = append(c.accounts, SegmentAccount{Name: s.Name, Where: fmt.Sprintf("%s[%d]", s.Name, c.counts[s.Name]), Index: i})
		c.cur = &c.accounts[len(c.accounts)-1]
		c.segment(s)
	}
	c.cur = nil
	c.finish()
	c.provenance()
	res := &Result{Issues: c.issues, PatientID: c.patID, Subject: c.subject, Segments: c.accounts}
	for _, p := range c.out {
		p.body["resourceType"] = p.typ
		p.body["id"] = p.id
		v, err := fjson.Build(p.body)
		if err != nil {
			return nil, fmt.Errorf("hl7v2: %s: %w", p.typ, err)
		}
		r, err := fhir.FromValue(v)
		if err != nil {
			return nil, fmt.Errorf("hl7v2: %s: %w", p.typ, err)
		}
		res.Resources = append(res.Resources, r)
	}
	return res, nil
}

// supported checks the message type and trigger event.
func (c *converter) supported() error {
	ok := false
	switch c.code {
	case "ADT":
		switch c.trigger {
		case "A01", "A02", "A03", "A04", "A05", "A06", "A07", "A08", "A28", "A31":
			ok = true
		}
	case "ORU":
		ok = c.trigger == "R01"
	case "VXU":
		ok = c.trigger == "V04"
	case "MDM":
		ok = len(c.trigger) == 3 && c.trigger[0] == 'T' && c.trigger >= "T01" && c.trigger <= "T11"
	case "SIU":
		ok = len(c.trigger) == 3 && c.trigger[0] == 'S' && c.trigger >= "S12" && c.trigger <= "S26"
	case "ORM":
		ok = c.trigger == "O01"
	case "OML":
		ok = c.trigger == "O21" || c.trigger == "O33" || c.trigger == "O35"
	}
	if !ok {
		return fmt.Errorf("%w: %s^%s", ErrUnsupported, c.code, c.trigger)
	}
	return nil
}

// required checks the segments a message type cannot do without.
func (c *converter) required() error {
	need := map[string]string{"ORU": "OBR", "VXU": "RXA", "MDM": "TXA", "SIU": "SCH", "ORM": "ORC", "OML": "ORC"}[c.code]
	if need != "" && c.m.Segment(need) == nil {
		if c.code == "ORU" && c.m.Segment("OBX") != nil {
			return nil // results without their request are still results
		}
		return fmt.Errorf("%w: %s^%s without %s", ErrMissingSegment, c.code, c.trigger, need)
	}
	return nil
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

func (c *converter) info(text, where string) {
	c.issues = append(c.issues, fhir.Issue{Severity: fhir.SeverityInformation, Code: "informational", Details: &fhir.IssueDetails{Text: text}, Expression: []string{where}})
}

// where locates the current segment, or one of its fields ("OBX[2]-5").
func (c *converter) where(field ...int) string {
	w := c.cur.Where
	if len(field) > 0 {
		w += fmt.Sprintf("-%d", field[0])
	}
	return w
}

// emit queues a resource (a Provenance target) and returns its reference;
// the body may be filled in until Convert marshals it.
func (c *converter) emit(typ string, body map[string]any) map[string]any {
	id := c.newID()
	c.out = append(c.out, pending{typ: typ, id: id, body: body})
	ref := typ + "/" + id
	c.targets = append(c.targets, ref)
	c.touch(ref)
	return map[string]any{"reference": ref}
}

// touch records that the current segment went into ref.
func (c *converter) touch(ref string) {
	if c.cur == nil {
		return
	}
	for _, r := range c.cur.Resources {
		if r == ref {
			return
		}
	}
	c.cur.Resources = append(c.cur.Resources, ref)
}

func refOf(r map[string]any) string {
	if r == nil {
		return ""
	}
	s, _ := r["reference"].(string)
	return s
}

// skip records that the current segment is not converted, and why.
func (c *converter) skip(reason string) { c.cur.NotConverted = reason }

// envelope records that the current segment carries nothing clinical.
func (c *converter) envelope() { c.cur.Envelope = true }

// dateTime converts a DTM/TS, warning when it cannot be read.
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

// segment converts one segment in the context of those before it.
func (c *converter) segment(s *Segment) {
	switch s.Name {
	case "MSH", "SFT", "UAC", "RGS":
		c.envelope()
	case "EVN":
		c.evn = s
		c.touchLater("Provenance")
	case "PID":
		c.pid(s)
	case "PD1":
		c.pd1(s)
	case "NK1":
		c.nk1(s)
	case "PV1":
		c.pv1(s)
	case "PV2":
		c.pv2(s)
	case "ROL":
		c.rol(s)
	case "PRT":
		c.prt(s)
	case "AL1":
		c.al1(s)
	case "IAM":
		c.iam(s)
	case "DG1":
		c.dg1(s)
	case "PR1":
		c.pr1(s)
	case "GT1":
		c.gt1(s)
	case "IN1":
		c.in1(s)
	case "IN2":
		c.in2(s)
	case "ORC":
		c.orc(s)
	case "OBR":
		c.obr(s)
	case "TQ1":
		c.tq1(s)
	case "OBX":
		c.obx(s)
	case "NTE":
		c.nte(s)
	case "SPM":
		c.spm(s)
	case "TXA":
		c.txa(s)
	case "RXA":
		c.rxa(s)
	case "RXR":
		c.rxr(s)
	case "SCH":
		c.sch(s)
	case "AIS", "AIG", "AIL", "AIP":
		c.ai(s)
	case "PDA":
		c.pda(s)
	case "DB1":
		c.db1(s)
	case "RF1":
		c.rf1(s)
	case "ACC":
		c.acc(s)
	case "CTD":
		c.ctd(s)
	default:
		c.skip(notConverted[s.Name])
	}
}

// notConverted says why segments that are read are left as they are.
var notConverted = map[string]string{
	"ARV": "access restrictions are not applied to the converted resources (what is released is decided by the patient's Consents)",
	"IN3": "insurance certification is not converted",
	"CON": "a consent from a feed is not turned into a Consent: Consents decide what the gateway releases, and only the patient or its custodian writes them",
	"CTI": "clinical trial identification is not converted",
	"FT1": "financial transactions are not converted",
	"MRG": "merge information is not converted",
	"DRG": "diagnosis related group is not converted",
	"UB1": "billing data is not converted", "UB2": "billing data is not converted",
}

// touchLater records that the current segment goes into the message's
// Provenance (made last).
func (c *converter) touchLater(typ string) { c.cur.Resources = append(c.cur.Resources, typ+"/") }

// finish completes what needs the whole message, then lists what was not
// converted.
func (c *converter) finish() {
	c.finishDocument()
	c.finishImmunizations()
	c.finishAppointment()
	for i := range c.accounts {
		a := &c.accounts[i]
		if a.Envelope || len(a.Resources) > 0 && a.NotConverted == "" {
			continue
		}
		if a.NotConverted == "" {
			a.NotConverted = "not converted"
		}
		c.issues = append(c.issues, fhir.Issue{Severity: fhir.SeverityInformation, Code: "informational",
			Details:    &fhir.IssueDetails{Text: fmt.Sprintf("%s not converted (%s); it is kept in the original message", a.Where, a.NotConverted)},
			Expression: []string{a.Where}})
	}
}

// provenance names every converted resource; the message itself is its
// source entity, identified by MSH-10 and the sending application; EVN
// gives when and why the event happened and who entered it.
func (c *converter) provenance() {
	var targets []any
	for _, t := range c.targets {
		targets = append(targets, obj("reference", t))
	}
	msh := c.m.Segments[0]
	sender := strings.Join(nonEmpty(msh.Get(3, 1), msh.Get(4, 1)), "@")
	agents := []any{obj("type", cc("http://terminology.hl7.org/CodeSystem/provenance-participant-type", "author", ""),
		"who", obj("display", firstNonEmpty(sender, "HL7 v2 sender")))}
	body := obj("target", targets,
		"recorded", c.now.UTC().Format(time.RFC3339Nano),
		"activity", obj("text", "converted from HL7 v2 "+msh.Get(9, 1)+"^"+msh.Get(9, 2)),
		"entity", []any{obj("role", "source", "what", obj("identifier", obj("system", "urn:fhirgate:hl7v2:control-id", "value", c.m.ControlID()), "display", "HL7 v2 message "+c.m.ControlID()))})
	if e := c.evn; e != nil {
		put(body, "occurredDateTime", firstNonEmpty(dtm(e.Get(6, 1)), dtm(e.Get(2, 1))))
		if r := e.Field(4).Rep(0); !r.Empty() {
			put(body, "reason", []any{tableConcept(r, "0062")})
		}
		if op := e.Field(5).Rep(0); !op.Empty() {
			if n := humanName(op, 2); n != nil || op.Comp(1) != "" {
				agents = append(agents, obj("type", cc("http://terminology.hl7.org/CodeSystem/provenance-participant-type", "enterer", ""),
					"who", obj("display", firstNonEmpty(nameText(n), op.Comp(1)))))
			}
		}
	}
	body["agent"] = agents
	id := c.newID()
	c.out = append(c.out, pending{typ: "Provenance", id: id, body: body})
	for i := range c.accounts {
		for j, r := range c.accounts[i].Resources {
			if r == "Provenance/" {
				c.accounts[i].Resources[j] = "Provenance/" + id
			}
		}
	}
}

// practitioner makes (once per message) a Practitioner of an XCN
// (id^family^given^second^suffix^prefix^degree^source^authority…), and
// returns a reference to it; nil when the XCN is empty.
func (c *converter) practitioner(r Repetition) map[string]any {
	if r.Empty() {
		return nil
	}
	n := humanName(r, 2)
	key := r.Comp(1) + "|" + r.Sub(9, 1) + "|" + r.Sub(9, 2) + "|" + nameText(n)
	if ref, ok := c.practitioners[key]; ok {
		c.touch(refOf(ref))
		return ref
	}
	p := map[string]any{}
	if id := r.Comp(1); id != "" {
		sys := ""
		if r.Sub(9, 3) == "ISO" && r.Sub(9, 2) != "" {
			sys = ccda.SystemURI(r.Sub(9, 2))
		}
		ident := obj("system", sys, "value", id)
		if t := r.Comp(13); t != "" {
			put(ident, "type", cc("http://terminology.hl7.org/CodeSystem/v2-0203", t, ""))
		}
		if a := r.Sub(9, 1); a != "" && sys == "" {
			put(ident, "assigner", obj("display", a))
		}
		put(p, "identifier", []any{ident})
	}
	if n != nil {
		put(p, "name", []any{n})
	}
	if d := r.Comp(21); d != "" {
		put(p, "qualification", []any{obj("code", obj("text", d))})
	}
	if len(p) == 0 {
		return nil
	}
	ref := c.emit("Practitioner", p)
	if d := firstNonEmpty(nameText(n), r.Comp(1)); d != "" {
		ref = map[string]any{"reference": ref["reference"], "display": d}
	}
	c.practitioners[key] = ref
	return ref
}

// organization makes (once per message) an Organization of an XON (name^
// type^id^check^scheme^authority^id type^facility^name rep^identifier).
func (c *converter) organization(r Repetition, addr Field, phone Field) map[string]any {
	sys := ""
	if r.Sub(6, 3) == "ISO" && r.Sub(6, 2) != "" {
		sys = ccda.SystemURI(r.Sub(6, 2))
	}
	return c.namedOrganization(r.Comp(1), firstNonEmpty(r.Comp(10), r.Comp(3)), sys, r.Comp(7), addr, phone)
}

// namedOrganization makes (once per message) an Organization of a name,
// an identifier, an address and phone numbers; nil without name and id.
func (c *converter) namedOrganization(name, idv, system, idType string, addr, phone Field) map[string]any {
	if name == "" && idv == "" {
		return nil
	}
	key := name + "|" + idv
	if ref, ok := c.organizations[key]; ok {
		c.touch(refOf(ref))
		return ref
	}
	o := obj("name", name)
	if idv != "" {
		id := obj("system", system, "value", idv)
		if idType != "" {
			put(id, "type", cc("http://terminology.hl7.org/CodeSystem/v2-0203", idType, ""))
		}
		put(o, "identifier", []any{id})
	}
	put(o, "address", addresses(addr))
	put(o, "telecom", telecoms(phone, "work"))
	ref := c.emit("Organization", o)
	if name != "" {
		ref = map[string]any{"reference": ref["reference"], "display": name}
	}
	c.organizations[key] = ref
	return ref
}

func refAny(v any) string {
	m, _ := v.(map[string]any)
	return refOf(m)
}

// note is an Annotation of NTE-3 (FT, repeating) with NTE-5 (entered by)
// and NTE-6 (entered date/time).
func note(s *Segment) map[string]any {
	var lines []string
	for _, r := range s.Field(3) {
		lines = append(lines, strings.Join(nonEmptyAll(r), " "))
	}
	text := strings.TrimSpace(strings.Join(lines, "\n"))
	if text == "" {
		return nil
	}
	a := obj("text", text, "time", instant(s.Get(6, 1)))
	if by := s.Field(5).Rep(0); !by.Empty() {
		put(a, "authorString", firstNonEmpty(nameText(humanName(by, 2)), by.Comp(1)))
	}
	return a
}

// nte attaches a note to the resource the segments before it made: an
// Observation, ServiceRequest, AllergyIntolerance, Condition, Procedure,
// Immunization or Appointment. Elsewhere (after PID, in a document) there
// is no element for it.
func (c *converter) nte(s *Segment) {
	n := note(s)
	if n == nil {
		c.envelope() // an empty comment says nothing
		return
	}
	a := c.anchor
	switch a.typ {
	case "Observation", "ServiceRequest", "AllergyIntolerance", "Condition", "Procedure", "Immunization", "DiagnosticReport":
		target := a
		if a.typ == "DiagnosticReport" && c.order != nil && c.order.request != nil {
			// R4's DiagnosticReport has no note: the comment goes on the request
			target = *c.order.request
		} else if a.typ == "DiagnosticReport" {
			c.skip("a comment on a report without its request has no place in R4's DiagnosticReport")
			return
		}
		appendTo(target.body, "note", n)
		c.touch(target.ref)
	case "Appointment":
		text := n["text"].(string)
		if prev, _ := a.body["comment"].(string); prev != "" {
			text = prev + "\n" + text
		}
		a.body["comment"] = text
		c.touch(a.ref)
	case "DocumentReference":
		c.document.notes = append(c.document.notes, n["text"].(string))
		c.touch(a.ref)
	default:
		c.skip("a comment on the patient or the visit has no place in FHIR R4's Patient or Encounter")
	}
}
