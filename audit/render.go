package audit

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/storage"
)

// ChainExtensionURL is the extension that places a served AuditEvent in
// the trail. Its sub-extensions are "sequence" (the event's position, 1
// for the first, as a decimal valueString), "key" (the id of the key that
// sealed it) and "hash" (its seal, "hmac-sha256:<hex>"). Events moved from
// the resource store keep the extension they had there, whose "hash" is
// "sha256:<hex>" and which has "previous" instead of "key".
const ChainExtensionURL = "https://fhirgate.dev/fhir/StructureDefinition/audit-chain"

// ID returns the id of the event with sequence seq. Ids sort in trail order.
func ID(seq int64) string { return fmt.Sprintf("audit-%016d", seq) }

// ParseID returns the sequence of an id made by ID.
func ParseID(id string) (int64, bool) {
	rest, ok := strings.CutPrefix(id, "audit-")
	if !ok || len(rest) != 16 {
		return 0, false
	}
	n, err := strconv.ParseInt(rest, 10, 64)
	if err != nil || n < 1 {
		return 0, false
	}
	return n, true
}

// Render returns the record as the AuditEvent the API serves: id from
// its sequence, meta (version 1, lastUpdated its recording time), the
// chain extension, then the event.
func Render(r *storage.AuditRecord) (*fhir.Resource, error) {
	var body []byte
	if len(r.Body) > 0 && r.Body[0] == codecJSON {
		body = r.Body
	} else {
		e, err := Decode(r.Body)
		if err != nil {
			return nil, err
		}
		if body, err = buildJSON(e); err != nil {
			return nil, err
		}
	}
	return render(r, body)
}

// EventOf decodes a record's event (of an event moved from the resource
// store, kept as JSON, what a summary of it needs).
func EventOf(r *storage.AuditRecord) (*Event, error) {
	if len(r.Body) > 0 && r.Body[0] == codecJSON {
		return jsonEvent(r.Body)
	}
	return Decode(r.Body)
}

func render(r *storage.AuditRecord, body []byte) (*fhir.Resource, error) {
	root, err := fjson.Parse(body)
	if err != nil || root.Kind != fjson.Object {
		return nil, ErrMalformed
	}
	str := func(s string) *fjson.Value {
		return &fjson.Value{Kind: fjson.String, Str: s, Raw: fjson.AppendString(nil, s)}
	}
	sub := func(url, v string) *fjson.Value {
		return &fjson.Value{Kind: fjson.Object, Members: []fjson.Member{{Key: "url", Value: str(url)}, {Key: "valueString", Value: str(v)}}}
	}
	chain := &fjson.Value{Kind: fjson.Object, Members: []fjson.Member{
		{Key: "url", Value: str(ChainExtensionURL)},
		{Key: "extension", Value: &fjson.Value{Kind: fjson.Array, Items: []*fjson.Value{
			sub("sequence", strconv.FormatInt(r.Seq, 10)),
			sub("key", r.KeyID),
			sub("hash", "hmac-sha256:"+hex.EncodeToString(r.Hash)),
		}}},
	}}
	members := slices.DeleteFunc(slices.Clone(root.Members), func(m fjson.Member) bool { return m.Key == "id" || m.Key == "meta" })
	meta := &fjson.Value{Kind: fjson.Object, Members: []fjson.Member{
		{Key: "versionId", Value: str("1")},
		{Key: "lastUpdated", Value: str(fhir.FormatInstant(r.Recorded))},
	}}
	out := []fjson.Member{{Key: "resourceType", Value: str("AuditEvent")}, {Key: "id", Value: str(ID(r.Seq))}, {Key: "meta", Value: meta}}
	hasExt := false
	for _, m := range members {
		switch m.Key {
		case "resourceType":
			continue
		case "extension":
			if m.Value.Kind == fjson.Array {
				ext := *m.Value
				ext.Items = append(slices.Clone(ext.Items), chain)
				m.Value = &ext
				hasExt = true
			}
		}
		out = append(out, m)
	}
	if !hasExt {
		out = slices.Insert(out, 3, fjson.Member{Key: "extension", Value: &fjson.Value{Kind: fjson.Array, Items: []*fjson.Value{chain}}})
	}
	res, err := fhir.FromValue(&fjson.Value{Kind: fjson.Object, Members: out})
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return res, nil
}

// jsonEvent reads from an AuditEvent kept as JSON what a summary of it
// needs: when, what, outcome, who and the entities.
func jsonEvent(body []byte) (*Event, error) {
	d, err := jsonRecord(body)
	if err != nil {
		return nil, err
	}
	root, _ := fjson.Parse(body)
	e := &Event{Recorded: d.Recorded, Outcome: Outcome(d.Outcome), Interaction: d.Subtype, OutcomeDesc: root.Get("outcomeDesc").String()}
	for _, a := range items(root.Get("agent")) {
		if a.Get("requestor").Bool() {
			e.Who = a.Get("who").Get("reference").String()
		}
		if id := a.Get("who").Get("identifier").Get("value").String(); id != "" && e.ClientID == "" {
			e.ClientID = id
		}
	}
	for _, en := range items(root.Get("entity")) {
		ref := en.Get("what").Get("reference").String()
		switch {
		case ref == "":
		case en.Get("role").Get("code").String() == "1":
			e.Patient = ref
		case strings.HasPrefix(ref, "Consent/"):
			e.Consents = append(e.Consents, ref)
		default:
			e.Resources = append(e.Resources, ref)
		}
	}
	return e, nil
}
