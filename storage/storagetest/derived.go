package storagetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/storage"
)

// RunDerived checks searches on derived parameters (search.Derivation:
// combo-code, combo-value-quantity, combo-code-value-quantity, patient),
// which a store answers from their sources' index rows: every plain clause
// against search.Clause.Match on the extracted index (the reference), and
// the chains, reverse chains, includes, sorts and :missing over them
// against what the generated record says.
func RunDerived(t *testing.T, newStore SearchFactory) {
	ctx := context.Background()
	reg, err := search.New(search.Options{BaseURL: "http://fhir.test"})
	if err != nil {
		t.Fatal(err)
	}
	s := newStore(t, reg)
	t.Cleanup(func() { s.Close() })

	rng := rand.New(rand.NewPCG(7, 11))
	var all []*fhir.Resource
	for _, r := range []string{
		`{"resourceType":"Patient","id":"p1","name":[{"family":"Smith"}]}`,
		`{"resourceType":"Patient","id":"p2","name":[{"family":"Jones"}]}`,
		`{"resourceType":"Group","id":"g1","type":"person","actual":true}`,
	} {
		all = append(all, mustParse(t, r))
	}
	codes := []string{"8480-6", "8462-4", "29463-7", "8867-4"}
	subjects := []string{`"subject":{"reference":"Patient/p1"},`, `"subject":{"reference":"Patient/p2"},`, `"subject":{"reference":"Group/g1"},`, ``}
	obs := map[string]string{} // id -> subject reference ("" none)
	for i := 0; i < 60; i++ {
		id := fmt.Sprintf("o%02d", i)
		subj := subjects[rng.IntN(len(subjects))]
		var parts []string
		code := codes[rng.IntN(len(codes))]
		parts = append(parts, fmt.Sprintf(`"code":{"coding":[{"system":"http://loinc.org","code":%q}]}`, code))
		if rng.IntN(3) > 0 {
			parts = append(parts, fmt.Sprintf(`"valueQuantity":{"value":%d,"system":"http://unitsofmeasure.org","code":"mm[Hg]"}`, 40+rng.IntN(120)))
		}
		if rng.IntN(2) == 0 {
			var comps []string
			for c := 0; c < 1+rng.IntN(2); c++ {
				comps = append(comps, fmt.Sprintf(`{"code":{"coding":[{"system":"http://loinc.org","code":%q}]},"valueQuantity":{"value":%d,"system":"http://unitsofmeasure.org","code":"mm[Hg]"}}`,
					codes[rng.IntN(2)], 40+rng.IntN(120)))
			}
			parts = append(parts, `"component":[`+strings.Join(comps, ",")+`]`)
		}
		body := fmt.Sprintf(`{"resourceType":"Observation","id":%q,"status":"final",%s%s}`, id, subj, strings.Join(parts, ","))
		all = append(all, mustParse(t, body))
		obs[id] = ""
		if subj != "" {
			obs[id] = strings.Split(subj, `"`)[5]
		}
	}
	if _, err := s.CreateMany(ctx, all); err != nil {
		t.Fatal(err)
	}
	index := map[string]*search.Index{}
	for _, r := range all {
		ix, err := reg.Extract(r)
		if err != nil {
			t.Fatal(err)
		}
		index[r.Type+"/"+r.ID] = ix
	}
	// the reference: every resource of typ whose index Match accepts
	want := func(typ, query string) []string {
		q := parse(t, reg, typ, query)
		var out []string
		for key, ix := range index {
			if !strings.HasPrefix(key, typ+"/") {
				continue
			}
			ok := true
			for i := range q.Clauses {
				ok = ok && q.Clauses[i].Match(ix)
			}
			if ok {
				out = append(out, key)
			}
		}
		return out
	}
	nonEmpty := 0
	for _, query := range []string{
		"combo-code=http://loinc.org|8480-6", "combo-code=8462-4", "combo-code=http://loinc.org|8867-4,http://loinc.org|29463-7",
		"combo-code:missing=false", "combo-code:not=http://loinc.org|8480-6",
		"combo-value-quantity=gt120", "combo-value-quantity=lt60|http://unitsofmeasure.org|mm[Hg]", "combo-value-quantity:missing=true",
		"combo-code-value-quantity=http://loinc.org|8480-6$gt100", "combo-code-value-quantity=8462-4$lt80",
		"combo-code-value-quantity=http://loinc.org|8480-6$gt100,http://loinc.org|8462-4$lt60",
		"patient=p1", "patient=Patient/p2", "patient:missing=true", "patient:missing=false", "subject=Group/g1",
		"patient=p1&combo-code=8480-6", "patient:Patient=p2", "patient:identifier=urn:x|1",
	} {
		got, _ := pageAll(t, s, reg, nil, "Observation", query+"&_count=7")
		w := want("Observation", query)
		sameSet(t, query, got, w)
		if len(w) > 0 {
			nonEmpty++
		}
	}
	if nonEmpty < 15 {
		t.Fatalf("only %d queries matched anything: the generated record lost its variety", nonEmpty)
	}
	withSubject := func(pred func(subj string) bool) []string {
		var out []string
		for id, subj := range obs {
			if pred(subj) {
				out = append(out, "Observation/"+id)
			}
		}
		return out
	}
	// a chain and a reverse chain through patient
	got, _ := pageAll(t, s, reg, nil, "Observation", "patient.name=smith")
	sameSet(t, "patient.name=smith", got, withSubject(func(s string) bool { return s == "Patient/p1" }))
	got, _ = pageAll(t, s, reg, nil, "Patient", "_has:Observation:patient:combo-code=8480-6")
	var pats []string
	for _, p := range []string{"Patient/p1", "Patient/p2"} {
		for id, subj := range obs {
			if subj == p && slices.Contains(want("Observation", "combo-code=8480-6"), "Observation/"+id) {
				pats = append(pats, p)
				break
			}
		}
	}
	sameSet(t, "_has:Observation:patient:combo-code", got, pats)
	// includes: Observation:patient names Patients only, never the Group
	// (each page includes what its own matches reference: once per page)
	_, inc := pageAll(t, s, reg, nil, "Observation", "_include=Observation:patient&_count=100")
	sameSet(t, "_include=Observation:patient", inc, []string{"Patient/p1", "Patient/p2"})
	_, inc = pageAll(t, s, reg, nil, "Patient", "_id=p1&_revinclude=Observation:patient")
	sameSet(t, "_revinclude=Observation:patient", inc, withSubject(func(s string) bool { return s == "Patient/p1" }))
	_, inc = pageAll(t, s, reg, nil, "Group", "_revinclude=Observation:patient")
	sameSet(t, "Group _revinclude=Observation:patient", inc, nil)
	// sorting by a derived parameter: the Observations without a Patient last
	res, err := s.Search(ctx, storage.SearchRequest{Query: parse(t, reg, "Observation", "_sort=patient&_count=100")})
	if err != nil {
		t.Fatal(err)
	}
	seenNone := false
	for _, r := range res.Matches {
		isPatient := strings.HasPrefix(obs[r.ID], "Patient/")
		if !isPatient {
			seenNone = true
		} else if seenNone {
			t.Fatalf("_sort=patient: %s (of %s) after an Observation without a Patient", r.ID, obs[r.ID])
		}
	}
	if len(res.Matches) != len(obs) {
		t.Fatalf("_sort=patient: %d matches, want %d", len(res.Matches), len(obs))
	}
}
