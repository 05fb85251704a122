package hl7v2

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// order is one ORC/OBR group: the request, and in ORU the report.
type order struct {
	orc       *Segment
	orcAcct   int // index of the ORC's account, -1 without ORC
	obr       *Segment
	request   *anchor // ServiceRequest
	report    *anchor // DiagnosticReport (ORU)
	specimens []any
	// pending participations of a vaccination's ORC, for its RXA
	pending []participation
}

type participation struct {
	role Repetition
	who  map[string]any
	acct int
}

// touchAt records that the segment with account i went into ref.
func (c *converter) touchAt(i int, ref string) {
	if i < 0 || i >= len(c.accounts) {
		return
	}
	cur := c.cur
	c.cur = &c.accounts[i]
	c.touch(ref)
	c.cur = cur
}

// --- ORC, OBR, TQ1: orders (IG ORC[ServiceRequest], OBR[ServiceRequest],
// OBR[DiagnosticReport], TQ1[ServiceRequest]) ---

func (c *converter) orc(s *Segment) {
	if c.patient == nil {
		c.skip("ORC without PID")
		return
	}
	c.order = &order{orc: s, orcAcct: len(c.accounts) - 1}
	c.immunization = nil
	if c.code == "VXU" {
		// a vaccination's ORC is about the RXA that follows
		c.anchor = anchor{seg: "ORC", typ: "ORC"}
		return
	}
	// the order may be only an ORC (a cancel): made now, OBR adds to it
	c.request(c.order)
}

// orderStatus maps ORC-5 (table 0038) and, without it, ORC-1 (table 0119)
// to ServiceRequest.status.
var (
	orderStatus   = map[string]string{"A": "active", "CA": "revoked", "CM": "completed", "DC": "revoked", "ER": "entered-in-error", "HD": "on-hold", "IP": "active", "RP": "revoked", "SC": "active"}
	orderControls = map[string]string{"NW": "active", "CA": "revoked", "OC": "revoked", "DC": "revoked", "OD": "revoked", "HD": "on-hold", "OH": "on-hold", "RL": "active", "XO": "active", "SC": "active", "RE": "completed", "SN": "active", "NA": "active"}
	priorities    = map[string]string{"S": "stat", "A": "asap", "R": "routine", "P": "urgent", "C": "urgent", "T": "urgent"}
)

// request makes the ServiceRequest of an order from its ORC and OBR.
func (c *converter) request(o *order) *anchor {
	if o.request != nil {
		return o.request
	}
	sr := obj("intent", "order", "subject", c.patient)
	status := "unknown"
	if c.code == "ORU" || c.code == "MDM" {
		status = "completed" // the results or document answer it
	}
	if o.orc != nil {
		if st, ok := orderStatus[o.orc.Get(5, 1)]; ok {
			status = st
		} else if st, ok := orderControls[o.orc.Get(1, 1)]; ok && c.code != "ORU" && c.code != "MDM" {
			status = st
		}
		var ids []any
		if id := entityID(o.orc.Field(2).Rep(0), "PLAC"); id != nil {
			ids = append(ids, id)
		}
		if id := entityID(o.orc.Field(3).Rep(0), "FILL"); id != nil {
			ids = append(ids, id)
		}
		put(sr, "identifier", ids)
		if g := entityID(o.orc.Field(4).Rep(0), "PGN"); g != nil {
			sr["requisition"] = g
		}
		put(sr, "authoredOn", c.dateTime(o.orc.Get(9, 1), "ORC-9"))
		if pr := c.practitioner(o.orc.Field(12).Rep(0)); pr != nil {
			sr["requester"] = pr
		}
		if tq := o.orc.Field(7).Rep(0); tq.Comp(6) != "" {
			put(sr, "priority", priorities[strings.ToUpper(tq.Comp(6))])
		}
		if r := concepts(o.orc.Field(16)); len(r) > 0 {
			sr["reasonCode"] = r
		}
	}
	sr["status"] = status
	if c.encounter != nil {
		sr["encounter"] = c.encounter
	}
	if sr["code"] == nil && o.orc != nil {
		if code := concept(o.orc.Field(30).Rep(0)); len(code) > 0 {
			sr["code"] = code
		}
	}
	ref := c.emit("ServiceRequest", sr)
	if o.orc != nil {
		c.touchAt(o.orcAcct, refOf(ref))
	}
	o.request = &anchor{seg: "ORC", typ: "ServiceRequest", ref: refOf(ref), body: sr}
	c.anchor = *o.request
	return o.request
}

