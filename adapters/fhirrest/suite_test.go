package fhirrest_test

import (
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
