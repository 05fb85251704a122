package audit

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"

	"github.com/fhirgate/fhirgate/storage"
)

// ProblemKind classifies what a verification found.
type ProblemKind string

// The kinds of problem.
const (
	// Edited: the event does not verify under its key: its body, its
	// sequence number or its seal was changed (or it was re-sealed
	// without the key).
	Edited ProblemKind = "edited"
	// Missing: events with these sequence numbers are absent (deleted).
	Missing ProblemKind = "missing"
	// Truncated: the trail ends before its head row or a checkpoint says
	// it does: its newest events (or all of them) were deleted, or the
	// database was rolled back to an older copy.
	Truncated ProblemKind = "truncated"
	// Reordered: an event sits at another position than the one it was
	// sealed at.
	Reordered ProblemKind = "reordered"
	// BrokenLink: the event does not name the seal of the event before it.
	BrokenLink ProblemKind = "broken-link"
	// UnknownKey: the event names a key that was not given (sealed by
	// someone without the trail's keys, or a key is missing).
	UnknownKey ProblemKind = "unknown-key"
	// IndexEdited: what the log serves the event by (its columns or the
	// references search and the release rule use) does not match the
	// event.
	IndexEdited ProblemKind = "index-edited"
	// HeadEdited: the log's head row does not match its last event.
	HeadEdited ProblemKind = "head-edited"
	// CheckpointMismatch: the event at a checkpoint's position is not the
	// one the checkpoint names: the trail was rolled back and rewritten.
	CheckpointMismatch ProblemKind = "checkpoint-mismatch"
	// CheckpointForged: a checkpoint whose MAC does not verify.
	CheckpointForged ProblemKind = "checkpoint-forged"
	// Duplicate and Unchained are found in legacy trails only (AuditEvent
	// resources, before the log): an event present twice, and one without
	// a chain extension.
	Duplicate ProblemKind = "duplicate"
	Unchained ProblemKind = "unchained"
	// PendingEdited: an event waiting to be sealed (storage.AuditPendingLog)
	// whose MAC does not verify (inserted or edited without the key), or a
	// genuine one marked refused so that it would never be sealed.
	PendingEdited ProblemKind = "pending-edited"
)

// Problem is one finding. Its text names sequence numbers, ids and keys
// only, never an event's content.
type Problem struct {
	Kind ProblemKind
	// Seq is the event's sequence number (the first of a range); 0 when
	// unknown. Until is the last of a range (Missing, Truncated, Edited,
	// IndexEdited).
	Seq, Until int64
	// ID is the event's id (legacy trails).
	ID string
	// Detail adds what the kind does not say.
	Detail string
}

func (p Problem) where() string {
	switch {
	case p.Until > p.Seq:
		return fmt.Sprintf("events %d to %d", p.Seq, p.Until)
	case p.ID != "":
		return fmt.Sprintf("event %d (AuditEvent/%s)", p.Seq, p.ID)
	}
	return fmt.Sprintf("event %d", p.Seq)
}

func (p Problem) String() string {
	var s string
	switch p.Kind {
	case Missing:
		s = p.where() + " are missing (deleted)"
		if p.Until <= p.Seq {
			s = p.where() + " is missing (deleted)"
		}
	case Truncated:
		s = "the trail was cut short: " + p.where() + " are gone (its newest events deleted, or the database rolled back)"
		if p.Until <= p.Seq {
			s = "the trail was cut short: " + p.where() + " is gone (its newest event deleted, or the database rolled back)"
		}
	case Edited:
		s = p.where() + ": edited, or re-sealed without the key (the seal does not verify)"
	case Reordered:
		s = p.where() + " is out of place"
	case BrokenLink:
		s = p.where() + " does not link to the event before it: that event was replaced or the chain rebuilt"
	case UnknownKey:
		s = p.where() + " names a key that was not given"
	case IndexEdited:
		s = p.where() + ": what the log serves them by was edited (search results and who may see them would be wrong)"
	case HeadEdited:
		s = "the log's head row was edited"
	case CheckpointMismatch:
		s = p.where() + " is not the event the checkpoint names: the trail was rolled back and rewritten"
	case CheckpointForged:
		s = "a checkpoint does not verify (forged or altered)"
	case Duplicate:
		s = p.where() + " appears more than once"
	case Unchained:
		s = "AuditEvent/" + p.ID + " is not chained (inserted, or its chain extension was changed)"
	case PendingEdited:
		s = "pending event " + p.ID + " (waiting to be sealed)"
	default:
		s = p.where() + ": " + string(p.Kind)
	}
	if p.Detail != "" {
		s += ": " + p.Detail
	}
	return s
}

