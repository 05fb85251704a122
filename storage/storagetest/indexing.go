package storagetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/internal/sharedtest"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

// IndexFactory returns a new empty store that indexes with reg.
type IndexFactory func(t *testing.T, reg *search.Registry) *sqlstore.Store

// RunIndexing checks how a batch of new resources is indexed (CreateMany:
// the values are extracted in the background while the versions and then
// the index rows are written, on PostgreSQL streamed into the copy as they
// come):
//   - a Synthea Bundle's resources written as one batch leave exactly the
//     index rows they leave written one per transaction;
//   - a batch whose index rows the database refuses part-way (poison, a
//     statement that makes the store refuse an idx_token row whose code is
//     'poison') fails as a whole: no version, no current row, no index row
//     of it remains, and the store writes the next batch normally.
func RunIndexing(t *testing.T, newStore IndexFactory, poison string) {
	ctx := context.Background()
	reg, err := search.New(search.Options{BaseURL: "http://fhir.test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("BatchAsSingleWrites", func(t *testing.T) {
		res := syntheaResources(t, "Adan_Portillo_22bbe238-220e-495c-8abc-0ce3aa28a605.json")
		batch, single := newStore(t, reg), newStore(t, reg)
		t.Cleanup(func() { batch.Close(); single.Close() })
		if _, err := batch.CreateMany(ctx, res); err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if _, err := single.Create(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		a, b := indexRows(t, batch), indexRows(t, single)
		if len(a) < 1000 {
			t.Fatalf("only %d index rows for %d resources", len(a), len(res))
		}
		if !slices.Equal(a, b) {
			for i := range min(len(a), len(b)) {
				if a[i] != b[i] {
					t.Fatalf("batch and single writes differ (%d and %d rows); first difference:\n batch:  %s\n single: %s", len(a), len(b), a[i], b[i])
				}
			}
			t.Fatalf("batch wrote %d index rows, single writes %d", len(a), len(b))
		}
	})
	t.Run("RefusedRowFailsTheBatch", func(t *testing.T) {
		s := newStore(t, reg)
		t.Cleanup(func() { s.Close() })
		if _, err := s.DB().Exec(ctx, poison); err != nil {
			t.Fatal(err)
		}
		var res []*fhir.Resource
		for i := range 3000 {
			value := fmt.Sprintf("v%d", i)
			if i == 2600 { // well after the first rows have gone out (64 KB at a time)
				value = "poison"
			}
			res = append(res, mustParse(t, fmt.Sprintf(`{"resourceType":"Patient","id":"p%d","identifier":[{"system":"urn:test","value":%q}]}`, i, value)))
		}
		if _, err := s.CreateMany(ctx, res); err == nil {
			t.Fatal("a batch with a refused index row was stored")
		}
		for _, q := range []string{"SELECT COUNT(*) FROM resources", "SELECT COUNT(*) FROM resource_versions", "SELECT COUNT(*) FROM idx_token", "SELECT COUNT(*) FROM idx_string", "SELECT COUNT(*) FROM idx_patient"} {
			var n int
			if err := s.DB().QueryRow(ctx, q).Scan(&n); err != nil || n != 0 {
				t.Fatalf("%s after the failed batch: %d (%v)", q, n, err)
			}
		}
		if _, err := s.Read(ctx, "Patient", "p1"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("a resource of the failed batch: %v", err)
		}
		// the store writes on
		res[2600] = mustParse(t, `{"resourceType":"Patient","id":"p2600","identifier":[{"system":"urn:test","value":"v2600"}]}`)
		if _, err := s.CreateMany(ctx, res); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := s.DB().QueryRow(ctx, "SELECT COUNT(*) FROM idx_token WHERE param = 'identifier'").Scan(&n); err != nil || n != 3000 {
			t.Fatalf("identifier rows after the second batch: %d (%v)", n, err)
		}
	})
}

// indexRows lists every row of every index table, as text, sorted.
func indexRows(t *testing.T, s *sqlstore.Store) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	for _, table := range []string{"idx_string", "idx_token", "idx_ref", "idx_date", "idx_number", "idx_quantity", "idx_uri", "idx_patient"} {
		rows, err := s.DB().Query(ctx, "SELECT * FROM "+table)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			vals := make([]any, 12)
			ptrs := make([]any, 0, 12)
			for i := range vals {
				ptrs = append(ptrs, &vals[i])
			}
			n := columns(table)
			if err := rows.Scan(ptrs[:n]...); err != nil {
				rows.Close()
				t.Fatal(err)
			}
			var b strings.Builder
			b.WriteString(table)
			for _, v := range vals[:n] {
				if bs, ok := v.([]byte); ok {
					v = string(bs)
				}
				fmt.Fprintf(&b, "|%v", v)
			}
			out = append(out, b.String())
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(out)
	return out
}

// columns is how many columns an index table has (both stores alike).
func columns(table string) int {
	switch table {
	case "idx_string":
		return 8
	case "idx_token":
		return 10
	case "idx_ref":
		return 11
	case "idx_date":
		return 7
	case "idx_number":
		return 8
	case "idx_quantity":
		return 11
	case "idx_uri":
		return 7
	default: // idx_patient
		return 3
	}
}

// syntheaResources reads a Synthea transaction Bundle's resources, each
// with the id of its urn:uuid fullUrl and the references between them
// rewritten to Type/id (as a transaction stores them).
func syntheaResources(t *testing.T, name string) []*fhir.Resource {
	t.Helper()
	data, err := os.ReadFile(sharedtest.Path(t, "synthea-r4", name))
	if err != nil {
		t.Skipf("Synthea Bundle absent: %v", err)
	}
	var b struct {
		Entry []struct {
			FullURL  string          `json:"fullUrl"`
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	var pairs []string
	ids := make([]string, len(b.Entry))
	for i, e := range b.Entry {
		var head struct {
			ResourceType string `json:"resourceType"`
		}
		if err := json.Unmarshal(e.Resource, &head); err != nil {
			t.Fatal(err)
		}
		ids[i] = strings.TrimPrefix(e.FullURL, "urn:uuid:")
		pairs = append(pairs, `"`+e.FullURL+`"`, `"`+head.ResourceType+"/"+ids[i]+`"`)
	}
	rewrite := strings.NewReplacer(pairs...)
	out := make([]*fhir.Resource, len(b.Entry))
	for i, e := range b.Entry {
		r, err := fhir.Parse([]byte(rewrite.Replace(string(e.Resource))))
		if err != nil {
			t.Fatal(err)
		}
		r.ID = ids[i]
		out[i] = r
	}
	return out
}
