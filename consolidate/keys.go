package consolidate

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// dedupKeys returns the keys under which r counts as the same clinical fact
// as another source's resource: every business identifier, the
// type-specific key of its type, and a content key. Two resources from
// different sources sharing any key are the same fact.
//
// Keys never depend on resource ids or reference targets, which differ
// between sources, so a stored (rewritten) resource and a freshly pulled
// one of the same fact produce the same keys.
//
// Keys ignore what references point at (the content key keeps only the
// target type): refSig tells candidates apart by their references.
func dedupKeys(r *fhir.Resource) []string {
	root := r.Root()
	var keys []string
	if ids := root.Get("identifier"); ids != nil {
		for _, id := range items(ids) {
			sys, val := id.Get("system").String(), id.Get("value").String()
			if sys != "" && val != "" {
				keys = append(keys, "id|"+r.Type+"|"+sys+"|"+val)
			}
		}
	}
	if k := typedKey(r.Type, root); k != "" {
		keys = append(keys, "t|"+r.Type+"|"+k)
	}
	keys = append(keys, "c|"+r.Type+"|"+contentHash(root))
	return keys
}

// typedKey is the type-specific key: the fields that make two records of
// one type the same event even when the sources word the rest differently.
// It is "" when the resource lacks the fields.
func typedKey(typ string, root *fjson.Value) string {
	var parts []string
	switch typ {
	case "Observation":
		val := choice(root, "value")
		if val == "" {
			val = compact(root.Get("component"))
		}
		parts = []string{codes(root.Get("code")), choice(root, "effective"), val}
	case "Condition":
		parts = []string{codes(root.Get("code")), choice(root, "onset")}
	case "MedicationRequest":
		parts = []string{medication(root), root.Get("authoredOn").String()}
	case "Encounter":
		parts = []string{compact(root.Get("period")), typeCodes(root.Get("type"))}
	case "Procedure":
		parts = []string{codes(root.Get("code")), choice(root, "performed")}
	case "Immunization":
		parts = []string{codes(root.Get("vaccineCode")), choice(root, "occurrence")}
	case "AllergyIntolerance":
		parts = []string{codes(root.Get("code"))}
	case "DiagnosticReport":
		parts = []string{codes(root.Get("code")), choice(root, "effective")}
	default:
		return ""
	}
	if slices.Contains(parts, "") {
		return ""
	}
	return strings.Join(parts, "|")
}

// items returns an array's items, or the value itself for a lone object.
func items(v *fjson.Value) []*fjson.Value {
	if v == nil {
		return nil
	}
	if v.Kind == fjson.Array {
		return v.Items
	}
	return []*fjson.Value{v}
}

// codes is a CodeableConcept's codings as a sorted "system|code" list, so
// that the order of codings does not matter.
func codes(cc *fjson.Value) string {
	if cc == nil {
		return ""
	}
	var cs []string
	for _, c := range items(cc.Get("coding")) {
		if code := c.Get("code").String(); code != "" {
			cs = append(cs, c.Get("system").String()+"|"+code)
		}
	}
	if len(cs) == 0 {
		return cc.Get("text").String()
	}
	slices.Sort(cs)
	return strings.Join(cs, ",")
}

func typeCodes(v *fjson.Value) string {
	var cs []string
	for _, cc := range items(v) {
		if c := codes(cc); c != "" {
			cs = append(cs, c)
		}
	}
	slices.Sort(cs)
	return strings.Join(cs, ";")
}

// medication is medicationCodeableConcept's codes, or the reference's
// display when the medication is a reference (its id is source-specific).
func medication(root *fjson.Value) string {
	if cc := root.Get("medicationCodeableConcept"); cc != nil {
		return codes(cc)
	}
	if ref := root.Get("medicationReference"); ref != nil {
		if d := ref.Get("display").String(); d != "" {
			return "ref:" + d
		}
	}
	return ""
}

// choice is the compact JSON of the value of a choice element name[x].
func choice(root *fjson.Value, name string) string {
	for _, m := range root.Members {
		if len(m.Key) > len(name) && strings.HasPrefix(m.Key, name) && m.Key[len(name)] >= 'A' && m.Key[len(name)] <= 'Z' {
			return m.Key[len(name):] + ":" + compact(m.Value)
		}
	}
	return ""
}

func compact(v *fjson.Value) string {
	if v == nil {
		return ""
	}
	return string(fjson.AppendCompact(nil, v))
}

// contentHash hashes the resource without id, meta and narrative, with every
// reference reduced to its target type: identical content from two
// sources is one fact whatever ids the sources gave it.
func contentHash(root *fjson.Value) string {
	h := sha256.New()
	var buf []byte
	var walk func(v *fjson.Value, top bool)
	walk = func(v *fjson.Value, top bool) {
		switch v.Kind {
		case fjson.Object:
			buf = append(buf, '{')
			for _, m := range v.Members {
				if top && (m.Key == "id" || m.Key == "meta" || m.Key == "text") {
					continue
				}
				buf = fjson.AppendString(buf, m.Key)
				buf = append(buf, ':')
				if m.Key == "reference" && m.Value.Kind == fjson.String {
					typ, _, _ := strings.Cut(m.Value.Str, "/")
					buf = fjson.AppendString(buf, typ)
				} else {
					walk(m.Value, false)
				}
				buf = append(buf, ',')
			}
			buf = append(buf, '}')
		case fjson.Array:
			buf = append(buf, '[')
			for _, it := range v.Items {
				walk(it, false)
				buf = append(buf, ',')
			}
			buf = append(buf, ']')
		default:
			buf = append(buf, v.Raw...)
		}
		if len(buf) > 4096 {
			h.Write(buf)
			buf = buf[:0]
		}
	}
	walk(root, true)
	h.Write(buf)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// refSig lists the reference values of a resource in document order.
func refSig(root *fjson.Value) []string {
	var out []string
	var walk func(v *fjson.Value)
	walk = func(v *fjson.Value) {
		switch v.Kind {
		case fjson.Object:
			for _, m := range v.Members {
				if m.Key == "reference" && m.Value.Kind == fjson.String {
					out = append(out, m.Value.Str)
					continue
				}
				walk(m.Value)
			}
		case fjson.Array:
			for _, it := range v.Items {
				walk(it)
			}
		}
	}
	walk(root)
	return out
}