// reportStatus maps OBR-25 (table 0123) to DiagnosticReport.status,
// observationStatus OBX-11 (table 0085) to Observation.status.
var (
	reportStatus      = map[string]string{"F": "final", "P": "preliminary", "C": "corrected", "X": "cancelled", "R": "registered", "I": "registered", "S": "partial", "A": "partial", "O": "registered", "Y": "unknown", "Z": "unknown"}
	observationStatus = map[string]string{"F": "final", "P": "preliminary", "C": "corrected", "X": "cancelled", "R": "preliminary", "I": "registered", "S": "preliminary", "O": "registered", "D": "entered-in-error", "W": "entered-in-error", "U": "final", "N": "unknown"}
)

func (c *converter) obr(s *Segment) {
	if c.patient == nil {
		c.skip("OBR without PID")
		return
	}
	o := c.order
	if o == nil || o.obr != nil {
		o = &order{orcAcct: -1}
		c.order = o
	}
	o.obr = s
	req := c.request(o)
	sr := req.body
	c.touch(req.ref)
	code := concept(s.Field(4).Rep(0))
	if len(code) == 0 {
		code = obj("text", "unknown")
		c.warn("incomplete", "OBR without a universal service id (OBR-4)", c.where(4))
	}
	sr["code"] = code
	if _, ok := sr["identifier"]; !ok {
		var ids []any
		if id := entityID(s.Field(2).Rep(0), "PLAC"); id != nil {
			ids = append(ids, id)
		}
		if id := entityID(s.Field(3).Rep(0), "FILL"); id != nil {
			ids = append(ids, id)
		}
		put(sr, "identifier", ids)
	}
	if p := priorities[strings.ToUpper(s.Get(5, 1))]; p != "" {
		sr["priority"] = p
	}
	if sr["occurrencePeriod"] == nil {
		put(sr, "occurrenceDateTime", c.dateTime(firstNonEmpty(s.Get(6, 1), s.Get(7, 1)), c.where(7)))
	}
	if pr := c.practitioner(s.Field(16).Rep(0)); pr != nil && sr["requester"] == nil {
		sr["requester"] = pr
	}
	if r := concepts(s.Field(31)); len(r) > 0 {
		sr["reasonCode"] = r
	}
	if r := concept(s.Field(15).Rep(0)); len(r) > 0 { // specimen source (2.3)
		appendTo(sr, "orderDetail", r)
	}
	if c.code != "ORU" {
		c.anchor = *req
		return
	}
	status := reportStatus[s.Get(25, 1)]
	if status == "" {
		status = "final"
	}
	dr := obj("status", status, "code", code, "subject", c.patient, "basedOn", []any{obj("reference", req.ref)},
		"category", []any{tableConcept(Repetition{Component{firstNonEmpty(s.Get(24, 1), "LAB")}}, "0074")},
		"effectiveDateTime", c.dateTime(s.Get(7, 1), c.where(7)))
	if end := c.dateTime(s.Get(8, 1), c.where(8)); end != "" && dr["effectiveDateTime"] != nil {
		dr["effectivePeriod"] = obj("start", dr["effectiveDateTime"], "end", end)
		delete(dr, "effectiveDateTime")
	}
	put(dr, "identifier", sr["identifier"])
	if iss := instant(s.Get(22, 1)); iss != "" {
		dr["issued"] = iss
	}
	if c.encounter != nil {
		dr["encounter"] = c.encounter
	}
	ref := c.emit("DiagnosticReport", dr)
	if pr := c.practitioner(s.Field(32).Rep(0)); pr != nil {
		dr["resultsInterpreter"] = []any{pr}
	}
	o.report = &anchor{seg: "OBR", typ: "DiagnosticReport", ref: refOf(ref), body: dr}
	c.anchor = *o.report
}

