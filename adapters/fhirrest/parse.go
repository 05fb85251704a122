package fhirrest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime"
	"strings"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/upstream"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// capabilities is what the fetch needs from the CapabilityStatement.
type capabilities struct {
	fhirVersion string
	everything  bool
	match       bool
	// types is nil when the statement lists no resources (then every type
	// is tried).
	types map[string]*typeCaps
}

type typeCaps struct {
	search bool
	// params is nil when the statement lists none (then every parameter is
	// assumed).
	params map[string]bool
}

// capabilities reads /metadata once (failures are not cached, so the next
// fetch tries again).
func (s *Source) capabilities(ctx context.Context) (*capabilities, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.caps != nil {
		return s.caps, nil
	}
	const op = "read CapabilityStatement"
	resp, err := s.c.Do(ctx, &upstream.Request{Op: op, URL: "metadata"})
	if err != nil {
		if errors.Is(err, adapters.ErrNotFound) {
			var e *adapters.Error
			errors.As(err, &e)
			e.Err = fmt.Errorf("%w: no CapabilityStatement at /metadata: %w", adapters.ErrNotFHIR, e.Err)
		}
		return nil, err
	}
	root, err := s.parseJSON(resp, op, "metadata")
	if err != nil {
		return nil, err
	}
	if rt := root.Get("resourceType").String(); rt != "CapabilityStatement" {
		return nil, s.c.Fail(op, "", "metadata", resp.Status, fmt.Errorf("%w: /metadata returned %s, not a CapabilityStatement", adapters.ErrNotFHIR, describeType(rt)))
	}
	caps := &capabilities{fhirVersion: root.Get("fhirVersion").String()}
	if v := caps.fhirVersion; v != "" && !strings.HasPrefix(v, "4.0") {
		return nil, s.c.Fail(op, "", "metadata", resp.Status, fmt.Errorf("%w: the server speaks FHIR %s", adapters.ErrNotFHIR, v))
	}
	for _, rest := range items(root.Get("rest")) {
		if m := rest.Get("mode").String(); m != "" && m != "server" {
			continue
		}
		for _, op := range items(rest.Get("operation")) {
			caps.notePatientOperation(op)
		}
		for _, res := range items(rest.Get("resource")) {
			typ := res.Get("type").String()
			if !fhir.IsResourceType(typ) {
				continue
			}
			if caps.types == nil {
				caps.types = map[string]*typeCaps{}
			}
			tc := &typeCaps{}
			inter := items(res.Get("interaction"))
			tc.search = len(inter) == 0
			for _, it := range inter {
				if it.Get("code").String() == "search-type" {
					tc.search = true
				}
			}
			for _, sp := range items(res.Get("searchParam")) {
				if tc.params == nil {
					tc.params = map[string]bool{}
				}
				tc.params[sp.Get("name").String()] = true
			}
			caps.types[typ] = tc
			if typ == "Patient" {
				for _, op := range items(res.Get("operation")) {
					caps.notePatientOperation(op)
				}
			}
		}
		break
	}
	s.caps = caps
	return caps, nil
}

// notePatientOperation recognises $everything and $match by name or by
// their canonical definitions.
func (c *capabilities) notePatientOperation(op *fjson.Value) {
	name := strings.TrimPrefix(op.Get("name").String(), "$")
	def := strings.ToLower(op.Get("definition").String())
	switch {
	case name == "everything" || name == "patient-everything" || strings.HasSuffix(def, "/patient-everything"):
		c.everything = true
	case name == "match" || name == "patient-match" || strings.HasSuffix(def, "/patient-match"):
		c.match = true
	}
}

// searchStep is one type's search in the plan.
type searchStep struct {
	typ, param string
	// declared: the CapabilityStatement lists the type.
	declared bool
}

