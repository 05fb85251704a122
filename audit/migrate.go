package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/storage"
)

// Migration is what moving a legacy trail found.
type Migration struct {
	// Moved is how many AuditEvents moved into the log.
	Moved int
	// OldHead is the head of their chain (sequence and hash).
	OldHead Link
	// Problems are what the check of their chain found.
	Problems []Problem
}

var errMigratedElsewhere = errors.New("audit: migrated by another process")

// migrationPage is how many legacy events are moved per step.
const migrationPage = 500

// LegacyCount reports whether the resource store holds AuditEvents (1)
// or not (0), the trail before the audit log.
func LegacyCount(ctx context.Context, st storage.Store) (int, error) {
	q, err := legacyQuery(1)
	if err != nil {
		return 0, err
	}
	res, err := st.Search(ctx, storage.SearchRequest{Query: q})
	if err != nil {
		return 0, fmt.Errorf("audit: %w", err)
	}
	return len(res.Matches), nil
}

func legacyQuery(count int) (*search.Query, error) {
	reg, err := search.New(search.Options{Reserved: []string{"_cursor"}})
	if err != nil {
		return nil, err
	}
	return reg.ParseQuery("AuditEvent", url.Values{"_sort": {"_id"}, "_count": {fmt.Sprint(count)}, "_total": {"none"}}, true)
}

// Migrate moves the AuditEvents a resource store holds (the trail before
// the audit log) into the log, in one transaction: in their chain's order,
// each kept as it was (its JSON, without id and meta) and sealed under the
// key; then they are removed from the resource store and its index, and a
// last event records the move, the old chain's head and what checking that
// chain found. Several processes may start at once: the log's head lock
// lets one move them. It returns nil when there was nothing to move.
func Migrate(ctx context.Context, st storage.Store, keys *Keyring, log *slog.Logger, now func() time.Time) (*Migration, error) {
	q, err := legacyQuery(migrationPage)
	if err != nil {
		return nil, err
	}
	first, err := st.Search(ctx, storage.SearchRequest{Query: q})
	if err != nil {
		return nil, fmt.Errorf("audit migration: %w", err)
	}
	if len(first.Matches) == 0 {
		return nil, nil
	}
	log.Info("moving the AuditEvents of the resource store into the audit log")
	var m *Migration
	err = st.InTx(ctx, func(tx storage.Tx) error {
		app, ok1 := tx.(storage.AuditAppender)
		purge, ok2 := tx.(storage.TypePurger)
		if !ok1 || !ok2 {
			return errors.New("audit migration: the store cannot move its AuditEvents")
		}
		m = &Migration{}
		v := &legacyVerifier{}
		cursor := ""
		locked := false
		for {
			page, err := tx.Search(ctx, storage.SearchRequest{Query: q, Cursor: cursor})
			if err != nil {
				return fmt.Errorf("audit migration: %w", err)
			}
			recs := make([]*storage.AuditRecord, 0, len(page.Matches))
			for _, r := range page.Matches {
				v.add(r)
				body, err := withoutIDMeta(r)
				if err != nil {
					return err
				}
				rec, err := jsonRecord(body)
				if err != nil {
					return fmt.Errorf("audit migration: AuditEvent/%s: %w", r.ID, err)
				}
				recs = append(recs, rec)
			}
			if err := app.AppendAudit(ctx, recs, keys.Seal); err != nil {
				return err
			}
			if !locked && len(page.Matches) > 0 {
				// the head is ours now: if another process moved the
				// events meanwhile, they are gone
				locked = true
				if _, err := tx.Read(ctx, "AuditEvent", page.Matches[0].ID); errors.Is(err, storage.ErrNotFound) {
					return errMigratedElsewhere
				}
			}
			m.Moved += len(recs)
			if page.Next == "" {
				break
			}
			cursor = page.Next
		}
		m.OldHead, m.Problems = v.result()
		if _, err := purge.PurgeType(ctx, "AuditEvent"); err != nil {
			return err
		}
		desc := fmt.Sprintf("moved %d AuditEvents from the resource store into the audit log, sealed under key %s; their previous chain ended at event %d with hash %s",
			m.Moved, keys.SealingKeyID(), m.OldHead.Seq, m.OldHead.Hash)
		outcome := Success
		if len(m.Problems) > 0 {
			outcome = MinorFailure
			var ps []string
			for _, p := range m.Problems[:min(len(m.Problems), 20)] {
				ps = append(ps, p.String())
			}
			desc += fmt.Sprintf("; checking that chain found %d problems: %s", len(m.Problems), strings.Join(ps, "; "))
		} else {
			desc += "; that chain was intact"
		}
		marker := Event{Interaction: "operation", Operation: "audit-migration", Recorded: now(), Outcome: outcome, OutcomeDesc: desc, Origin: "fhirgate"}
		rec, err := NewRecord(&marker)
		if err != nil {
			return err
		}
		return app.AppendAudit(ctx, []*storage.AuditRecord{rec}, keys.Seal)
	})
	if errors.Is(err, errMigratedElsewhere) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	log.Info("AuditEvents moved into the audit log", "events", m.Moved, "old_head_seq", m.OldHead.Seq, "old_head_hash", m.OldHead.Hash, "old_chain_problems", len(m.Problems))
	for _, p := range m.Problems[:min(len(m.Problems), 20)] {
		log.Warn("the moved AuditEvents' previous chain", "problem", p.String())
	}
	return m, nil
}

// withoutIDMeta returns a stored AuditEvent's JSON without id and meta,
// which the log assigns; everything else, its old chain extension
// included, is kept as it was.
func withoutIDMeta(r *fhir.Resource) ([]byte, error) {
	root := r.Root()
	if root == nil || root.Kind != fjson.Object {
		return nil, fmt.Errorf("audit migration: AuditEvent/%s is not a JSON object", r.ID)
	}
	v := *root
	v.Members = slices.DeleteFunc(slices.Clone(root.Members), func(m fjson.Member) bool { return m.Key == "id" || m.Key == "meta" })
	out, err := fhir.FromValue(&v)
	if err != nil {
		return nil, fmt.Errorf("audit migration: AuditEvent/%s: %w", r.ID, err)
	}
	return out.Raw, nil
}
