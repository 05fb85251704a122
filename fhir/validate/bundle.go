package validate

import (
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
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
// definitions but that the HL7 validator enforces (its BundleValidator):
// fullUrl is absolute and agrees with the resource's type and id; link
// relations per Bundle type; a document's Composition and a message's
// MessageHeader reference entries of the Bundle, and every entry of a
// document is reachable from its Composition; a searchset's entries match
// its self link; a PUT in a transaction or batch names the resource it
// carries.
func (w *walker) bundleChecks(node *fjson.Value) {
	typ := node.Get("type").String()
	entries := node.Get("entry").Elems()
	w.bundleLinks(node, typ)
	fullURLOptional := typ == "transaction" || typ == "transaction-response" || typ == "batch" || typ == "batch-response"
	for i, e := range entries {
		w.push("entry", i, "")
		w.bundleEntry(e, typ, fullURLOptional)
		w.pop()
	}
	switch typ {
	case "document", "message":
		if len(entries) == 0 {
			w.push("entry", -1, "")
			w.errorf(codeRequired, "a "+typ+" must have entries, the first being its "+map[string]string{"document": "Composition", "message": "MessageHeader"}[typ])
			w.pop()
			return
		}
		w.interlinked(entries, typ == "document")
	case "searchset":
		w.searchset(node, entries)
	}
}

// bundleEntry checks one entry; the caller has pushed entry[i].
func (w *walker) bundleEntry(e *fjson.Value, typ string, fullURLOptional bool) {
	if e.Kind != fjson.Object {
		return
	}
	res := e.Get("resource")
	rt := res.Get("resourceType").String()
	fu := e.Get("fullUrl")
	switch {
	case fu == nil || fu.Kind != fjson.String || fu.Str == "":
		// R4: "fullUrl SHALL have a value except that it can be empty on a
		// POST, and results from operations might involve resources that
		// are not identified". A document or message resolves its
		// references by fullUrl, so there it is an error (as in the HL7
		// validator, which requires it everywhere); elsewhere a warning.
		if res != nil && !fullURLOptional {
			w.push("fullUrl", -1, "")
			if typ == "document" || typ == "message" {
				w.errorf(codeRequired, "an entry with a resource must have a fullUrl in a "+typ+" Bundle")
			} else {
				w.add(fhir.SeverityWarning, codeRequired, "an entry with a resource should have a fullUrl", "")
			}
			w.pop()
		}
	case !isAbsolute(fu.Str):
		w.push("fullUrl", -1, "")
		w.add(fhir.SeverityError, codeValue, "fullUrl must be an absolute URL", "fullUrl "+quote(fu))
		w.pop()
	case rt != "" && typeFromURL(fu.Str) != "":
		// A RESTful fullUrl ([base]/Type/id) names the resource it holds.
		id := res.Get("id").String()
		if id == "" {
			w.push("resource", -1, rt)
			w.add(fhir.SeverityError, codeRequired, "the fullUrl is a RESTful URL, so the resource must have an id", "fullUrl "+quote(fu))
			w.pop()
		} else if !strings.HasSuffix(fu.Str, "/"+rt+"/"+id) {
			w.push("fullUrl", -1, "")
			w.add(fhir.SeverityError, codeValue, "the fullUrl does not end with the resource's type and id", "fullUrl "+quote(fu)+", resource "+rt+"/"+id)
			w.pop()
		}
	}
	if typ == "transaction" || typ == "batch" {
		req := e.Get("request")
		if req.Get("method").String() == "PUT" && rt != "" {
			u := req.Get("url").String()
			if path, _, _ := strings.Cut(u, "?"); !strings.Contains(u, "?") && strings.Count(path, "/") == 1 {
				t, id, _ := strings.Cut(path, "/")
				if t != rt || res.Get("id") != nil && res.Get("id").String() != id {
					w.push("request", -1, "")
					w.push("url", -1, "")
					w.add(fhir.SeverityError, codeValue, "a PUT's url must name the type and id of the entry's resource", "url "+strconv.Quote(u)+", resource "+rt+"/"+res.Get("id").String())
					w.pop()
					w.pop()
				}
			}
		}
	}
}

func isAbsolute(u string) bool {
	j := strings.IndexAny(u, ":/")
	return j > 0 && u[j] == ':'
}

// bundleLinks checks link relations: in searchsets and histories the
// paging relations and self occur once; in other Bundles the paging
// relations are not allowed and self occurs once.
func (w *walker) bundleLinks(node *fjson.Value, typ string) {
	links := node.Get("link").Elems()
	seen := make(map[string]bool, len(links))
	for i, l := range links {
		rel := l.Get("relation")
		if rel == nil || rel.Kind != fjson.String {
			continue
		}
		paging := rel.Str == "first" || rel.Str == "previous" || rel.Str == "next" || rel.Str == "last"
		switch {
		case paging && typ != "searchset" && typ != "history" && typ != "":
			w.push("link", i, "")
			w.push("relation", -1, "")
			w.add(fhir.SeverityError, codeBusiness, "paging links are only allowed in searchset and history Bundles", "relation "+quote(rel))
			w.pop()
			w.pop()
		case (paging || rel.Str == "self") && seen[rel.Str]:
			w.push("link", i, "")
			w.push("relation", -1, "")
			w.add(fhir.SeverityError, codeBusiness, "a link relation may occur only once in a Bundle", "relation "+quote(rel))
			w.pop()
			w.pop()
		}
		seen[rel.Str] = true
	}
}

// searchset checks the entries of a search result against its self link,
// as the HL7 validator does: entries found by the search (mode match) are
// of the searched type and have ids, included entries have ids, and an
// outcome entry is an OperationOutcome.
func (w *walker) searchset(node *fjson.Value, entries []*fjson.Value) {
	var self *fjson.Value
	for _, l := range node.Get("link").Elems() {
		if l.Get("relation").String() == "self" {
			self = l
			break
		}
	}
	if self == nil {
		w.push("link", -1, "")
		w.add(fhir.SeverityWarning, codeRequired, "a searchset should have a self link", "")
		w.pop()
	}
	types := searchTypes(self.Get("url").String())
	anyMode, allModes := false, true
	for _, e := range entries {
		if e.Get("search").Get("mode").String() != "" {
			anyMode = true
		} else {
			allModes = false
		}
	}
	for i, e := range entries {
		if e.Kind != fjson.Object {
			continue
		}
		w.push("entry", i, "")
		res := e.Get("resource")
		mode := e.Get("search").Get("mode").String()
		if anyMode && mode == "" {
			w.push("search", -1, "")
			w.add(fhir.SeverityWarning, codeRequired, "entries of a searchset should say their search mode", "")
			w.pop()
		}
		if res == nil || res.Kind != fjson.Object {
			w.push("resource", -1, "")
			w.errorf(codeRequired, "an entry of a searchset must have a resource")
			w.pop()
			w.pop()
			continue
		}
		rt := res.Get("resourceType").String()
		hasID := res.Get("id").String() != ""
		w.push("resource", -1, rt)
		switch {
		case !allModes:
			if !hasID && rt != "OperationOutcome" {
				w.add(fhir.SeverityWarning, codeRequired, "a resource found by a search should have an id", "")
			}
			if len(types) > 0 && !anyMode && !slices.Contains(types, rt) && rt != "OperationOutcome" {
				w.add(fhir.SeverityWarning, codeValue, "the resource is not of a type the self link searches for", "resourceType "+rt+", searched: "+strings.Join(types, ","))
			}
		case mode == "match":
			// R4 lets results of operations be unidentified (the HL7
			// validator makes this an error)
			if !hasID && typeFromURL(e.Get("fullUrl").String()) == "" { // else reported with the fullUrl
				w.add(fhir.SeverityWarning, codeRequired, "a resource that matched the search should have an id", "")
			}
			if len(types) > 0 && !slices.Contains(types, rt) {
				w.add(fhir.SeverityError, codeValue, "a matching resource must be of a type the self link searches for", "resourceType "+rt+", searched: "+strings.Join(types, ","))
			}
		case mode == "include":
			if !hasID && typeFromURL(e.Get("fullUrl").String()) == "" {
				w.add(fhir.SeverityWarning, codeRequired, "an included resource should have an id", "")
			}
		case mode == "outcome":
			if rt != "OperationOutcome" {
				w.add(fhir.SeverityError, codeValue, "an entry of search mode outcome must be an OperationOutcome", "resourceType "+rt)
			}
		}
		w.pop()
		w.pop()
	}
}

// searchTypes reads the resource types a search URL searches: the last
// path segment when it is a resource type ([base]/Type?..,
// [base]/Patient/1/Type), else the _type parameter of a system search.
func searchTypes(u string) []string {
	if u == "" {
		return nil
	}
	path, query, _ := strings.Cut(u, "?")
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		path = path[i+1:]
	}
	if fhir.IsResourceType(path) {
		return []string{path}
	}
	var types []string
	for _, p := range strings.Split(query, "&") {
		if v, ok := strings.CutPrefix(p, "_type="); ok {
			if uv, err := url.QueryUnescape(v); err == nil {
				v = uv
			}
			types = append(types, strings.Split(v, ",")...)
		}
	}
	return types
}