// tq1 adds an order's or appointment's timing and priority.
func (c *converter) tq1(s *Segment) {
	start, end := c.dateTime(s.Get(7, 1), c.where(7)), c.dateTime(s.Get(8, 1), c.where(8))
	switch {
	case c.anchor.typ == "Appointment":
		ap := c.anchor.body
		put(ap, "start", instant(s.Get(7, 1)))
		put(ap, "end", instant(s.Get(8, 1)))
		c.touch(c.anchor.ref)
	case c.code == "VXU":
		c.skip("the timing of a vaccination order is not converted (RXA-3 says when it was given)")
	case c.order != nil:
		req := c.request(c.order)
		sr := req.body
		if start != "" && end != "" {
			sr["occurrencePeriod"] = obj("start", start, "end", end)
			delete(sr, "occurrenceDateTime")
		} else if start != "" {
			sr["occurrenceDateTime"] = start
		}
		if p := priorities[strings.ToUpper(s.Get(9, 1))]; p != "" {
			sr["priority"] = p
		}
		if q := decimal(s.Get(2, 1)); q != "" {
			sr["quantityQuantity"] = obj("value", json.Number(q))
		}
		c.touch(req.ref)
		if c.order.report != nil {
			c.anchor = *c.order.report
		} else {
			c.anchor = *req
		}
	default:
		c.skip("TQ1 without an order or appointment")
	}
}

// --- OBX: observations (IG OBX[Observation]) ---

func (c *converter) obx(s *Segment) {
	if c.patient == nil {
		c.skip("OBX without PID")
		return
	}
	switch {
	case c.document != nil && c.code == "MDM":
		c.documentContent(s)
		return
	case c.immunization != nil && c.immunizationDetail(s):
		return
	}
	o := c.observation(s)
	ref := c.emit("Observation", o)
	c.value(o, s, refOf(ref))
	if ord := c.order; ord != nil && ord.request != nil {
		o["basedOn"] = []any{obj("reference", ord.request.ref)}
		if ord.report != nil {
			appendTo(ord.report.body, "result", ref)
			c.touch(ord.report.ref)
		} else if c.code == "ORM" || c.code == "OML" {
			appendTo(ord.request.body, "supportingInfo", ref)
			c.touch(ord.request.ref)
		}
	} else if c.immunization != nil {
		o["partOf"] = []any{obj("reference", c.immunization.ref)}
	}
	c.anchor = anchor{seg: "OBX", typ: "Observation", ref: refOf(ref), body: o}
}