func sortProblems(ps []Problem) {
	slices.SortStableFunc(ps, func(a, b Problem) int { return cmp.Compare(a.Seq, b.Seq) })
}

// Report is the result of a verification.
type Report struct {
	// Events is the number of events checked.
	Events int
	// Head is the last event's sequence number and seal.
	Head     storage.AuditHead
	Problems []Problem
	// Checkpoints is how many checkpoints were checked (the one given and
	// those the log kept).
	Checkpoints int
	// Pending is the number of genuine events stored pending, not yet
	// sealed into the trail (a running gateway seals them within
	// moments; one that starts seals what a stopped one left).
	Pending int
}

// OK reports whether no problem was found.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// VerifyOptions say what a verification trusts.
type VerifyOptions struct {
	// Keys are every key the trail was sealed with. Required.
	Keys *Keyring
	// Checkpoint is the latest checkpoint published outside the database,
	// if any: without one, deleting the newest events together with the
	// head row and the stored checkpoints goes unnoticed.
	Checkpoint *Checkpoint
}

// reorderWindow is how far from its place a moved event is looked for.
const reorderWindow = 64

// refBucket is how many events share one digest of indexed references.
const refBucket = 1024

// VerifyLog checks the whole trail a log holds: every event's seal under
// its key and its link to the one before, that no sequence number is
// missing, that the columns and references the log serves events by
// match the events, that the head row is the last event, and that the
// trail holds every checkpoint (kept in the log, and opts.Checkpoint)
// with the seal it names. It reads the log twice (events, then refs), in
// memory that does not grow with the trail.
func VerifyLog(ctx context.Context, log storage.AuditLog, opts VerifyOptions) (Report, error) {
	if opts.Keys == nil {
		return Report{}, errors.New("audit verify: no key given")
	}
	var rep Report
	head, err := log.AuditHead(ctx)
	if err != nil {
		return rep, err
	}
	// the checkpoints to hold the trail to: the given one, and those kept
	var cps []Checkpoint
	stored, err := log.AuditCheckpoints(ctx)
	if err != nil {
		return rep, err
	}
	for _, s := range stored {
		c, err := ParseCheckpoint(s)
		if err == nil {
			err = opts.Keys.CheckCheckpoint(c)
		}
		if err != nil {
			rep.Problems = append(rep.Problems, Problem{Kind: CheckpointForged, Detail: "one kept in the log"})
			continue
		}
		cps = append(cps, c)
	}
	if opts.Checkpoint != nil {
		if err := opts.Keys.CheckCheckpoint(*opts.Checkpoint); err != nil {
			return rep, fmt.Errorf("the checkpoint given: %w", err)
		}
		cps = append(cps, *opts.Checkpoint)
	}
	rep.Checkpoints = len(cps)
	want := map[int64][]Checkpoint{}
	for _, c := range cps {
		want[c.Seq] = append(want[c.Seq], c)
	}

	seed := maphash.MakeSeed()
	expected := map[int64]uint64{} // refs digest per bucket, from the events
	var (
		last      *storage.AuditRecord
		lastMoved bool // the last event was found out of place (the next one's link then follows from it)
		run       = -1 // the index of the Edited/UnknownKey/IndexEdited range being extended
		found     = map[int64][]byte{}
		// badSeal are the events whose seal failed (their index is moot)
		badSeal = map[int64]bool{}
	)
	extend := func(kind ProblemKind, seq int64, detail string) {
		if run >= 0 {
			if p := &rep.Problems[run]; p.Kind == kind && p.Until == seq-1 && p.Detail == detail {
				p.Until = seq
				return
			}
		}
		rep.Problems = append(rep.Problems, Problem{Kind: kind, Seq: seq, Until: seq, Detail: detail})
		run = len(rep.Problems) - 1
	}
	err = log.ScanAudit(ctx, 1, func(r *storage.AuditRecord) error {
		rep.Events++
		next := int64(1)
		if last != nil {
			next = last.Seq + 1
		}
		gap := r.Seq > next
		if gap {
			rep.Problems = append(rep.Problems, Problem{Kind: Missing, Seq: next, Until: r.Seq - 1})
			run = -1
		}
		if _, ok := want[r.Seq]; ok {
			found[r.Seq] = r.Hash
		}
		sealOK, moved := false, false
		switch sum, ok := opts.Keys.sealOf(r.Prev, r.Seq, r.KeyID, r.Body); {
		case !ok:
			extend(UnknownKey, r.Seq, "key "+strconv.Quote(r.KeyID))
		case hmac.Equal(sum, r.Hash):
			sealOK = true
		default:
			if at, ok := sealedAt(opts.Keys, r); ok {
				rep.Problems = append(rep.Problems, Problem{Kind: Reordered, Seq: r.Seq, Detail: fmt.Sprintf("it was sealed as event %d", at)})
				run, moved = -1, true
			} else {
				extend(Edited, r.Seq, "")
			}
		}
		if sealOK && !gap && !lastMoved {
			var prevHash []byte
			if last != nil {
				prevHash = last.Hash
			}
			if !bytes.Equal(r.Prev, prevHash) {
				rep.Problems = append(rep.Problems, Problem{Kind: BrokenLink, Seq: r.Seq})
				run = -1
			}
		}
		if !sealOK {
			badSeal[r.Seq] = true
		}
		d, err := derived(r.Body)
		switch {
		case !sealOK:
		case err != nil:
			extend(IndexEdited, r.Seq, "the event cannot be read")
		case !d.Recorded.Equal(r.Recorded) || d.Action != r.Action || d.Outcome != r.Outcome || d.Type != r.Type || d.Subtype != r.Subtype:
			extend(IndexEdited, r.Seq, "")
		}
		if d != nil {
			for _, ref := range d.Refs {
				expected[r.Seq/refBucket] += refDigest(seed, r.Seq, ref)
			}
		}
		last, lastMoved = r, moved
		return nil
	})
	if err != nil {
		return rep, err
	}
	// the references, compared bucket by bucket
	got := map[int64]uint64{}
	if err := log.ScanAuditRefs(ctx, func(seq int64, ref storage.AuditRef) error {
		got[seq/refBucket] += refDigest(seed, seq, ref)
		return nil
	}); err != nil {
		return rep, err
	}
	var bad []int64
	for b, d := range expected {
		if got[b] != d {
			bad = append(bad, b)
		}
	}
	for b, d := range got {
		if _, ok := expected[b]; !ok && d != 0 {
			bad = append(bad, b)
		}
	}
	slices.Sort(bad)
	for _, b := range slices.Compact(bad) {
		ps, err := refProblems(ctx, log, b, badSeal)
		if err != nil {
			return rep, err
		}
		rep.Problems = append(rep.Problems, ps...)
	}

	var lastSeq int64
	var lastHash []byte
	if last != nil {
		lastSeq, lastHash = last.Seq, last.Hash
		rep.Head = storage.AuditHead{Seq: last.Seq, Hash: last.Hash}
	}
	live := false
	if head.Seq < lastSeq {
		// appended (or sealed) while the events were read: compare with
		// the head now, if it is still the last event read
		if h, err := log.AuditHead(ctx); err == nil && h.Seq >= lastSeq {
			head, live = h, h.Seq > lastSeq
		}
	}
	switch {
	case live: // a gateway is appending: the head is past what was read
	case head.Seq > lastSeq:
		rep.Problems = append(rep.Problems, Problem{Kind: Truncated, Seq: lastSeq + 1, Until: head.Seq, Detail: fmt.Sprintf("the log's head names event %d", head.Seq)})
	case head.Seq != lastSeq || !bytes.Equal(head.Hash, lastHash):
		rep.Problems = append(rep.Problems, Problem{Kind: HeadEdited, Seq: head.Seq})
	}
	truncatedTo := lastSeq
	for _, c := range cps {
		switch h, ok := found[c.Seq]; {
		case c.Seq == 0:
		case c.Seq > lastSeq:
			if c.Seq > truncatedTo && c.Seq > head.Seq {
				rep.Problems = append(rep.Problems, Problem{Kind: Truncated, Seq: max(lastSeq, head.Seq) + 1, Until: c.Seq,
					Detail: fmt.Sprintf("a checkpoint of %s names event %d", c.Time.Format("2006-01-02T15:04:05Z07:00"), c.Seq)})
				truncatedTo = c.Seq
			}
		case !ok:
			// the event is missing: reported as such
		case hashHex(h) != c.Hash:
			rep.Problems = append(rep.Problems, Problem{Kind: CheckpointMismatch, Seq: c.Seq,
				Detail: fmt.Sprintf("checkpoint of %s", c.Time.Format("2006-01-02T15:04:05Z07:00"))})
		}
	}
	if pl, ok := log.(storage.AuditPendingLog); ok {
		if err := pl.ScanPendingAudit(ctx, func(p storage.PendingAudit) error {
			id := strconv.FormatInt(p.ID, 10)
			switch sum, ok := opts.Keys.sealOf(nil, 0, p.KeyID, p.Body); {
			case !ok:
				rep.Problems = append(rep.Problems, Problem{Kind: PendingEdited, ID: id, Detail: "it names a key that was not given (key " + strconv.Quote(p.KeyID) + ")"})
			case !hmac.Equal(sum, p.MAC):
				rep.Problems = append(rep.Problems, Problem{Kind: PendingEdited, ID: id, Detail: "its MAC does not verify: inserted or edited without the key"})
			case p.Refused:
				rep.Problems = append(rep.Problems, Problem{Kind: PendingEdited, ID: id, Detail: "it verifies but was marked refused, so it would never be sealed"})
			default:
				rep.Pending++
			}
			return nil
		}); err != nil {
			return rep, err
		}
	}
	sortProblems(rep.Problems)
	return rep, nil
}

