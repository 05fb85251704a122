package server_test

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/server"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/postgres"
	"github.com/fhirgate/fhirgate/storage/postgres/pgtest"
	"github.com/fhirgate/fhirgate/storage/sqlite"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

// replicaPair returns two gateways on one database: on PostgreSQL two
// stores (two pools, as two replicas have); the embedded store is its
// file's only writer, so there the second gateway shares the first's store.
func replicaPair(t *testing.T, k storeKind) (*harness, *harness) {
	t.Helper()
	var s1, s2 storage.Store
	switch k.name {
	case "postgres":
		cfg := pgtest.Config(t)
		for _, dst := range []*storage.Store{&s1, &s2} {
			st, err := postgres.Open(context.Background(), cfg, sqlstore.Options{Registry: testRegistry})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			*dst = st
		}
	default:
		st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "r.db"), sqlstore.Options{Registry: testRegistry})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		s1, s2 = st, st
	}
	mk := func(st storage.Store) *harness {
		return &harness{t: t, store: st, srv: server.New(server.Config{Store: st, Search: testRegistry, Validator: validate.Default(), BaseURL: "http://fhir.test"})}
	}
	return mk(s1), mk(s2)
}

// TestEverythingKeptRecord: $everything answers from a kept record and a
// kept page only while nothing in the record changed. A second gateway on
// the same database (a replica) writes: a new resource in the compartment,
// a change of a resource outside it that the record refers to, a resource
// leaving the compartment, a deletion, and a referenced resource created
// after the reference. Each shows at once on the first gateway, whose page
// is otherwise sent again unchanged.
func TestEverythingKeptRecord(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			a, b := replicaPair(t, k)
			pid := a.create(`{"resourceType":"Patient","name":[{"family":"Kept"}]}`)
			prac := a.create(`{"resourceType":"Practitioner","name":[{"family":"Before"}]}`)
			obs := a.create(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/` + pid + `"},"performer":[{"reference":"Practitioner/` + prac + `"}]}`)
			other := a.create(`{"resourceType":"Patient","name":[{"family":"Other"}]}`)
			everything := func() string {
				t.Helper()
				w := a.do(http.MethodGet, "/Patient/"+pid+"/$everything", nil)
				mustStatus(t, w, http.StatusOK)
				return w.Body.String()
			}
			first := everything()
			if !strings.Contains(first, obs) || !strings.Contains(first, "Before") {
				t.Fatalf("first page: %.500s", first)
			}
			if again := everything(); again != first {
				t.Fatalf("an unchanged record answered differently")
			}
			// a new resource in the compartment, written by the replica
			obs2 := b.create(`{"resourceType":"Observation","status":"final","code":{"text":"y"},"subject":{"reference":"Patient/` + pid + `"}}`)
			if got := everything(); !strings.Contains(got, obs2) {
				t.Errorf("a new Observation written by the replica is missing")
			}
			// a change of the referenced Practitioner (outside the compartment)
			mustStatus(t, b.do(http.MethodPut, "/Practitioner/"+prac, []byte(`{"resourceType":"Practitioner","id":"`+prac+`","name":[{"family":"After"}]}`)), http.StatusOK)
			if got := everything(); !strings.Contains(got, "After") || strings.Contains(got, "Before") {
				t.Errorf("the changed Practitioner was not read again")
			}
			// a resource leaving the compartment
			mustStatus(t, b.do(http.MethodPut, "/Observation/"+obs2, []byte(`{"resourceType":"Observation","id":"`+obs2+`","status":"final","code":{"text":"y"},"subject":{"reference":"Patient/`+other+`"}}`)), http.StatusOK)
			if got := everything(); strings.Contains(got, obs2) {
				t.Errorf("an Observation moved to another patient is still in the record")
			}
			// a deletion
			mustStatus(t, b.do(http.MethodDelete, "/Observation/"+obs, nil), http.StatusNoContent)
			if got := everything(); strings.Contains(got, `"id":"`+obs+`"`) {
				t.Errorf("a deleted Observation is still in the record")
			}
			// a reference to a resource that exists only later
			a.create(`{"resourceType":"Observation","status":"final","code":{"text":"z"},"subject":{"reference":"Patient/` + pid + `"},"performer":[{"reference":"Practitioner/later"}]}`)
			if got := everything(); strings.Contains(got, "Later-Family") {
				t.Fatal("not yet")
			}
			mustStatus(t, b.do(http.MethodPut, "/Practitioner/later", []byte(`{"resourceType":"Practitioner","id":"later","name":[{"family":"Later-Family"}]}`)), http.StatusCreated)
			if got := everything(); !strings.Contains(got, "Later-Family") {
				t.Errorf("a referenced Practitioner created later is missing")
			}
		})
	}
}
