package search

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
)

// memStore is a tiny in-memory store: it runs a Query with Clause.Match
// and resolves chains and _has through the Refs rows, the way a SQL store
// joins its index tables.
type memStore struct {
	byType map[string][]*memResource
	byKey  map[string]*memResource
}

type memResource struct {
	res *fhir.Resource
	ix  *Index
	m   map[string]any
}

func newMemStore(t testing.TB, r *Registry, resources []*fhir.Resource) *memStore {
	s := &memStore{byType: map[string][]*memResource{}, byKey: map[string]*memResource{}}
	for _, res := range resources {
		ix, err := r.Extract(res)
		if err != nil {
			t.Fatal(err)
		}
		mr := &memResource{res: res, ix: ix, m: jsonMap(t, res.Raw)}
		s.byType[res.Type] = append(s.byType[res.Type], mr)
		s.byKey[res.Type+"/"+res.ID] = mr
	}
	return s
}

func (s *memStore) search(t testing.TB, r *Registry, typ, query string) int {
	t.Helper()
	vals, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	q, err := r.ParseQuery(typ, vals, true)
	if err != nil {
		t.Fatalf("%s?%s: %v", typ, query, err)
	}
	n := 0
	for _, mr := range s.byType[typ] {
		ok := true
		for i := range q.Clauses {
			if !s.match(&q.Clauses[i], mr) {
				ok = false
				break
			}
		}
		if ok {
			n++
		}
	}
	return n
}

