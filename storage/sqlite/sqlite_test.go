package sqlite_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/sqlite"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
	"github.com/fhirgate/fhirgate/storage/storagetest"
)

func TestStore(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, c *storagetest.Clock) storage.Store {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "test.db"), sqlstore.Options{Now: c.Now})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestMigrateIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	first, err := sqlite.Migrate(context.Background(), path)
	if err != nil || len(first) == 0 {
		t.Fatalf("first migrate: %v %v", first, err)
	}
	again, err := sqlite.Migrate(context.Background(), path)
	if err != nil || len(again) != 0 {
		t.Fatalf("second migrate applied %v (%v)", again, err)
	}
}

// searchStore is a new empty store that keeps a search index with reg.
func searchStore(t *testing.T, reg *search.Registry) storage.Store {
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "test.db"), sqlstore.Options{Registry: reg})
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

// TestWALBounded: under a read load that never stops (every request reads,
// and its audit event is written), the write-ahead log still returns to its
// bound; passive checkpoints alone let it grow without end.
func TestWALBounded(t *testing.T) {
	const limit = 1 << 20
	defer sqlite.SetWALLimit(limit, 20*time.Millisecond)()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "wal.db")
	db, err := sqlite.OpenDB(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(ctx, `CREATE TABLE t (x BLOB)`); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 { // overlapping readers: one is always reading
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				var n int
				if err := db.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	blob := make([]byte, 16<<10)
	write := func() {
		if _, err := db.Exec(ctx, `INSERT INTO t (x) VALUES (?)`, blob); err != nil {
			t.Fatal(err)
		}
	}
	for range 20 * limit / len(blob) { // twenty times the bound
		write()
	}
	walSize := func() int64 {
		fi, err := os.Stat(path + "-wal")
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	deadline := time.Now().Add(30 * time.Second)
	for walSize() > 2*limit {
		if time.Now().After(deadline) {
			t.Fatalf("the write-ahead log stays at %d bytes under a steady read load (bound %d)", walSize(), limit)
		}
		write() // writes go on, as audit events do
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDerivedRowsDropped: rows an earlier version wrote for derived
// parameters are deleted by the migration that stopped writing them.
func TestDerivedRowsDropped(t *testing.T) {
	ctx := context.Background()
	reg, err := search.New(search.Options{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "test.db")
	s, err := sqlite.Open(ctx, path, sqlstore.Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := sqlite.OpenDB(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO idx_token (res_type, res_id, param, grp, comp, system, code, text, type_system, type_code) VALUES ('Observation', 'o1', 'combo-code', 0, 0, 's', 'c', '', '', ''), ('Observation', 'o1', 'code', 0, 0, 's', 'c', '', '', '')`,
		`INSERT INTO idx_ref (res_type, res_id, param, grp, comp, target_type, target_id, url, version, ident_system, ident_value) VALUES ('Observation', 'o1', 'patient', 0, 0, 'Patient', 'p1', '', '', '', '')`,
		`DELETE FROM schema_migrations WHERE name = '014_derived_params.sql'`,
	} {
		if _, err := db.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s, err = sqlite.Open(ctx, path, sqlstore.Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err = sqlite.OpenDB(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var derived, kept int
	if err := db.QueryRow(ctx, `SELECT (SELECT COUNT(*) FROM idx_token WHERE param = 'combo-code') + (SELECT COUNT(*) FROM idx_ref WHERE param = 'patient'), (SELECT COUNT(*) FROM idx_token WHERE param = 'code')`).Scan(&derived, &kept); err != nil {
		t.Fatal(err)
	}
	if derived != 0 || kept != 1 {
		t.Fatalf("after the migration: %d rows of derived parameters (want 0), %d of code (want 1)", derived, kept)
	}
}

// TestPageSize: a new database file gets the store's page size (a
// page_size pragma among the driver's DSN pragmas never took effect); an
// existing file keeps its own.
func TestPageSize(t *testing.T) {
	ctx := context.Background()
	pageSize := func(path string) int {
		db, err := sqlite.OpenDB(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var n int
		if err := db.QueryRow(ctx, "PRAGMA page_size").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	fresh := filepath.Join(t.TempDir(), "new.db")
	if n := pageSize(fresh); n != 8192 {
		t.Fatalf("new database: page size %d, want 8192", n)
	}
	if n := pageSize(fresh); n != 8192 {
		t.Fatalf("reopened: page size %d", n)
	}
	old := filepath.Join(t.TempDir(), "old.db")
	raw, err := sql.Open("sqlite", "file:"+old)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"PRAGMA page_size=4096", "PRAGMA journal_mode=WAL", "CREATE TABLE t (x)"} {
		if _, err := raw.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()
	if n := pageSize(old); n != 4096 {
		t.Fatalf("existing database: page size %d, want its own 4096", n)
	}
	s, err := sqlite.Open(ctx, old, sqlstore.Options{})
	if err != nil {
		t.Fatalf("existing database: %v", err)
	}
	s.Close()
}

func TestIndexing(t *testing.T) {
	storagetest.RunIndexing(t, func(t *testing.T, reg *search.Registry) *sqlstore.Store {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "test.db"), sqlstore.Options{Registry: reg})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, `CREATE TRIGGER no_poison BEFORE INSERT ON idx_token WHEN NEW.code = 'poison' BEGIN SELECT RAISE(ABORT, 'poison'); END`)
}

// TestAnalysisBounded: the statistics refreshed after bulk writes run on
// the writer's connection (ANALYZE writes sqlite_stat1), so every
// connection bounds what one ANALYZE reads: unbounded, each refresh read
// every index in full and held writers up for as long as that took.
func TestAnalysisBounded(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.OpenDB(ctx, filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	limit := func(c sqlstore.Conn) int {
		var n int
		if err := c.QueryRow(ctx, "PRAGMA analysis_limit").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := limit(db); n <= 0 {
		t.Errorf("a reading connection: analysis_limit %d", n)
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if n := limit(tx); n <= 0 {
		t.Errorf("the writer's connection: analysis_limit %d (unbounded)", n)
	}
}
