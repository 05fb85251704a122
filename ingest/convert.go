package ingest

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/fhirgate/fhirgate/consolidate"
	"github.com/fhirgate/fhirgate/convert/ccda"
	"github.com/fhirgate/fhirgate/convert/hl7v2"
	"github.com/fhirgate/fhirgate/convert/subject"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// importCCDA converts a C-CDA document and files it into the record of
// target. With lenientType (the body came as plain XML) a document that is
// not a CDA ClinicalDocument is an unsupported media type rather than
// malformed.
func (im *Importer) importCCDA(ctx context.Context, target *fhir.Resource, doc []byte, lenientType bool, opts Options) (*Result, error) {
	res, err := ccda.Convert(doc, ccda.Options{Now: im.Now})
	if err != nil {
		if lenientType && errors.Is(err, ccda.ErrNotCDA) {
			return nil, fmt.Errorf("%w: the XML document is not a CDA ClinicalDocument", ErrUnsupportedMedia)
		}
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	accepted, err := checkSubject(target, res.Subject, opts)
	if err != nil {
		return nil, err
	}
	source := docSource("ccda", target.ID, doc)
	rs, err := recordAcceptance(res.Resources, true, accepted, opts.AcceptedBy, source, im.stamp())
	if err != nil {
		return nil, err
	}
	out, err := im.file(ctx, consolidate.Batch{
		Source:          source,
		PatientID:       target.ID,
		SourcePatientID: res.PatientID,
		Resources:       rs,
	}, res.Issues)
	if out != nil {
		out.Accepted = accepted
	}
	return out, err
}

// stamp is the import's time as a FHIR instant.
func (im *Importer) stamp() string { return im.now().UTC().Format("2006-01-02T15:04:05Z") }

// HL7Message is a converted HL7 v2 message ready to be filed.
type HL7Message struct {
	// Message is the parsed message; nil when it could not be parsed.
	Message *hl7v2.Message
	// Source is the consolidation source: one per sending facility.
	Source string
	// Resources are the converted resources, the original message kept as
	// Binary + DocumentReference among them.
	Resources []*fhir.Resource
	// Patient is the Patient made from PID (one of Resources).
	Patient *fhir.Resource
	// Issues report what was not converted.
	Issues []fhir.Issue
	// Subject is what PID says about the patient.
	Subject subject.Demographics
}

// ConvertHL7v2 parses and converts a message. Errors wrap ErrMalformed
// (the parser's complaints) or ErrUnconvertible (an unsupported message
// type, a required segment missing), and the hl7v2 error, for
// hl7v2.AckCode.
func (im *Importer) ConvertHL7v2(raw []byte) (*HL7Message, error) {
	m, res, err := hl7v2.ParseAndConvert(raw, hl7v2.Options{Now: im.Now})
	if err != nil {
		out := &HL7Message{Message: m}
		if m == nil {
			return out, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		return out, fmt.Errorf("%w: %w", ErrUnconvertible, err)
	}
	hm := &HL7Message{Message: m, Source: facilitySource(m), Issues: res.Issues, Subject: res.Subject}
	rs := res.Resources
	var pat *fhir.Resource
	for _, r := range rs {
		if r.Type == "Patient" && r.ID == res.PatientID {
			pat = r
		}
	}
	if pat == nil {
		return hm, fmt.Errorf("%w: the message made no Patient", ErrUnconvertible)
	}
	// The converter derives the Patient's id from the message bytes; one
	// derived from the patient's identifier instead makes every message
	// about a patient name the same copy, so the local Patient gains one
	// identifier per facility, not one per message.
	if sys, val := firstIdentifier(pat); val != "" {
		stable := consolidate.LocalID(hm.Source, "Patient", "identifier|"+sys+"|"+val)
		if rs, err = replaceID(rs, res.PatientID, stable); err != nil {
			return hm, fmt.Errorf("%w: %w", ErrUnconvertible, err)
		}
		res.PatientID = stable
	}
	for _, r := range rs {
		if r.Type == "Patient" && r.ID == res.PatientID {
			hm.Patient = r
		}
	}
	orig, err := original(raw, m, res.PatientID, im.stamp())
	if err != nil {
		return hm, err
	}
	hm.Resources = append(rs, orig...)
	return hm, nil
}

// FileHL7v2 files a converted message into the record of Patient/patientID.
func (im *Importer) FileHL7v2(ctx context.Context, patientID string, hm *HL7Message) (*Result, error) {
	return im.file(ctx, consolidate.Batch{
		Source:          hm.Source,
		PatientID:       patientID,
		SourcePatientID: hm.Patient.ID,
		Resources:       hm.Resources,
	}, hm.Issues)
}

// importHL7v2 converts one HL7 v2 message and files it into the record of
// target.
func (im *Importer) importHL7v2(ctx context.Context, target *fhir.Resource, raw []byte, opts Options) (*Result, error) {
	if hl7v2.IsBatch(raw) {
		return im.importHL7v2Batch(ctx, target, raw, opts)
	}
	hm, err := im.ConvertHL7v2(raw)
	if err != nil {
		return nil, err
	}
	accepted, err := checkSubject(target, hm.Subject, opts)
	if err != nil {
		return nil, err
	}
	if hm.Resources, err = recordAcceptance(hm.Resources, true, accepted, opts.AcceptedBy, hm.Source, im.stamp()); err != nil {
		return nil, err
	}
	res, err := im.FileHL7v2(ctx, target.ID, hm)
	if res != nil {
		res.Accepted = accepted
	}
	return res, err
}

// importHL7v2Batch files each message of a batch on its own (a batch is
// not a transaction): what one message lacks does not stop the others.
// The result merges what the filed messages wrote, lists each message's
// fate and carries the batch acknowledgement. When no message could be
// filed, the first message's error is returned.
func (im *Importer) importHL7v2Batch(ctx context.Context, target *fhir.Resource, raw []byte, opts Options) (*Result, error) {
	b, err := hl7v2.ParseBatch(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	out := &Result{Source: "hl7v2-batch"}
	var acks [][]byte
	var firstErr error
	filed := 0
	seen := map[string]int{}
	for i, msg := range b.Messages {
		where := fmt.Sprintf("message[%d]", i+1)
		res, err := im.importHL7v2(ctx, target, msg, opts)
		var m *hl7v2.Message
		if pm, perr := hl7v2.Parse(msg); perr == nil {
			m = pm
		}
		mr := MessageResult{}
		if m != nil {
			mr.ControlID = m.ControlID()
		}
		if err != nil {
			code, errCode := hl7v2.AckCode(err) // AE for what is not the message's fault
			if errors.Is(err, ErrDemographicsMismatch) {
				code, errCode = hl7v2.AE, hl7v2.ErrCodeInternal
			}
			mr.Code, mr.Err = code, err
			acks = append(acks, hl7v2.ACK(m, code, errCode, err.Error(), im.now()))
			if firstErr == nil {
				firstErr = err
			}
			out.Issues = append(out.Issues, fhir.Issue{Severity: fhir.SeverityError, Code: "processing",
				Details:    &fhir.IssueDetails{Text: fmt.Sprintf("%s (MSH-10 %s) was not filed (%s)", where, mr.ControlID, code)},
				Expression: []string{where}, Diagnostics: err.Error()})
			if me := (*MismatchError)(nil); errors.As(err, &me) {
				for _, mm := range me.Mismatches {
					out.Issues = append(out.Issues, fhir.Issue{Severity: fhir.SeverityError, Code: "business-rule",
						Details: &fhir.IssueDetails{Text: "demographics mismatch: " + mm.Element}, Diagnostics: mm.String(),
						Expression: []string{where + "." + mm.SourcePath, mm.TargetPath}})
				}
			}
			out.Messages = append(out.Messages, mr)
			continue
		}
		filed++
		mr.Code = hl7v2.AA
		out.Messages = append(out.Messages, mr)
		acks = append(acks, hl7v2.ACK(m, hl7v2.AA, "", "", im.now()))
		out.Accepted = append(out.Accepted, res.Accepted...)
		for _, is := range res.Issues {
			is.Expression = prefixed(where, is.Expression)
			out.Issues = append(out.Issues, is)
		}
		for _, e := range res.Entries {
			k := e.Resource.Type + "/" + e.Resource.ID
			if j, ok := seen[k]; ok {
				// a later message changed it again: keep its newest version
				st := out.Entries[j].Status
				out.Entries[j] = e
				if st == Created {
					out.Entries[j].Status = Created
				}
				continue
			}
			seen[k] = len(out.Entries)
			out.Entries = append(out.Entries, e)
		}
	}
	out.ACK = hl7v2.BatchACK(b, acks, im.now())
	if filed == 0 {
		return nil, firstErr
	}
	return out, nil
}

func prefixed(prefix string, exprs []string) []string {
	out := make([]string, len(exprs))
	for i, e := range exprs {
		out[i] = prefix + "." + e
	}
	if len(out) == 0 {
		out = []string{prefix}
	}
	return out
}

// facilitySource names the source of a message after its sending facility
// (MSH-4), or its sending application (MSH-3) when MSH-4 is empty.
func facilitySource(m *hl7v2.Message) string {
	name := ""
	if msh := m.Segment("MSH"); msh != nil {
		name = msh.Get(4, 1)
		if name == "" {
			name = msh.Get(3, 1)
		}
	}
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
		if b.Len() >= 64 {
			break
		}
	}
	if b.Len() == 0 {
		return "hl7v2"
	}
	return "hl7v2-" + b.String()
}

// firstIdentifier returns the first identifier with a system and a value,
// or else the first with a value (system "").
func firstIdentifier(p *fhir.Resource) (system, value string) {
	var ids []*fjson.Value
	if v := p.Root().Get("identifier"); v != nil && v.Kind == fjson.Array {
		ids = v.Items
	}
	for _, id := range ids {
		if s, v := id.Get("system").String(), id.Get("value").String(); s != "" && v != "" {
			return s, v
		}
	}
	for _, id := range ids {
		if v := id.Get("value").String(); v != "" {
			return "", v
		}
	}
	return "", ""
}

// replaceID renames a resource id in every resource. Converter ids are
// UUIDs, so the byte string occurs nowhere else.
func replaceID(rs []*fhir.Resource, from, to string) ([]*fhir.Resource, error) {
	out := make([]*fhir.Resource, len(rs))
	for i, r := range rs {
		if !bytes.Contains(r.Raw, []byte(from)) {
			out[i] = r
			continue
		}
		nr, err := fhir.Parse(bytes.ReplaceAll(r.Raw, []byte(from), []byte(to)))
		if err != nil {
			return nil, err
		}
		out[i] = nr
	}
	return out, nil
}

// original keeps the message itself as a Binary and a DocumentReference.
func original(raw []byte, m *hl7v2.Message, patientID, now string) ([]*fhir.Resource, error) {
	sum := sha256.Sum256(raw)
	h := hex.EncodeToString(sum[:])
	binID := consolidate.LocalID("", "Binary", "hl7v2|"+h)
	docID := consolidate.LocalID("", "DocumentReference", "hl7v2|"+h)
	code, trigger, version := m.Type()
	desc := strings.Trim("HL7 v2 "+code+"^"+trigger+" message "+m.ControlID(), " ^")
	sha := sha1.Sum(raw)
	bin := map[string]any{
		"resourceType": "Binary", "id": binID,
		"contentType":     MediaHL7v2,
		"securityContext": map[string]any{"reference": "DocumentReference/" + docID},
		"data":            base64.StdEncoding.EncodeToString(raw),
	}
	att := map[string]any{
		"contentType": MediaHL7v2, "url": "Binary/" + binID,
		"size": len(raw), "hash": base64.StdEncoding.EncodeToString(sha[:]),
		"title": desc,
	}
	doc := map[string]any{
		"resourceType": "DocumentReference", "id": docID,
		"status":      "current",
		"subject":     map[string]any{"reference": "Patient/" + patientID},
		"date":        now,
		"description": desc,
		"content":     []any{map[string]any{"attachment": att, "format": map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v2-0104", "code": version}}},
	}
	if version == "" {
		doc["content"] = []any{map[string]any{"attachment": att}}
	}
	return resourcesOf(bin, doc)
}

// resourcesOf makes resources of the gateway's own shapes.
func resourcesOf(vs ...map[string]any) ([]*fhir.Resource, error) {
	out := make([]*fhir.Resource, 0, len(vs))
	for _, v := range vs {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		r, err := fhir.Parse(b)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// magicOK checks the first bytes of a file against its media type.
func magicOK(mediaType string, b []byte) bool {
	switch mediaType {
	case MediaPDF:
		return bytes.HasPrefix(b, []byte("%PDF-"))
	case MediaJPEG:
		return bytes.HasPrefix(b, []byte{0xFF, 0xD8, 0xFF})
	case MediaPNG:
		return bytes.HasPrefix(b, []byte{0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'})
	case MediaDICOM:
		// Part 10 files: a 128-byte preamble, then "DICM"
		return len(b) >= 132 && string(b[128:132]) == "DICM"
	}
	return false
}