// observation builds an Observation of an OBX, without its value.
func (c *converter) observation(s *Segment) map[string]any {
	status := observationStatus[s.Get(11, 1)]
	if status == "" {
		status = "final"
	}
	code := concept(s.Field(3).Rep(0))
	if len(code) == 0 {
		c.warn("incomplete", "OBX without an observation identifier (OBX-3); recorded with data-absent-reason", c.where(3))
		code = cc("http://terminology.hl7.org/CodeSystem/data-absent-reason", "unknown", "Unknown")
	}
	o := obj("status", status, "code", code, "subject", c.patient)
	eff := s.Get(14, 1)
	if eff == "" && c.order != nil && c.order.obr != nil {
		eff = c.order.obr.Get(7, 1)
	}
	put(o, "effectiveDateTime", c.dateTime(eff, c.where(14)))
	if c.code == "ORU" && c.order != nil && c.order.obr != nil {
		if cat := map[string]string{"LAB": "laboratory", "": "laboratory", "RAD": "imaging", "CT": "imaging", "MR": "imaging", "US": "imaging", "NMR": "imaging", "VUS": "imaging"}[c.order.obr.Get(24, 1)]; cat != "" {
			o["category"] = []any{cc("http://terminology.hl7.org/CodeSystem/observation-category", cat, "")}
		}
	}
	if c.encounter != nil {
		o["encounter"] = c.encounter
	}
	var interp []any
	for _, r := range s.Field(8) {
		if f := r.Comp(1); f != "" {
			interp = append(interp, cc("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", f, interpretations[f]))
		}
	}
	put(o, "interpretation", interp)
	if rr := strings.TrimSpace(s.Get(7, 1)); rr != "" {
		o["referenceRange"] = []any{referenceRange(rr, s.Field(6).Rep(0))}
	}
	if m := concept(s.Field(17).Rep(0)); len(m) > 0 {
		o["method"] = m
	}
	if b := concept(s.Field(20).Rep(0)); len(b) > 0 {
		o["bodySite"] = b
	}
	if id := entityID(s.Field(21).Rep(0), "FILL"); id != nil {
		o["identifier"] = []any{id}
	}
	if d := s.Field(18).Rep(0); d.Comp(1) != "" {
		o["device"] = obj("identifier", entityID(d, ""), "display", d.Comp(1))
	}
	switch s.Get(11, 1) {
	case "X":
		o["dataAbsentReason"] = cc("http://terminology.hl7.org/CodeSystem/data-absent-reason", "not-performed", "Not Performed")
	case "N":
		o["dataAbsentReason"] = cc("http://terminology.hl7.org/CodeSystem/data-absent-reason", "not-asked", "Not Asked")
	}
	for _, r := range s.Field(16) {
		if pr := c.practitioner(r); pr != nil {
			appendTo(o, "performer", pr)
		}
	}
	if org := s.Field(23).Rep(0); !org.Empty() {
		if or := c.organization(org, s.Field(24), nil); or != nil {
			appendTo(o, "performer", or)
		}
	}
	if ord := c.order; ord != nil && len(ord.specimens) > 0 {
		o["specimen"] = ord.specimens[0]
	}
	return o
}

var interpretations = map[string]string{"L": "Low", "H": "High", "LL": "Critical low", "HH": "Critical high", "N": "Normal", "A": "Abnormal", "AA": "Critical abnormal", "<": "Off scale low", ">": "Off scale high", "S": "Susceptible", "R": "Resistant", "I": "Intermediate", "POS": "Positive", "NEG": "Negative", "IND": "Indeterminate", "DET": "Detected", "ND": "Not detected", "U": "Significant change up", "D": "Significant change down"}

var rangePattern = regexp.MustCompile(`^\s*(-?\d+(?:\.\d+)?)\s*(?:-|to|\^)\s*(-?\d+(?:\.\d+)?)\s*$`)
var boundPattern = regexp.MustCompile(`^\s*(<=|>=|<|>)\s*(-?\d+(?:\.\d+)?)\s*$`)

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

// valueAttachmentURL is the R5 cross-version extension an R4 Observation
// carries an Attachment value in (the IG's map of ED and RP values).
const valueAttachmentURL = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Observation.value"