// searchPlan lists the searches that together fetch the patient
// compartment: each type once, by the "patient" parameter when the type has
// one, else by its first compartment parameter the server supports.
func (s *Source) searchPlan(caps *capabilities, only map[string]bool) []searchStep {
	types := s.cfg.Types
	if len(types) == 0 {
		for _, t := range fhir.ResourceTypes {
			if t != "Patient" && s.reg.InPatientCompartment(t) {
				types = append(types, t)
			}
		}
	}
	var plan []searchStep
	for _, t := range types {
		if t == "Patient" || only != nil && !only[t] {
			continue
		}
		var tc *typeCaps
		if caps.types != nil {
			tc = caps.types[t]
			if tc == nil || !tc.search {
				continue
			}
		}
		candidates := s.reg.PatientCompartment(t)
		if _, ok := s.reg.Param(t, "patient"); ok {
			candidates = append([]string{"patient"}, candidates...)
		}
		param := ""
		for _, c := range candidates {
			if tc == nil || tc.params == nil || tc.params[c] {
				param = c
				break
			}
		}
		if param == "" {
			continue
		}
		plan = append(plan, searchStep{typ: t, param: param, declared: tc != nil})
	}
	return plan
}

// bundle is a parsed search page.
type bundle struct {
	resources []*fhir.Resource
	issues    []fhir.Issue
	next      string
	// total is Bundle.total, -1 when absent; matches counts the entries
	// that total counts (not includes, not outcomes).
	total, matches int
	// scores holds each resource's search.score and match grade, for
	// $match.
	scores []entryScore
}

type entryScore struct {
	score float64
	grade string
}

// parseJSON checks that a response is JSON (and not, say, an HTML login
// page) and parses it strictly.
func (s *Source) parseJSON(resp *upstream.Response, op, u string) (*fjson.Value, error) {
	body := bytes.TrimSpace(resp.Body)
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if len(body) > 0 && body[0] == '<' || strings.HasPrefix(ct, "text/html") || strings.HasSuffix(ct, "xml") {
		return nil, s.c.Fail(op, "", u, resp.Status, fmt.Errorf("%w: got %s instead of FHIR JSON", adapters.ErrNotFHIR, cmpOr(ct, "markup")))
	}
	root, err := fjson.Parse(body)
	if err != nil {
		// fjson errors name the structure and offset, never the values.
		return nil, s.c.Fail(op, "", u, resp.Status, fmt.Errorf("%w: %w", adapters.ErrMalformed, err))
	}
	if root.Kind != fjson.Object || root.Get("resourceType") == nil {
		return nil, s.c.Fail(op, "", u, resp.Status, fmt.Errorf("%w: the response is JSON but not a FHIR resource", adapters.ErrNotFHIR))
	}
	return root, nil
}

// parseResource parses a read response.
func (s *Source) parseResource(resp *upstream.Response, op, u string) (*fhir.Resource, error) {
	root, err := s.parseJSON(resp, op, u)
	if err != nil {
		return nil, err
	}
	r, err := fhir.FromValue(root)
	if err != nil {
		return nil, s.c.Fail(op, "", u, resp.Status, fmt.Errorf("%w: %w", adapters.ErrMalformed, err))
	}
	return r, nil
}

