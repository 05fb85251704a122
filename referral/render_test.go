package referral_test

import (
	"encoding/xml"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/referral"
)

// TestRenderHTMLSynthea: for every Synthea patient the page is
// well-formed XHTML, holds every section of the document, and its text
// reads as people write: no code-system URL, no "(no code)", no value
// with more digits than a person reads.
func TestRenderHTMLSynthea(t *testing.T) {
	longDecimal := regexp.MustCompile(`\d+\.\d{4,}`)
	for _, f := range syntheaFiles(t) {
		rec := loadRecord(t, f)
		t.Run(filepath.Base(f), func(t *testing.T) {
			doc, err := referral.Summary(rec.patient, rec.resources, referral.Options{BaseURL: "https://gw.test/fhir",
				Now: time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC), NewID: counter(), Specialty: referral.Specialties()[0],
				Narrate: func(cs *referral.CaseSummary) *referral.Draft {
					return &referral.Draft{Text: "Draft <b>text</b> & more.", Model: "m", Endpoint: "e"}
				}})
			if err != nil {
				t.Fatal(err)
			}
			page := string(referral.RenderHTML(doc))
			d := xml.NewDecoder(strings.NewReader(strings.TrimPrefix(page, "<!DOCTYPE html>\n")))
			d.Strict = true
			var text strings.Builder
			sections := 0
			for {
				tok, err := d.Token()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("not well-formed: %v", err)
				}
				switch x := tok.(type) {
				case xml.CharData:
					text.Write(x)
					text.WriteByte(' ')
				case xml.StartElement:
					if x.Name.Local == "section" {
						sections++
					}
					if x.Name.Local == "script" {
						t.Fatal("a script in the page")
					}
				}
			}
			s := text.String()
			for _, bad := range []string{"http://", "https://", "(no code)"} {
				if i := strings.Index(s, bad); i >= 0 {
					t.Errorf("the page text holds %q: …%s…", bad, s[max(0, i-80):min(len(s), i+80)])
				}
			}
			if m := longDecimal.FindString(s); m != "" {
				t.Errorf("unrounded value %s in the page", m)
			}
			for _, want := range []string{"Abnormal results", "Trends", "Risks", "Missing tests and reviews", "Problem list", "Machine-written draft", "Draft <b>text</b> & more."} {
				if !strings.Contains(s, want) {
					t.Errorf("the page lacks %q", want)
				}
			}
			comp := doc.Bundle.Root().Get("entry").Elems()[0].Get("resource")
			if n := len(comp.Get("section").Elems()) + 1; sections != n {
				t.Errorf("%d sections on the page, %d in the document (+ overview)", sections, n)
			}
		})
	}
}
