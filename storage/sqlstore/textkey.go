package sqlstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/fhirgate/fhirgate/fhir"
)

// Index values are text the gateway did not choose: a NUL character (which
// PostgreSQL's text type refuses) or a string longer than a B-tree row may
// be (about 2.7 KB on PostgreSQL) must still be stored and found exactly.
// Index columns therefore hold an encoding of each value, applied alike
// when rows are written and when a search compares with them; resource
// bodies are stored as sent and never go through it.
//
// textVal escapes NUL as "\x01\x01" and \x01 as "\x01\x02": a prefix code,
// so equality and prefixes are kept exactly. (A :contains pattern made of
// control characters may match one misaligned escape; nothing else can.)
//
// keyVal is for the columns that B-tree indexes hold (a string's norm, a
// token's system and code, a reference's target, a uri): a value longer
// than keyLimit bytes is kept as its first bytes, then "\x01\x03" (which
// textVal never writes) and a hash of the whole value, so that equality
// stays exact, prefixes up to prefixSafe bytes are matched on the indexed
// column alone, and the whole value is in a companion column (norm_full,
// value_full) for longer prefixes and substrings.

// keyLimit bounds a key column's value; with the hash suffix two such
// columns and the rest of an index row stay well under PostgreSQL's limit.
const keyLimit = 1000

// prefixSafe is how many leading bytes of a long value its key keeps at
// least (the cut is at a rune boundary at most 3 bytes before keyLimit).
const prefixSafe = keyLimit - utf8.UTFMax

const longMark = "\x01\x03"

var textEscaper = strings.NewReplacer("\x00", "\x01\x01", "\x01", "\x01\x02")

// textVal encodes a value for an index column.
func textVal(s string) string {
	if strings.IndexByte(s, 0) < 0 && strings.IndexByte(s, 1) < 0 {
		return s
	}
	return textEscaper.Replace(s)
}

// keyVal encodes a value for an indexed key column.
func keyVal(s string) string {
	return bound(textVal(s))
}

// bound shortens an encoded value longer than keyLimit to its prefix,
// longMark and its hash.
func bound(e string) string {
	if len(e) <= keyLimit {
		return e
	}
	h := sha256.Sum256([]byte(e))
	return e[:cutAt(e, keyLimit)] + longMark + hex.EncodeToString(h[:16])
}

// fullVal is what a key column's companion keeps: the whole encoded value
// when the key had to be shortened, else "" (the key is the whole value).
func fullVal(s string) (key, full string) {
	e := textVal(s)
	if len(e) <= keyLimit {
		return e, ""
	}
	return bound(e), e
}

// cutAt is the largest rune boundary of s at or before n.
func cutAt(s string, n int) int {
	if n >= len(s) {
		return len(s)
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return n
}

// encodingMigration is the migration that introduced the encoding: index
// rows written before it hold values raw.
const encodingMigration = "006_long_index_values.sql"

// derivedMigration is the migration after which the index keeps no rows
// of derived parameters (search.Derivation).
const derivedMigration = "014_derived_params.sql"

// AfterMigrate brings index rows up to date after the migrations in
// applied ran: when the index encoding was introduced, the resources whose
// rows hold a value it changes (a control character, or a value long
// enough to be shortened) are indexed again (other rows are unchanged by
// it); when derived parameters came, their rows, which no search reads any
// more, are deleted. Backends call this once after migrating, before
// serving. (A process stopped between the migration and this leaves dead
// rows behind; fhirgate reindex removes them.)
func (s *Store) AfterMigrate(ctx context.Context, applied []string) error {
	if s.registry == nil {
		return nil
	}
	if slices.Contains(applied, derivedMigration) {
		if err := s.dropDerivedRows(ctx); err != nil {
			return err
		}
	}
	if !slices.Contains(applied, encodingMigration) {
		return nil
	}
	cols := map[string][]string{
		"idx_string":   {"norm", "exact"},
		"idx_token":    {"system", "code", "text", "type_system", "type_code"},
		"idx_ref":      {"target_type", "target_id", "url", "version", "ident_system", "ident_value"},
		"idx_number":   {"value"},
		"idx_quantity": {"system", "code", "unit", "value"},
		"idx_uri":      {"value"},
	}
	// byte-wise checks: SQLite's string functions stop at a NUL, and
	// PostgreSQL's text cannot hold one
	affected := func(col string) string {
		if s.dialect.Name == "sqlite" {
			b := "CAST(" + col + " AS BLOB)"
			return "length(" + b + ") > " + strconv.Itoa(keyLimit) + " OR instr(" + b + ", x'00') > 0 OR instr(" + b + ", x'01') > 0"
		}
		return "octet_length(" + col + ") > " + strconv.Itoa(keyLimit) + " OR strpos(" + col + ", chr(1)) > 0"
	}
	var parts []string
	for _, table := range indexTables {
		var conds []string
		for _, col := range cols[table] {
			conds = append(conds, affected(col))
		}
		if len(conds) > 0 {
			parts = append(parts, "SELECT res_type, res_id FROM "+table+" WHERE "+strings.Join(conds, " OR "))
		}
	}
	rows, err := s.db.Query(ctx, "SELECT DISTINCT res_type, res_id FROM ("+strings.Join(parts, " UNION ")+") affected")
	if err != nil {
		return fmt.Errorf("re-encode index: %w", err)
	}
	var keys [][2]string
	for rows.Next() {
		var k [2]string
		if err := rows.Scan(&k[0], &k[1]); err != nil {
			rows.Close()
			return fmt.Errorf("re-encode index: %w", err)
		}
		keys = append(keys, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("re-encode index: %w", err)
	}
	for start := 0; start < len(keys); start += 500 {
		batch := keys[start:min(start+500, len(keys))]
		if err := s.inTx(ctx, func(c Conn) error {
			var ws []Write
			for _, k := range batch {
				r, deleted, err := readCurrent(ctx, c, k[0], k[1], "")
				if err != nil || deleted {
					// a deleted resource keeps no index rows
					if err := deleteIndex(ctx, c, k[0], k[1]); err != nil {
						return err
					}
					continue
				}
				ws = append(ws, Write{Type: k[0], ID: k[1], Resource: r})
			}
			_, err := s.reindexWrites(ctx, c, ws, false, nil)
			return err
		}); err != nil {
			return fmt.Errorf("re-encode index: %w", err)
		}
	}
	return nil
}

// dropDerivedRows deletes the index rows of derived parameters, which
// stores before derivedMigration wrote.
func (s *Store) dropDerivedRows(ctx context.Context) error {
	for _, rt := range fhir.ResourceTypes {
		for _, p := range s.registry.Params(rt) {
			if p.Derived() == nil {
				continue
			}
			tables := []string{tableFor(p.Type)}
			for _, c := range p.Components {
				tables = append(tables, tableFor(c.Type))
			}
			slices.Sort(tables)
			for _, t := range slices.Compact(tables) {
				if t == "" {
					continue
				}
				if _, err := s.db.Exec(ctx, "DELETE FROM "+t+" WHERE res_type = ? AND param = ?", rt, p.Code); err != nil {
					return fmt.Errorf("derived parameters: %s: %w", t, err)
				}
			}
		}
	}
	return nil
}
