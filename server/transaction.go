package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/internal/par"
	"github.com/fhirgate/fhirgate/release"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/gin-gonic/gin"
)

// bundleEntryReq is one parsed entry of a transaction or batch Bundle.
type bundleEntryReq struct {
	index   int
	fullURL string
	method  string
	url     string // request.url as sent
	typ, id string // from the URL (id empty for POST and conditional forms)
	query   string // the search part of a conditional URL
	vid     string // _history/[vid] in a GET URL
	body    *fjson.Value
	res     *fhir.Resource

	ifMatch, ifNoneExist, ifNoneMatch string

	// err is a problem found while parsing the entry: it fails a
	// transaction, and only its own entry of a batch.
	err error
	// validated is set when the resource passed validation up front.
	validated bool
	// prepared is set when the entry was prepared up front
	// (prepareInParallel), with prepErr its error.
	prepared bool
	prepErr  error
	// release checks that the principal may receive a resource a GET
	// entry reads; nil when anyone may.
	release func(*fhir.Resource) error

	// result
	status   int
	out      *fhir.Resource
	location string
	etagV    string
	outcome  *fhir.OperationOutcome
	body200  []byte // a GET entry's response resource
}

// transactionOrder is the processing order R4 prescribes for transactions.
func transactionOrder(method string) int {
	switch method {
	case http.MethodDelete:
		return 0
	case http.MethodPost:
		return 1
	case http.MethodPut, http.MethodPatch:
		return 2
	default:
		return 3
	}
}

