package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/sqlite"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

// A shared read cache answers only under its lease: a process that hears
// no announcements (here: none are ever delivered) serves what it holds
// until the lease ends, then reads the database again, and holds nothing
// after SuspendCache. (Delivery is PostgreSQL's; see storage/postgres.)
func TestSharedCacheLease(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db.db")
	open := func() *sqlstore.Store {
		s, err := sqlite.Open(ctx, path, sqlstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	a, b := open(), open()
	b.ShareCache(func(context.Context, sqlstore.Conn, string) error { return nil })
	if !b.CacheShared() {
		t.Fatal("no shared cache")
	}
	put := func(family string) {
		r, err := fhir.Parse([]byte(`{"resourceType":"Patient","id":"p","name":[{"family":"` + family + `"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := a.Update(ctx, r, storage.UpdateOptions{AllowCreate: true}); err != nil {
			t.Fatal(err)
		}
	}
	version := func() string {
		r, err := b.Read(ctx, "Patient", "p")
		if err != nil {
			t.Fatal(err)
		}
		return r.VersionID
	}
	put("One")
	if v := version(); v != "1" { // no lease yet: from the database, kept
		t.Fatalf("version %s", v)
	}
	put("Two")
	if v := version(); v != "2" {
		t.Fatalf("without a lease the cache answered version %s", v)
	}
	b.RenewCache(time.Now().Add(300 * time.Millisecond))
	put("Three")
	if v := version(); v != "2" {
		t.Fatalf("under the lease, with no announcement, version %s (want the held 2: this is what the announcements are for)", v)
	}
	time.Sleep(350 * time.Millisecond)
	if v := version(); v != "3" {
		t.Fatalf("after the lease the cache still answered version %s", v)
	}
	b.RenewCache(time.Now().Add(time.Hour))
	put("Four")
	b.SuspendCache()
	b.RenewCache(time.Now().Add(time.Hour))
	if v := version(); v != "4" {
		t.Fatalf("after SuspendCache the cache answered version %s", v)
	}
	// an announcement replaces what is held
	put("Five")
	b.Announced("5 Patient/p\n")
	if v := version(); v != "5" {
		t.Fatalf("after the announcement version %s", v)
	}
	put("Six")
	b.Announced("garbage")
	if v := version(); v != "6" {
		t.Fatalf("after an announcement it could not read, version %s", v)
	}
}
