package fhirrest_test

import (
	"context"
	"testing"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/adaptertest"
	"github.com/fhirgate/fhirgate/adapters/fhirrest"
)

func TestSuite(t *testing.T) {
	adaptertest.Run(t, func(t *testing.T, up *adaptertest.Upstream) adapters.Source {
		src, err := fhirrest.New("city-hospital", fhirrest.Config{Config: up.Config}, up.Options)
		if err != nil {
			t.Fatal(err)
		}
		return src
	})
}

// TestOverlappingSources: three sources holding overlapping parts of one
// record (adaptertest.Overlap) together return all of it, each clinical
// resource from exactly two of them: the input consolidation starts from.
func TestOverlappingSources(t *testing.T) {
	got := map[string]int{}
	for i := range 3 {
		up := adaptertest.NewUpstream(t, adaptertest.ServerOptions{Everything: i == 0, Keep: adaptertest.Overlap(i, 3)})
		src, err := fhirrest.New("s", fhirrest.Config{Config: up.Config}, up.Options)
		if err != nil {
			t.Fatal(err)
		}
		rs, _, err := adapters.Collect(context.Background(), src, adapters.FetchRequest{PatientID: up.Patients()[0]})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			got[r.Type+"/"+r.ID]++
		}
	}
	full := adaptertest.NewUpstream(t, adaptertest.ServerOptions{})
	for _, r := range full.Record(full.Patients()[0]) {
		k := r.Type + "/" + r.ID
		switch {
		case r.Type == "Patient":
			if got[k] != 3 {
				t.Errorf("%s pulled from %d sources, want 3", k, got[k])
			}
		case r.Type == "Practitioner" || r.Type == "Organization":
			// Read only where a held resource references it.
			if got[k] == 0 {
				t.Errorf("%s pulled from no source", k)
			}
		case got[k] != 2:
			t.Errorf("%s pulled from %d sources, want 2", k, got[k])
		}
	}
}
