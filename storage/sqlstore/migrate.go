package sqlstore

import (
	"context"
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

// Migrate applies, in name order, every *.sql file of dir in fsys that is
// not yet recorded in schema_migrations, each in its own transaction.
// Files may hold several statements separated by lines that are exactly
// "-- statement" or by semicolons at the end of a line.
func Migrate(ctx context.Context, db DB, fsys fs.FS, dir string) (applied []string, err error) {
	if _, err := db.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".sql") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, name := range names {
		body, err := fs.ReadFile(fsys, dir+"/"+name)
		if err != nil {
			return applied, fmt.Errorf("migrate %s: %w", name, err)
		}
		done, err := migrateOne(ctx, db, name, string(body))
		if err != nil {
			return applied, fmt.Errorf("migrate %s: %w", name, err)
		}
		if done {
			applied = append(applied, name)
		}
	}
	return applied, nil
}

func migrateOne(ctx context.Context, db DB, name, body string) (bool, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var one int
	err = tx.QueryRow(ctx, `SELECT 1 FROM schema_migrations WHERE name = ?`, name).Scan(&one)
	if err == nil {
		return false, nil
	}
	if err != ErrNoRows {
		return false, err
	}
	for _, stmt := range splitStatements(body) {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return false, err
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)`, name, 0); err != nil {
		return false, err
	}
	return true, tx.Commit(ctx)
}

func splitStatements(body string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(body, "\n") {
		trim := strings.TrimSpace(line)
		if strings.HasPrefix(trim, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(trim, ";") {
			if s := strings.TrimSpace(cur.String()); s != "" {
				out = append(out, s)
			}
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}
