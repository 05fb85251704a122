package fhirpath

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// exampleResources loads every official example and Synthea resource
// (bundle entries included), grouped by resource type.
func exampleResources(t testing.TB) map[string][]*fjson.Value {
	t.Helper()
	td := testdataDir(t)
	byType := map[string][]*fjson.Value{}
	var add func(v *fjson.Value)
	add = func(v *fjson.Value) {
		rt := v.Get("resourceType").String()
		if rt == "" {
			return
		}
		byType[rt] = append(byType[rt], v)
		if entries := v.Get("entry"); rt == "Bundle" && entries != nil {
			for _, e := range entries.Items {
				if r := e.Get("resource"); r != nil {
					add(r)
				}
			}
		}
	}
	dirs := []string{"fhir-r4-examples"}
	if !testing.Short() {
		dirs = append(dirs, "synthea-r4")
	}
	for _, d := range dirs {
		err := filepath.WalkDir(filepath.Join(td, d), func(path string, de fs.DirEntry, err error) error {
			if err != nil || de.IsDir() || !strings.HasSuffix(path, ".json") {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			v, err := fjson.Parse(data)
			if err != nil {
				return nil // the corpus holds deliberately broken files elsewhere; skip
			}
			add(v)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return byType
}

type searchParamDef struct {
	id, code, typ, expr string
	base                []string
}

func loadSearchParams(t testing.TB) []searchParamDef {
	t.Helper()
	b := loadJSON(t, "fhir-r4-definitions/search-parameters.json")
	var out []searchParamDef
	for _, e := range b.Get("entry").Items {
		r := e.Get("resource")
		sp := searchParamDef{
			id: r.Get("id").String(), code: r.Get("code").String(),
			typ: r.Get("type").String(), expr: r.Get("expression").String(),
		}
		for _, b := range items(r.Get("base")) {
			sp.base = append(sp.base, b.Str)
		}
		out = append(out, sp)
		for _, c := range items(r.Get("component")) {
			out = append(out, searchParamDef{id: sp.id + "/component", code: sp.code, typ: "component",
				expr: c.Get("expression").String(), base: sp.base})
		}
	}
	return out
}

// TestSearchParameterExpressions compiles every expression of the R4
// search parameters and evaluates it on every sample resource of its base
// types (and on an empty resource of each base type); it lists every
// expression the engine cannot handle.
func TestSearchParameterExpressions(t *testing.T) {
	params := loadSearchParams(t)
	samples := exampleResources(t)
	var failed []string
	evaluated, nonEmpty := 0, 0
	for _, sp := range params {
		if sp.expr == "" {
			continue
		}
		e, err := Compile(sp.expr)
		if err != nil {
			if sp.typ != "special" {
				failed = append(failed, sp.id+": "+err.Error())
			}
			continue
		}
		for _, base := range sp.base {
			empty, _ := fjson.Parse([]byte(`{"resourceType":"` + base + `"}`))
			nodes := append([]*fjson.Value{empty}, samples[base]...)
			for _, n := range nodes {
				focus := base
				if sp.typ == "component" {
					// Components are relative to the composite's items; the
					// resource itself stands in for them here.
					focus = ""
				}
				res, err := e.Eval(n, focus, nil)
				evaluated++
				if err != nil && sp.typ != "component" {
					failed = append(failed, sp.id+" on "+base+": "+err.Error())
					break
				}
				if len(res) > 0 {
					nonEmpty++
				}
			}
		}
	}
	t.Logf("%d search parameter evaluations, %d with values", evaluated, nonEmpty)
	for _, f := range failed {
		t.Error(f)
	}
	if nonEmpty < 1000 {
		t.Errorf("only %d evaluations produced values; navigation looks broken", nonEmpty)
	}
}

type constraintDef struct {
	key, path, expr, severity string
	fromTypes                 bool
}

func loadConstraints(t testing.TB) []constraintDef {
	t.Helper()
	var out []constraintDef
	for _, f := range []string{"profiles-resources.assembled.json", "profiles-types.json"} {
		b := loadJSON(t, "fhir-r4-definitions/"+f)
		for _, e := range b.Get("entry").Items {
			r := e.Get("resource")
			if r.Get("resourceType").String() != "StructureDefinition" || r.Get("derivation").String() == "constraint" {
				continue
			}
			snap := r.Get("snapshot")
			if snap == nil {
				continue
			}
			for _, el := range items(snap.Get("element")) {
				path := el.Get("path").String()
				for _, c := range items(el.Get("constraint")) {
					if x := c.Get("expression").String(); x != "" {
						out = append(out, constraintDef{
							key: c.Get("key").String(), path: path, expr: x,
							severity:  c.Get("severity").String(),
							fromTypes: f == "profiles-types.json",
						})
					}
				}
			}
		}
	}
	return out
}

// maxUncompiledInvariants is the number of R4 invariants (counted once per
// element they are declared on) the engine may fail to compile. Raise it
// only with a reason; lower it when support grows.
const maxUncompiledInvariants = 0

// TestInvariantsCompile compiles every constraint expression of the R4
// StructureDefinitions.
func TestInvariantsCompile(t *testing.T) {
	cons := loadConstraints(t)
	failed := 0
	seen := map[string]bool{}
	for _, c := range cons {
		if _, err := Compile(c.expr); err != nil {
			failed++
			if !seen[c.expr] {
				seen[c.expr] = true
				t.Logf("%s (%s): %v", c.key, c.path, err)
				if !errors.Is(err, ErrUnsupported) {
					t.Errorf("%s: syntax error: %v", c.key, err)
				}
			}
		}
	}
	t.Logf("%d of %d invariants do not compile", failed, len(cons))
	if failed > maxUncompiledInvariants {
		t.Errorf("%d invariants do not compile, threshold %d", failed, maxUncompiledInvariants)
	}
}

// knownInvariantFailures lists invariants that official examples are known
// to break (the examples, not the engine, are at fault).
var knownInvariantFailures = map[string]bool{}

// TestInvariantsHoldOnExamples evaluates every invariant on the official
// examples (valid resources, so every error-severity invariant must be
// true or empty) at every element the invariant applies to.
func TestInvariantsHoldOnExamples(t *testing.T) {
	cons := loadConstraints(t)
	samples := exampleResources(t)
	// A constraint declared on an element applies to every node whose type
	// is that element's path: snapshots repeat inherited constraints
	// (ele-1, dom-*) on every type, so an exact match suffices.
	byPath := map[string][]constraintDef{}
	seen := map[string]bool{}
	for _, c := range cons {
		if k := c.path + "\x00" + c.key; !seen[k] {
			seen[k] = true
			byPath[c.path] = append(byPath[c.path], c)
		}
	}
	compiled := map[string]*Expr{}
	comp := func(x string) *Expr {
		if e, ok := compiled[x]; ok {
			return e
		}
		e, err := Compile(x)
		if err != nil {
			t.Fatalf("%s: %v", x, err)
		}
		compiled[x] = e
		return e
	}
	checked, held, failures := 0, 0, map[string]int{}
	var types []string
	for typ := range samples {
		types = append(types, typ)
	}
	sort.Strings(types)
	for _, typ := range types {
		for _, res := range samples[typ] {
			env := &Env{Resource: res, RootResource: res}
			for _, w := range walk(res, typ) {
				cs := byPath[w.it.Type]
				if w.path != w.it.Type {
					cs = append(cs[:len(cs):len(cs)], byPath[w.path]...)
				}
				for _, c := range cs {
					ok, nonEmpty, err := comp(c.expr).EvalBool(w.it.Node, w.it.Type, env)
					checked++
					if nonEmpty && ok {
						held++
					}
					if err != nil {
						// Warnings may be violated by valid resources, but no
						// invariant may fail to evaluate.
						t.Errorf("%s on %s/%s %s: %v", c.key, typ, res.Get("id").String(), w.path, err)
					}
					if (nonEmpty && !ok) && c.severity == "error" && !knownInvariantFailures[c.key] {
						failures[c.key]++
						if failures[c.key] <= 2 {
							t.Errorf("%s on %s/%s %s (%s): ok=%v err=%v", c.key, typ, res.Get("id").String(), w.path, c.expr, ok, err)
						}
					}
				}
			}
		}
	}
	if held < checked/2 {
		t.Errorf("only %d of %d invariant evaluations were true (the rest empty)", held, checked)
	}
	t.Logf("%d invariant evaluations on examples", checked)
}

func items(v *fjson.Value) []*fjson.Value {
	if v == nil {
		return nil
	}
	return v.Items
}

// TestInvariantViolations checks that invariants catch broken resources:
// each case must make the named invariant false on at least one node.
func TestInvariantViolations(t *testing.T) {
	exprs := map[string]constraintDef{}
	for _, c := range loadConstraints(t) {
		if _, ok := exprs[c.key+"@"+c.path]; !ok {
			exprs[c.key+"@"+c.path] = c
		}
	}
	tests := []struct {
		key, path, doc string
	}{
		{"obs-6", "Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueString":"a","dataAbsentReason":{"text":"b"}}`},
		{"dom-2", "Patient", `{"resourceType":"Patient","contained":[{"resourceType":"Patient","id":"a","contained":[{"resourceType":"Patient","id":"b"}]}]}`},
		{"dom-3", "Patient", `{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o"}]}`},
		{"dom-4", "Patient", `{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o","meta":{"versionId":"1"}}],"managingOrganization":{"reference":"#o"}}`},
		{"dom-6", "Patient", `{"resourceType":"Patient","text":{"status":"generated"}}`},
		{"pat-1", "Patient.contact", `{"resourceType":"Patient","contact":[{"gender":"male"}]}`},
		{"ele-1", "HumanName", `{"resourceType":"Patient","name":[{}]}`},
		{"per-1", "Period", `{"resourceType":"Encounter","status":"finished","class":{"code":"x"},"period":{"start":"2020-02-01","end":"2020-01-01T10:00:00Z"}}`},
		{"rng-2", "Range", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueRange":{"low":{"value":5,"code":"mg"},"high":{"value":3,"code":"mg"}}}`},
		{"age-1", "Age", `{"resourceType":"Condition","subject":{"reference":"Patient/1"},"onsetAge":{"value":-3,"system":"http://unitsofmeasure.org","code":"a"}}`},
		{"txt-1", "Narrative.div", `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><script>alert(1)</script></div>"}}`},
		{"ref-1", "Reference", `{"resourceType":"Patient","managingOrganization":{"reference":"#nope"}}`},
		{"bdl-11", "Bundle", `{"resourceType":"Bundle","type":"document","identifier":{"system":"s","value":"v"},"timestamp":"2020-01-01T00:00:00Z","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient"}}]}`},
		{"bdl-7", "Bundle", `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient"}},{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient"}}]}`},
		{"app-4", "Appointment", `{"resourceType":"Appointment","status":"booked","cancelationReason":{"text":"x"},"participant":[{"status":"accepted","actor":{"reference":"Patient/1"}}]}`},
		{"tim-1", "Timing.repeat", `{"resourceType":"MedicationRequest","status":"active","intent":"order","subject":{"reference":"Patient/1"},"medicationCodeableConcept":{"text":"x"},"dosageInstruction":[{"timing":{"repeat":{"duration":5}}}]}`},
		{"mdd-1", "MedicationDispense", `{"resourceType":"MedicationDispense","status":"completed","medicationCodeableConcept":{"text":"x"},"whenPrepared":"2020-01-02","whenHandedOver":"2020-01-01"}`},
		{"que-2", "Questionnaire", `{"resourceType":"Questionnaire","status":"draft","item":[{"linkId":"a","type":"string"},{"linkId":"g","type":"group","item":[{"linkId":"a","type":"string"}]}]}`},
		{"que-7", "Questionnaire.item.enableWhen", `{"resourceType":"Questionnaire","status":"draft","item":[{"linkId":"a","type":"string","enableWhen":[{"question":"b","operator":"exists","answerString":"x"}]}]}`},
		{"con-3", "Condition", `{"resourceType":"Condition","subject":{"reference":"Patient/1"},"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-category","code":"problem-list-item"}]}]}`},
		{"ext-1", "Extension", `{"resourceType":"Patient","extension":[{"url":"http://x","valueString":"a","extension":[{"url":"y","valueString":"b"}]}]}`},
		{"eld-3", "ElementDefinition.max", `{"resourceType":"StructureDefinition","snapshot":{"element":[{"path":"X","max":"-1"}]}}`},
		{"ras-2", "RiskAssessment.prediction", `{"resourceType":"RiskAssessment","status":"final","subject":{"reference":"Patient/1"},"prediction":[{"probabilityDecimal":150}]}`},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			c, ok := exprs[tc.key+"@"+tc.path]
			if !ok {
				t.Fatalf("no constraint %s on %s", tc.key, tc.path)
			}
			res, err := fjson.Parse([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			e := MustCompile(c.expr)
			env := &Env{Resource: res, RootResource: res}
			violated := false
			for _, w := range walk(res, res.Get("resourceType").String()) {
				it := w.it
				if it.Type != tc.path && w.path != tc.path {
					continue
				}
				ok, nonEmpty, err := e.EvalBool(it.Node, it.Type, env)
				if err != nil {
					t.Fatalf("%s: %v", c.expr, err)
				}
				violated = violated || (nonEmpty && !ok)
			}
			if !violated {
				t.Errorf("%s (%s) holds on %s", tc.key, c.expr, tc.doc)
			}
		})
	}
}

type walked struct {
	it   Item
	path string // element path: the parent's type, the element name, [x] for choices
}

// walk lists the nodes of a resource (not descending into nested
// resources, which are checked on their own) with their element paths.
func walk(res *fjson.Value, typ string) []walked {
	all := []walked{{Item{Node: res, Type: typ}, typ}}
	for i := 0; i < len(all); i++ {
		parent := all[i]
		for _, ch := range children(nil, parent.it) {
			if isResourceType(ch.Type) {
				continue
			}
			path := ch.Type
			if ti := lookupType(parent.it.Type); ti != nil {
				if k, ok := ti.keys[ch.Name]; ok {
					path = parent.it.Type + "." + k.elem.name
					if k.elem.choice {
						path += "[x]"
					}
				}
			}
			if ch.Node != nil {
				all = append(all, walked{ch, path})
			}
		}
	}
	return all
}
