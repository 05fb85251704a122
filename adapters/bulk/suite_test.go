package bulk_test

import (
	"testing"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/adaptertest"
	"github.com/fhirgate/fhirgate/adapters/bulk"
)

func TestSuite(t *testing.T) {
	adaptertest.Run(t, func(t *testing.T, up *adaptertest.Upstream) adapters.Source {
		src, err := bulk.New("city-hospital-bulk", bulk.Config{Config: up.Config}, up.Options)
		if err != nil {
			t.Fatal(err)
		}
		return src
	})
}