// value sets value[x] from OBX-2 and OBX-5. Text values (ST, TX, FT) that
// repeat are one string, one line per repetition; other repeated values
// become one component each (same code), so that "60~120" keeps both
// values.
func (c *converter) value(o map[string]any, s *Segment, obsRef string) {
	typ := strings.ToUpper(s.Get(2, 1))
	unit := s.Field(6).Rep(0)
	var reps []Repetition
	for _, r := range s.Field(5) {
		if !r.Empty() {
			reps = append(reps, r)
		}
	}
	switch {
	case len(reps) == 0:
		if typ != "" && o["dataAbsentReason"] == nil && s.Get(11, 1) != "D" {
			o["dataAbsentReason"] = cc("http://terminology.hl7.org/CodeSystem/data-absent-reason", "unknown", "Unknown")
		}
		return
	case typ == "ST" || typ == "TX" || typ == "FT" || typ == "":
		var lines []string
		for _, r := range reps {
			lines = append(lines, strings.Join(nonEmptyAll(r), " "))
		}
		o["valueString"] = strings.Join(lines, "\n")
		return
	case len(reps) == 1:
		c.valueOf(o, typ, reps[0], unit, s, obsRef, c.where(5))
		return
	}
	for i, r := range reps {
		comp := obj("code", o["code"])
		c.valueOf(comp, typ, r, unit, s, obsRef, fmt.Sprintf("%s[%d]", c.where(5), i+1))
		if len(comp) > 1 {
			if _, ext := comp["extension"]; ext {
				// attachments are not component values: each goes on the Observation
				for _, e := range comp["extension"].([]any) {
					appendTo(o, "extension", e)
				}
				continue
			}
			appendTo(o, "component", comp)
		}
	}
}

// valueOf converts one OBX-5 repetition of type typ into o's value[x]
// (or, for ED and RP, the valueAttachment extension).
func (c *converter) valueOf(o map[string]any, typ string, v, unit Repetition, s *Segment, obsRef, where string) {
	switch typ {
	case "NM":
		if d := decimal(v.Comp(1)); d != "" {
			o["valueQuantity"] = quantity(d, unit)
			return
		}
		c.warn("value", "OBX-5 is not a number: kept as text", where)
		o["valueString"] = v.Comp(1)
		return
	case "SN":
		// comparator ^ num1 ^ separator/suffix ^ num2
		cmp, n1, sep, n2 := v.Comp(1), decimal(v.Comp(2)), v.Comp(3), decimal(v.Comp(4))
		switch {
		case n1 != "" && sep == "" && n2 == "":
			q := quantity(n1, unit)
			if cmp == "<" || cmp == "<=" || cmp == ">" || cmp == ">=" {
				q["comparator"] = cmp
			}
			o["valueQuantity"] = q
			return
		case n1 != "" && n2 != "" && sep == "-":
			o["valueRange"] = obj("low", quantity(n1, unit), "high", quantity(n2, unit))
			return
		case n1 != "" && n2 != "" && (sep == ":" || sep == "/"):
			o["valueRatio"] = obj("numerator", obj("value", json.Number(n1)), "denominator", obj("value", json.Number(n2)))
			return
		}
		o["valueString"] = strings.Join(nonEmptyAll(v), " ")
		return
	case "CE", "CWE", "CNE", "CF", "IS", "ID", "CV", "CK":
		if cc := concept(v); len(cc) > 0 {
			o["valueCodeableConcept"] = cc
			return
		}
	case "DT", "TS", "DTM":
		if dt := c.dateTime(v.Comp(1), where); dt != "" {
			o["valueDateTime"] = dt
			return
		}
	case "TM":
		if t := tm(v.Comp(1)); t != "" {
			o["valueTime"] = t
			return
		}
	case "DR":
		if p := obj("start", c.dateTime(v.Sub(1, 1), where), "end", c.dateTime(v.Sub(2, 1), where)); len(p) > 0 {
			o["valuePeriod"] = p
			return
		}
	case "NR":
		if r := obj("low", quantityOrNil(decimal(v.Comp(1)), unit), "high", quantityOrNil(decimal(v.Comp(2)), unit)); len(r) > 0 {
			o["valueRange"] = r
			return
		}
	case "VR":
		o["valueString"] = v.Comp(1) + "-" + v.Comp(2)
		return
	case "MO":
		if q := money(v.Comp(1), v.Comp(2)); q != nil {
			o["valueQuantity"] = q
			return
		}
	case "CP":
		if q := money(v.Sub(1, 1), v.Sub(1, 2)); q != nil {
			o["valueQuantity"] = q
			return
		}
	case "NA":
		var nums []string
		for _, comp := range v {
			if d := decimal(strings.Join(comp, "")); d != "" {
				nums = append(nums, d)
			}
		}
		if len(nums) > 0 {
			// NA carries no sampling period: 0 says it is not known
			origin := quantity("0", unit)
			o["valueSampledData"] = obj("origin", origin, "period", json.Number("0"), "dimensions", 1, "data", strings.Join(nums, " "))
			return
		}
	case "ED":
		if att := c.encapsulated(v, obsRef, where); att != nil {
			appendTo(o, "extension", obj("url", valueAttachmentURL, "valueAttachment", att))
			if ord := c.order; ord != nil && ord.report != nil {
				appendTo(ord.report.body, "presentedForm", att)
				c.touch(ord.report.ref)
			}
			return
		}
		c.skip("the encapsulated data cannot be read")
		return
	case "RP":
		ct := strings.ToLower(strings.Trim(v.Comp(3)+"/"+v.Comp(4), "/"))
		if !strings.Contains(ct, "/") {
			ct = ""
		}
		att := obj("url", attachmentURL(v.Comp(1)), "contentType", ct, "title", firstNonEmpty(v.Comp(1), v.Comp(2)))
		appendTo(o, "extension", obj("url", valueAttachmentURL, "valueAttachment", att))
		return
	case "TN", "XTN":
		if t := telecom(v, ""); t != nil {
			o["valueString"] = t["value"].(string)
			return
		}
	case "AD", "XAD":
		if a := address(v); a != nil {
			o["valueString"] = addressText(a)
			return
		}
	case "PN", "XPN":
		if n := humanName(v, 1); n != nil {
			o["valueString"] = nameText(n)
			return
		}
	case "XCN":
		if n := humanName(v, 2); n != nil {
			o["valueString"] = nameText(n)
			return
		}
	}
	if t := strings.Join(nonEmptyAll(v), " "); t != "" {
		c.info("OBX-5 of type "+typ+" kept as text", where)
		o["valueString"] = t
	}
}

