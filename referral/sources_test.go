package referral_test

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/convert/ccda"
	"github.com/fhirgate/fhirgate/convert/hl7v2"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/internal/sharedtest"
	"github.com/fhirgate/fhirgate/referral"
	"github.com/fhirgate/fhirgate/referral/knowledge"
)

// TestCaseSummaryOtherSources: the C-CDA documents and HL7 v2 messages of
// the shared test data, converted as the gateway imports them, make a
// valid document and a well-formed page; every unit they carry for a
// code the tables cover is understood (a value is never left unjudged for
// its spelling of a unit), and the sources' own flags and ranges decide
// where they give them.
func TestCaseSummaryOtherSources(t *testing.T) {
	now := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	var records [][]*fhir.Resource
	files, _ := filepath.Glob(sharedtest.Path(t, "ccda", "*.xml"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		res, err := ccda.Convert(b, ccda.Options{Now: func() time.Time { return now }})
		if err != nil {
			continue // documents the converter refuses are its tests' business
		}
		records = append(records, res.Resources)
	}
	msgs, _ := filepath.Glob(sharedtest.Path(t, "hl7v2", "*.hl7"))
	for _, f := range msgs {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, res, err := hl7v2.ParseAndConvert(b, hl7v2.Options{Now: func() time.Time { return now }})
		if err != nil {
			continue
		}
		records = append(records, res.Resources)
	}
	if len(records) < 5 {
		t.Skip("too few C-CDA and HL7 v2 samples in the shared test data")
	}
	kb := knowledge.Builtin()
	unread := map[string]bool{}
	bases := map[referral.Basis]int{}
	for _, rs := range records {
		for _, r := range rs {
			if r.Type != "Observation" {
				continue
			}
			for _, el := range append([]*fjson.Value{r.Root()}, r.Root().Get("component").Elems()...) {
				code := ""
				for _, c := range el.Get("code").Get("coding").Elems() {
					if c.Get("system").String() == knowledge.LOINC {
						code = c.Get("code").String()
					}
				}
				vq := el.Get("valueQuantity")
				if kb.AnalyteFor(code) == nil || vq == nil || vq.Get("value") == nil {
					continue
				}
				u := vq.Get("code").String()
				if u == "" {
					u = vq.Get("unit").String()
				}
				if u != "" && !knowledge.KnownUnit(u) {
					unread[code+" "+u] = true
				}
			}
		}
		var patient *fhir.Resource
		for _, r := range rs {
			if r.Type == "Patient" {
				patient = r
				break
			}
		}
		if patient == nil {
			continue
		}
		doc, err := referral.Summary(patient, rs, referral.Options{BaseURL: "https://gw.test/fhir", Now: now, NewID: counter()})
		if err != nil {
			t.Fatal(err)
		}
		if issues := validate.Default().Validate(doc.Bundle); validate.HasErrors(issues) {
			t.Errorf("document of %s does not validate: %v", patient.ID, errorsOnly(issues))
		}
		page := string(referral.RenderHTML(doc))
		if !strings.Contains(page, "Abnormal results") {
			t.Error("page without its case summary")
		}
		for _, f := range doc.Summary.Flags {
			bases[f.Basis]++
		}
	}
	if len(unread) > 0 {
		var l []string
		for k := range unread {
			l = append(l, k)
		}
		sort.Strings(l)
		t.Errorf("units the sources carry that the converter cannot read: %v", l)
	}
	if bases[referral.BySourceInterpretation] == 0 {
		t.Errorf("no source interpretation decided a flag: %v", bases)
	}
	t.Logf("flags by basis: %v", bases)
}
