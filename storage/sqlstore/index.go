package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
)

// indexTables are the search index tables, in the order rows are written.
var indexTables = []string{"idx_string", "idx_token", "idx_ref", "idx_date", "idx_number", "idx_quantity", "idx_uri", "idx_patient"}

// tokenBatch is idx_token's place in indexTables (and indexWriter.batches).
var tokenBatch = slices.Index(indexTables, "idx_token")

// Instants are indexed as microseconds; the open ends of periods map to
// the extremes of int64 so that range comparisons need no NULL handling.
func timeKey(t time.Time) int64 {
	switch {
	case !t.After(search.MinTime):
		return math.MinInt64
	case !t.Before(search.MaxTime):
		return math.MaxInt64
	}
	return t.UnixMicro()
}

// numKey keeps numbers finite for both databases.
func numKey(f float64) float64 {
	switch {
	case math.IsInf(f, 1) || f > math.MaxFloat64/2:
		return math.MaxFloat64
	case math.IsInf(f, -1) || f < -math.MaxFloat64/2:
		return -math.MaxFloat64
	case math.IsNaN(f):
		return 0
	}
	return f
}

// rowBatch accumulates the rows of one index table for a multi-row INSERT
// (or a COPY, where the connection is a Copier).
type rowBatch struct {
	verb  string // "INSERT INTO" or the dialect's form (Dialect.BatchInsert)
	table string
	cols  string
	width int
	args  []any
	sql   map[int]string // the INSERT of n rows, by n
}

// chunkRows is how many of n rows the next multi-row INSERT of index rows
// or new versions carries: 128, 64, 32, ..., 1 (see chunkOf).
func chunkRows(n int) int { return chunkOf(n, insertChunk, 64, 32, 16, 8, 4, 2, 1) }

// chunkOf is the largest of sizes (descending, ending in 1) that n
// reaches. Multi-row INSERTs thus come in a few shapes, each recurring
// often enough for the SQLite backend to keep it prepared: statements of
// whatever size a batch happened to have were compiled anew each time
// (7% of a bulk load's CPU).
func chunkOf(n int, sizes ...int) int {
	for _, k := range sizes {
		if n >= k {
			return k
		}
	}
	return 1
}

// insertChunk bounds the rows of one multi-row INSERT (and keeps it far
// under SQLite's 32,766 parameters).
const insertChunk = 128

func (b *rowBatch) insertSQL(rows int) string {
	if q, ok := b.sql[rows]; ok {
		return q
	}
	var sb strings.Builder
	sb.Grow(64 + len(b.cols) + rows*(b.width*2+3))
	sb.WriteString(b.verb)
	sb.WriteByte(' ')
	sb.WriteString(b.table)
	sb.WriteString(" (")
	sb.WriteString(b.cols)
	sb.WriteString(") VALUES ")
	ph := "(" + strings.TrimSuffix(strings.Repeat("?,", b.width), ",") + ")"
	for i := 0; i < rows; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(ph)
	}
	if b.sql == nil {
		b.sql = map[int]string{}
	}
	b.sql[rows] = sb.String()
	return b.sql[rows]
}

func (b *rowBatch) flush(ctx context.Context, c Conn) error {
	if len(b.args) == 0 {
		return nil
	}
	rows := len(b.args) / b.width
	if cp, ok := c.(Copier); ok {
		data := make([][]any, rows)
		for i := range data {
			data[i] = b.args[i*b.width : (i+1)*b.width]
		}
		cols := strings.Split(b.cols, ", ")
		if err := cp.CopyRows(ctx, b.table, cols, data); err != nil {
			return fmt.Errorf("index %s: %w", b.table, err)
		}
		b.args = nil
		return nil
	}
	for args := b.args; len(args) > 0; {
		n := chunkRows(len(args) / b.width)
		if _, err := c.Exec(ctx, b.insertSQL(n), args[:n*b.width]...); err != nil {
			return fmt.Errorf("index %s: %w", b.table, err)
		}
		args = args[n*b.width:]
	}
	b.args = b.args[:0]
	return nil
}

func (b *rowBatch) add(ctx context.Context, c Conn, vals ...any) error {
	b.args = append(b.args, vals...)
	if _, copier := c.(Copier); !copier && len(b.args) >= insertChunk*b.width {
		return b.flush(ctx, c)
	}
	return nil
}

// indexWriter writes index rows for many resources with few statements.
// It writes no rows for derived parameters (search.Derivation: their
// values are their sources' rows, which the search compiler reads for
// them).
type indexWriter struct {
	batches [8]rowBatch
	reg     *search.Registry
}

