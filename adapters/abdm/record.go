package abdm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/consolidate"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// Identifier systems the HIU writes (no official FHIR URIs exist for these
// ABDM ids).
const (
	HIPSystem         = "urn:fhirgate:abdm:hip"
	HIUSystem         = "urn:fhirgate:abdm:hiu"
	ArtefactSystem    = "urn:fhirgate:abdm:consent-artefact"
	ConsentReqSystem  = "urn:fhirgate:abdm:consent-request"
	CareContextPrefix = "urn:fhirgate:abdm:care-context:" // + HIP id
	HITypeSystem      = "urn:fhirgate:abdm:hi-type"
)

// consentResource maps a consent artefact to a FHIR Consent (STANDARDS.md
// §5 and §9 gateway notes): patient-privacy scope, the HIU as information
// recipient, the purpose, the hiTypes as classes, the data range as
// dataPeriod and the consent's validity (to dataEraseAt) as period.
func consentResource(source, patientID, hiuID, consentRequestID, status string, d ConsentDetail) (*fhir.Resource, error) {
	if d.ConsentID == "" {
		return nil, errors.New("artefact without consentId")
	}
	fhirStatus := "active"
	if status != StatusGranted {
		fhirStatus = "inactive"
	}
	coding := func(system, code string) map[string]any { return map[string]any{"system": system, "code": code} }
	cc := func(system, code string) map[string]any { return map[string]any{"coding": []any{coding(system, code)}} }
	ids := []any{map[string]any{"system": ArtefactSystem, "value": d.ConsentID}}
	if consentRequestID != "" {
		ids = append(ids, map[string]any{"system": ConsentReqSystem, "value": consentRequestID})
	}
	var classes []any
	for _, t := range d.HITypes {
		classes = append(classes, coding(HITypeSystem, t))
	}
	period := map[string]any{}
	if t, ok := instant(d.CreatedAt); ok {
		period["start"] = t
	}
	if t, ok := instant(d.Permission.DataEraseAt); ok {
		period["end"] = t
	}
	dataPeriod := map[string]any{}
	if t, ok := instant(d.Permission.DateRange.From); ok {
		dataPeriod["start"] = t
	}
	if t, ok := instant(d.Permission.DateRange.To); ok {
		dataPeriod["end"] = t
	}
	prov := map[string]any{
		"type": "permit",
		"actor": []any{map[string]any{
			"role":      cc("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP"),
			"reference": map[string]any{"identifier": map[string]any{"system": HIUSystem, "value": hiuID}, "display": "ABDM HIU " + hiuID},
		}},
		"action": []any{cc("http://terminology.hl7.org/CodeSystem/consentaction", "access")},
	}
	if d.Purpose.Code != "" {
		prov["purpose"] = []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": d.Purpose.Code, "display": d.Purpose.Text}}
	}
	if len(period) > 0 {
		prov["period"] = period
	}
	if len(dataPeriod) > 0 {
		prov["dataPeriod"] = dataPeriod
	}
	if len(classes) > 0 {
		prov["class"] = classes
	}
	doc := map[string]any{
		"resourceType": "Consent",
		"id":           consolidate.LocalID(source, "Consent", d.ConsentID),
		"identifier":   ids,
		"status":       fhirStatus,
		"scope":        cc("http://terminology.hl7.org/CodeSystem/consentscope", "patient-privacy"),
		"category":     []any{cc("http://loinc.org", "59284-0")},
		"patient":      map[string]any{"reference": "Patient/" + patientID},
		"performer":    []any{map[string]any{"reference": "Patient/" + patientID}},
		"policyRule":   cc("http://terminology.hl7.org/CodeSystem/v3-ActCode", "OPTIN"),
		"provision":    prov,
	}
	if t, ok := instant(d.CreatedAt); ok {
		doc["dateTime"] = t
	}
	if d.HIP.ID != "" {
		doc["organization"] = []any{map[string]any{"identifier": map[string]any{"system": HIPSystem, "value": d.HIP.ID}, "display": "ABDM HIP " + d.HIP.ID}}
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return fhir.Parse(b)
}

// instant normalises an ABDM timestamp (with or without zone) to a FHIR
// instant.
func instant(s string) (string, bool) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return fhir.FormatInstant(t.UTC()), true
		}
	}
	return "", false
}