// transaction answers POST [base] with a transaction or batch Bundle.
func (s *Server) transaction(c *gin.Context) {
	if err := requireJSONBody(c); err != nil {
		s.fail(c, err)
		return
	}
	body, err := s.readBody(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	typ, root, err := parseBundle(body)
	if err != nil {
		s.fail(c, err)
		return
	}
	if typ != "Bundle" {
		s.fail(c, fhir.Errorf(http.StatusBadRequest, "invalid", []string{"resourceType"}, "POST to the base takes a Bundle of type transaction or batch, not a %s", typ))
		return
	}
	btype := root.Get("type").String()
	if btype != "transaction" && btype != "batch" {
		s.fail(c, fhir.Errorf(http.StatusBadRequest, "invalid", []string{"Bundle.type"}, "Bundle.type must be transaction or batch"))
		return
	}
	entries, err := parseBundleEntries(root)
	if err != nil {
		s.fail(c, err)
		return
	}
	for _, be := range entries {
		if be.err == nil {
			be.err = auditEventEntry(c, be)
		}
		if be.err == nil {
			be.err = s.authorizeEntry(c, be)
		}
	}
	a := accessOf(c)
	a.interaction, a.operation, a.resourceType, a.resource = btype, "", "", ""
	if btype == "transaction" {
		for _, be := range entries {
			if be.err != nil {
				s.fail(c, be.err)
				return
			}
		}
		err = s.runTransaction(c.Request.Context(), entries)
		if err != nil {
			s.fail(c, err)
			return
		}
	} else {
		s.runBatch(c.Request.Context(), entries)
	}
	// the audit trail names every patient the Bundle wrote about, under the
	// ids things were stored with
	pats := make([][]string, len(entries))
	par.For(len(entries), func(i int) {
		if out := entries[i].out; out != nil {
			pats[i] = s.decider.PatientsOf(out)
		}
	})
	for _, ps := range pats {
		for _, pt := range ps {
			a.Patient("Patient/" + pt)
		}
	}
	s.writeJSON(c, http.StatusOK, s.bundleResponse(c, btype+"-response", entries))
}

// parseBundle parses the body of POST [base]. A well-formed Bundle is only
// parsed: fhir.Parse would also write the whole document out again
// compacted (its Raw), which a transaction never uses (each entry's
// resource is compacted on its own). Anything else goes through fhir.Parse
// for its usual answer.
func parseBundle(body []byte) (string, *fjson.Value, error) {
	if v, err := fjson.Parse(body); err == nil && v.Kind == fjson.Object {
		rt, id, meta := v.Get("resourceType"), v.Get("id"), v.Get("meta")
		if rt != nil && rt.Kind == fjson.String && rt.Str == "Bundle" &&
			(id == nil || id.Kind == fjson.String && fhir.ValidID(id.Str)) &&
			(meta == nil || meta.Kind == fjson.Object) {
			return "Bundle", v, nil
		}
	}
	r, err := fhir.Parse(body)
	if err != nil {
		return "", nil, err
	}
	return r.Type, r.Root(), nil
}

func entryErr(i int, field string, status int, code, format string, args ...any) error {
	return fhir.Errorf(status, code, []string{fmt.Sprintf("Bundle.entry[%d]%s", i, field)}, format, args...)
}

// parseBundleEntries reads and checks every entry's request.
func parseBundleEntries(root *fjson.Value) ([]*bundleEntryReq, error) {
	ev := root.Get("entry")
	if ev == nil {
		return nil, nil
	}
	if ev.Kind != fjson.Array {
		return nil, fhir.Errorf(http.StatusBadRequest, "structure", []string{"Bundle.entry"}, "Bundle.entry must be an array")
	}
	out := make([]*bundleEntryReq, 0, len(ev.Items))
	seenFull := map[string]int{}
	for i, e := range ev.Items {
		be := &bundleEntryReq{index: i}
		be.err = be.parse(e, seenFull)
		out = append(out, be)
	}
	return out, nil
}

// parse reads one entry; the error concerns this entry only.
func (be *bundleEntryReq) parse(e *fjson.Value, seenFull map[string]int) error {
	i := be.index
	if e.Kind != fjson.Object {
		return entryErr(i, "", http.StatusBadRequest, "structure", "an entry must be an object")
	}
	req := e.Get("request")
	if req == nil || req.Kind != fjson.Object {
		return entryErr(i, ".request", http.StatusBadRequest, "required", "every entry of a transaction or batch needs a request")
	}
	be.fullURL = e.Get("fullUrl").String()
	be.method = strings.ToUpper(req.Get("method").String())
	be.url = req.Get("url").String()
	be.ifMatch = req.Get("ifMatch").String()
	be.ifNoneExist = req.Get("ifNoneExist").String()
	be.ifNoneMatch = req.Get("ifNoneMatch").String()
	be.body = e.Get("resource")
	switch be.method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
	default:
		return entryErr(i, ".request.method", http.StatusBadRequest, "value", "request.method must be GET, HEAD, POST, PUT, PATCH or DELETE")
	}
	if be.url == "" {
		return entryErr(i, ".request.url", http.StatusBadRequest, "required", "request.url is required")
	}
	if err := be.parseURL(); err != nil {
		return err
	}
	if be.fullURL != "" {
		if j, dup := seenFull[be.fullURL]; dup {
			return entryErr(i, ".fullUrl", http.StatusBadRequest, "duplicate", "fullUrl is the same as entry %d's", j)
		}
		seenFull[be.fullURL] = i
	}
	switch be.method {
	case http.MethodPost, http.MethodPut:
		if be.body == nil {
			return entryErr(i, ".resource", http.StatusBadRequest, "required", "a %s entry needs a resource", be.method)
		}
		res, err := fhir.FromValue(be.body)
		if err != nil {
			return prefixExpr(err, fmt.Sprintf("Bundle.entry[%d].resource", i))
		}
		if res.Type != be.typ {
			return entryErr(i, ".resource", http.StatusUnprocessableEntity, "invalid", "the resource is a %s but request.url names %s", res.Type, be.typ)
		}
		if be.method == http.MethodPut && be.id != "" && res.ID != be.id {
			return entryErr(i, ".resource.id", http.StatusUnprocessableEntity, "invalid", "the resource's id does not match request.url")
		}
		be.res = res
	case http.MethodPatch:
		if be.body == nil || be.body.Get("resourceType").String() != "Binary" {
			return entryErr(i, ".resource", http.StatusBadRequest, "required", "a PATCH entry carries its JSON Patch as a Binary resource (contentType application/json-patch+json, data base64)")
		}
	}
	return nil
}

