package validate

import (
	"strings"

	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// bundleCtx is what the entries of a Bundle need to know about it.
type bundleCtx struct {
	typ string
	// fullURLs maps each entry's fullUrl to its resource type, so that
	// references between entries (urn:uuid: and absolute URLs) resolve.
	fullURLs map[string]string
}

func (w *walker) newBundle(node *fjson.Value) *bundleCtx {
	b := &bundleCtx{typ: node.Get("type").String()}
	entries := node.Get("entry")
	if entries == nil || entries.Kind != fjson.Array {
		return b
	}
	b.fullURLs = make(map[string]string, len(entries.Items))
	for _, e := range entries.Items {
		fu := e.Get("fullUrl")
		if fu == nil || fu.Kind != fjson.String {
			continue
		}
		if rt := e.Get("resource").Get("resourceType"); rt != nil && rt.Kind == fjson.String {
			b.fullURLs[fu.Str] = rt.Str
		}
	}
	return b
}

// checkBdl7 implements bdl-7: "(type = 'history') or
// entry.where(fullUrl.exists()).select(fullUrl&resource.meta.versionId).isDistinct()".
func (w *walker) checkBdl7(node *fjson.Value, cons []*constraint) {
	var bdl7 *constraint
	for _, c := range cons {
		if c.native == nativeBdl7 {
			bdl7 = c
		}
	}
	entries := node.Get("entry")
	if bdl7 == nil || node.Get("type").String() == "history" || entries == nil || entries.Kind != fjson.Array {
		return
	}
	seen := make(map[string]bool, len(entries.Items))
	for _, e := range entries.Items {
		fu := e.Get("fullUrl")
		if fu == nil || fu.Kind != fjson.String {
			continue
		}
		k := fu.Str + "\x00" + e.Get("resource").Get("meta").Get("versionId").String()
		if seen[k] {
			w.errorf(codeInvariant, "bdl-7: "+bdl7.human)
			return
		}
		seen[k] = true
	}
}

// bundleChecks applies the Bundle rules that are not invariants in the
// definitions but that the HL7 validator enforces: fullUrl is absolute, and
// a link relation occurs once.
func (w *walker) bundleChecks(node *fjson.Value) {
	if entries := node.Get("entry"); entries != nil && entries.Kind == fjson.Array {
		for i, e := range entries.Items {
			fu := e.Get("fullUrl")
			if fu == nil || fu.Kind != fjson.String || fu.Str == "" {
				continue
			}
			if j := strings.IndexAny(fu.Str, ":/"); j <= 0 || fu.Str[j] != ':' {
				w.push("entry", i, "")
				w.push("fullUrl", -1, "")
				w.add("error", codeValue, "fullUrl must be an absolute URL", "fullUrl "+quote(fu))
				w.pop()
				w.pop()
			}
		}
	}
	if links := node.Get("link"); links != nil && links.Kind == fjson.Array {
		seen := make(map[string]bool, len(links.Items))
		for i, l := range links.Items {
			rel := l.Get("relation")
			if rel == nil || rel.Kind != fjson.String {
				continue
			}
			if seen[rel.Str] {
				w.push("link", i, "")
				w.push("relation", -1, "")
				w.add("error", codeBusiness, "a link relation may occur only once in a Bundle", "relation "+quote(rel))
				w.pop()
				w.pop()
			}
			seen[rel.Str] = true
		}
	}
}
