package fhirpath

import "testing"

// BenchmarkObservationSearchParams evaluates the expressions a search index
// extracts from an Observation (the most common resource in the store).
func BenchmarkObservationSearchParams(b *testing.B) {
	node := loadJSON(b, "fhir-r4-examples/Observation/Observation-blood-pressure.json")
	var exprs []*Expr
	for _, x := range []string{
		"Observation.code",
		"Observation.subject.where(resolve() is Patient)",
		"Observation.subject",
		"Observation.effective",
		"(Observation.value as Quantity) | (Observation.value as SampledData)",
		"(Observation.component.value as Quantity) | (Observation.component.value as SampledData)",
		"Observation.component.code",
		"Observation.category",
		"Observation.status",
		"Observation.encounter",
		"Observation.performer",
		"Observation.identifier",
		"Observation | Observation.component",
		"Resource.id",
		"Resource.meta.lastUpdated",
	} {
		exprs = append(exprs, MustCompile(x))
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, e := range exprs {
			if _, err := e.Eval(node, "Observation", nil); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkInvariantEle1 evaluates the most frequent invariant.
func BenchmarkInvariantEle1(b *testing.B) {
	node := loadJSON(b, "fhir-r4-examples/Patient/Patient-example.json")
	e := MustCompile("hasValue() or (children().count() > id.count())")
	name := node.Get("name").Items[0]
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := e.EvalBool(name, "HumanName", nil); err != nil {
			b.Fatal(err)
		}
	}
}
