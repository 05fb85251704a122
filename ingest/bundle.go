package ingest

import (
	"context"
	"fmt"
	"strings"

	"github.com/fhirgate/fhirgate/consolidate"
	"github.com/fhirgate/fhirgate/convert/subject"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// ImportBundle files the resources of a FHIR Bundle (collection,
// transaction, batch or document) as they are: entries without an id get
// one (the uuid of a urn:uuid fullUrl, or one derived from the Bundle), and
// references to an entry's fullUrl become "Type/id". The Bundle describes
// one patient: its Patient entry, or when it has none, the one Patient its
// references name.
func (im *Importer) importBundle(ctx context.Context, target *fhir.Resource, body []byte, opts Options) (*Result, error) {
	source := docSource("fhir", target.ID, body)
	rs, sourcePatient, issues, err := bundleResources(body, source)
	if err != nil {
		return nil, err
	}
	var doc subject.Demographics
	for _, r := range rs {
		if r.Type == "Patient" && r.ID == sourcePatient {
			doc = subject.FromPatient(r)
			for _, p := range []*string{&doc.BirthDate.Path, &doc.Gender.Path} {
				*p = "Bundle.entry.resource.ofType(Patient)." + strings.TrimPrefix(*p, "Patient.")
			}
			for i := range doc.Identifiers {
				doc.Identifiers[i].Path = "Bundle.entry.resource.ofType(Patient)." + strings.TrimPrefix(doc.Identifiers[i].Path, "Patient.")
			}
			for i := range doc.Names {
				doc.Names[i].Path = "Bundle.entry.resource.ofType(Patient)." + strings.TrimPrefix(doc.Names[i].Path, "Patient.")
			}
		}
	}
	accepted, err := checkSubject(target, doc, opts)
	if err != nil {
		return nil, err
	}
	if rs, err = recordAcceptance(rs, false, accepted, opts.AcceptedBy, source, im.stamp()); err != nil {
		return nil, err
	}
	res, err := im.file(ctx, consolidate.Batch{Source: source, PatientID: target.ID, SourcePatientID: sourcePatient, Resources: rs}, issues)
	if res != nil {
		res.Accepted = accepted
	}
	return res, err
}

func bundleResources(body []byte, source string) ([]*fhir.Resource, string, []fhir.Issue, error) {
	root, err := fjson.Parse(body)
	if err != nil {
		return nil, "", nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if root.Kind != fjson.Object || root.Get("resourceType").String() != "Bundle" {
		return nil, "", nil, fmt.Errorf("%w: the body must be a FHIR Bundle", ErrUnconvertible)
	}
	switch t := root.Get("type").String(); t {
	case "collection", "transaction", "batch", "document":
	default:
		return nil, "", nil, fmt.Errorf("%w: a Bundle of type %q cannot be imported; send a collection, transaction or document", ErrUnconvertible, t)
	}
	var entries []*fjson.Value
	if e := root.Get("entry"); e != nil {
		if e.Kind != fjson.Array {
			return nil, "", nil, fmt.Errorf("%w: Bundle.entry must be an array", ErrMalformed)
		}
		entries = e.Items
	}
	type item struct {
		v       *fjson.Value
		typ, id string
	}
	var (
		items  []item
		issues []fhir.Issue
		refOf  = map[string]string{} // fullUrl -> "Type/id"
	)
	for i, e := range entries {
		where := fmt.Sprintf("Bundle.entry[%d]", i)
		if e.Kind != fjson.Object {
			return nil, "", nil, fmt.Errorf("%w: %s is not an object", ErrMalformed, where)
		}
		rv := e.Get("resource")
		if rv == nil {
			issues = append(issues, fhir.Issue{Severity: fhir.SeverityWarning, Code: "required", Details: &fhir.IssueDetails{Text: "an entry without a resource was skipped"}, Expression: []string{where}})
			continue
		}
		if req := e.Get("request"); req != nil && strings.EqualFold(req.Get("method").String(), "DELETE") {
			issues = append(issues, fhir.Issue{Severity: fhir.SeverityWarning, Code: "not-supported", Details: &fhir.IssueDetails{Text: "a DELETE entry was skipped: an import only adds"}, Expression: []string{where}})
			continue
		}
		r, err := fhir.FromValue(rv)
		if err != nil {
			return nil, "", nil, fmt.Errorf("%w: %s.resource: %w", ErrMalformed, where, err)
		}
		id := r.ID
		full := e.Get("fullUrl").String()
		if id == "" {
			if u, ok := strings.CutPrefix(full, "urn:uuid:"); ok && fhir.ValidID(u) {
				id = u
			} else {
				id = consolidate.LocalID(source, r.Type, fmt.Sprint("entry/", i))
			}
		}
		if full != "" {
			refOf[full] = r.Type + "/" + id
		}
		items = append(items, item{v: rv, typ: r.Type, id: id})
	}
	var (
		out      []*fhir.Resource
		patients []string
		named    = map[string]bool{}
	)
	for _, it := range items {
		tree, err := fjson.Parse(fjson.AppendCompact(nil, it.v))
		if err != nil {
			return nil, "", nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		resolve(tree, refOf, named)
		setID(tree, it.id)
		r, err := fhir.FromValue(tree)
		if err != nil {
			return nil, "", nil, fmt.Errorf("%w: %s/%s: %w", ErrMalformed, it.typ, it.id, err)
		}
		if r.Type == "Patient" {
			patients = append(patients, r.ID)
		}
		out = append(out, r)
	}
	switch {
	case len(patients) > 1:
		return nil, "", nil, fmt.Errorf("%w: the Bundle holds %d Patients; import one patient's Bundle at a time", ErrUnconvertible, len(patients))
	case len(patients) == 1:
		return out, patients[0], issues, nil
	}
	if len(named) > 1 {
		return nil, "", nil, fmt.Errorf("%w: the Bundle refers to %d different Patients; import one patient's Bundle at a time", ErrUnconvertible, len(named))
	}
	for id := range named {
		// the Patient the Bundle refers to stands for the local one
		stub, err := fhir.Parse([]byte(`{"resourceType":"Patient","id":` + string(fjson.AppendString(nil, id)) + `}`))
		if err != nil {
			return nil, "", nil, fmt.Errorf("%w: Patient/%s: %w", ErrMalformed, id, err)
		}
		return append([]*fhir.Resource{stub}, out...), id, issues, nil
	}
	return out, "", issues, nil
}

// resolve rewrites references to entries' fullUrls as "Type/id" and notes
// the Patient ids referred to.
func resolve(v *fjson.Value, refOf map[string]string, patients map[string]bool) {
	switch v.Kind {
	case fjson.Object:
		for i := range v.Members {
			m := &v.Members[i]
			if m.Key == "reference" && m.Value.Kind == fjson.String {
				ref := m.Value.Str
				if to, ok := refOf[ref]; ok {
					ref = to
					m.Value = &fjson.Value{Kind: fjson.String, Str: to, Raw: fjson.AppendString(nil, to)}
				}
				if id, ok := strings.CutPrefix(ref, "Patient/"); ok && fhir.ValidID(id) {
					patients[id] = true
				}
				continue
			}
			resolve(m.Value, refOf, patients)
		}
	case fjson.Array:
		for _, it := range v.Items {
			resolve(it, refOf, patients)
		}
	}
}

// setID sets the resource's id, right after resourceType when absent.
func setID(v *fjson.Value, id string) {
	idv := &fjson.Value{Kind: fjson.String, Str: id, Raw: fjson.AppendString(nil, id)}
	for i := range v.Members {
		if v.Members[i].Key == "id" {
			v.Members[i].Value = idv
			return
		}
	}
	at := 0
	for i, m := range v.Members {
		if m.Key == "resourceType" {
			at = i + 1
			break
		}
	}
	v.Members = append(v.Members[:at], append([]fjson.Member{{Key: "id", Value: idv}}, v.Members[at:]...)...)
}
