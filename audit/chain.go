package audit

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// ChainExtensionURL is the extension that links an AuditEvent into the
// tamper-evident trail. Its sub-extensions are "sequence" (the event's
// position, 1 for the first, as a decimal valueString), "previous" (the
// hash of the event before it; absent on the first) and "hash" (this
// event's hash, "sha256:<hex>", over its canonical form without "hash").
const ChainExtensionURL = "https://fhirgate.dev/fhir/StructureDefinition/audit-chain"

// Link is the position and hash of one event: the head of the chain after
// it. The zero Link is the empty chain.
type Link struct {
	Seq  uint64
	Hash string
}

// ID returns a resource id for the event with sequence seq. Ids made this
// way sort in chain order, so that a store can list the trail in order and
// a deleted event leaves a visible gap.
func ID(seq uint64) string { return fmt.Sprintf("audit-%016d", seq) }

// ErrNotChained: the event carries no (well-formed) chain extension.
var ErrNotChained = errors.New("audit: event is not chained")

// Seal links ev (an AuditEvent from Build, not yet chained) after prev: it
// adds the chain extension with the next sequence number and prev's hash,
// and the hash of the result. It returns the sealed event and the new head.
// The hash covers everything except id, meta.versionId and
// meta.lastUpdated, which the store assigns, and is computed over a
// canonical form (keys sorted, no whitespace) so that key order in storage
// does not matter.
func Seal(prev Link, ev *fhir.Resource) (*fhir.Resource, Link, error) {
	if ev.Type != "AuditEvent" {
		return nil, Link{}, fmt.Errorf("audit: cannot seal a %s", ev.Type)
	}
	root := ev.Root()
	if _, ok := findChain(root); ok {
		return nil, Link{}, errors.New("audit: event is already chained")
	}
	seq := prev.Seq + 1
	subs := []*fjson.Value{subExt("sequence", strconv.FormatUint(seq, 10))}
	if prev.Seq > 0 {
		subs = append(subs, subExt("previous", prev.Hash))
	}
	chain := &fjson.Value{Kind: fjson.Object, Members: []fjson.Member{
		{Key: "url", Value: str(ChainExtensionURL)},
		{Key: "extension", Value: &fjson.Value{Kind: fjson.Array, Items: subs}},
	}}
	members := slices.Clone(root.Members)
	if i := slices.IndexFunc(members, func(m fjson.Member) bool { return m.Key == "extension" }); i >= 0 {
		ext := *members[i].Value
		ext.Items = append(slices.Clone(ext.Items), chain)
		members[i].Value = &ext
	} else {
		// After resourceType, id, meta and text, where FHIR JSON puts it.
		at := 0
		for at < len(members) && slices.Contains([]string{"resourceType", "id", "meta", "text", "contained"}, members[at].Key) {
			at++
		}
		members = slices.Insert(members, at, fjson.Member{Key: "extension", Value: &fjson.Value{Kind: fjson.Array, Items: []*fjson.Value{chain}}})
	}
	sealed := &fjson.Value{Kind: fjson.Object, Members: members}
	h := hashOf(sealed)
	chain.Members[1].Value.Items = append(subs, subExt("hash", h))
	res, err := fhir.FromValue(sealed)
	if err != nil {
		return nil, Link{}, fmt.Errorf("audit: %w", err)
	}
	return res, Link{Seq: seq, Hash: h}, nil
}

func str(s string) *fjson.Value {
	return &fjson.Value{Kind: fjson.String, Str: s, Raw: fjson.AppendString(nil, s)}
}

func subExt(url, value string) *fjson.Value {
	return &fjson.Value{Kind: fjson.Object, Members: []fjson.Member{{Key: "url", Value: str(url)}, {Key: "valueString", Value: str(value)}}}
}

// chainInfo is what the chain extension of an event says.
type chainInfo struct {
	seq            uint64
	previous, hash string
	hasPrevious    bool
}