// parseBundle parses a search page.
func (s *Source) parseBundle(resp *upstream.Response, op, u string) (*bundle, error) {
	root, err := s.parseJSON(resp, op, u)
	if err != nil {
		return nil, err
	}
	fail := func(format string, args ...any) error {
		return s.c.Fail(op, "", u, resp.Status, fmt.Errorf("%w: "+format, append([]any{adapters.ErrMalformed}, args...)...))
	}
	if rt := root.Get("resourceType").String(); rt != "Bundle" {
		return nil, fail("expected a Bundle, got %s", describeType(rt))
	}
	b := &bundle{total: -1}
	if t := root.Get("total"); t != nil && t.Kind == fjson.Number {
		fmt.Sscan(t.Str, &b.total)
	}
	for _, l := range items(root.Get("link")) {
		if l.Get("relation").String() == "next" {
			b.next = l.Get("url").String()
			if b.next == "" {
				return nil, fail("Bundle.link next has no url")
			}
		}
	}
	for i, e := range items(root.Get("entry")) {
		rv := e.Get("resource")
		if rv == nil {
			continue // a history-style entry without a resource (deleted)
		}
		r, err := fhir.FromValue(rv)
		if err != nil {
			return nil, fail("Bundle.entry[%d].resource: %v", i, err)
		}
		mode := e.Get("search").Get("mode").String()
		if mode == "outcome" || r.Type == "OperationOutcome" {
			b.issues = append(b.issues, outcomeIssues(rv)...)
			continue
		}
		b.resources = append(b.resources, r)
		if mode != "include" {
			b.matches++
		}
		sc := entryScore{}
		if v := e.Get("search").Get("score"); v != nil && v.Kind == fjson.Number {
			fmt.Sscan(v.Str, &sc.score)
		}
		for _, ext := range items(e.Get("search").Get("extension")) {
			if ext.Get("url").String() == "http://hl7.org/fhir/StructureDefinition/match-grade" {
				sc.grade = ext.Get("valueCode").String()
			}
		}
		b.scores = append(b.scores, sc)
	}
	return b, nil
}

// outcomeIssues reads the issues of an OperationOutcome tree.
func outcomeIssues(oo *fjson.Value) []fhir.Issue {
	var out []fhir.Issue
	for _, is := range items(oo.Get("issue")) {
		i := fhir.Issue{
			Severity:    is.Get("severity").String(),
			Code:        is.Get("code").String(),
			Diagnostics: is.Get("diagnostics").String(),
		}
		if t := is.Get("details").Get("text").String(); t != "" {
			i.Details = &fhir.IssueDetails{Text: t}
		}
		for _, x := range items(is.Get("expression")) {
			i.Expression = append(i.Expression, x.String())
		}
		out = append(out, i)
	}
	return out
}

// collectRefs adds to refs the "Type/id" of every reference in the tree to
// a resource outside the patient compartment on this server.
func (s *Source) collectRefs(v *fjson.Value, refs map[string]bool) {
	switch v.Kind {
	case fjson.Object:
		for _, m := range v.Members {
			if m.Key == "reference" && m.Value.Kind == fjson.String {
				if ref, ok := s.localRef(m.Value.Str); ok {
					refs[ref] = true
				}
				continue
			}
			if m.Key == "contained" {
				continue // contained resources reference each other by #id
			}
			s.collectRefs(m.Value, refs)
		}
	case fjson.Array:
		for _, it := range v.Items {
			s.collectRefs(it, refs)
		}
	}
}

// localRef turns a reference into "Type/id" when it points at this server
// and at a type outside the patient compartment.
func (s *Source) localRef(ref string) (string, bool) {
	if base := s.c.BaseURL() + "/"; strings.HasPrefix(ref, base) {
		ref = ref[len(base):]
	} else if strings.Contains(ref, ":") || strings.HasPrefix(ref, "#") {
		return "", false // another server, urn:uuid, or contained
	}
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	typ, id, ok := strings.Cut(ref, "/")
	if !ok || !fhir.IsResourceType(typ) || !fhir.ValidID(id) || typ == "Patient" || s.reg.InPatientCompartment(typ) {
		return "", false
	}
	return typ + "/" + id, true
}

func describeType(rt string) string {
	if rt == "" {
		return "something without a resourceType"
	}
	if fhir.IsResourceType(rt) {
		return "a " + rt
	}
	return "an unknown resourceType"
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func isNotFound(err error) bool     { return errors.Is(err, adapters.ErrNotFound) }
func isRejected(err error) bool     { return errors.Is(err, adapters.ErrRejected) }
func isUnauthorized(err error) bool { return errors.Is(err, adapters.ErrUnauthorized) }

// items returns the elements of an array value, nil for anything else
// (including a missing member).
func items(v *fjson.Value) []*fjson.Value {
	if v == nil || v.Kind != fjson.Array {
		return nil
	}
	return v.Items
}
