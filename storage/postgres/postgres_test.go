package postgres_test

import (
	"context"
	"testing"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/postgres"
	"github.com/fhirgate/fhirgate/storage/postgres/pgtest"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
	"github.com/fhirgate/fhirgate/storage/storagetest"
)

func TestStore(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, c *storagetest.Clock) storage.Store {
		s, err := postgres.Open(context.Background(), pgtest.Config(t), sqlstore.Options{Now: c.Now})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestMigrateIdempotent(t *testing.T) {
	cfg := pgtest.Config(t)
	first, err := postgres.Migrate(context.Background(), cfg)
	if err != nil || len(first) == 0 {
		t.Fatalf("first migrate: %v %v", first, err)
	}
	again, err := postgres.Migrate(context.Background(), cfg)
	if err != nil || len(again) != 0 {
		t.Fatalf("second migrate applied %v (%v)", again, err)
	}
}

// searchStore is a new empty store that keeps a search index with reg.
func searchStore(t *testing.T, reg *search.Registry) storage.Store {
	s, err := postgres.Open(context.Background(), pgtest.Config(t), sqlstore.Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRelease(t *testing.T) {
	storagetest.RunRelease(t, searchStore)
}

func TestDerived(t *testing.T) {
	storagetest.RunDerived(t, searchStore)
}

func TestIndexing(t *testing.T) {
	storagetest.RunIndexing(t, func(t *testing.T, reg *search.Registry) *sqlstore.Store {
		s, err := postgres.Open(context.Background(), pgtest.Config(t), sqlstore.Options{Registry: reg})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, `ALTER TABLE idx_token ADD CONSTRAINT no_poison CHECK (code <> 'poison')`)
}
