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

// MigrationNames lists the *.sql files of dir in fsys, in the order
// Migrate applies them.
func MigrationNames(fsys fs.FS, dir string) []string {
	entries, _ := fs.ReadDir(fsys, dir)
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".sql") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names
}

// SetMigrations tells the store which migrations its build needs, for
// Ready. Backends call it once, before the store is used.
func (s *Store) SetMigrations(names []string) { s.migrations = names }

// Ready reports whether the store can serve: the database answers and
// every migration this build needs has been applied (a replica started
// against a schema another replica has not yet brought up to date, or a
// database restored from an older backup, is not ready). Migrations of a
// newer build are fine: they only add.
func (s *Store) Ready(ctx context.Context) error {
	if err := s.db.Ping(ctx); err != nil {
		return err
	}
	if len(s.migrations) == 0 {
		return nil
	}
	rows, err := s.db.Query(ctx, `SELECT name FROM schema_migrations`)
	if err != nil {
		return fmt.Errorf("read applied migrations: %w", err)
	}
	defer rows.Close()
	applied := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return err
		}
		applied[n] = true
	}
	if err := rows.Err(); err != nil {
		return err
	}
	var missing []string
	for _, n := range s.migrations {
		if !applied[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("migrations not applied: %s", strings.Join(missing, ", "))
	}
	return nil
}