// interlinked checks a document or a message: the references of its
// first resource (the Composition or MessageHeader) that point into the
// Bundle resolve there, and every entry is reachable from the first by
// references, as the HL7 validator requires (it makes an unreachable
// document entry an error; here it is a warning, see below). Entries that
// only refer to reachable ones (a Provenance) count as reachable.
func (w *walker) interlinked(entries []*fjson.Value, document bool) {
	type ent struct {
		fullURL, typ, id string
		refs             []string
	}
	list := make([]ent, len(entries))
	byURL := make(map[string]int, len(entries))
	byTypeID := make(map[string]int, len(entries))
	for i, e := range entries {
		res := e.Get("resource")
		en := ent{fullURL: e.Get("fullUrl").String(), typ: res.Get("resourceType").String(), id: res.Get("id").String()}
		if res != nil {
			collectRefs(res, &en.refs, true)
		}
		list[i] = en
		if en.fullURL != "" {
			byURL[en.fullURL] = i
		}
		if en.typ != "" && en.id != "" {
			byTypeID[en.typ+"/"+en.id] = i
		}
	}
	resolve := func(from int, ref string) (int, bool) {
		ref, _, _ = strings.Cut(ref, "/_history/")
		if i, ok := byURL[ref]; ok {
			return i, true
		}
		if isAbsolute(ref) {
			return 0, false
		}
		// relative: against the referring entry's base, else by type and id
		if fu := list[from].fullURL; typeFromURL(fu) != "" {
			base := fu[:strings.LastIndexByte(fu[:strings.LastIndexByte(fu, '/')], '/')+1]
			if i, ok := byURL[base+ref]; ok {
				return i, true
			}
		}
		i, ok := byTypeID[ref]
		return i, ok
	}
	// the first resource's own references must resolve in the Bundle
	first := entries[0].Get("resource")
	if first != nil && (document && list[0].typ == "Composition" || !document && list[0].typ == "MessageHeader") {
		var own []string
		if document {
			for _, k := range []string{"subject", "encounter", "custodian"} {
				own = appendRef(own, first.Get(k))
			}
			for _, a := range first.Get("author").Elems() {
				own = appendRef(own, a)
			}
			for _, a := range first.Get("attester").Elems() {
				own = appendRef(own, a.Get("party"))
			}
			for _, ev := range first.Get("event").Elems() {
				for _, d := range ev.Get("detail").Elems() {
					own = appendRef(own, d)
				}
			}
			var sections func(*fjson.Value)
			sections = func(n *fjson.Value) {
				for _, s := range n.Get("section").Elems() {
					for _, a := range s.Get("author").Elems() {
						own = appendRef(own, a)
					}
					own = appendRef(own, s.Get("focus"))
					for _, en := range s.Get("entry").Elems() {
						own = appendRef(own, en)
					}
					sections(s)
				}
			}
			sections(first)
		} else {
			for _, f := range first.Get("focus").Elems() {
				own = appendRef(own, f)
			}
		}
		for _, r := range own {
			if strings.HasPrefix(r, "#") {
				continue
			}
			if _, ok := resolve(0, r); !ok {
				// A urn: can only resolve in the Bundle; a RESTful
				// reference may resolve on a server, so it is a warning
				// (the HL7 validator makes both errors).
				sev := fhir.SeverityWarning
				if strings.HasPrefix(r, "urn:") {
					sev = fhir.SeverityError
				}
				w.push("entry", 0, "")
				w.push("resource", -1, list[0].typ)
				w.add(sev, codeNotFound, "a reference of the "+list[0].typ+" does not resolve to an entry of the Bundle", "reference "+strconv.Quote(r))
				w.pop()
				w.pop()
			}
		}
	}
	// reachability from the first entry
	targets := make([][]int, len(list))
	for i := range list {
		for _, r := range list[i].refs {
			if j, ok := resolve(i, r); ok && j != i {
				targets[i] = append(targets[i], j)
			}
		}
	}
	seen := make([]bool, len(list))
	var visit func(int)
	visit = func(i int) {
		if seen[i] {
			return
		}
		seen[i] = true
		for _, j := range targets[i] {
			visit(j)
		}
	}
	visit(0)
	for changed := true; changed; {
		changed = false
		for i := range list {
			if seen[i] {
				continue
			}
			for _, j := range targets[i] {
				if seen[j] {
					if document && list[i].typ != "Provenance" {
						w.push("entry", i, "")
						w.add(fhir.SeverityWarning, codeBusiness, "the entry is reachable from the Composition only through a reference it makes itself (R4 documents expect entries to be referenced)", "")
						w.pop()
					}
					visit(i)
					changed = true
					break
				}
			}
		}
	}
	for i := range list {
		if seen[i] || entries[i].Get("resource") == nil {
			continue
		}
		// The HL7 validator makes this an error for documents; here it is
		// a warning, because the gateway files documents from other
		// systems, and refusing a whole document for an entry that is only
		// unlinked would lose records that are otherwise sound.
		w.push("entry", i, "")
		w.add(fhir.SeverityWarning, codeBusiness, "the entry is not referenced from the "+map[bool]string{true: "document's Composition", false: "message's MessageHeader"}[document]+", directly or through other entries", "")
		w.pop()
	}
}

func appendRef(out []string, ref *fjson.Value) []string {
	if r := ref.Get("reference").String(); r != "" {
		out = append(out, r)
	}
	return out
}

// collectRefs gathers the Reference.reference values under n, and the url
// members (Attachment.url naming a Binary of the Bundle links it as the HL7
// validator counts it; other urls, extension URLs among them, resolve to
// no entry), without entering nested Bundles.
func collectRefs(n *fjson.Value, out *[]string, top bool) {
	switch n.Kind {
	case fjson.Object:
		if !top && n.Get("resourceType").String() == "Bundle" {
			return
		}
		for _, m := range n.Members {
			if (m.Key == "reference" || m.Key == "url") && m.Value.Kind == fjson.String {
				if m.Value.Str != "" && m.Value.Str[0] != '#' {
					*out = append(*out, m.Value.Str)
				}
				continue
			}
			if m.Value.Kind == fjson.Object || m.Value.Kind == fjson.Array {
				collectRefs(m.Value, out, false)
			}
		}
	case fjson.Array:
		for _, it := range n.Items {
			collectRefs(it, out, false)
		}
	}
}