// prefixExpr puts a path prefix in front of an error's expressions (and
// gives the prefix to issues that had none).
func prefixExpr(err error, prefix string) error {
	status, issues := errorStatus(err)
	if status >= 500 {
		return err
	}
	out := &fhir.Error{Status: status}
	for _, is := range issues {
		is.Expression = slices.Clone(is.Expression)
		if len(is.Expression) == 0 {
			is.Expression = []string{prefix}
		}
		for j, e := range is.Expression {
			if strings.HasPrefix(e, prefix) {
				continue
			}
			// "Patient.birthDate" inside an entry is "<prefix>.birthDate"
			if first, rest, ok := strings.Cut(e, "."); ok && fhir.IsResourceType(first) {
				e = rest
			} else if fhir.IsResourceType(e) {
				is.Expression[j] = prefix
				continue
			}
			is.Expression[j] = prefix + "." + e
		}
		out.Issues = append(out.Issues, is)
	}
	return out
}

// parseURL splits request.url into type, id, version and conditional query.
func (be *bundleEntryReq) parseURL() error {
	u := be.url
	if i := strings.Index(u, "://"); i >= 0 {
		return entryErr(be.index, ".request.url", http.StatusBadRequest, "value", "request.url must be relative to the server base")
	}
	u = strings.TrimPrefix(u, "/")
	path, query, _ := strings.Cut(u, "?")
	be.query = query
	segs := strings.Split(path, "/")
	if !fhir.IsResourceType(segs[0]) {
		return entryErr(be.index, ".request.url", http.StatusBadRequest, "value", "request.url does not start with a resource type")
	}
	be.typ = segs[0]
	switch len(segs) {
	case 1:
	case 2:
		be.id = segs[1]
	case 4:
		if segs[2] != "_history" || be.method != http.MethodGet {
			return entryErr(be.index, ".request.url", http.StatusBadRequest, "value", "unsupported request.url form")
		}
		be.id, be.vid = segs[1], segs[3]
	default:
		return entryErr(be.index, ".request.url", http.StatusBadRequest, "value", "unsupported request.url form")
	}
	if be.id != "" && !fhir.ValidID(be.id) {
		return entryErr(be.index, ".request.url", http.StatusBadRequest, "value", "the id in request.url is not a valid id")
	}
	if _, err := url.ParseQuery(query); err != nil {
		return entryErr(be.index, ".request.url", http.StatusBadRequest, "value", "the query in request.url is malformed")
	}
	switch be.method {
	case http.MethodPost:
		if be.id != "" {
			return entryErr(be.index, ".request.url", http.StatusBadRequest, "value", "a POST entry's url is the resource type only")
		}
	case http.MethodPut, http.MethodPatch, http.MethodDelete:
		if be.id == "" && be.query == "" {
			return entryErr(be.index, ".request.url", http.StatusBadRequest, "value", "a %s entry's url needs an id or a search", be.method)
		}
	}
	return nil
}

