// Package pgtest gives tests an isolated PostgreSQL schema. The server is
// named by FHIRGATE_TEST_POSTGRES; without it the test is skipped (CI sets
// it and fails when PostgreSQL tests skip).
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/fhirgate/fhirgate/storage/postgres"
	"github.com/jackc/pgx/v5"
)

// EnvVar names the variable holding the test server's URL.
const EnvVar = "FHIRGATE_TEST_POSTGRES"

// RequireEnvVar, when set (CI sets it), turns a missing EnvVar into a
// failure instead of a skip, so PostgreSQL tests cannot silently not run.
const RequireEnvVar = "FHIRGATE_REQUIRE_POSTGRES"

// Config returns a config for a fresh schema that is dropped when the test ends.
func Config(t testing.TB) postgres.Config {
	t.Helper()
	url := os.Getenv(EnvVar)
	if url == "" && os.Getenv(RequireEnvVar) != "" {
		t.Fatalf("PostgreSQL tests must run here (%s is set) but %s is empty", RequireEnvVar, EnvVar)
	}
	if url == "" {
		t.Skipf("PostgreSQL tests skipped: set %s (for example postgres://postgres@127.0.0.1:5432/test)", EnvVar)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "t_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Logf("pgtest: cannot drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
			t.Logf("pgtest: drop schema %s: %v", schema, err)
		}
	})
	return postgres.Config{URL: url, Schema: schema}
}
