package consolidate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/storage"
)

type provRef struct {
	Reference  string        `json:"reference,omitempty"`
	Identifier *provIdentity `json:"identifier,omitempty"`
	Display    string        `json:"display,omitempty"`
}

type provIdentity struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

type provCoding struct {
	System  string `json:"system"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

type provCC struct {
	Coding []provCoding `json:"coding"`
}

type provAgent struct {
	Type provCC  `json:"type"`
	Who  provRef `json:"who"`
}

type provEntity struct {
	Role string  `json:"role"`
	What provRef `json:"what"`
}

type provenance struct {
	ResourceType string       `json:"resourceType"`
	ID           string       `json:"id,omitempty"`
	Meta         provMeta     `json:"meta"`
	Target       []provRef    `json:"target"`
	Recorded     string       `json:"recorded"`
	Activity     *provCC      `json:"activity,omitempty"`
	Agent        []provAgent  `json:"agent"`
	Entity       []provEntity `json:"entity"`
}

type provMeta struct {
	Tag []provCoding `json:"tag"`
}

// sourceRef names a source in agents and entities.
func sourceRef(id string) provRef {
	return provRef{Identifier: &provIdentity{System: SourcesSystem, Value: id}, Display: id}
}

func custodian(source string) provAgent {
	return provAgent{
		Type: provCC{Coding: []provCoding{{System: "http://terminology.hl7.org/CodeSystem/provenance-participant-type", Code: "custodian", Display: "Custodian"}}},
		Who:  sourceRef(source),
	}
}

// batchProvenance records that source delivered targets (the local Patient
// first, then every kept resource it delivered, sorted).
func batchProvenance(source string, targets []string) *provenance {
	p := &provenance{
		ResourceType: "Provenance",
		Meta:         provMeta{Tag: []provCoding{{System: TagGenerated, Code: "pull"}}},
		Activity:     &provCC{Coding: []provCoding{{System: "http://terminology.hl7.org/CodeSystem/v3-DataOperation", Code: "CREATE", Display: "create"}}},
		Agent:        []provAgent{custodian(source)},
		Entity:       []provEntity{{Role: "source", What: sourceRef(source)}},
	}
	for _, t := range targets {
		p.Target = append(p.Target, provRef{Reference: t})
	}
	return p
}

// dedupProvenance records that kept is one fact delivered by several
// sources: an agent per source, an entity per stored copy.
func dedupProvenance(kept string, copies []copyInfo) *provenance {
	copies = slices.Clone(copies)
	slices.SortFunc(copies, func(a, b copyInfo) int {
		if a.source != b.source {
			if a.source < b.source {
				return -1
			}
			return 1
		}
		if a.ref < b.ref {
			return -1
		}
		if a.ref > b.ref {
			return 1
		}
		return 0
	})
	p := &provenance{
		ResourceType: "Provenance",
		Meta:         provMeta{Tag: []provCoding{{System: TagGenerated, Code: "deduplicated"}}},
		Target:       []provRef{{Reference: kept}},
	}
	var agents []string
	for _, c := range copies {
		if !slices.Contains(agents, c.source) {
			agents = append(agents, c.source)
			p.Agent = append(p.Agent, custodian(c.source))
		}
		p.Entity = append(p.Entity, provEntity{Role: "source", What: provRef{Reference: c.ref, Display: c.source}})
	}
	return p
}

// putProvenance writes p under id unless the stored version says the same
// (recorded aside: it keeps the time of the first write).
func (c *Consolidator) putProvenance(ctx context.Context, tx storage.Tx, id string, p *provenance, recorded string, creates *[]*fhir.Resource) error {
	p.ID = id
	ex, err := tx.Read(ctx, "Provenance", id)
	switch {
	case err == nil:
		if rec := ex.Root().Get("recorded"); rec != nil {
			p.Recorded = rec.Str
		}
	case errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrGone):
		ex = nil
		p.Recorded = recorded
	default:
		return err
	}
	body, err := json.Marshal(p)
	if err != nil {
		return err
	}
	res, err := fhir.Parse(body)
	if err != nil {
		return fmt.Errorf("provenance: %w", err)
	}
	if ex == nil {
		*creates = append(*creates, res)
		return nil
	}
	if sameContent(res, ex) {
		return nil
	}
	_, _, err = tx.Update(ctx, res, storage.UpdateOptions{})
	return err
}

// linkPatient returns the local Patient with an identifier naming its id at
// source and a "seealso" link to the stored copy of the source's Patient,
// and whether either was missing.
func linkPatient(p *fhir.Resource, source, sourcePatientID string) (*fhir.Resource, bool, error) {
	root, err := fjson.Parse(p.Raw)
	if err != nil {
		return nil, false, err
	}
	system := SourceURI(source)
	copyRef := "Patient/" + LocalID(source, "Patient", sourcePatientID)
	hasID, hasLink := false, false
	for _, id := range items(root.Get("identifier")) {
		if id.Get("system").String() == system && id.Get("value").String() == sourcePatientID {
			hasID = true
		}
	}
	for _, l := range items(root.Get("link")) {
		if o := l.Get("other"); o != nil && o.Get("reference").String() == copyRef {
			hasLink = true
		}
	}
	if hasID && hasLink {
		return p, false, nil
	}
	add := func(key string, v *fjson.Value) {
		for i := range root.Members {
			if root.Members[i].Key == key && root.Members[i].Value.Kind == fjson.Array {
				root.Members[i].Value.Items = append(root.Members[i].Value.Items, v)
				return
			}
		}
		root.Members = append(root.Members, fjson.Member{Key: key, Value: &fjson.Value{Kind: fjson.Array, Items: []*fjson.Value{v}}})
	}
	if !hasID {
		add("identifier", &fjson.Value{Kind: fjson.Object, Members: []fjson.Member{{Key: "system", Value: str(system)}, {Key: "value", Value: str(sourcePatientID)}}})
	}
	if !hasLink {
		add("link", &fjson.Value{Kind: fjson.Object, Members: []fjson.Member{
			{Key: "other", Value: &fjson.Value{Kind: fjson.Object, Members: []fjson.Member{{Key: "reference", Value: str(copyRef)}, {Key: "display", Value: str(source)}}}},
			{Key: "type", Value: str("seealso")},
		}})
	}
	out, err := fhir.FromValue(root)
	if err != nil {
		return nil, false, err
	}
	out.ID, out.VersionID = p.ID, p.VersionID
	return out, true, nil
}

// SourcePatientID returns the patient's id at source as recorded on the
// local Patient by an earlier pull, or "".
func SourcePatientID(local *fhir.Resource, source string) string {
	system := SourceURI(source)
	for _, id := range items(local.Root().Get("identifier")) {
		if id.Get("system").String() == system {
			return id.Get("value").String()
		}
	}
	return ""
}