// runTransaction processes every entry in one store transaction: all or
// nothing. The first failing entry's error answers the whole request.
func (s *Server) runTransaction(ctx context.Context, entries []*bundleEntryReq) error {
	order := slices.Clone(entries)
	slices.SortStableFunc(order, func(a, b *bundleEntryReq) int {
		return transactionOrder(a.method) - transactionOrder(b.method)
	})
	// Validation needs no database: do it on all cores before the store's
	// write lock is taken. Rewriting references later does not change a
	// resource's validity (urn:uuid and Type/id are both valid references).
	if err := s.validateEntries(entries); err != nil {
		return err
	}
	return s.cfg.Store.InTx(ctx, func(tx storage.Tx) error {
		// every condition's locks at once, before any is searched: two
		// transactions with conditions in different orders cannot deadlock
		if err := tx.Lock(ctx, transactionLocks(entries)...); err != nil {
			return err
		}
		ids, err := s.assignIdentities(ctx, tx, entries)
		if err != nil {
			return err
		}
		// Consecutive plain creates go to the store as one batch.
		var pending []*bundleEntryReq
		flush := func() error {
			if len(pending) == 0 {
				return nil
			}
			res := make([]*fhir.Resource, len(pending))
			for i, be := range pending {
				res[i] = be.res
			}
			out, err := tx.CreateMany(ctx, res)
			if err != nil {
				return err
			}
			for i, be := range pending {
				be.created(out[i])
			}
			pending = pending[:0]
			return nil
		}
		s.prepareInParallel(ctx, tx, entries, ids)
		for _, be := range order {
			if be.prepared {
				if be.prepErr != nil {
					return be.prepErr
				}
			} else if err := s.prepareEntry(ctx, tx, be, ids); err != nil {
				return err
			}
			if be.method == http.MethodPost && be.ifNoneExist == "" && be.res != nil {
				pending = append(pending, be)
				continue
			}
			if err := flush(); err != nil {
				return err
			}
			if err := s.execEntry(ctx, tx, be); err != nil {
				return prefixExpr(err, fmt.Sprintf("Bundle.entry[%d]", be.index))
			}
		}
		return flush()
	})
}

// transactionLocks are the locks of every conditional entry (see
// conditionLocks).
func transactionLocks(entries []*bundleEntryReq) []string {
	var keys []string
	for _, be := range entries {
		switch {
		case be.method == http.MethodPost && be.ifNoneExist != "":
			keys = append(keys, conditionLocks(be.typ, be.ifNoneExist)...)
		case be.id == "" && be.query != "" && be.method != http.MethodGet && be.method != http.MethodHead:
			keys = append(keys, conditionLocks(be.typ, be.query)...)
		}
	}
	return keys
}

// runBatch processes each entry on its own; failures become that entry's
// response and do not affect the others.
func (s *Server) runBatch(ctx context.Context, entries []*bundleEntryReq) {
	for _, be := range entries {
		err := be.err
		if err == nil {
			err = s.cfg.Store.InTx(ctx, func(tx storage.Tx) error {
				ids, err := s.assignIdentities(ctx, tx, []*bundleEntryReq{be})
				if err != nil {
					return err
				}
				if err := s.prepareEntry(ctx, tx, be, ids); err != nil {
					return err
				}
				return s.execEntry(ctx, tx, be)
			})
		}
		if err != nil {
			status, issues := errorStatus(err)
			be.status, be.outcome, be.out, be.body200 = status, fhir.NewOutcome(issues...), nil, nil
		}
	}
}

// assignIdentities gives every POST entry its new id and maps each entry's
// fullUrl to the local reference it will have, so references between
// entries can be rewritten.
func (s *Server) assignIdentities(ctx context.Context, tx storage.Tx, entries []*bundleEntryReq) (map[string]string, error) {
	ids := map[string]string{}
	for _, be := range entries {
		switch be.method {
		case http.MethodPost:
			if be.res == nil {
				continue
			}
			be.res.ID = s.newID()
			if be.ifNoneExist != "" {
				match, err := s.conditionalMatch(ctx, tx, be.typ, be.ifNoneExist, be.index, ".request.ifNoneExist")
				if err != nil {
					return nil, err
				}
				if match != nil {
					be.out, be.status = match, http.StatusOK
					be.res.ID = match.ID
				}
			}
		case http.MethodPut:
			if be.id == "" { // conditional update: resolve now so references see the id
				match, err := s.conditionalMatch(ctx, tx, be.typ, be.query, be.index, ".request.url")
				if err != nil {
					return nil, err
				}
				if match != nil {
					be.id = match.ID
				} else if be.res.ID != "" {
					be.id = be.res.ID
				} else {
					be.id = s.newID()
				}
				be.res.ID = be.id
			}
		}
		if be.fullURL != "" && be.res != nil {
			ids[be.fullURL] = be.typ + "/" + be.res.ID
		}
	}
	return ids, nil
}

