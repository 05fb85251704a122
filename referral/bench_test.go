package referral_test

import (
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/referral"
)

// BenchmarkCaseSummary measures, in memory, what $summary adds to reading
// the record: the document with the computed case summary of the largest
// Synthea patient, and its HTML rendering.
func BenchmarkCaseSummary(b *testing.B) {
	var rec record
	most := 0
	for _, f := range syntheaFiles(b) {
		r := loadRecord(b, f)
		if len(r.resources) > most {
			most, rec = len(r.resources), r
		}
	}
	now := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	b.Run("analyze", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			referral.Analyze(rec.resources, referral.AnalyzeOptions{Now: now})
		}
	})
	b.Run("document", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := referral.Summary(rec.patient, rec.resources, referral.Options{BaseURL: "https://gw.test", Now: now}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("html", func(b *testing.B) {
		doc, _ := referral.Summary(rec.patient, rec.resources, referral.Options{BaseURL: "https://gw.test", Now: now})
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			referral.RenderHTML(doc)
		}
	})
}