// withdraw handles a revoked or expired artefact (inside a ledger
// update): its open transfer is dropped, its Consent becomes inactive and
// what its transfers filed is deleted (ABDM requires the HIU to stop
// using and delete the data), except resources another live artefact also
// delivered.
func (h *HIU) withdraw(ctx context.Context, l *ledger, a *artefact, status string) error {
	a.Status = status
	if a.Tx != nil {
		if err := h.dropTransfer(ctx, a.Tx.HIRequestID); err != nil {
			return err
		}
		if a.Tx.State == txRequested || a.Tx.State == txOpen {
			a.Tx.State, a.Tx.Problem = txFailed, "consent "+strings.ToLower(status)
		}
	}
	if a.Consent != "" {
		cur, err := h.records.Get(ctx, "Consent", a.Consent)
		if err != nil {
			return err
		}
		if cur != nil {
			var m map[string]any
			if err := json.Unmarshal(cur.Raw, &m); err != nil {
				return err
			}
			m["status"] = "inactive"
			delete(m, "meta")
			b, _ := json.Marshal(m)
			res, err := fhir.Parse(b)
			if err != nil {
				return err
			}
			if err := h.records.Put(ctx, res); err != nil {
				return err
			}
		}
	}
	keep := map[string]bool{}
	for _, rr := range l.Requests {
		for _, o := range rr.Artefacts {
			if o != a && o.Status == StatusGranted {
				for _, ref := range o.Filed {
					keep[ref] = true
				}
			}
		}
	}
	var gone []string
	for _, ref := range a.Filed {
		if !keep[ref] {
			gone = append(gone, ref)
		}
	}
	if err := h.records.Remove(ctx, gone); err != nil {
		return fmt.Errorf("delete what the artefact delivered: %w", err)
	}
	a.Filed = nil
	return nil
}

// sourceFor is the consolidation source of one HIP: ids from two HIPs never
// collide, and the same HIP's data dedups across transfers.
func (h *HIU) sourceFor(hipID string) string {
	return h.id + "." + safeID(hipID)
}

