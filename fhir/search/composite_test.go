package search

import (
	"testing"

	"github.com/fhirgate/fhirgate/fhir"
)

// TestRelationshipComposite: R4's DocumentReference-relationship names its
// components' definitions crosswise (expression "code" with the reference
// parameter relatesto, "target" with the token parameter relation); each
// component is typed by what its expression selects, so
// relationship=<code>$<reference> finds the document.
func TestRelationshipComposite(t *testing.T) {
	r := testRegistry(t)
	p, ok := r.Param("DocumentReference", "relationship")
	if !ok || len(p.Components) != 2 {
		t.Fatalf("relationship: %+v", p)
	}
	if p.Components[0].Type != TypeToken || p.Components[0].Expression != "code" ||
		p.Components[1].Type != TypeReference || p.Components[1].Expression != "target" {
		t.Fatalf("components %+v", p.Components)
	}
	// a composite whose definitions agree with its expressions is untouched
	q, _ := r.Param("Observation", "code-value-quantity")
	if q.Components[0].Type != TypeToken || q.Components[1].Type != TypeQuantity {
		t.Fatalf("code-value-quantity components %+v", q.Components)
	}
	mk := func(id, code, target string) *fhir.Resource {
		res, err := fhir.Parse([]byte(`{"resourceType":"DocumentReference","id":"` + id + `","status":"current",
		 "content":[{"attachment":{"url":"Binary/x"}}],"relatesTo":[{"code":"` + code + `","target":{"reference":"` + target + `"}}]}`))
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	s := newMemStore(t, r, []*fhir.Resource{mk("a", "replaces", "DocumentReference/old"), mk("b", "transforms", "DocumentReference/old")})
	for query, want := range map[string]int{
		"relationship=replaces$DocumentReference/old":   1,
		"relationship=transforms$DocumentReference/old": 1,
		"relationship=replaces$DocumentReference/other": 0,
		"relationship=signs$DocumentReference/old":      0,
	} {
		if got := s.search(t, r, "DocumentReference", query); got != want {
			t.Errorf("%s: %d matches, want %d", query, got, want)
		}
	}
}
