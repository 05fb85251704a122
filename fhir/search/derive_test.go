package search

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fhirpath"
)

// TestDerivations pins the derivations the definitions give for the
// parameters a Synthea record uses most.
func TestDerivations(t *testing.T) {
	r := testRegistry(t)
	for _, c := range []struct {
		typ, code string
		want      string // "" = stored
	}{
		{"Observation", "combo-code", "[code component-code]"},
		{"Observation", "combo-value-quantity", "[component-value-quantity value-quantity]"},
		{"Observation", "combo-code-value-quantity", "[code-value-quantity component-code-value-quantity]"},
		{"Observation", "combo-code-value-concept", "[code-value-concept component-code-value-concept]"},
		{"Observation", "patient", "[subject] Patient"},
		{"Encounter", "patient", "[subject] Patient"},
		{"Encounter", "practitioner", "[participant] Practitioner"},
		{"Observation", "code", ""},
		{"Observation", "subject", ""},
		{"Observation", "code-value-quantity", ""}, // its value component is not value-quantity's expression
		{"Claim", "patient", ""},                   // Claim.patient: a reference of its own
		{"Patient", "name", ""},
	} {
		p, ok := r.Param(c.typ, c.code)
		if !ok {
			t.Fatalf("%s.%s unknown", c.typ, c.code)
		}
		got := ""
		if d := p.Derived(); d != nil {
			got = strings.TrimSpace(fmt.Sprint(d.From) + " " + d.Target)
		}
		if got != c.want {
			t.Errorf("%s.%s derives from %q, want %q", c.typ, c.code, got, c.want)
		}
		if r.Stored(c.typ, c.code) != (c.want == "") {
			t.Errorf("%s.%s: Stored = %v", c.typ, c.code, r.Stored(c.typ, c.code))
		}
	}
	// sources are stored parameters of the same type
	for _, rt := range fhir.ResourceTypes {
		for _, p := range r.Params(rt) {
			d := p.Derived()
			if d == nil {
				continue
			}
			for _, f := range d.From {
				src, ok := r.Param(rt, f)
				if !ok || src.Derived() != nil || src.Type != p.Type {
					t.Errorf("%s.%s derives from %s, which is not a stored %s parameter", rt, p.Code, f, p.Type)
				}
			}
		}
	}
}

// TestDerivedValues: on every official R4 example and every Synthea
// resource, a derived parameter's values (its sources', as Extract gives
// them) are exactly what its own expression gives.
func TestDerivedValues(t *testing.T) {
	r := testRegistry(t)
	var all []*fhir.Resource
	dir := filepath.Join(testdataDir(t), "fhir-r4-examples")
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*.json"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		res, err := fhir.Parse(b)
		if err != nil {
			continue // not a resource this parser takes (the suite has a few)
		}
		all = append(all, res)
	}
	for _, name := range syntheaFiles(t) {
		all = append(all, syntheaBundle(t, name)...)
	}
	compared, values := 0, 0
	for _, res := range all {
		ix, err := r.Extract(res)
		if err != nil {
			continue
		}
		root := res.Root()
		env := &fhirpath.Env{Resource: root, RootResource: root}
		for _, p := range r.Params(res.Type) {
			if p.Derived() == nil {
				continue
			}
			own := &extractor{ix: &Index{}, base: r.opts.BaseURL}
			if err := own.param(p, root, res.Type, env); err != nil {
				t.Fatalf("%s/%s %s: %v", res.Type, res.ID, p.Code, err)
			}
			want, got := valuesOf(own.ix, p.Code), valuesOf(ix, p.Code)
			if !slices.Equal(want, got) {
				t.Errorf("%s/%s %s:\n its expression gives %q\n its sources give    %q", res.Type, res.ID, p.Code, want, got)
			}
			compared++
			values += len(want)
		}
	}
	t.Logf("%d resources, %d derived parameters compared, %d values", len(all), compared, values)
	if values < 1000 {
		t.Fatalf("only %d derived values compared: the test data is not what it was", values)
	}
}

// valuesOf lists a parameter's values as sorted strings, each composite
// group as one string of its components (group numbers differ between an
// evaluation and a derivation; what they join does not).
func valuesOf(ix *Index, code string) []string {
	var plain []string
	groups := map[int][]string{}
	add := func(a At, v any) {
		if a.Param != code {
			return
		}
		// the value's own fields: what follows its At{...} in %+v
		s := fmt.Sprintf("%+v", v)
		s = fmt.Sprintf("%d %T%s", a.Component, v, s[strings.IndexByte(s, '}')+1:])
		if a.Group > 0 {
			groups[a.Group] = append(groups[a.Group], s)
		} else {
			plain = append(plain, s)
		}
	}
	eachValue(ix.Strings, add)
	eachValue(ix.Tokens, add)
	eachValue(ix.Refs, add)
	eachValue(ix.Dates, add)
	eachValue(ix.Numbers, add)
	eachValue(ix.Quantities, add)
	eachValue(ix.URIs, add)
	for _, g := range groups {
		sort.Strings(g)
		plain = append(plain, "group "+strings.Join(g, " & "))
	}
	sort.Strings(plain)
	return slices.Compact(plain)
}

func eachValue[T atter](vs []T, add func(At, any)) {
	for _, v := range vs {
		add(v.at(), v)
	}
}
