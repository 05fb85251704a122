package hl7v2

import (
	"encoding/base64"
	"strings"

	"github.com/fhirgate/fhirgate/convert/ccda"
)

// mdmDoc is the document of an MDM message: TXA, then OBX content.
type mdmDoc struct {
	ref        string
	body       map[string]any
	text       []string
	attachment map[string]any
	notes      []string
}

// --- TXA and the OBX of a document (IG TXA[DocumentReference],
// OBX[DocumentReference]) ---

var docStatuses = map[string]string{"AU": "final", "LA": "final", "DO": "preliminary", "IP": "preliminary", "IN": "preliminary", "PA": "preliminary", "CA": "entered-in-error", "OB": "amended", "DI": "preliminary"}

// confidentiality maps TXA-18 (table 0272) to v3-Confidentiality.
var confidentiality = map[string][2]string{"V": {"V", "very restricted"}, "R": {"R", "restricted"}, "U": {"N", "normal"}}

func (c *converter) txa(s *Segment) {
	if c.patient == nil {
		c.skip("TXA without PID")
		return
	}
	if c.document != nil {
		c.skip("a second TXA: one document per message")
		return
	}
	dr := obj("status", "current", "docStatus", docStatuses[s.Get(17, 1)],
		"type", tableConcept(s.Field(2).Rep(0), "0270"), "subject", c.patient)
	if dr["type"] == nil {
		dr["type"] = obj("text", "document")
	}
	if s.Get(17, 1) == "CA" || s.Get(19, 1) == "CA" {
		dr["status"] = "entered-in-error"
	}
	if u := s.Field(12).Rep(0); u.Comp(1) != "" {
		sys := ""
		if u.Comp(4) == "ISO" {
			sys = ccda.SystemURI(u.Comp(3))
		}
		put(dr, "masterIdentifier", obj("system", sys, "value", u.Comp(1)))
	}
	if id := entityID(s.Field(16).Rep(0), "FILL"); id != nil {
		dr["identifier"] = []any{id}
	}
	if created := c.dateTime(firstNonEmpty(s.Get(6, 1), s.Get(4, 1)), c.where(6)); len(created) > 10 {
		put(dr, "date", created)
	}
	if conf, ok := confidentiality[s.Get(18, 1)]; ok {
		dr["securityLabel"] = []any{cc("http://terminology.hl7.org/CodeSystem/v3-Confidentiality", conf[0], conf[1])}
	}
	if parent := s.Field(13).Rep(0); parent.Comp(1) != "" {
		dr["relatesTo"] = []any{obj("code", "appends", "target", obj("identifier", entityID(parent, "")))}
	}
	if c.encounter != nil {
		dr["context"] = obj("encounter", []any{c.encounter})
	}
	ref := c.emit("DocumentReference", dr)
	for _, n := range []int{9, 5} {
		for _, r := range s.Field(n) {
			if pr := c.practitioner(r); pr != nil {
				appendTo(dr, "author", pr)
			}
		}
	}
	for _, r := range s.Field(10) {
		if pr := c.practitioner(r); pr != nil {
			dr["authenticator"] = pr
			break
		}
	}
	if o := c.order; o != nil && o.request != nil {
		ctx, _ := dr["context"].(map[string]any)
		if ctx == nil {
			ctx = map[string]any{}
			dr["context"] = ctx
		}
		ctx["related"] = []any{obj("reference", o.request.ref)}
	}
	c.document = &mdmDoc{ref: refOf(ref), body: dr}
	c.anchor = anchor{seg: "TXA", typ: "DocumentReference", ref: refOf(ref), body: dr}
}

// documentContent adds an OBX of an MDM to its document: text lines, or
// the encapsulated document itself.
func (c *converter) documentContent(s *Segment) {
	d := c.document
	switch strings.ToUpper(s.Get(2, 1)) {
	case "TX", "FT", "ST", "":
		for _, r := range s.Field(5) {
			d.text = append(d.text, strings.Join(nonEmptyAll(r), " "))
		}
	case "ED":
		if d.attachment != nil {
			c.skip("a second encapsulated document: one per message")
			return
		}
		att := c.encapsulated(s.Field(5).Rep(0), d.ref, c.where(5))
		if att == nil {
			c.skip("the encapsulated document cannot be read")
			return
		}
		d.attachment = att
	case "RP":
		v := s.Field(5).Rep(0)
		if u := attachmentURL(v.Comp(1)); u != "" && d.attachment == nil {
			ct := strings.ToLower(strings.Trim(v.Comp(3)+"/"+v.Comp(4), "/"))
			if !strings.Contains(ct, "/") {
				ct = ""
			}
			d.attachment = obj("url", u, "contentType", ct)
		} else {
			c.skip("a reference pointer that is not a URL")
			return
		}
	case "HD":
		// the study a document reports on (DICOM study instance UID)
		uid := s.Get(5, 1)
		if uid == "" {
			c.skip("an empty study identifier")
			return
		}
		ctx, _ := d.body["context"].(map[string]any)
		if ctx == nil {
			ctx = map[string]any{}
			d.body["context"] = ctx
		}
		appendTo(ctx, "related", obj("identifier", obj("system", "urn:dicom:uid", "value", "urn:oid:"+uid), "display", firstNonEmpty(s.Get(3, 2), "study")))
	default:
		// a value that is not document content: an Observation of its own
		o := c.observation(s)
		ref := c.emit("Observation", o)
		c.value(o, s, refOf(ref))
		c.anchor = anchor{seg: "OBX", typ: "Observation", ref: refOf(ref), body: o}
		return
	}
	c.touch(d.ref)
}

// finishDocument gives the MDM's DocumentReference its content: the
// encapsulated document, or the text lines as a text/plain Binary.
func (c *converter) finishDocument() {
	d := c.document
	if d == nil {
		return
	}
	var att map[string]any
	switch {
	case d.attachment != nil:
		att = d.attachment
	case len(d.text) > 0:
		body := strings.Join(d.text, "\n")
		bin := c.emit("Binary", obj("contentType", "text/plain", "securityContext", obj("reference", d.ref), "data", base64.StdEncoding.EncodeToString([]byte(body))))
		att = obj("contentType", "text/plain", "url", refOf(bin), "size", len(body))
	default:
		c.warn("incomplete", "the message carries no document content; the DocumentReference only describes it", "TXA")
		att = obj("contentType", "text/plain", "title", "content not sent")
	}
	d.body["content"] = []any{obj("attachment", att)}
	if len(d.notes) > 0 {
		d.body["description"] = strings.Join(d.notes, "\n")
	}
}