func quantityOrNil(d string, unit Repetition) map[string]any {
	if d == "" {
		return nil
	}
	return quantity(d, unit)
}

// encapsulated turns an ED (source^type^subtype^encoding^data) into a
// Binary and returns the Attachment naming it (size and SHA-1 of the
// decoded content); nil when the data cannot be read.
func (c *converter) encapsulated(v Repetition, securityContext, where string) map[string]any {
	data := v.Comp(5)
	if data == "" {
		c.warn("incomplete", "encapsulated data (ED) without data", where)
		return nil
	}
	var raw []byte
	var err error
	switch strings.ToUpper(v.Comp(4)) {
	case "BASE64":
		raw, err = base64.StdEncoding.DecodeString(strings.Join(strings.Fields(data), ""))
	case "A", "":
		raw = []byte(data)
	case "HEX":
		raw, err = hex.DecodeString(data)
	default:
		c.warn("not-supported", "encapsulated data encoding "+v.Comp(4)+" not converted", where)
		return nil
	}
	if err != nil {
		c.warn("invalid", "encapsulated data is not valid "+v.Comp(4), where)
		return nil
	}
	ct := strings.ToLower(strings.Trim(v.Comp(2)+"/"+v.Comp(3), "/"))
	if !strings.Contains(ct, "/") {
		ct = map[string]string{"pdf": "application/pdf", "text": "text/plain", "image": "application/octet-stream", "application": "application/octet-stream", "ap": "application/octet-stream"}[ct]
		if ct == "" {
			ct = "application/octet-stream"
		}
	}
	if strings.ToUpper(v.Comp(3)) == "PDF" {
		ct = "application/pdf"
	}
	sum := sha1.Sum(raw)
	bin := c.emit("Binary", obj("contentType", ct, "securityContext", obj("reference", securityContext), "data", base64.StdEncoding.EncodeToString(raw)))
	return obj("contentType", ct, "url", refOf(bin), "size", len(raw), "hash", base64.StdEncoding.EncodeToString(sum[:]))
}