func (s *memStore) match(c *Clause, mr *memResource) bool {
	switch {
	case c.Chain != nil:
		for _, ref := range mr.ix.Refs {
			if ref.Param != c.Param || ref.Group != 0 || ref.URL != "" {
				continue
			}
			target := s.byKey[ref.TargetType+"/"+ref.TargetID]
			if target != nil && contains(c.Chain.Types, ref.TargetType) && s.match(c.Chain.Clause, target) {
				return true
			}
		}
		return false
	case c.Has != nil:
		for _, other := range s.byType[c.Has.Type] {
			for _, ref := range other.ix.Refs {
				if ref.Param == c.Has.Param && ref.TargetType == mr.res.Type && ref.TargetID == mr.res.ID &&
					s.match(c.Has.Clause, other) {
					return true
				}
			}
		}
		return false
	}
	return c.Match(mr.ix)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// count counts the resources of a type for which pred holds on the JSON.
func (s *memStore) count(typ string, pred func(m map[string]any) bool) int {
	n := 0
	for _, mr := range s.byType[typ] {
		if pred(mr.m) {
			n++
		}
	}
	return n
}

func hasCoding(cc any, system, code string) bool {
	for _, c := range codings(cc) {
		if c == system+"|"+code || (system == "" && strings.HasSuffix(c, "|"+code)) {
			return true
		}
	}
	return false
}

func num(v any) float64 {
	var f float64
	fmt.Sscan(fmt.Sprint(v), &f)
	return f
}

func ts(v any) time.Time {
	t, _ := time.Parse(time.RFC3339, fmt.Sprint(v))
	return t
}

// TestSearchSynthea runs searches over each Synthea patient with the
// in-memory store and compares the counts with counts computed straight
// from the JSON.
func TestSearchSynthea(t *testing.T) {
	r := testRegistry(t)
	files := syntheaFiles(t)
	if testing.Short() {
		files = files[:2]
	}
	for _, f := range files {
		s := newMemStore(t, r, syntheaBundle(t, f))
		pat := s.byType["Patient"][0]
		pid := pat.res.ID
		family := pat.m["name"].([]any)[0].(map[string]any)["family"].(string)
		y2010, y2011 := time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2011, 1, 1, 0, 0, 0, 0, time.UTC)
		var anImmunization string
		if im := s.byType["Immunization"]; len(im) > 0 {
			anImmunization = im[0].res.ID
		}
		tests := []struct {
			typ, query string
			want       int
		}{
			{"Observation", "code=http://loinc.org|8302-2", s.count("Observation", func(m map[string]any) bool { return hasCoding(m["code"], "http://loinc.org", "8302-2") })},
			{"Observation", "code=8302-2,29463-7", s.count("Observation", func(m map[string]any) bool {
				return hasCoding(m["code"], "", "8302-2") || hasCoding(m["code"], "", "29463-7")
			})},
			{"Observation", "code:not=8302-2", s.count("Observation", func(m map[string]any) bool { return !hasCoding(m["code"], "", "8302-2") })},
			{"Observation", "code:text=body", s.count("Observation", func(m map[string]any) bool {
				cc := m["code"].(map[string]any)
				if strings.HasPrefix(strings.ToLower(fmt.Sprint(cc["text"])), "body") {
					return true
				}
				for _, c := range cc["coding"].([]any) {
					if strings.HasPrefix(strings.ToLower(fmt.Sprint(c.(map[string]any)["display"])), "body") {
						return true
					}
				}
				return false
			})},
			{"Observation", "date=ge2015-01-01&date=lt2017-01-01", s.count("Observation", func(m map[string]any) bool {
				d := ts(m["effectiveDateTime"])
				return !d.Before(time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC)) && d.Before(time.Date(2017, 1, 1, 0, 0, 0, 0, time.UTC))
			})},
			{"Observation", "value-quantity=gt100", s.count("Observation", func(m map[string]any) bool {
				vq, ok := m["valueQuantity"].(map[string]any)
				return ok && num(vq["value"]) > 100.5
			})},
			{"Observation", "component-code-value-quantity=http://loinc.org|8480-6$gt120", s.count("Observation", func(m map[string]any) bool {
				comps, _ := m["component"].([]any)
				for _, c := range comps {
					cm := c.(map[string]any)
					vq, ok := cm["valueQuantity"].(map[string]any)
					if ok && hasCoding(cm["code"], "http://loinc.org", "8480-6") && num(vq["value"]) > 120.5 {
						return true
					}
				}
				return false
			})},
			{"Observation", "combo-code=8480-6", s.count("Observation", func(m map[string]any) bool {
				if hasCoding(m["code"], "", "8480-6") {
					return true
				}
				comps, _ := m["component"].([]any)
				for _, c := range comps {
					if hasCoding(c.(map[string]any)["code"], "", "8480-6") {
						return true
					}
				}
				return false
			})},
			{"Observation", "patient=Patient/" + pid, len(s.byType["Observation"])},
			{"Observation", "subject:Patient=" + pid + "&status=final", s.count("Observation", func(m map[string]any) bool { return m["status"] == "final" })},
			{"Observation", "patient.family=" + family, len(s.byType["Observation"])},
			{"Observation", "patient.family=zz-nobody", 0},
			{"Condition", "clinical-status=active", s.count("Condition", func(m map[string]any) bool { return hasCoding(m["clinicalStatus"], "", "active") })},
			{"Encounter", "date=ge2010", s.count("Encounter", func(m map[string]any) bool {
				p := m["period"].(map[string]any)
				start, end := ts(p["start"]), ts(p["end"])
				return !end.Before(y2011) || (!start.Before(y2010) && end.Before(y2011))
			})},
			{"MedicationRequest", "status=active,stopped", s.count("MedicationRequest", func(m map[string]any) bool { return m["status"] == "active" || m["status"] == "stopped" })},
			{"Claim", "patient=" + pid, len(s.byType["Claim"])},
			{"Patient", "family=" + strings.ToLower(foldTest(family))[:3], 1},
			{"Patient", "birthdate:missing=false", 1},
			{"Patient", "_has:Observation:patient:code=8302-2", min(1, s.count("Observation", func(m map[string]any) bool { return hasCoding(m["code"], "", "8302-2") }))},
			{"Immunization", "_id=" + anImmunization, min(1, len(s.byType["Immunization"]))},
		}
		for _, tc := range tests {
			if got := s.search(t, r, tc.typ, tc.query); got != tc.want {
				t.Errorf("%s: %s?%s = %d, want %d", f, tc.typ, tc.query, got, tc.want)
			}
		}
	}
}

