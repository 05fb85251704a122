package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

// auditFlags configure the audit trail's keys and checkpoints.
type auditFlags struct {
	key, keyFile     string
	checkpointFile   string
	checkpointURL    string
	checkpointPeriod time.Duration
	groupCommit      time.Duration
}

func (a *auditFlags) register(fs *flag.FlagSet, serve bool) {
	fs.StringVar(&a.key, "audit-key", envDefault("FHIRGATE_AUDIT_KEY", ""),
		"audit trail keys, id:base64secret[,id:base64secret...]: the first seals, all verify (env FHIRGATE_AUDIT_KEY)")
	fs.StringVar(&a.keyFile, "audit-key-file", envDefault("FHIRGATE_AUDIT_KEY_FILE", ""),
		"file of audit trail keys, one id:base64secret per line, the sealing key first; default audit.key beside the SQLite file (or in ./fhirgate-data), created when missing (env FHIRGATE_AUDIT_KEY_FILE)")
	if !serve {
		return
	}
	fs.StringVar(&a.checkpointFile, "audit-checkpoint-file", envDefault("FHIRGATE_AUDIT_CHECKPOINT_FILE", ""),
		"append every audit checkpoint to this file (keep it away from the database) (env FHIRGATE_AUDIT_CHECKPOINT_FILE)")
	fs.StringVar(&a.checkpointURL, "audit-checkpoint-url", envDefault("FHIRGATE_AUDIT_CHECKPOINT_URL", ""),
		"POST every audit checkpoint to this URL (env FHIRGATE_AUDIT_CHECKPOINT_URL)")
	period := audit.DefaultCheckpointInterval
	if v := os.Getenv("FHIRGATE_AUDIT_CHECKPOINT_INTERVAL"); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			period = d
		}
	}
	fs.DurationVar(&a.checkpointPeriod, "audit-checkpoint-interval", period,
		"how often an audit checkpoint is published when the trail grew (env FHIRGATE_AUDIT_CHECKPOINT_INTERVAL)")
	group := audit.DefaultGroupCommit
	if v := os.Getenv("FHIRGATE_AUDIT_GROUP_COMMIT"); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			group = d
		}
	}
	fs.DurationVar(&a.groupCommit, "audit-group-commit", group,
		"the longest a read's audit append waits for concurrent requests to join it; a lone client never waits; negative: never wait (env FHIRGATE_AUDIT_GROUP_COMMIT)")
}

// keys returns the audit keys: --audit-key, else --audit-key-file, else
// the default key file (created with a new key when create is set and it
// does not exist).
func (a *auditFlags) keys(db string, create bool, log *slog.Logger) (*audit.Keyring, error) {
	if a.key != "" {
		return audit.ParseKeys(a.key)
	}
	path := a.keyFile
	if path == "" {
		path = defaultKeyFile(db)
	}
	kr, created, err := audit.KeyFile(path, create)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no audit key: give --audit-key, --audit-key-file or FHIRGATE_AUDIT_KEY (%s does not exist)", path)
		}
		return nil, err
	}
	if created && log != nil {
		log.Warn("created a new audit trail key; keep a copy of it away from the database, and configure FHIRGATE_AUDIT_KEY or --audit-key-file in production", "file", path)
	}
	return kr, nil
}

// defaultKeyFile is audit.key beside the SQLite file, or in the default
// data directory for PostgreSQL.
func defaultKeyFile(db string) string {
	if strings.HasPrefix(db, "sqlite:") {
		return filepath.Join(filepath.Dir(sqlitePath(db)), "audit.key")
	}
	return filepath.Join("fhirgate-data", "audit.key")
}

// openTrail starts the audit trail on the store.
func openTrail(ctx context.Context, st storage.Store, db string, f *auditFlags, base string, log *slog.Logger, onAppend func(int, time.Duration, error), onPending func(stored, sealed, refused int), onRole func(held bool)) (*audit.Trail, error) {
	keys, err := f.keys(db, true, log)
	if err != nil {
		return nil, err
	}
	return audit.Open(ctx, st, audit.Options{
		Keys: keys, Logger: log.With(slog.String("component", "audit")), Server: base,
		CheckpointInterval: f.checkpointPeriod, CheckpointFile: f.checkpointFile, CheckpointURL: f.checkpointURL,
		GroupCommit: f.groupCommit, OnAppend: onAppend, OnPending: onPending, OnRole: onRole,
	})
}

func cmdAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		return errors.New("usage: fhirgate audit verify [--db ...] [--audit-key ... | --audit-key-file ...] [--checkpoint FILE-OR-JSON]")
	}
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", envDefault("FHIRGATE_DB", defaultDB), "store: sqlite:<path> or postgres://... (env FHIRGATE_DB)")
	var af auditFlags
	af.register(fs, false)
	cp := fs.String("checkpoint", envDefault("FHIRGATE_AUDIT_CHECKPOINT_FILE", ""),
		"the latest checkpoint published outside the database: a checkpoint line, a file of them (the last counts) or log lines carrying them (env FHIRGATE_AUDIT_CHECKPOINT_FILE)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	keys, err := af.keys(*db, false, nil)
	if err != nil {
		return err
	}
	var checkpoint *audit.Checkpoint
	if *cp != "" {
		text := *cp
		if !strings.HasPrefix(strings.TrimSpace(text), "{") {
			b, err := os.ReadFile(text)
			if err != nil {
				return fmt.Errorf("--checkpoint: %w", err)
			}
			text = string(b)
		}
		c, err := audit.ParseCheckpoint(text)
		if err != nil {
			return fmt.Errorf("--checkpoint: %w", err)
		}
		checkpoint = &c
	}
	registry, err := search.New(search.Options{Reserved: []string{"_cursor"}})
	if err != nil {
		return err
	}
	st, err := openStore(ctx, *db, sqlstore.Options{Registry: registry})
	if err != nil {
		return err
	}
	defer st.Close()
	lg, ok := st.(storage.AuditLog)
	if !ok {
		return errors.New("this store keeps no audit log")
	}
	if n, err := audit.LegacyCount(ctx, st); err != nil {
		return err
	} else if n > 0 {
		fmt.Fprintf(stdout, "note: the resource store still holds AuditEvents of the trail before the audit log; `fhirgate serve` moves them into the log at its start\n")
	}
	rep, err := audit.VerifyLog(ctx, lg, audit.VerifyOptions{Keys: keys, Checkpoint: checkpoint})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d audit events checked under key(s) %s; last event %d, seal %x; %d checkpoint(s) checked\n",
		rep.Events, strings.Join(keys.IDs(), ", "), rep.Head.Seq, rep.Head.Hash, rep.Checkpoints)
	if rep.Pending > 0 {
		fmt.Fprintf(stdout, "note: %d event(s) are stored pending, MACed but not yet sealed into the trail (replicas appended while another held its head); a running gateway seals them within moments, and one that starts seals what a stopped one left\n", rep.Pending)
	}
	if checkpoint == nil {
		fmt.Fprintln(stdout, "note: no --checkpoint given: events deleted from the end of the trail together with the log's head and its kept checkpoints would go unnoticed")
	}
	for _, p := range rep.Problems {
		fmt.Fprintln(stdout, "PROBLEM:", p)
	}
	if !rep.OK() {
		return fmt.Errorf("the audit trail has %d problems", len(rep.Problems))
	}
	fmt.Fprintln(stdout, "the audit trail is intact")
	return nil
}