// --- SPM: specimens (IG SPM[Specimen]) ---

func (c *converter) spm(s *Segment) {
	if c.patient == nil {
		c.skip("SPM without PID")
		return
	}
	sp := obj("subject", c.patient)
	var ids []any
	if eip := s.Field(2).Rep(0); !eip.Empty() {
		if v := eip.Sub(1, 1); v != "" {
			ids = append(ids, obj("value", v, "type", cc("http://terminology.hl7.org/CodeSystem/v2-0203", "PLAC", "")))
		}
		if v := eip.Sub(2, 1); v != "" {
			ids = append(ids, obj("value", v, "type", cc("http://terminology.hl7.org/CodeSystem/v2-0203", "FILL", "")))
		}
	}
	put(sp, "identifier", ids)
	if t := concept(s.Field(4).Rep(0)); len(t) > 0 {
		sp["type"] = t
	}
	coll := map[string]any{}
	if m := concept(s.Field(7).Rep(0)); len(m) > 0 {
		coll["method"] = m
	}
	if b := concept(s.Field(8).Rep(0)); len(b) > 0 {
		coll["bodySite"] = b
	}
	if q := s.Field(12).Rep(0); decimal(q.Comp(1)) != "" {
		coll["quantity"] = quantity(decimal(q.Comp(1)), Repetition{q[min(1, len(q)-1)]})
	}
	if dr := s.Field(17).Rep(0); !dr.Empty() {
		start, end := c.dateTime(dr.Sub(1, 1), c.where(17)), c.dateTime(dr.Sub(2, 1), c.where(17))
		if end != "" && start != "" && end != start {
			coll["collectedPeriod"] = obj("start", start, "end", end)
		} else {
			put(coll, "collectedDateTime", start)
		}
	}
	put(sp, "collection", coll)
	put(sp, "receivedTime", instant(s.Get(18, 1)))
	if cond := concepts(s.Field(24)); len(cond) > 0 {
		sp["condition"] = cond
	}
	if r := concepts(s.Field(21)); len(r) > 0 {
		appendTo(sp, "note", obj("text", "rejected: "+strings.Join(conceptTexts(r), ", ")))
	}
	if len(sp) == 1 {
		c.skip("SPM describes no specimen")
		return
	}
	if c.order != nil && c.order.request != nil {
		sp["request"] = []any{obj("reference", c.order.request.ref)}
	}
	ref := c.emit("Specimen", sp)
	if ord := c.order; ord != nil {
		ord.specimens = append(ord.specimens, ref)
		if ord.request != nil {
			appendTo(ord.request.body, "specimen", ref)
			c.touch(ord.request.ref)
		}
		if ord.report != nil {
			appendTo(ord.report.body, "specimen", ref)
			c.touch(ord.report.ref)
			// results before the SPM of their group name it too
			results, _ := ord.report.body["result"].([]any)
			for _, r := range results {
				if rb := c.body(refAny(r)); rb != nil && rb["specimen"] == nil {
					rb["specimen"] = ref
				}
			}
		}
	}
	c.anchor = anchor{seg: "SPM", typ: "Specimen", ref: refOf(ref), body: sp}
}

func conceptTexts(cs []any) []string {
	var out []string
	for _, v := range cs {
		m := v.(map[string]any)
		if t, ok := m["text"].(string); ok {
			out = append(out, t)
			continue
		}
		if codings, ok := m["coding"].([]any); ok && len(codings) > 0 {
			cd := codings[0].(map[string]any)
			out = append(out, firstNonEmpty(str(cd["display"]), str(cd["code"])))
		}
	}
	return out
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// body finds the body of a resource made from this message.
func (c *converter) body(ref string) map[string]any {
	for _, p := range c.out {
		if p.typ+"/"+p.id == ref {
			return p.body
		}
	}
	return nil
}