// prepareEntry rewrites references to other entries and resolves
// conditional references, then re-reads the resource.
func (s *Server) prepareEntry(ctx context.Context, tx storage.Tx, be *bundleEntryReq, ids map[string]string) error {
	if be.res == nil || be.out != nil {
		return nil
	}
	if err := s.resolveConditionalRefs(ctx, tx, be, ids); err != nil {
		return err
	}
	if len(ids) > 0 && rewriteReferences(be.body, ids) {
		res, err := fhir.FromValue(be.body)
		if err != nil {
			return prefixExpr(err, fmt.Sprintf("Bundle.entry[%d].resource", be.index))
		}
		res.ID = be.res.ID
		be.res = res
	}
	if be.validated {
		return nil
	}
	return s.validateWrite(be.res, fmt.Sprintf("Bundle.entry[%d].resource", be.index))
}

// validateEntries validates the resources of POST and PUT entries in
// parallel; the first failing entry (in Bundle order) is the error.
func (s *Server) validateEntries(entries []*bundleEntryReq) error {
	errs := make([]error, len(entries))
	par.For(len(entries), func(i int) {
		be := entries[i]
		if be.res == nil || be.err != nil || be.hasConditionalRefs() {
			return // (validated once its conditional references are resolved)
		}
		errs[i] = s.validateWrite(be.res, fmt.Sprintf("Bundle.entry[%d].resource", be.index))
		be.validated = errs[i] == nil
	})
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// prepareInParallel prepares (prepareEntry) the entries that have no
// conditional references on all cores: rewriting their references and
// writing them out again is CPU and needs nothing of the transaction. Their
// errors wait in the entries for the transaction's order; entries with
// conditional references are prepared in that order, as they may match
// what the transaction's earlier entries wrote.
func (s *Server) prepareInParallel(ctx context.Context, tx storage.Tx, entries []*bundleEntryReq, ids map[string]string) {
	if len(entries) < 16 {
		return
	}
	par.For(len(entries), func(i int) {
		be := entries[i]
		if be.res == nil || be.out != nil || be.hasConditionalRefs() {
			return
		}
		be.prepErr = s.prepareEntry(ctx, tx, be, ids)
		be.prepared = true
	})
}

// hasConditionalRefs says whether the entry's resource has references of
// the form Type?search.
func (be *bundleEntryReq) hasConditionalRefs() bool {
	var conds []string
	collectConditionalRefs(be.body, &conds)
	return len(conds) > 0
}

// resolveConditionalRefs finds references of the form Type?search in the
// entry's resource and maps each to the one resource that matches (400
// when none does, 412 when several do).
func (s *Server) resolveConditionalRefs(ctx context.Context, tx storage.Tx, be *bundleEntryReq, ids map[string]string) error {
	var conds []string
	collectConditionalRefs(be.body, &conds)
	for _, ref := range conds {
		if _, done := ids[ref]; done {
			continue
		}
		typ, query, _ := strings.Cut(ref, "?")
		if !fhir.IsResourceType(typ) {
			return entryErr(be.index, ".resource", http.StatusBadRequest, "value", "the conditional reference %q does not start with a resource type", ref)
		}
		matches, err := s.searchAll(ctx, tx, typ, query, 2)
		if err != nil {
			return prefixExpr(err, fmt.Sprintf("Bundle.entry[%d].resource", be.index))
		}
		switch len(matches) {
		case 0:
			return entryErr(be.index, ".resource", http.StatusBadRequest, "not-found", "the conditional reference %q matches no resource", ref)
		case 1:
			ids[ref] = typ + "/" + matches[0].ID
		default:
			return entryErr(be.index, ".resource", http.StatusPreconditionFailed, "multiple-matches", "the conditional reference %q matches more than one resource", ref)
		}
	}
	return nil
}

func collectConditionalRefs(v *fjson.Value, out *[]string) {
	switch v.Kind {
	case fjson.Object:
		for _, m := range v.Members {
			if m.Key == "reference" && m.Value.Kind == fjson.String {
				if typ, _, ok := strings.Cut(m.Value.Str, "?"); ok && !strings.Contains(typ, "/") {
					*out = append(*out, m.Value.Str)
				}
				continue
			}
			collectConditionalRefs(m.Value, out)
		}
	case fjson.Array:
		for _, it := range v.Items {
			collectConditionalRefs(it, out)
		}
	}
}

// rewriteReferences replaces, anywhere in v, every Reference.reference
// whose value is a key of ids. It reports whether anything changed.
func rewriteReferences(v *fjson.Value, ids map[string]string) bool {
	changed := false
	switch v.Kind {
	case fjson.Object:
		for i := range v.Members {
			m := &v.Members[i]
			if m.Key == "reference" && m.Value.Kind == fjson.String {
				if to, ok := ids[m.Value.Str]; ok {
					m.Value = &fjson.Value{Kind: fjson.String, Str: to, Raw: fjson.AppendString(nil, to)}
					changed = true
				}
				continue
			}
			if rewriteReferences(m.Value, ids) {
				changed = true
			}
		}
	case fjson.Array:
		for _, it := range v.Items {
			if rewriteReferences(it, ids) {
				changed = true
			}
		}
	}
	return changed
}

func (be *bundleEntryReq) created(out *fhir.Resource) {
	be.out, be.status = out, http.StatusCreated
}

// execEntry performs one entry inside tx.
func (s *Server) execEntry(ctx context.Context, tx storage.Tx, be *bundleEntryReq) error {
	switch be.method {
	case http.MethodPost:
		if be.out != nil { // If-None-Exist matched: nothing is created
			return nil
		}
		out, err := tx.Create(ctx, be.res)
		if err != nil {
			return err
		}
		be.created(out)
	case http.MethodPut:
		opts := storage.UpdateOptions{AllowCreate: true, Method: http.MethodPut}
		if be.ifMatch != "" {
			v, err := parseETag(be.ifMatch)
			if err != nil {
				return err
			}
			opts.IfMatch = v
		}
		out, created, err := tx.Update(ctx, be.res, opts)
		if err != nil {
			return preconditionError(err, opts.IfMatch)
		}
		be.out, be.status = out, http.StatusOK
		if created {
			be.status = http.StatusCreated
		}
	case http.MethodPatch:
		id := be.id
		if id == "" {
			match, err := s.conditionalMatch(ctx, tx, be.typ, be.query, be.index, ".request.url")
			if err != nil {
				return err
			}
			if match == nil {
				return fhir.Errorf(http.StatusNotFound, "not-found", nil, "no %s matches the conditional patch", be.typ)
			}
			id = match.ID
		}
		doc, err := binaryData(be.body)
		if err != nil {
			return err
		}
		out, err := s.applyPatch(ctx, tx, be.typ, id, doc, be.ifMatch)
		if err != nil {
			return err
		}
		be.out, be.status = out, http.StatusOK
	case http.MethodDelete:
		ids := []string{be.id}
		if be.id == "" {
			matches, err := s.conditionalMatches(ctx, tx, be.typ, be.query, be.index, ".request.url")
			if err != nil {
				return err
			}
			ids = ids[:0]
			for _, m := range matches {
				ids = append(ids, m.ID)
			}
		}
		var opts storage.DeleteOptions
		if be.ifMatch != "" {
			v, err := parseETag(be.ifMatch)
			if err != nil {
				return err
			}
			opts.IfMatch = v
		}
		for _, id := range ids {
			vid, err := tx.Delete(ctx, be.typ, id, opts)
			if err != nil && !(errors.Is(err, storage.ErrNotFound) && be.id == "") {
				return preconditionError(err, opts.IfMatch)
			}
			be.etagV = vid
		}
		be.status = http.StatusNoContent
	case http.MethodGet, http.MethodHead:
		return s.execGetEntry(ctx, tx, be)
	}
	return nil
}

// execGetEntry answers a read or vread entry (searches inside Bundles are
// answered by the search layer when it is registered).
func (s *Server) execGetEntry(ctx context.Context, tx storage.Tx, be *bundleEntryReq) error {
	if be.id == "" {
		b, err := s.searchBundleForEntry(ctx, tx, be)
		if err != nil {
			return err
		}
		be.body200, be.status = b, http.StatusOK
		return nil
	}
	var (
		r   *fhir.Resource
		err error
	)
	if be.vid != "" {
		r, err = tx.VRead(ctx, be.typ, be.id, be.vid)
	} else {
		r, err = tx.Read(ctx, be.typ, be.id)
	}
	if errors.Is(err, storage.ErrGone) {
		if g := release.GuardFrom(ctx); g != nil {
			if cerr := g.CheckDeleted(ctx, be.typ, be.id); cerr != nil {
				return cerr
			}
		}
	}
	if err != nil {
		return err
	}
	if be.release != nil {
		if err := be.release(r); err != nil {
			return err
		}
	}
	be.out, be.status = r, http.StatusOK
	be.body200 = r.Raw
	return nil
}

// binaryData decodes the JSON Patch carried in a PATCH entry's Binary.
func binaryData(b *fjson.Value) ([]byte, error) {
	ct := b.Get("contentType").String()
	if ct != "application/json-patch+json" {
		return nil, fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", nil, "a PATCH entry's Binary must have contentType application/json-patch+json")
	}
	data, err := decodeBase64(b.Get("data").String())
	if err != nil {
		return nil, fhir.Errorf(http.StatusBadRequest, "value", []string{"resource.data"}, "the Binary's data is not base64")
	}
	return data, nil
}

// bundleResponse builds the transaction-response or batch-response, one
// entry per request entry in the original order.
func (s *Server) bundleResponse(c *gin.Context, typ string, entries []*bundleEntryReq) []byte {
	base := s.baseURL(c.Request)
	b := newBundle(typ)
	prefer := preferReturn(c)
	b.link("self", base)
	for _, be := range entries {
		resp := &bundleResponse{Status: strconv.Itoa(be.status) + " " + http.StatusText(be.status)}
		e := bundleEntry{Response: resp}
		if be.outcome != nil {
			resp.Outcome = be.outcome.JSON()
		}
		if be.out != nil {
			e.FullURL = base + "/" + be.out.Type + "/" + be.out.ID
			resp.Etag = etag(be.out.VersionID)
			resp.LastModified = fhir.FormatInstant(be.out.LastUpdated)
			if be.method == http.MethodPost || be.method == http.MethodPut || be.method == http.MethodPatch {
				resp.Location = be.out.Type + "/" + be.out.ID + "/_history/" + be.out.VersionID
				switch prefer {
				case "representation":
					e.Resource = be.out.Raw
				case "OperationOutcome":
					resp.Outcome = fhir.NewOutcome(fhir.Issue{Severity: fhir.SeverityInformation, Code: "informational", Details: &fhir.IssueDetails{Text: "ok"}}).JSON()
				}
			}
		}
		if be.etagV != "" {
			resp.Etag = etag(be.etagV)
		}
		if be.method == http.MethodGet && be.body200 != nil {
			e.Resource = be.body200
		}
		b.entry(e)
	}
	return b.bytes()
}
