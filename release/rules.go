package release

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/consent"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/storage"
)

// PatientsOf lists the ids of the Patients a resource is about: a Patient
// itself; those whose R4 Patient compartment holds it (the search index's
// own rule), for
// types outside the compartment the Patients their reference parameters
// name (Task.for, Device.patient…), for a document Bundle the subject of
// its Composition, and for a Binary the Patient its securityContext names.
func (d *Decider) PatientsOf(r *fhir.Resource) []string { return d.patientsOf(r) }

func (d *Decider) patientsOf(r *fhir.Resource) []string {
	pats, _, _ := d.patientsAndKey(r)
	return pats
}

// patientsAndKey is patientsOf, with the content key it computed for its
// cache (ok false: none, the type's patients are not cached).
func (d *Decider) patientsAndKey(r *fhir.Resource) (_ []string, _ contentKey, ok bool) {
	switch r.Type {
	case "Patient":
		// a Patient is its own patient's data, whatever Patients it links
		// (a consolidated record links its sources' copies)
		if r.ID == "" {
			return nil, contentKey{}, false
		}
		return []string{r.ID}, contentKey{}, false
	case "Bundle":
		if ref := documentSubject(r); ref != "" {
			if id, ok := strings.CutPrefix(d.local(ref), "Patient/"); ok {
				return []string{id}, contentKey{}, false
			}
		}
		return nil, contentKey{}, false
	case "Binary":
		if id, ok := strings.CutPrefix(d.binaryContext(r), "Patient/"); ok {
			return []string{id}, contentKey{}, false
		}
		return nil, contentKey{}, false
	case "Subscription":
		var out []string
		for _, ref := range d.subscriptionFilters(r)["patient"] {
			if id, ok := strings.CutPrefix(ref, "Patient/"); ok {
				out = append(out, id)
			}
		}
		return out, contentKey{}, false
	}
	k := keyOf(r)
	if pats, ok := d.patients.get(k); ok {
		return pats, k, true
	}
	var pats []string
	if params, ok := d.pointing[r.Type]; ok {
		pats = d.reg.PatientRefs(r, params)
	} else {
		pats = d.reg.Patients(r)
	}
	d.patients.put(k, pats)
	return pats, k, true
}

// binaryContext returns a Binary's securityContext as a local "Type/id";
// "" when it has none or names something elsewhere.
func (d *Decider) binaryContext(r *fhir.Resource) string {
	ref := r.Root().Get("securityContext").Get("reference").String()
	if ref == "" {
		return ""
	}
	return d.local(ref)
}

// Binary resources are in no R4 compartment: who may see one is decided by
// its securityContext, "a resource that can be used as a proxy of the
// security sensitivity" of the content:
//
//   - securityContext Patient/x: the content is that patient's data;
//   - securityContext another resource (the DocumentReference an upload
//     made, say): the Binary is released exactly when that resource is;
//   - no securityContext: nothing says whose data it is, so only system
//     clients (and a gateway without authentication) may read it.
func (g *Guard) binaryReleased(ctx context.Context, r *fhir.Resource, depth int) (bool, error) {
	ref := g.d.binaryContext(r)
	switch {
	case ref == "":
		return false, nil
	case strings.HasPrefix(ref, "Patient/"):
		return g.releaseTo(ctx, r, []string{strings.TrimPrefix(ref, "Patient/")})
	}
	typ, id, _ := strings.Cut(ref, "/")
	target, err := g.readStub(ctx, typ, id)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrGone) {
			return false, nil // a context that is gone or never was protects nothing
		}
		return false, err
	}
	if target.Type == "Binary" && depth > 0 {
		return false, nil // a Binary whose context is another Binary's context
	}
	// the token's scopes were checked for the Binary it asked for; the
	// context is consulted for the patient and the Consents only
	return g.decide(ctx, target, depth+1, false, nil)
}

// readStub reads the current version of a resource, leaving a Binary's
// content in the store.
func (g *Guard) readStub(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	if bs, ok := g.d.store.(storage.Blobs); ok {
		return bs.ReadStub(ctx, typ, id)
	}
	return g.d.store.Read(ctx, typ, id)
}