func safeID(s string) string {
	var b strings.Builder
	for _, c := range s {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	return b.String()
}

// file writes a completed transfer into the patient's record: each document
// Bundle is one consolidation batch (its entries plus a Provenance naming
// the HIP, the care context, the Bundle and the consent artefact). Pages
// were all verified before this runs, so a refused push stored nothing.
// The transfer record is dropped at the end, whatever happened.
func (h *HIU) file(ctx context.Context, txID, hiReq string, t *transfer, docs []doc) (int, string) {
	// the records are the HIP's, pushed under the consent artefact
	ctx = audit.WithActivity(ctx, &audit.Job{Event: audit.Event{Interaction: "operation", Operation: "abdm-data-push",
		Origin: "ABDM HIP " + t.HIP + " (consent artefact " + t.Artefact + ", transaction " + txID + ")"}})
	defer func() {
		if err := h.dropTransfer(ctx, hiReq); err != nil {
			h.log.Warn("drop transfer record", "err", err)
		}
	}()
	l, err := h.ledger.load(ctx)
	if err != nil {
		return http.StatusInternalServerError, "could not read the HIU state"
	}
	r, a := l.artefact(func(a *artefact) bool { return a.ID == t.Artefact })
	if a == nil || a.Status != StatusGranted {
		return http.StatusConflict, "the consent behind this transaction is no longer granted"
	}
	source := h.sourceFor(t.HIP)
	var filed []string
	issues, total := 0, 0
	var ccs []string
	var problem string
	for _, d := range docs {
		ccs = append(ccs, d.careContext)
		batch, refs, err := h.batchOf(d, source, r.PatientID, t.HIP, a.ID)
		if err != nil {
			problem = err.Error()
			break
		}
		rep, err := h.records.Apply(ctx, batch)
		if err != nil {
			problem = "could not file the documents"
			h.log.Warn("filing a transfer failed", "err", err)
			break
		}
		issues += rep.IssueCount
		total += rep.Received
		filed = append(filed, refs...)
	}
	ok := problem == ""
	err = h.ledger.update(ctx, func(l *ledger) error {
		_, a := l.artefact(func(a *artefact) bool { return a.ID == t.Artefact })
		if a == nil || a.Tx == nil || a.Tx.TransactionID != txID {
			return nil
		}
		if !ok {
			a.Tx.State, a.Tx.Problem = txFailed, problem
			return nil
		}
		a.Tx.State, a.Tx.Filed, a.Tx.IssueCount, a.Tx.Reported = txDone, total, issues, false
		a.Transfers++
		for _, f := range filed {
			if !slices.Contains(a.Filed, f) {
				a.Filed = append(a.Filed, f)
			}
		}
		return nil
	})
	if err != nil {
		h.log.Warn("record transfer", "err", err)
	}
	h.notifyTransfer(ctx, t.Artefact, txID, t.HIP, ok, ccs, problem)
	if !ok {
		return http.StatusUnprocessableEntity, problem
	}
	return http.StatusAccepted, ""
}

// batchOf turns one document Bundle into a consolidation batch. Entries
// addressed by urn:uuid or absolute fullUrls get "Type/id" references (and
// the uuid as id when they have none), which is what consolidation rewrites
// to local ids; the resources are otherwise passed as the HIP sent them.
func (h *HIU) batchOf(d doc, source, patientID, hipID, artefactID string) (consolidate.Batch, []string, error) {
	b := consolidate.Batch{Source: source, PatientID: patientID}
	root, err := fjson.Parse(d.bundle)
	if err != nil {
		return b, nil, err
	}
	entries := root.Get("entry")
	if entries == nil || len(entries.Items) == 0 {
		return b, nil, errors.New("a document Bundle without entries")
	}
	alias := map[string]string{} // fullUrl -> Type/id
	type ent struct {
		v       *fjson.Value
		typ, id string
	}
	var ents []ent
	for _, e := range entries.Items {
		rv := e.Get("resource")
		if rv == nil {
			continue
		}
		typ, id := rv.Get("resourceType").String(), rv.Get("id").String()
		full := e.Get("fullUrl").String()
		if id == "" {
			if u, ok := strings.CutPrefix(full, "urn:uuid:"); ok {
				id = u
			}
		}
		if typ == "" || !fhir.ValidID(id) {
			return b, nil, fmt.Errorf("an entry without a usable id (fullUrl %q)", full)
		}
		if full != "" && full != typ+"/"+id {
			alias[full] = typ + "/" + id
		}
		ents = append(ents, ent{rv, typ, id})
	}
	var refs []string
	seen := map[string]bool{}
	var targets []any
	for _, e := range ents {
		if len(alias) > 0 {
			realias(e.v, alias)
		}
		res, err := fhir.FromValue(e.v)
		if err != nil {
			return b, nil, fmt.Errorf("entry %s/%s: %w", e.typ, e.id, err)
		}
		if res.ID == "" {
			res = res.Rewrite(e.id, func(ms []fjson.Member) []fjson.Member { return ms }, "", time.Time{})
		}
		ref := e.typ + "/" + e.id
		if seen[ref] {
			continue
		}
		seen[ref] = true
		b.Resources = append(b.Resources, res)
		refs = append(refs, e.typ+"/"+consolidate.LocalID(source, e.typ, e.id))
		targets = append(targets, map[string]any{"reference": ref})
		if e.typ == "Patient" && b.SourcePatientID == "" {
			b.SourcePatientID = e.id
		}
	}
	// the Composition's subject is the patient when a bundle has several
	if c := ents[0]; c.typ == "Composition" {
		if s := c.v.Get("subject"); s != nil {
			if typ, id, ok := strings.Cut(s.Get("reference").String(), "/"); ok && typ == "Patient" {
				b.SourcePatientID = id
			}
		}
	}
	entity := []any{
		map[string]any{"role": "source", "what": map[string]any{"identifier": map[string]any{"system": CareContextPrefix + hipID, "value": d.careContext}, "display": "ABDM care context"}},
		map[string]any{"role": "source", "what": map[string]any{"identifier": map[string]any{"system": ArtefactSystem, "value": artefactID}, "display": "ABDM consent artefact"}},
	}
	if bid := root.Get("identifier"); bid != nil && bid.Get("value").String() != "" {
		entity = append(entity, map[string]any{"role": "source", "what": map[string]any{
			"identifier": map[string]any{"system": bid.Get("system").String(), "value": bid.Get("value").String()},
			"display":    "document Bundle " + root.Get("timestamp").String()}})
	}
	sum := sha256.Sum256([]byte(hipID + "\x00" + d.careContext + "\x00" + root.Get("id").String()))
	provID := "abdm-" + hex.EncodeToString(sum[:12])
	prov := map[string]any{
		"resourceType": "Provenance",
		"id":           provID,
		"target":       targets,
		"recorded":     fhir.FormatInstant(h.now()),
		"activity":     map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "CREATE"}}},
		"agent": []any{map[string]any{
			"type": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "custodian"}}},
			"who":  map[string]any{"identifier": map[string]any{"system": HIPSystem, "value": hipID}, "display": "ABDM HIP " + hipID},
		}},
		"entity": entity,
	}
	pb, _ := json.Marshal(prov)
	pr, err := fhir.Parse(pb)
	if err != nil {
		return b, nil, err
	}
	b.Resources = append(b.Resources, pr)
	refs = append(refs, "Provenance/"+consolidate.LocalID(source, "Provenance", provID))
	return b, refs, nil
}

// realias rewrites references equal to an entry's fullUrl to "Type/id".
func realias(v *fjson.Value, alias map[string]string) {
	switch v.Kind {
	case fjson.Object:
		for i := range v.Members {
			m := &v.Members[i]
			if m.Key == "reference" && m.Value.Kind == fjson.String {
				if to, ok := alias[m.Value.Str]; ok {
					m.Value = &fjson.Value{Kind: fjson.String, Str: to, Raw: fjson.AppendString(nil, to)}
				}
				continue
			}
			realias(m.Value, alias)
		}
	case fjson.Array:
		for _, it := range v.Items {
			realias(it, alias)
		}
	}
}