func newIndexWriter(d Dialect, reg *search.Registry) *indexWriter {
	w := &indexWriter{reg: reg}
	cols := []string{
		"res_type, res_id, param, grp, comp, norm, norm_full, exact",
		"res_type, res_id, param, grp, comp, system, code, text, type_system, type_code",
		"res_type, res_id, param, grp, comp, target_type, target_id, url, version, ident_system, ident_value",
		"res_type, res_id, param, grp, comp, lo, hi",
		"res_type, res_id, param, grp, comp, lo, hi, value",
		"res_type, res_id, param, grp, comp, system, code, unit, lo, hi, value",
		"res_type, res_id, param, grp, comp, value, value_full",
		"res_type, res_id, patient_id",
	}
	for i, t := range indexTables {
		w.batches[i] = rowBatch{verb: d.batchInsert(), table: t, cols: cols[i], width: strings.Count(cols[i], ",") + 1}
	}
	return w
}

func (w *indexWriter) add(ctx context.Context, c Conn, typ, id string, ix *search.Index) error {
	b := &w.batches
	stored := func(a search.At) bool { return w.reg == nil || w.reg.Stored(typ, a.Param) }
	// text goes in encoded (textkey.go): NUL-free, key columns bounded
	for _, v := range ix.Strings {
		if !stored(v.At) {
			continue
		}
		norm, full := fullVal(v.Norm)
		if err := b[0].add(ctx, c, typ, id, v.Param, v.Group, v.Component, norm, full, textVal(v.Exact)); err != nil {
			return err
		}
	}
	for _, v := range ix.Tokens {
		if !stored(v.At) {
			continue
		}
		if v.Param == "_id" {
			continue // searched and sorted on resources.res_id (search.go)
		}
		if err := b[1].add(ctx, c, typ, id, v.Param, v.Group, v.Component, keyVal(v.System), keyVal(v.Code), textVal(v.Text), textVal(v.TypeSystem), textVal(v.TypeCode)); err != nil {
			return err
		}
	}
	for _, v := range ix.Refs {
		if !stored(v.At) {
			continue
		}
		if err := b[2].add(ctx, c, typ, id, v.Param, v.Group, v.Component, keyVal(v.TargetType), keyVal(v.TargetID), textVal(v.URL), textVal(v.Version), textVal(v.IdentifierSystem), textVal(v.IdentifierValue)); err != nil {
			return err
		}
	}
	for _, v := range ix.Dates {
		if !stored(v.At) {
			continue
		}
		if v.Param == "_lastUpdated" {
			continue // searched and sorted on resources.last_updated (search.go)
		}
		if err := b[3].add(ctx, c, typ, id, v.Param, v.Group, v.Component, timeKey(v.Lo), timeKey(v.Hi)); err != nil {
			return err
		}
	}
	for _, v := range ix.Numbers {
		if !stored(v.At) {
			continue
		}
		if err := b[4].add(ctx, c, typ, id, v.Param, v.Group, v.Component, numKey(v.Lo), numKey(v.Hi), textVal(v.Value)); err != nil {
			return err
		}
	}
	for _, v := range ix.Quantities {
		if !stored(v.At) {
			continue
		}
		if err := b[5].add(ctx, c, typ, id, v.Param, v.Group, v.Component, textVal(v.System), textVal(v.Code), textVal(v.Unit), numKey(v.Lo), numKey(v.Hi), textVal(v.Value)); err != nil {
			return err
		}
	}
	for _, v := range ix.URIs {
		if !stored(v.At) {
			continue
		}
		val, full := fullVal(v.Value)
		if err := b[6].add(ctx, c, typ, id, v.Param, v.Group, v.Component, val, full); err != nil {
			return err
		}
	}
	for _, p := range ix.Patients {
		if err := b[7].add(ctx, c, typ, id, keyVal(p)); err != nil {
			return err
		}
	}
	return nil
}