// sealedAt finds the position near its own at which a moved event was sealed.
func sealedAt(keys *Keyring, r *storage.AuditRecord) (int64, bool) {
	for d := int64(1); d <= reorderWindow; d++ {
		for _, at := range []int64{r.Seq - d, r.Seq + d} {
			if at < 1 {
				continue
			}
			if sum, ok := keys.sealOf(r.Prev, at, r.KeyID, r.Body); ok && hmac.Equal(sum, r.Hash) {
				return at, true
			}
		}
	}
	return 0, false
}

func refDigest(seed maphash.Seed, seq int64, ref storage.AuditRef) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	var b [16]byte
	for i := range 8 {
		b[i] = byte(seq >> (8 * i))
		b[8+i] = byte(int64(ref.Role) >> (8 * i))
	}
	h.Write(b[:])
	h.WriteString(ref.Ref)
	return h.Sum64()
}

// refProblems names the events of one bucket whose indexed references
// differ from what their bodies say.
func refProblems(ctx context.Context, log storage.AuditLog, bucket int64, skip map[int64]bool) ([]Problem, error) {
	lo, hi := bucket*refBucket, bucket*refBucket+refBucket-1
	stored := map[int64][]storage.AuditRef{}
	if err := log.ScanAuditRefs(ctx, func(seq int64, ref storage.AuditRef) error {
		if seq >= lo && seq <= hi {
			stored[seq] = append(stored[seq], ref)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	var out []Problem
	seen := map[int64]bool{}
	stop := errors.New("stop")
	err := log.ScanAudit(ctx, max(lo, 1), func(r *storage.AuditRecord) error {
		if r.Seq > hi {
			return stop
		}
		seen[r.Seq] = true
		d, err := derived(r.Body)
		if err != nil || skip[r.Seq] {
			return nil // reported with the event
		}
		if !sameRefs(d.Refs, stored[r.Seq]) {
			out = append(out, Problem{Kind: IndexEdited, Seq: r.Seq, Until: r.Seq, Detail: "its indexed references"})
		}
		return nil
	})
	if err != nil && !errors.Is(err, stop) {
		return nil, err
	}
	for seq := range stored {
		if !seen[seq] {
			out = append(out, Problem{Kind: IndexEdited, Seq: seq, Until: seq, Detail: "references indexed for an event that is not in the trail"})
		}
	}
	sortProblems(out)
	return out, nil
}