// targetsReleased decides the targets of a Provenance: each one that is
// (or was) patient data must be released. A target that no longer
// resolves counts as withheld when its type can hold patient data;
// references outside this server, and to entries of the Bundle the
// Provenance travels in (decided on their own), are not the store's.
func (g *Guard) targetsReleased(ctx context.Context, r *fhir.Resource, depth int, bundle map[string]bool) (bool, error) {
	for _, t := range items(r.Root().Get("target")) {
		raw := t.Get("reference").String()
		if bundle[raw] {
			continue
		}
		ref := g.d.local(raw)
		if ref == "" {
			continue
		}
		typ, id, _ := strings.Cut(ref, "/")
		var (
			target *fhir.Resource
			err    error
		)
		if _, vid, versioned := strings.Cut(raw, "/_history/"); versioned {
			target, err = g.d.store.VRead(ctx, typ, id, vid)
		} else {
			target, err = g.readStub(ctx, typ, id)
		}
		if err != nil {
			if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrGone) {
				if g.d.holdsPatientData(typ) {
					return false, nil
				}
				continue
			}
			return false, err
		}
		ok, err := g.decideMemo(ctx, target, depth+1)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// holdsPatientData reports whether resources of typ can be about a
// patient.
func (d *Decider) holdsPatientData(typ string) bool {
	if typ == "Patient" || d.reg.InPatientCompartment(typ) || special(typ) {
		return true
	}
	_, ok := d.pointing[typ]
	return ok
}

// decideMemo is decide (with scopes) through the request's memory.
func (g *Guard) decideMemo(ctx context.Context, r *fhir.Resource, depth int) (bool, error) {
	key := versionKey{r.Type, r.ID, r.VersionID}
	g.mu.Lock()
	m, known := g.memo[key]
	g.mu.Unlock()
	if known {
		return m.ok, nil
	}
	ok, err := g.decide(ctx, r, depth, true, nil)
	if err != nil {
		return false, err
	}
	g.remember(key, memoEntry{ok: ok})
	return ok, nil
}

// bundleReleased decides a stored Bundle by what it holds: every entry's
// resource must be released, each decided as a resource on its own. For a
// provider a document about a patient (a second-opinion package) is
// decided as releaseDocument says.
func (g *Guard) bundleReleased(ctx context.Context, r *fhir.Resource, depth int) (bool, error) {
	if g.p.Kind == auth.KindProvider {
		if pats := g.d.patientsOf(r); len(pats) > 0 {
			return g.releaseDocument(ctx, r, pats)
		}
	}
	entries := items(r.Root().Get("entry"))
	urls := map[string]bool{}
	for _, e := range entries {
		if u := e.Get("fullUrl").String(); u != "" {
			urls[u] = true
		}
	}
	for _, e := range entries {
		v := e.Get("resource")
		if v == nil {
			continue
		}
		res, err := fhir.FromValue(v)
		if err != nil {
			return false, nil // an entry that cannot be decided is not released
		}
		ok, err := g.decide(ctx, res, depth+1, true, urls)
		if err != nil || !ok {
			return false, err
		}
	}
	// a document about a patient is that patient's, whatever its entries
	return g.releaseTo(ctx, r, g.d.patientsOf(r))
}

// releaseDocument decides a document Bundle for a provider by what it
// holds, at the moment of the fetch: the provider must be a party the
// patient shares with (relationship), no Consent may deny the document
// itself (its aggregated labels), and every entry must be released by the
// Consents of the document's patient, and of any other patient whose
// compartment the entry is in, now — as every resource was when the
// gateway assembled the package. A Consent changed since then to deny
// something in it refuses the whole document; a revoked one ends the
// relationship. The document's own scaffolding is not decided on its own:
// the Composition (its first entry, dated when it was assembled), the
// Devices it names as author and the Provenance of the Composition (the
// ones the gateway writes, see referral.Summary).
func (g *Guard) releaseDocument(ctx context.Context, r *fhir.Resource, pats []string) (bool, error) {
	req := g.request()
	if ok, err := g.relationship(ctx, req, pats); err != nil || !ok {
		return false, err
	}
	var used []consent.Ref
	for _, pt := range pats {
		pol, err := g.d.policyFor(ctx, "Patient/"+pt)
		if err != nil {
			return false, err
		}
		if g.d.decideResource(pol, req, g.requestKey(), r, keyOf(r)).Effect == consent.Deny {
			return false, nil
		}
	}
	entries := items(r.Root().Get("entry"))
	scaffold := map[int]bool{}
	if assembled(r.Root()) {
		scaffold = documentScaffold(entries)
	}
	urls := map[string]bool{}
	for _, e := range entries {
		if u := e.Get("fullUrl").String(); u != "" {
			urls[u] = true
		}
	}
	for i, e := range entries {
		if scaffold[i] {
			continue
		}
		v := e.Get("resource")
		if v == nil {
			continue
		}
		res, err := fhir.FromValue(v)
		if err != nil {
			return false, nil
		}
		if sd := g.scopeFor(res.Type); !sd.Allowed {
			return false, nil
		}
		switch res.Type {
		case "Provenance":
			if ok, err := g.targetsReleased(ctx, res, 1, urls); err != nil || !ok {
				return false, err
			}
		case "Binary", "Bundle", "AuditEvent":
			if ok, err := g.decide(ctx, res, 1, true, urls); err != nil || !ok {
				return false, err
			}
			continue
		}
		owners := slices.Clone(pats)
		for _, pt := range g.d.patientsOf(res) {
			if !slices.Contains(owners, pt) {
				owners = append(owners, pt)
			}
		}
		more, ok, err := g.permittedByAll(ctx, req, res, owners)
		if err != nil || !ok {
			return false, err
		}
		used = append(used, more...)
	}
	g.recordConsents(used)
	return true, nil
}

// documentSubject is the subject of a document Bundle's Composition (its
// first entry); "" for other Bundles.
func documentSubject(r *fhir.Resource) string {
	root := r.Root()
	if root.Get("type").String() != "document" {
		return ""
	}
	first := items(root.Get("entry"))
	if len(first) == 0 {
		return ""
	}
	res := first[0].Get("resource")
	if res.Get("resourceType").String() != "Composition" {
		return ""
	}
	return res.Get("subject").Get("reference").String()
}

// documentScaffold marks the entries of a document the gateway assembled
// (tagged AssembledSystem|AssembledCode, which clients cannot write) that
// make the document rather than carry data: the Composition (first entry)
// whose every author is a Device entry of the document and which a
// Provenance entry names an assembler of, those Devices, and the
// Provenance entries whose every target is the Composition. Any other
// document (a hospital's discharge summary, an opinion) has no scaffolding:
// its Composition carries clinical narrative and is decided like every
// other entry, by the Consents of the patients it is about.
func documentScaffold(entries []*fjson.Value) map[int]bool {
	out := map[int]bool{}
	if len(entries) == 0 || entries[0].Get("resource").Get("resourceType").String() != "Composition" {
		return out
	}
	compURL := entries[0].Get("fullUrl").String()
	devices := map[string]bool{}
	for _, e := range entries[1:] {
		if e.Get("resource").Get("resourceType").String() == "Device" && e.Get("fullUrl").String() != "" {
			devices[e.Get("fullUrl").String()] = true
		}
	}
	var authors []string
	for _, au := range items(entries[0].Get("resource").Get("author")) {
		a := au.Get("reference").String()
		if !devices[a] {
			return out // a person (or something outside the document) wrote it
		}
		authors = append(authors, a)
	}
	if len(authors) == 0 || compURL == "" {
		return out
	}
	own := func(res *fjson.Value) bool { // a Provenance of the Composition alone
		targets := items(res.Get("target"))
		ok := len(targets) > 0
		for _, tg := range targets {
			ok = ok && tg.Get("reference").String() == compURL
		}
		return ok
	}
	assembled := false
	for _, e := range entries[1:] {
		res := e.Get("resource")
		if res.Get("resourceType").String() != "Provenance" || !own(res) {
			continue
		}
		for _, ag := range items(res.Get("agent")) {
			if slices.Contains(authors, ag.Get("who").Get("reference").String()) {
				for _, c := range items(ag.Get("type").Get("coding")) {
					assembled = assembled || c.Get("code").String() == "assembler"
				}
			}
		}
	}
	if !assembled {
		return out
	}
	out[0] = true
	for i, e := range entries[1:] {
		url := e.Get("fullUrl").String()
		res := e.Get("resource")
		switch res.Get("resourceType").String() {
		case "Device":
			out[i+1] = url != "" && slices.Contains(authors, url)
		case "Provenance":
			out[i+1] = own(res)
		}
	}
	return out
}

// AssembledSystem and AssembledCode tag (Bundle.meta.tag) a document the
// gateway assembled itself (package referral's documents: the second-opinion
// packages). Only such a document has scaffolding that the release rule
// does not decide on its own, and no client may write the tag (CheckWrite).
const (
	AssembledSystem = "https://fhirgate.org/fhir/CodeSystem/document-origin"
	AssembledCode   = "assembled"
)

// assembled reports whether a Bundle carries the gateway's assembled tag.
func assembled(root *fjson.Value) bool {
	for _, t := range items(root.Get("meta").Get("tag")) {
		if t.Get("system").String() == AssembledSystem && t.Get("code").String() == AssembledCode {
			return true
		}
	}
	return false
}

// carriesAssembled reports whether a resource is, or holds at any depth, a
// Bundle with the assembled tag.
func carriesAssembled(root *fjson.Value, depth int) bool {
	if root == nil || depth > maxDepth || root.Get("resourceType").String() != "Bundle" {
		return false
	}
	if assembled(root) {
		return true
	}
	for _, e := range items(root.Get("entry")) {
		if carriesAssembled(e.Get("resource"), depth+1) {
			return true
		}
	}
	return false
}

// RequisitionSystem is the identifier system of a second-opinion request
// (ServiceRequest.requisition, Task.groupIdentifier): referral resources
// carrying it are released to the parties they address (package referral
// builds them; it uses this constant, so that the release rule depends on
// no workflow).
const RequisitionSystem = "https://fhirgate.org/fhir/sid/second-opinion"

// referralParty reports whether a provider may see r as far as the
// second-opinion workflow goes: a referral Task (one carrying the
// requisition identifier) only to its owner and its requester, so that one
// specialist's inbox is not another's; anything else is left to consent.
func referralParty(r *fhir.Resource, p *auth.Principal) bool {
	if r.Type != "Task" {
		return true
	}
	root := r.Root()
	if root.Get("groupIdentifier").Get("system").String() != RequisitionSystem {
		return true
	}
	actors := p.Actors()
	for _, field := range []string{"owner", "requester"} {
		if slices.Contains(actors, root.Get(field).Get("reference").String()) {
			return true
		}
	}
	return false
}

// referralAddressee reports whether r is a resource of the second-opinion
// workflow the actors are a party to: a referral Task (requisition
// groupIdentifier) they own or requested, or a referral ServiceRequest
// (requisition identifier) naming them as performer or requester.
func referralAddressee(r *fhir.Resource, actors []string) bool {
	if r.Type != "Task" && r.Type != "ServiceRequest" {
		return false
	}
	root := r.Root()
	var fields []string
	switch r.Type {
	case "Task":
		if root.Get("groupIdentifier").Get("system").String() != RequisitionSystem {
			return false
		}
		fields = []string{"owner", "requester"}
	case "ServiceRequest":
		if root.Get("requisition").Get("system").String() != RequisitionSystem {
			return false
		}
		fields = []string{"performer", "requester"}
	default:
		return false
	}
	for _, f := range fields {
		v := root.Get(f)
		refs := items(v)
		if v != nil && v.Kind != fjson.Array {
			refs = []*fjson.Value{v}
		}
		for _, ref := range refs {
			if slices.Contains(actors, ref.Get("reference").String()) {
				return true
			}
		}
	}
	return false
}

// backportFilter is the R4 Subscriptions Backport extension that carries a
// topic-based Subscription's filters ("Task?owner=Organization/x").
const backportFilter = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria"

// subscriptionFilters reads a Subscription's filters as parameter ->
// local references. A Subscription carries where its notifications go
// (endpoint, headers with the receiver's secret) and whose requests they
// follow: it is released to the parties its filters name.
func (d *Decider) subscriptionFilters(r *fhir.Resource) map[string][]string {
	out := map[string][]string{}
	for _, e := range items(r.Root().Get("_criteria").Get("extension")) {
		if e.Get("url").String() != backportFilter {
			continue
		}
		q, ok := strings.CutPrefix(e.Get("valueString").String(), "Task?")
		if !ok {
			continue
		}
		p, v, ok := strings.Cut(q, "=")
		if ref := d.local(v); ok && ref != "" && !strings.ContainsAny(v, "&,") {
			out[p] = append(out[p], ref)
		}
	}
	return out
}

// subscriptionReleased decides a Subscription for a patient (its
// patient filter names itself) or a provider (its owner or requester
// filter names one of its actors).
func (g *Guard) subscriptionReleased(r *fhir.Resource) bool {
	f := g.d.subscriptionFilters(r)
	switch g.p.Kind {
	case auth.KindPatient:
		return slices.Contains(f["patient"], g.p.Patient)
	case auth.KindProvider:
		for _, a := range g.p.Actors() {
			if slices.Contains(f["owner"], a) || slices.Contains(f["requester"], a) {
				return true
			}
		}
	}
	return false
}