func (w *indexWriter) flush(ctx context.Context, c Conn) error {
	for i := range w.batches {
		if err := w.batches[i].flush(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// reindexWrites replaces the index rows of the written resources. New
// resources have no rows to delete. With patients, it also returns, per
// write, the Patients whose compartment held the resource before the
// write or holds it after (for the audit trail's events of the write).
//
// extracted, when not nil, delivers the writes' index values
// (extractAsync); reindexWrites waits for its workers before returning.
// On a connection that copies (PostgreSQL), the largest table's rows are
// copied while the values are still being extracted: each resource's rows
// go out as soon as its values are there, so the database inserts the
// first rows while the gateway extracts the last.
func (s *Store) reindexWrites(ctx context.Context, c Conn, writes []Write, patients bool, extracted *extraction) (_ [][]string, err error) {
	if extracted != nil {
		defer extracted.wait()
	}
	if s.registry == nil {
		return make([][]string, len(writes)), nil
	}
	var pats [][]string
	if patients {
		pats = make([][]string, len(writes))
	}
	touched := map[string]bool{} // patients whose record the writes change
	for i, wr := range writes {
		if wr.Created {
			continue
		}
		if wr.Type != "AuditEvent" {
			old, err := compartmentOf(ctx, c, wr.Type, wr.ID)
			if err != nil {
				return nil, err
			}
			for _, p := range old {
				touched[p] = true
			}
			if patients {
				pats[i] = old
			}
		}
		if err := deleteIndex(ctx, c, wr.Type, wr.ID); err != nil {
			return nil, err
		}
	}
	if extracted == nil {
		extracted = s.extractAsync(writes)
		defer extracted.wait()
	}
	iw := newIndexWriter(s.dialect, s.registry)
	// add indexes write i once its values are extracted
	add := func(i int) error {
		ix, err := extracted.get(i)
		if err != nil {
			return fmt.Errorf("index %s/%s: %w", writes[i].Type, writes[i].ID, err)
		}
		if ix == nil {
			return nil
		}
		wr := writes[i]
		if wr.Type != "AuditEvent" {
			for _, p := range ix.Patients {
				touched[p] = true
				if patients && !slices.Contains(pats[i], p) {
					pats[i] = append(pats[i], p)
				}
			}
		}
		return iw.add(ctx, c, wr.Type, wr.ID, ix)
	}
	next := 0
	if cp, ok := c.(StreamCopier); ok && len(writes) > 1 {
		// the token rows (the most numerous) stream as the values come
		b := &iw.batches[tokenBatch]
		cols := strings.Split(b.cols, ", ")
		row := 0
		err := cp.CopyRowsFrom(ctx, b.table, cols, func() ([]any, error) {
			for row*b.width >= len(b.args) {
				if next == len(writes) {
					return nil, nil
				}
				b.args, row = b.args[:0], 0 // the copy has encoded them
				if err := add(next); err != nil {
					return nil, err
				}
				next++
			}
			row++
			return b.args[(row-1)*b.width : row*b.width], nil
		})
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", b.table, err)
		}
		b.args = nil
	}
	for ; next < len(writes); next++ {
		if err := add(next); err != nil {
			return nil, err
		}
	}
	if err := iw.flush(ctx, c); err != nil {
		return nil, err
	}
	return pats, bumpRecordMarks(ctx, c, touched)
}

// compartmentOf lists the patients whose compartment holds a resource as
// indexed (before a write changes it).
func compartmentOf(ctx context.Context, c Conn, typ, id string) ([]string, error) {
	rows, err := c.Query(ctx, `SELECT patient_id FROM idx_patient WHERE res_type = ? AND res_id = ?`, typ, id)
	if err != nil {
		return nil, fmt.Errorf("compartment of %s: %w", typ, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, fmt.Errorf("compartment of %s: %w", typ, err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// bumpRecordMarks increments the record mark of every patient, in id
// order (so that two PostgreSQL transactions never wait on each other's
// rows in opposite orders).
func bumpRecordMarks(ctx context.Context, c Conn, patients map[string]bool) error {
	ids := make([]string, 0, len(patients))
	for p := range patients {
		ids = append(ids, p)
	}
	sort.Strings(ids)
	for _, p := range ids {
		if _, err := c.Exec(ctx, `INSERT INTO record_marks (patient_id, n) VALUES (?, 1)
			ON CONFLICT (patient_id) DO UPDATE SET n = record_marks.n + 1`, p); err != nil {
			return fmt.Errorf("record mark: %w", err)
		}
	}
	return nil
}

// extraction is the search values of a batch of writes, extracted in the
// background (extractAsync) in the writes' order: get(i) waits for write
// i's values only.
type extraction struct {
	idx  []*search.Index
	errs []error
	done []chan struct{} // done[i] is closed once idx[i] and errs[i] are set
	all  sync.WaitGroup  // the workers
	stop atomic.Bool     // set by wait: the rest need not be extracted
}

// errNotExtracted is what get answers for a write whose values were not
// extracted because wait had been called (no caller asks for them then).
var errNotExtracted = errors.New("search values not extracted: the extraction was stopped")

// get waits for write i's values.
func (x *extraction) get(i int) (*search.Index, error) {
	<-x.done[i]
	return x.idx[i], x.errs[i]
}

// wait returns once every worker has ended; writes not yet taken by a
// worker are left unextracted (their caller has stopped needing them).
func (x *extraction) wait() {
	x.stop.Store(true)
	x.all.Wait()
}

// extractionWorkers is how many goroutines extract a batch's values: all
// cores but one, which the database and the copy's encoding keep busy
// meanwhile (at least one; at most eight).
func extractionWorkers(n int) int {
	if n < 16 {
		return 1
	}
	return max(1, min(runtime.GOMAXPROCS(0)-1, 8))
}

// extractAsync starts extracting the values of writes, in order, on
// extractionWorkers goroutines (a single write's values are extracted
// before it returns). Without a registry there is nothing to extract
// (every write's values are nil).
func (s *Store) extractAsync(writes []Write) *extraction {
	x := &extraction{
		idx:  make([]*search.Index, len(writes)),
		errs: make([]error, len(writes)),
		done: make([]chan struct{}, len(writes)),
	}
	for i := range x.done {
		x.done[i] = make(chan struct{})
	}
	if s.registry == nil || len(writes) < 2 {
		// nothing to extract, or one write: no goroutine for it
		for i, d := range x.done {
			if r := writes[i].Resource; r != nil && s.registry != nil {
				x.idx[i], x.errs[i] = s.registry.Extract(r)
			}
			close(d)
		}
		return x
	}
	var next atomic.Int64
	for range extractionWorkers(len(writes)) {
		x.all.Add(1)
		go func() {
			defer x.all.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(writes) {
					return
				}
				if x.stop.Load() {
					x.errs[i] = errNotExtracted
				} else if r := writes[i].Resource; r != nil {
					x.idx[i], x.errs[i] = s.registry.Extract(r)
				}
				close(x.done[i])
			}
		}()
	}
	return x
}

func deleteIndex(ctx context.Context, c Conn, typ, id string) error {
	for _, t := range indexTables {
		if _, err := c.Exec(ctx, "DELETE FROM "+t+" WHERE res_type = ? AND res_id = ?", typ, id); err != nil {
			return fmt.Errorf("unindex %s: %w", t, err)
		}
	}
	return nil
}

// Reindex rebuilds the whole search index from the current versions (after
// a change of the search parameters or the extraction rules), in batches,
// each in its own transaction. It reports how many resources it indexed.
func (s *Store) Reindex(ctx context.Context, progress func(done int)) (int, error) {
	if s.registry == nil {
		return 0, fmt.Errorf("reindex: no search registry configured")
	}
	if err := s.inTx(ctx, func(c Conn) error {
		for _, t := range indexTables {
			if _, err := c.Exec(ctx, "DELETE FROM "+t); err != nil {
				return fmt.Errorf("reindex: clear %s: %w", t, err)
			}
		}
		// whatever was derived from a record may no longer hold
		if _, err := c.Exec(ctx, "UPDATE record_marks SET n = n + 1"); err != nil {
			return fmt.Errorf("reindex: record marks: %w", err)
		}
		return nil
	}); err != nil {
		return 0, err
	}
	done := 0
	lastType, lastID := "", ""
	for {
		rows, err := s.db.Query(ctx, `SELECT res_type, res_id, version, last_updated, body FROM resources
			WHERE deleted = 0 AND (res_type > ? OR (res_type = ? AND res_id > ?)) ORDER BY res_type, res_id LIMIT 500`, lastType, lastType, lastID)
		if err != nil {
			return done, fmt.Errorf("reindex: %w", err)
		}
		var batch []Write
		for rows.Next() {
			var (
				typ, id string
				v, lu   int64
				body    []byte
			)
			if err := rows.Scan(&typ, &id, &v, &lu, &body); err != nil {
				rows.Close()
				return done, fmt.Errorf("reindex: %w", err)
			}
			batch = append(batch, Write{Type: typ, ID: id, Created: true,
				Resource: &fhir.Resource{Type: typ, ID: id, VersionID: fmt.Sprint(v), LastUpdated: fromMicros(lu), Raw: body}})
			lastType, lastID = typ, id
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return done, fmt.Errorf("reindex: %w", err)
		}
		if len(batch) == 0 {
			return done, nil
		}
		if err := s.inTx(ctx, func(c Conn) error { _, err := s.reindexWrites(ctx, c, batch, false, nil); return err }); err != nil {
			return done, err
		}
		done += len(batch)
		if progress != nil {
			progress(done)
		}
	}
}

// inTx runs fn on a raw transaction connection.
func (s *Store) inTx(ctx context.Context, fn func(c Conn) error) (err error) {
	c, err := s.db.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = c.Rollback(context.WithoutCancel(ctx))
			return
		}
		err = c.Commit(ctx)
	}()
	return fn(c)
}