func TestClauseMatchModifiers(t *testing.T) {
	r := testRegistry(t)
	res, err := fhir.Parse([]byte(`{"resourceType":"Patient","id":"p","name":[{"family":"Müller","given":["Zoë"]}],
		"identifier":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]},"system":"urn:x","value":"42"}],
		"gender":"female","managingOrganization":{"identifier":{"system":"urn:org","value":"o1"}},
		"meta":{"profile":["http://example.org/fhir/StructureDefinition/p|1.0"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := r.Extract(res)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		query string
		want  bool
	}{
		{"family=mul", true},
		{"family=MÜL", true},
		{"family=ller", false},
		{"family:contains=LLER", true},
		{"family:exact=Müller", true},
		{"family:exact=muller", false},
		{"given=zoe", true},
		{"gender=female", true},
		{"gender=|female", true},
		{"gender=http://hl7.org/fhir/administrative-gender|female", false},
		{"gender:not=male", true},
		{"gender:not=female,male", false},
		{"identifier=urn:x|42", true},
		{"identifier=urn:x|", true},
		{"identifier=42", true},
		{"identifier=urn:y|42", false},
		{"identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|42", true},
		{"identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|DL|42", false},
		{"organization:identifier=urn:org|o1", true},
		{"organization:identifier=o2", false},
		{"birthdate:missing=true", true},
		{"gender:missing=true", false},
		{"_profile=http://example.org/fhir/StructureDefinition/p|1.0", true},
		{"_profile:below=http://example.org/fhir/", true},
		{"_profile:above=http://example.org/fhir/StructureDefinition/p|1.0/x", true},
		{"_profile=http://example.org/fhir/StructureDefinition/p", false},
	}
	for _, tc := range tests {
		vals, _ := url.ParseQuery(tc.query)
		q, err := r.ParseQuery("Patient", vals, true)
		if err != nil {
			t.Fatalf("%s: %v", tc.query, err)
		}
		if got := q.Clauses[0].Match(ix); got != tc.want {
			t.Errorf("%s matched %v, want %v", tc.query, got, tc.want)
		}
	}
}

// TestConceptText: a CodeableConcept's text is a value of its own only
// when no coding's display says the same; :text finds the concept by
// either way, and a code search never by the text.
func TestConceptText(t *testing.T) {
	r := testRegistry(t)
	extract := func(code string) *Index {
		t.Helper()
		return extractDoc(t, r, `{"resourceType":"Observation","id":"o","status":"final","code":`+code+`,
			"valueQuantity":{"value":180,"system":"http://unitsofmeasure.org","code":"cm"}}`)
	}
	count := func(ix *Index, param string) int {
		n := 0
		for _, v := range ix.Tokens {
			if v.Param == param {
				n++
			}
		}
		return n
	}
	matches := func(ix *Index, query string) bool {
		t.Helper()
		vals, _ := url.ParseQuery(query)
		q, err := r.ParseQuery("Observation", vals, true)
		if err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		return q.Clauses[0].Match(ix)
	}
	same := extract(`{"coding":[{"system":"http://loinc.org","code":"8302-2","display":"Body Height"}],"text":"Body  height"}`)
	other := extract(`{"coding":[{"system":"http://loinc.org","code":"8302-2","display":"Body Height"}],"text":"Stature"}`)
	textOnly := extract(`{"text":"Stature"}`)
	for _, tc := range []struct {
		name          string
		ix            *Index
		code, compose int
	}{{"text as the display", same, 1, 1}, {"another text", other, 2, 2}, {"text only", textOnly, 1, 1}} {
		if n := count(tc.ix, "code"); n != tc.code {
			t.Errorf("%s: %d values of code, want %d", tc.name, n, tc.code)
		}
		if n := count(tc.ix, "code-value-quantity"); n != tc.compose {
			t.Errorf("%s: %d token values of code-value-quantity, want %d", tc.name, n, tc.compose)
		}
	}
	for _, tc := range []struct {
		ix    *Index
		query string
		want  bool
	}{
		{same, "code:text=body h", true},
		{same, "code:text=stat", false},
		{same, "code=http://loinc.org|8302-2", true},
		{other, "code:text=body h", true},
		{other, "code:text=stat", true},
		{textOnly, "code:text=stat", true},
		{textOnly, "code=stature", false},
		{textOnly, "code:missing=false", true},
		{same, "code-value-quantity=http://loinc.org|8302-2$180", true},
		{other, "code-value-quantity=http://loinc.org|8302-2$180", true},
	} {
		if got := matches(tc.ix, tc.query); got != tc.want {
			t.Errorf("%s on %v: matched %v, want %v", tc.query, tc.ix.Tokens, got, tc.want)
		}
	}
}