// findChain locates and reads the chain extension.
func findChain(root *fjson.Value) (chainInfo, bool) {
	var ci chainInfo
	ext := root.Get("extension")
	if ext == nil || ext.Kind != fjson.Array {
		return ci, false
	}
	found := false
	for _, e := range ext.Items {
		if e.Get("url").String() != ChainExtensionURL {
			continue
		}
		if found {
			return ci, false // two chain extensions: not well formed
		}
		found = true
		subs := e.Get("extension")
		if subs == nil || subs.Kind != fjson.Array {
			return ci, false
		}
		var hasSeq bool
		for _, s := range subs.Items {
			url, v := s.Get("url").String(), s.Get("valueString")
			if v == nil || v.Kind != fjson.String {
				return ci, false
			}
			switch url {
			case "sequence":
				if hasSeq {
					return ci, false
				}
				hasSeq = true
				n, err := strconv.ParseUint(v.Str, 10, 64)
				if err != nil || n == 0 {
					return ci, false
				}
				ci.seq = n
			case "previous":
				if ci.hasPrevious {
					return ci, false
				}
				ci.previous, ci.hasPrevious = v.Str, true
			case "hash":
				if ci.hash != "" {
					return ci, false
				}
				ci.hash = v.Str
			default:
				return ci, false
			}
		}
	}
	return ci, found && ci.seq > 0 && ci.hash != ""
}

// LinkOf reads the position and hash an event claims (without checking
// them), to resume a chain from its last stored event.
func LinkOf(ev *fhir.Resource) (Link, error) {
	ci, ok := findChain(ev.Root())
	if !ok {
		return Link{}, ErrNotChained
	}
	return Link{Seq: ci.seq, Hash: ci.hash}, nil
}

