package validate

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
)

func TestModelCoversR4(t *testing.T) {
	start := time.Now()
	m, err := loadModel(modelGz)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("model: %d bytes embedded, %d bytes JSON, loaded in %v", len(modelGz), m.rawSize, time.Since(start))
	var resources []string
	for name, td := range m.types {
		if td.kind == kindResource && !td.abstract {
			resources = append(resources, name)
		}
	}
	slices.Sort(resources)
	if !slices.Equal(resources, fhir.ResourceTypes) {
		t.Errorf("model resource types differ from fhir.ResourceTypes: %d vs %d", len(resources), len(fhir.ResourceTypes))
	}
	for name := range primByName {
		if td := m.types[name]; td == nil || td.kind != kindPrimitive || td.prim != primByName[name] {
			t.Errorf("primitive %s missing", name)
		}
	}
	// Spot checks of the element tree.
	obs := m.types["Observation"].root.children
	if s, ok := obs.keys["valueQuantity"]; !ok || !s.el.choice || s.el.types[s.t].td.name != "Quantity" {
		t.Error("Observation.valueQuantity not indexed")
	}
	if s, ok := obs.keys["_valueString"]; !ok || !s.ext {
		t.Error("Observation._valueString not indexed")
	}
	q := m.types["Questionnaire"].byPath["Questionnaire.item.item"]
	if q == nil || q.children != m.types["Questionnaire"].byPath["Questionnaire.item"].children || q.ctxType != "Questionnaire.item" {
		t.Error("contentReference Questionnaire.item.item not resolved")
	}
	if rq := m.types["Range"].byPath["Range.low"]; rq.types[0].td.name != "SimpleQuantity" {
		t.Error("Range.low is not a SimpleQuantity")
	}
	if g := m.types["Patient"].byPath["Patient.gender"]; g.binding == nil || !g.binding.hasCode("female") || g.binding.hasCode("f") {
		t.Error("Patient.gender binding")
	}
}

func TestUncheckedBindings(t *testing.T) {
	u := UncheckedBindings()
	if len(u) == 0 || len(u) > 15 {
		t.Errorf("unexpected number of unchecked bindings: %d", len(u))
	}
	if slices.Contains(u, mimeTypesVS) || slices.Contains(u, "http://hl7.org/fhir/ValueSet/administrative-gender") {
		t.Errorf("checked binding listed as unchecked: %v", u)
	}
	t.Logf("required bindings without a code list: %v", u)
}

func TestInvariantCounts(t *testing.T) {
	total, native, compiled := InvariantCounts()
	t.Logf("%d invariants: %d native, %d compiled by the FHIRPath engine", total, native, compiled)
	if engine == nil {
		t.Skip("no FHIRPath engine")
	}
	unsupported := UnsupportedInvariants()
	for _, u := range unsupported {
		t.Logf("cannot evaluate %s (%s, %d failed evaluations): %s", u.Key, u.Reason, u.EvalErrors, u.Expression)
	}
	if compiled+native < total-5 {
		t.Errorf("only %d of %d invariants evaluated", compiled+native, total)
	}
}

// TestGuards ties the hand-written guards to the shape of the expressions
// they rely on, and checks the derived ones.
func TestGuards(t *testing.T) {
	for _, c := range core().constraints {
		switch c.key {
		case "dom-4", "dom-5":
			if !strings.HasPrefix(c.expr, "contained.") {
				t.Errorf("%s no longer starts with contained.: %s", c.key, c.expr)
			}
		case "ref-1":
			if !strings.HasPrefix(c.expr, "reference.startsWith('#').not() or") {
				t.Errorf("ref-1 changed: %s", c.expr)
			}
		case "dom-2", "dom-3", "bdl-7", "ele-1", "ext-1":
			if c.native == notNative {
				t.Errorf("%s not native", c.key)
			}
		}
	}
	if leadingGuard("a.empty() or (b implies c)") == nil || leadingGuard("a.empty() or b = 'x implies y'") == nil {
		t.Error("no guard where implies is nested or quoted")
	}
	g := leadingGuard("start.hasValue().not() or end.hasValue().not() or (start <= end)")
	if g == nil {
		t.Fatal("no guard for per-1")
	}
	for body, want := range map[string]bool{
		`{"start":"2020"}`:                      false,
		`{"start":"2020","end":"2021"}`:         true,
		`{"_start":{"id":"a"},"end":"2021"}`:    true,
		`{"startx":"2020","end":"2021"}`:        false,
		`{"start":"2020","endDateTime":"2021"}`: true, // a choice form counts as present
	} {
		n, err := fjson.Parse([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if got := g(n); got != want {
			t.Errorf("per-1 guard on %s = %v, want %v", body, got, want)
		}
	}
	if leadingGuard("a.exists() and b.empty()") != nil || leadingGuard("(x.empty()) or y") != nil ||
		leadingGuard("a.empty() or b implies c") != nil || leadingGuard("a.empty() or b xor c") != nil {
		t.Error("guard derived from an expression that does not have the form")
	}
}

// TestModelUpToDate regenerates the model and compares it with the
// embedded one, so that generator and data cannot drift apart.
func TestModelUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the generator")
	}
	td := testdataDir(t)
	out := filepath.Join(t.TempDir(), "model.json.gz")
	cmd := exec.Command("go", "run", "./internal/gen", "-testdata", td, "-out", out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Skipf("generator cannot run here (%v): %s", err, stderr.String())
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, modelGz) {
		t.Error("model.json.gz is stale: run go generate ./fhir/validate")
	}
}

func BenchmarkLoadModel(b *testing.B) {
	for b.Loop() {
		if _, err := loadModel(modelGz); err != nil {
			b.Fatal(err)
		}
	}
}

// TestGuardsSound evaluates, over the official examples, the Synthea data
// and the mutation bases, every invariant that a guard would skip: none of
// them may fail.
func TestGuardsSound(t *testing.T) {
	if engine == nil {
		t.Skip("no FHIRPath engine")
	}
	v := New(Options{BestPractice: true})
	bodies := readFiles(t, "fhir-r4-examples/*/*.json")
	for k, b := range readFiles(t, "synthea-r4/*.json") {
		bodies[k] = b
	}
	for i, b := range []string{basePatient, baseObservation, baseCondition, baseBundle} {
		bodies[fmt.Sprint("base", i)] = []byte(b)
	}
	for name, body := range bodies {
		root, err := fjson.Parse(body)
		if err != nil {
			t.Fatal(err)
		}
		w := v.newWalker()
		w.auditGuards = true
		w.topResource(root, nil)
		for _, is := range w.issues {
			if is.Severity == fhir.SeverityFatal {
				t.Errorf("%s: %s at %v", name, is.Details.Text, is.Expression)
			}
		}
	}
}
