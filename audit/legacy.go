package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// The trail before the audit log: AuditEvent resources in the resource
// store, each carrying the chain extension with an unkeyed SHA-256 over its
// canonical JSON. It is kept only to move such trails into the log
// (Migrate): their chain is checked, their head recorded, and the events
// re-sealed under the key.

// Link is the position and hash of one event of a legacy trail: the head
// of the chain after it. The zero Link is the empty chain.
type Link struct {
	Seq  uint64
	Hash string
}

// ErrNotChained: the event carries no (well-formed) chain extension.
var ErrNotChained = errors.New("audit: event is not chained")

// legacySeal links ev (an AuditEvent from Build, not yet chained) after prev: it
// adds the chain extension with the next sequence number and prev's hash,
// and the hash of the result. It returns the sealed event and the new head.
// The hash covers everything except id, meta.versionId and
// meta.lastUpdated, which the store assigns, and is computed over a
// canonical form (keys sorted, no whitespace) so that key order in storage
// does not matter.
func legacySeal(prev Link, ev *fhir.Resource) (*fhir.Resource, Link, error) {
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

// LinkOf reads, of a legacy event, the position and hash an event claims (without checking
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

// legacyVerifier checks legacy events one at a time, in chain order.
type legacyVerifier struct {
	last     Link // the highest event seen so far
	events   int
	problems []Problem
	gaps     []Problem // Missing ranges, resolved at the end
}

// add checks the next event.
func (v *legacyVerifier) add(ev *fhir.Resource) {
	v.events++
	root := ev.Root()
	ci, ok := findChain(root)
	if !ok || ev.Type != "AuditEvent" {
		v.problems = append(v.problems, Problem{Kind: Unchained, ID: ev.ID})
		return
	}
	seq := int64(ci.seq)
	if hashOf(root) != ci.hash {
		v.problems = append(v.problems, Problem{Kind: Edited, Seq: seq, ID: ev.ID})
	}
	switch {
	case ci.seq == v.last.Seq+1:
		if v.last.Seq == 0 && ci.hasPrevious || v.last.Seq > 0 && ci.previous != v.last.Hash {
			v.problems = append(v.problems, Problem{Kind: BrokenLink, Seq: seq, ID: ev.ID})
		}
	case ci.seq > v.last.Seq+1:
		v.gaps = append(v.gaps, Problem{Kind: Missing, Seq: int64(v.last.Seq) + 1, Until: seq - 1})
	default:
		if v.fillGap(seq) {
			v.problems = append(v.problems, Problem{Kind: Reordered, Seq: seq, ID: ev.ID})
		} else {
			v.problems = append(v.problems, Problem{Kind: Duplicate, Seq: seq, ID: ev.ID})
		}
		return // the head stays at the highest event
	}
	v.last = Link{Seq: ci.seq, Hash: ci.hash}
}

// fillGap removes seq from the missing ranges, reporting whether it was in one.
func (v *legacyVerifier) fillGap(seq int64) bool {
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

// result returns the head and the problems, ordered by sequence.
func (v *legacyVerifier) result() (Link, []Problem) {
	ps := append(slices.Clone(v.problems), v.gaps...)
	sortProblems(ps)
	return v.last, ps
}