// hashOf hashes the canonical form of an event, leaving out what the store
// assigns and the chain's own hash.
func hashOf(root *fjson.Value) string {
	sum := sha256.Sum256(canonical(make([]byte, 0, max(len(root.Raw), 2048)), root, 0))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// canonical appends v with object keys sorted bytewise, strings
// re-escaped from their decoded text and numbers as written. At depth 0 it
// drops id, meta.versionId and meta.lastUpdated (and meta when nothing
// else is left), and the "hash" sub-extension of the chain extension.
func canonical(dst []byte, v *fjson.Value, depth int) []byte {
	switch v.Kind {
	case fjson.Object:
		members := slices.Clone(v.Members)
		if depth == 0 {
			members = slices.DeleteFunc(members, func(m fjson.Member) bool { return m.Key == "id" })
			for i, m := range members {
				switch m.Key {
				case "meta":
					if m.Value.Kind != fjson.Object {
						continue
					}
					meta := *m.Value
					meta.Members = slices.DeleteFunc(slices.Clone(meta.Members), func(m fjson.Member) bool {
						return m.Key == "versionId" || m.Key == "lastUpdated"
					})
					members[i].Value = &meta
				case "extension":
					members[i].Value = withoutChainHash(m.Value)
				}
			}
			members = slices.DeleteFunc(members, func(m fjson.Member) bool {
				return m.Key == "meta" && m.Value.Kind == fjson.Object && len(m.Value.Members) == 0
			})
		}
		slices.SortFunc(members, func(a, b fjson.Member) int { return strings.Compare(a.Key, b.Key) })
		dst = append(dst, '{')
		for i, m := range members {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = fjson.AppendString(dst, m.Key)
			dst = append(dst, ':')
			dst = canonical(dst, m.Value, depth+1)
		}
		return append(dst, '}')
	case fjson.Array:
		dst = append(dst, '[')
		for i, it := range v.Items {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = canonical(dst, it, depth+1)
		}
		return append(dst, ']')
	case fjson.String:
		return fjson.AppendString(dst, v.Str)
	case fjson.Null:
		return append(dst, "null"...)
	default: // numbers and booleans as written
		return append(dst, v.Str...)
	}
}

// withoutChainHash returns the root extension array with the chain
// extension's "hash" sub-extension removed.
func withoutChainHash(ext *fjson.Value) *fjson.Value {
	if ext.Kind != fjson.Array {
		return ext
	}
	out := *ext
	out.Items = slices.Clone(ext.Items)
	for i, e := range out.Items {
		if e.Get("url").String() != ChainExtensionURL {
			continue
		}
		subs := e.Get("extension")
		if subs == nil || subs.Kind != fjson.Array {
			continue
		}
		ns := *subs
		ns.Items = slices.DeleteFunc(slices.Clone(subs.Items), func(s *fjson.Value) bool { return s.Get("url").String() == "hash" })
		ne := *e
		ne.Members = slices.Clone(e.Members)
		for j := range ne.Members {
			if ne.Members[j].Key == "extension" {
				ne.Members[j].Value = &ns
			}
		}
		out.Items[i] = &ne
	}
	return &out
}

// Chain appends events to a trail kept by one process: it seals each event
// after the current head and advances the head only when the store
// accepted the event. Several gateway replicas must not share a Chain;
// they read the head (LinkOf on the last event) and Seal inside one
// database transaction instead.
type Chain struct {
	mu   sync.Mutex
	head Link
}

// NewChain continues a trail whose last event is head (the zero Link for
// a new trail).
func NewChain(head Link) *Chain { return &Chain{head: head} }

// Head returns the last event's link.
func (c *Chain) Head() Link {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.head
}

// Append seals ev after the head and calls store with the sealed event
// (whose id is ID(seq)); the head advances when store succeeds. Events are
// stored one at a time, in chain order.
func (c *Chain) Append(ev *fhir.Resource, store func(*fhir.Resource) error) (*fhir.Resource, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sealed, next, err := Seal(c.head, ev)
	if err != nil {
		return nil, err
	}
	sealed = sealed.Rewrite(ID(next.Seq), nil, "", time.Time{})
	if err := store(sealed); err != nil {
		return nil, err
	}
	c.head = next
	return sealed, nil
}

// ProblemKind classifies what Verify found.
type ProblemKind string

// The kinds of problem.
const (
	// Edited: the event's content does not match its own hash.
	Edited ProblemKind = "edited"
	// Missing: events with these sequence numbers are absent (deleted).
	Missing ProblemKind = "missing"
	// Reordered: the event comes after events that follow it in the chain.
	Reordered ProblemKind = "reordered"
	// Duplicate: a second event with a sequence number already seen.
	Duplicate ProblemKind = "duplicate"
	// BrokenLink: the event does not point at the hash of the event before
	// it: that one was replaced (and re-sealed), or the chain was rebuilt.
	BrokenLink ProblemKind = "broken-link"
	// Unchained: the event carries no well-formed chain extension
	// (inserted, or its chain extension edited).
	Unchained ProblemKind = "unchained"
)

// Problem is one finding. Its text names sequence numbers and ids only.
type Problem struct {
	Kind ProblemKind
	// Seq is the event's sequence number (the first missing one for
	// Missing; 0 when unknown).
	Seq uint64
	// Until is the last missing sequence number (Missing only).
	Until uint64
	// ID is the event's resource id ("" for Missing).
	ID string
}

func (p Problem) String() string {
	switch p.Kind {
	case Missing:
		if p.Until > p.Seq {
			return fmt.Sprintf("events %d to %d are missing (deleted)", p.Seq, p.Until)
		}
		return fmt.Sprintf("event %d is missing (deleted)", p.Seq)
	case Edited:
		return fmt.Sprintf("event %d (AuditEvent/%s) was edited: its content does not match its hash", p.Seq, p.ID)
	case Reordered:
		return fmt.Sprintf("event %d (AuditEvent/%s) is out of order: it comes after later events", p.Seq, p.ID)
	case Duplicate:
		return fmt.Sprintf("event %d (AuditEvent/%s) appears more than once", p.Seq, p.ID)
	case BrokenLink:
		return fmt.Sprintf("event %d (AuditEvent/%s) does not link to event %d: that event was replaced or the chain rebuilt", p.Seq, p.ID, p.Seq-1)
	}
	return fmt.Sprintf("AuditEvent/%s is not chained (inserted, or its chain extension was changed)", p.ID)
}

// Report is the result of a verification.
type Report struct {
	// Events is the number of events checked.
	Events int
	// Head is the link of the last event in chain order. A trail cut off
	// at its end is only detectable by comparing Head with a head recorded
	// elsewhere (a log line, a copy kept off the database).
	Head     Link
	Problems []Problem
}

// OK reports whether no problem was found.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Verifier checks events one at a time, in chain order, with memory that
// does not grow with the trail (only with the gaps found).
type Verifier struct {
	last     Link // the highest event seen so far
	events   int
	problems []Problem
	gaps     []Problem // Missing ranges, resolved at Report
}

// NewVerifier starts verifying after from: the zero Link to verify a trail
// from its first event, or a checkpoint (a head verified before) to verify
// only what was appended since.
func NewVerifier(from Link) *Verifier { return &Verifier{last: from} }

// Add checks the next event.
func (v *Verifier) Add(ev *fhir.Resource) {
	v.events++
	root := ev.Root()
	ci, ok := findChain(root)
	if !ok || ev.Type != "AuditEvent" {
		v.problems = append(v.problems, Problem{Kind: Unchained, ID: ev.ID})
		return
	}
	if hashOf(root) != ci.hash {
		v.problems = append(v.problems, Problem{Kind: Edited, Seq: ci.seq, ID: ev.ID})
	}
	switch {
	case ci.seq == v.last.Seq+1:
		if v.last.Seq == 0 && ci.hasPrevious || v.last.Seq > 0 && ci.previous != v.last.Hash {
			v.problems = append(v.problems, Problem{Kind: BrokenLink, Seq: ci.seq, ID: ev.ID})
		}
	case ci.seq > v.last.Seq+1:
		v.gaps = append(v.gaps, Problem{Kind: Missing, Seq: v.last.Seq + 1, Until: ci.seq - 1})
	default:
		if v.fillGap(ci.seq) {
			v.problems = append(v.problems, Problem{Kind: Reordered, Seq: ci.seq, ID: ev.ID})
		} else {
			v.problems = append(v.problems, Problem{Kind: Duplicate, Seq: ci.seq, ID: ev.ID})
		}
		return // the head stays at the highest event
	}
	v.last = Link{Seq: ci.seq, Hash: ci.hash}
}

// fillGap removes seq from the missing ranges, reporting whether it was in one.
func (v *Verifier) fillGap(seq uint64) bool {
	for i, g := range v.gaps {
		if seq < g.Seq || seq > g.Until {
			continue
		}
		var rest []Problem
		if seq > g.Seq {
			rest = append(rest, Problem{Kind: Missing, Seq: g.Seq, Until: seq - 1})
		}
		if seq < g.Until {
			rest = append(rest, Problem{Kind: Missing, Seq: seq + 1, Until: g.Until})
		}
		v.gaps = slices.Replace(v.gaps, i, i+1, rest...)
		return true
	}
	return false
}

// Report returns what was found so far, problems ordered by sequence.
func (v *Verifier) Report() Report {
	ps := append(slices.Clone(v.problems), v.gaps...)
	slices.SortStableFunc(ps, func(a, b Problem) int { return cmp.Compare(a.Seq, b.Seq) })
	return Report{Events: v.events, Head: v.last, Problems: ps}
}

// Verify checks a whole trail, given in chain order (ascending sequence,
// e.g. by id when ids come from ID). An error from the iterator stops it.
func Verify(events iter.Seq2[*fhir.Resource, error]) (Report, error) {
	v := NewVerifier(Link{})
	for ev, err := range events {
		if err != nil {
			return v.Report(), err
		}
		v.Add(ev)
	}
	return v.Report(), nil
}

// SortBySequence orders events by the sequence their chain extension
// claims (unchained events first), for trails a store cannot list in chain
// order. Reordering in storage is then no longer visible, but edits,
// deletions, insertions and re-sealing still are.
func SortBySequence(events []*fhir.Resource) {
	seq := func(r *fhir.Resource) uint64 {
		ci, _ := findChain(r.Root())
		return ci.seq
	}
	slices.SortStableFunc(events, func(a, b *fhir.Resource) int { return cmp.Compare(seq(a), seq(b)) })
}
