package audit

import (
	"slices"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/storage"
)

// ClientRef is how the log indexes an OAuth client: "@" and its id (a
// FHIR reference never starts with "@").
func ClientRef(clientID string) string { return "@" + clientID }

// eventType is the AuditEvent.type of every event the gateway builds.
const eventType = "rest"

// NewRecord returns the log record of e: its compact body and what the
// log indexes (the columns and the references), unsealed.
func NewRecord(e *Event) (*storage.AuditRecord, error) {
	action, ok := interactions[e.Interaction]
	if !ok {
		return nil, errUnknownInteraction(e.Interaction)
	}
	if e.Recorded.IsZero() {
		return nil, errNoTime
	}
	if e.Outcome == "" {
		e.Outcome = Success
	}
	r := &storage.AuditRecord{
		Recorded: e.Recorded.UTC().Truncate(1000), // microseconds, as stored
		Action:   action,
		Outcome:  string(e.Outcome),
		Type:     eventType,
		Subtype:  e.Interaction,
		Body:     Encode(e),
		Refs:     refsOf(e),
	}
	return r, nil
}

// refsOf lists the references of an event the log indexes, each once.
// e.Outcome is set.
func refsOf(e *Event) []storage.AuditRef {
	var out []storage.AuditRef
	add := func(ref string, role int) {
		if ref == "" {
			return
		}
		ref = unversioned(ref)
		for i := range out {
			if out[i].Ref == ref {
				out[i].Role |= role
				return
			}
		}
		out = append(out, storage.AuditRef{Ref: ref, Role: role})
	}
	agent, client := storage.AuditAgent, storage.AuditClient
	if e.Outcome != Success && e.Patient != "" {
		agent, client = storage.AuditRefusedAgent, storage.AuditRefusedAgent
	}
	add(e.Who, agent) // not OnBehalfOf: an organization reads its own accesses, not its practitioners'

	if e.ClientID != "" {
		add(ClientRef(e.ClientID), client)
	}
	for _, r := range e.resources() {
		add(r, storage.AuditEntity)
	}
	add(e.Patient, storage.AuditEntity|storage.AuditPatientRole)
	for _, c := range e.Consents {
		add(c, storage.AuditEntity)
	}
	return out
}

// unversioned drops "/_history/n" from a reference.
func unversioned(ref string) string {
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		return ref[:i]
	}
	return ref
}

// jsonRecord derives the columns and references of an event kept as
// AuditEvent JSON (moved from the resource store), by the R4 definitions
// of the search parameters: agent = agent.who, entity = entity.what,
// patient = those of them that are Patients.
func jsonRecord(body []byte) (*storage.AuditRecord, error) {
	root, err := fjson.Parse(body)
	if err != nil || root.Kind != fjson.Object || root.Get("resourceType").String() != "AuditEvent" {
		return nil, ErrMalformed
	}
	r := &storage.AuditRecord{
		Action:  root.Get("action").String(),
		Outcome: root.Get("outcome").String(),
		Type:    root.Get("type").Get("code").String(),
		Body:    body,
	}
	if t, err := time.Parse(time.RFC3339Nano, root.Get("recorded").String()); err == nil {
		r.Recorded = t.UTC().Truncate(1000)
	}
	if st := items(root.Get("subtype")); len(st) > 0 {
		r.Subtype = st[0].Get("code").String()
	}
	add := func(ref string, role int) {
		if ref == "" {
			return
		}
		ref = unversioned(ref)
		for i := range r.Refs {
			if r.Refs[i].Ref == ref {
				r.Refs[i].Role |= role
				return
			}
		}
		r.Refs = append(r.Refs, storage.AuditRef{Ref: ref, Role: role})
	}
	named := false // a patient entity
	for _, e := range items(root.Get("entity")) {
		role := storage.AuditEntity
		if e.Get("role").Get("code").String() == "1" && e.Get("role").Get("system").String() == systemObjectRole && e.Get("what").Get("reference").String() != "" {
			role |= storage.AuditPatientRole
			named = true
		}
		add(e.Get("what").Get("reference").String(), role)
	}
	agent, client := storage.AuditAgent, storage.AuditClient
	if r.Outcome != string(Success) && named {
		agent, client = storage.AuditRefusedAgent, storage.AuditRefusedAgent
	}
	for _, a := range items(root.Get("agent")) {
		add(a.Get("who").Get("reference").String(), agent)
		if id := a.Get("who").Get("identifier").Get("value").String(); id != "" {
			add(ClientRef(id), client)
		}
	}
	return r, nil
}

func items(v *fjson.Value) []*fjson.Value {
	if v == nil || v.Kind != fjson.Array {
		return nil
	}
	return v.Items
}

// derived returns the columns and references the log should hold for a
// stored body, to compare with what it holds.
func derived(body []byte) (*storage.AuditRecord, error) {
	if len(body) > 0 && body[0] == codecJSON {
		return jsonRecord(body)
	}
	e, err := Decode(body)
	if err != nil {
		return nil, err
	}
	return NewRecord(e)
}

// sameRefs reports whether two ref lists hold the same references with
// the same roles, in any order.
func sameRefs(a, b []storage.AuditRef) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = slices.Clone(a), slices.Clone(b)
	cmp := func(x, y storage.AuditRef) int { return strings.Compare(x.Ref, y.Ref) }
	slices.SortFunc(a, cmp)
	slices.SortFunc(b, cmp)
	return slices.Equal(a, b)
}
