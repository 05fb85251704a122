package conformance

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/conformance/internal/samplegen"
)

// checkBundle checks a Bundle answer of the type and returns its entries:
// a self link, absolute fullUrls, search modes on searchsets, request and
// response on history entries.
func (c *ct) checkBundle(resp *response, typ string) []map[string]any {
	b := resp.obj
	if str(b, "resourceType") != "Bundle" {
		c.fatalf("%s: answer is a %s, want a Bundle", resp.req, str(b, "resourceType"))
	}
	if t := str(b, "type"); t != typ {
		c.failf("%s: Bundle.type %q, want %q", resp.req, t, typ)
	}
	if typ == "searchset" || typ == "history" {
		if link(b, "self") == "" {
			c.failf("%s: no self link", resp.req)
		}
	}
	var out []map[string]any
	for i, it := range arr(b, "entry") {
		e, _ := it.(map[string]any)
		out = append(out, e)
		res := obj(e, "resource")
		fu := str(e, "fullUrl")
		switch typ {
		case "searchset":
			mode := str(e, "search", "mode")
			if !slices.Contains([]string{"match", "include", "outcome"}, mode) {
				c.failf("%s: entry[%d].search.mode %q", resp.req, i, mode)
			}
			if mode != "outcome" {
				c.checkFullURL(resp, i, fu, res)
			}
		case "history":
			if str(e, "request", "method") == "" || str(e, "request", "url") == "" {
				c.failf("%s: entry[%d] without request.method and request.url", resp.req, i)
			}
			if str(e, "response", "status") == "" {
				c.failf("%s: entry[%d] without response.status", resp.req, i)
			}
			if res != nil {
				c.checkFullURL(resp, i, fu, res)
			}
		}
	}
	return out
}

func (c *ct) checkFullURL(resp *response, i int, fu string, res map[string]any) {
	want := str(res, "resourceType") + "/" + str(res, "id")
	u, err := url.Parse(fu)
	if err != nil || !u.IsAbs() || !strings.HasSuffix(u.Path, "/"+want) {
		c.failf("%s: entry[%d].fullUrl %q, want an absolute URL ending in %s", resp.req, i, fu, want)
	}
}

// link returns the URL of a Bundle link relation, or "".
func link(b map[string]any, rel string) string {
	for _, l := range arr(b, "link") {
		if str(l, "relation") == rel {
			return str(l, "url")
		}
	}
	return ""
}

// entriesByMode returns "Type/id" of the searchset entries with the mode.
func entriesByMode(b map[string]any, mode string) []string {
	var out []string
	for _, e := range arr(b, "entry") {
		if str(e, "search", "mode") == mode {
			out = append(out, str(e, "resource", "resourceType")+"/"+str(e, "resource", "id"))
		}
	}
	return out
}

// matches checks a searchset and returns the ids of its matches.
func (c *ct) matches(resp *response) []string {
	c.checkBundle(resp, "searchset")
	var ids []string
	for _, m := range entriesByMode(resp.obj, "match") {
		ids = append(ids, m[strings.IndexByte(m, '/')+1:])
	}
	return ids
}

// expectMatches checks that a search found exactly the ids, of typ, and
// applied every parameter (no outcome entry).
func (c *ct) expectMatches(resp *response, typ string, want []string) {
	got := c.matches(resp)
	for _, m := range entriesByMode(resp.obj, "match") {
		if !strings.HasPrefix(m, typ+"/") {
			c.failf("%s: match %s is not a %s", resp.req, m, typ)
		}
	}
	if o := entriesByMode(resp.obj, "outcome"); len(o) > 0 {
		c.failf("%s: the server did not apply every parameter: %s", resp.req, snippet(resp.body))
	}
	slices.Sort(got)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		c.failf("%s: matches %v, want %v", resp.req, got, want)
	}
}

// pairIDs are the ids of the created search-sample pairs of a type.
type pairIDs struct{ a, b string }

// searchChecks checks the search parameters, includes and revincludes the
// type claims, on the sample pairs.
func (r *runner) searchChecks(ctx context.Context, res *csResource) {
	if !res.has("search-type") {
		return
	}
	T := res.Type
	td := r.data.Type(T)
	claimed := map[string]string{}
	for _, sp := range res.SearchParam {
		claimed[sp.Name] = sp.Type
	}
	// which samples to run: one per parameter type (every one with
	// AllSearchParams), and every claimed _parameter
	var chosen []samplegen.Sample
	perKind := map[string]bool{}
	for _, s := range td.Samples {
		kind, ok := claimed[s.Param]
		if !ok || kind != s.Kind {
			continue
		}
		if strings.HasPrefix(s.Param, "_") || r.opts.AllSearchParams || !perKind[s.Kind] {
			chosen = append(chosen, s)
			if !strings.HasPrefix(s.Param, "_") {
				perKind[s.Kind] = true
			}
		}
	}
	// include and revinclude use the reference samples in pair 0
	incSample := r.includeSample(res, td)
	needPair := map[int]bool{0: true}
	for _, s := range chosen {
		needPair[s.Pair] = true
	}
	if incSample != nil {
		needPair[incSample.Pair] = true
	}
	pairs := map[int]pairIDs{}
	ok := false
	r.check(ctx, T, T+"/search-samples", T+".interaction:search-type", func(c *ct) string {
		for i := range td.Pairs {
			if !needPair[i] {
				continue
			}
			var ids [2]string
			for j, tmpl := range [][]byte{td.Pairs[i].A, td.Pairs[i].B} {
				res := c.instantiate(tmpl)
				if i == 0 && claimed["_text"] != "" {
					res["text"] = narrative([]string{"alpha", "beta"}[j] + "-" + r.uniq)
				}
				resp := c.do(http.MethodPost, "/"+T, mustJSON(r.tagged(res)))
				c.mustStatus(resp, http.StatusCreated)
				ids[j] = str(resp.obj, "id")
				r.noteCreated(T, ids[j])
			}
			pairs[i] = pairIDs{ids[0], ids[1]}
		}
		ok = !c.failed()
		return fmt.Sprintf("%d sample pairs created", len(pairs))
	})
	if !ok {
		return
	}
	for _, s := range chosen {
		p := pairs[s.Pair]
		name := T + "/search:" + s.Kind + ":" + s.Param
		cl := T + ".searchParam:" + s.Kind
		if strings.HasPrefix(s.Param, "_") {
			name, cl = T+"/search:"+s.Param, T+".searchParam:"+s.Param
		}
		r.check(ctx, T, name, cl, func(c *ct) string {
			qa, qb := c.subst(s.A), c.subst(s.B)
			for _, x := range []struct {
				val, want string
			}{{qa, p.a}, {qb, p.b}} {
				resp := c.do(http.MethodGet, "/"+T+"?"+s.Param+"="+q(x.val)+"&_id="+p.a+","+p.b, nil)
				if c.expectStatus(resp, http.StatusOK) {
					c.expectMatches(resp, T, []string{x.want})
				}
			}
			return fmt.Sprintf("%s=%s finds A not B, =%s finds B not A", s.Param, qa, qb)
		})
	}
	r.specialParamChecks(ctx, res, claimed, pairs[0])
	r.includeChecks(ctx, res, td, incSample, pairs)
}

// specialParamChecks checks the common parameters without a sample.
func (r *runner) specialParamChecks(ctx context.Context, res *csResource, claimed map[string]string, p pairIDs) {
	T := res.Type
	both := "&_id=" + p.a + "," + p.b
	if claimed["_id"] != "" {
		r.check(ctx, T, T+"/search:_id", T+".searchParam:_id", func(c *ct) string {
			c.expectMatches(c.do(http.MethodGet, "/"+T+"?_id="+p.a, nil), T, []string{p.a})
			c.expectMatches(c.do(http.MethodGet, "/"+T+"?_id="+p.b, nil), T, []string{p.b})
			c.expectMatches(c.do(http.MethodGet, "/"+T+"?_id=conf-"+r.uniq+"-none", nil), T, nil)
			return "_id finds exactly its resource"
		})
	}
	if claimed["_lastUpdated"] != "" {
		r.check(ctx, T, T+"/search:_lastUpdated", T+".searchParam:_lastUpdated", func(c *ct) string {
			c.expectMatches(c.do(http.MethodGet, "/"+T+"?_lastUpdated=gt2000-01-01"+both, nil), T, []string{p.a, p.b})
			c.expectMatches(c.do(http.MethodGet, "/"+T+"?_lastUpdated=lt2000-01-01"+both, nil), T, nil)
			return "gt2000-01-01 finds both, lt2000-01-01 neither"
		})
	}
	for _, sp := range []string{"_text", "_content"} {
		if claimed[sp] == "" {
			continue
		}
		r.check(ctx, T, T+"/search:"+sp, T+".searchParam:"+sp, func(c *ct) string {
			c.expectMatches(c.do(http.MethodGet, "/"+T+"?"+sp+"=alpha-"+r.uniq+both, nil), T, []string{p.a})
			c.expectMatches(c.do(http.MethodGet, "/"+T+"?"+sp+"=beta-"+r.uniq+both, nil), T, []string{p.b})
			return sp + " finds the resource whose text holds the word"
		})
	}
	if claimed["_query"] != "" {
		// No named query is known to the suite: an unknown one must be
		// refused or reported, not silently ignored.
		r.check(ctx, T, T+"/search:_query", T+".searchParam:_query", func(c *ct) string {
			resp := c.do(http.MethodGet, "/"+T+"?_query=conformance-unknown-query"+both, nil)
			switch resp.status {
			case http.StatusBadRequest:
				return "unknown named query: 400"
			case http.StatusOK:
				c.checkBundle(resp, "searchset")
				if len(entriesByMode(resp.obj, "outcome")) == 0 {
					c.failf("%s: an unknown named query was silently ignored", resp.req)
				}
				return "unknown named query reported in an outcome entry"
			}
			c.expectError(resp, http.StatusBadRequest)
			return ""
		})
	}
}

// includeSample picks the reference sample whose target _include fetches:
// one in the claimed searchInclude list.
func (r *runner) includeSample(res *csResource, td *samplegen.TypeData) *samplegen.Sample {
	if len(res.SearchInclude) == 0 {
		return nil
	}
	var best *samplegen.Sample
	for i := range td.Samples {
		s := &td.Samples[i]
		if s.Kind != "reference" || !strings.Contains(s.A, "/") || strings.HasPrefix(s.A, "http") {
			continue
		}
		if !slices.Contains(res.SearchInclude, res.Type+":"+s.Param) {
			continue
		}
		if best == nil || s.Pair < best.Pair || s.Pair == best.Pair && strings.Contains(s.A, "%R:") && !strings.Contains(best.A, "%R:") {
			best = s
		}
	}
	return best
}

// includeChecks checks _include and _revinclude. With a reference sample
// the include must add the sample's target; a type without one (only
// canonical references, or none) can only show that the claimed form is
// accepted and applied (no outcome entry).
func (r *runner) includeChecks(ctx context.Context, res *csResource, td *samplegen.TypeData, s *samplegen.Sample, pairs map[int]pairIDs) {
	T := res.Type
	p0 := pairs[0]
	accepted := func(name, claim, param, value string) {
		r.check(ctx, T, name, claim, func(c *ct) string {
			resp := c.do(http.MethodGet, "/"+T+"?_id="+p0.a+"&"+param+"="+q(value), nil)
			c.mustStatus(resp, http.StatusOK)
			c.expectMatches(resp, T, []string{p0.a})
			return param + "=" + value + " accepted (the suite has no stored resource for it to add)"
		})
	}
	switch {
	case s != nil:
		p := pairs[s.Pair]
		check := func(name, inc string) {
			r.check(ctx, T, name, T+".searchInclude", func(c *ct) string {
				target := c.subst(s.A)
				if !strings.Contains(s.A, "%R:") {
					// an embedded resource (Bundle.entry[0].resource): store one
					// with its type and id so that there is something to include
					typ, id, _ := strings.Cut(target, "/")
					body := r.tagged(r.minimal(typ))
					body["id"] = id
					put := c.do(http.MethodPut, "/"+typ+"/"+id, mustJSON(body))
					c.mustStatus(put, http.StatusCreated, http.StatusOK)
					r.noteCreated(typ, id)
				}
				other := c.subst(s.B)
				resp := c.do(http.MethodGet, "/"+T+"?_id="+p.a+"&_include="+q(inc), nil)
				c.mustStatus(resp, http.StatusOK)
				c.expectMatches(resp, T, []string{p.a})
				incl := entriesByMode(resp.obj, "include")
				if !slices.Contains(incl, target) {
					c.failf("%s: includes %v, want %s", resp.req, incl, target)
				}
				if slices.Contains(incl, other) {
					c.failf("%s: includes %s, which only the non-matching resource refers to", resp.req, other)
				}
				return fmt.Sprintf("_include=%s adds %s", inc, target)
			})
		}
		check(T+"/include:"+s.Param, T+":"+s.Param)
		if slices.Contains(res.SearchInclude, "*") {
			check(T+"/include:*", "*")
		}
	case len(res.SearchInclude) > 0:
		for _, inc := range res.SearchInclude {
			if inc != "*" {
				accepted(T+"/include:"+strings.TrimPrefix(inc, T+":"), T+".searchInclude", "_include", inc)
				break
			}
		}
		if slices.Contains(res.SearchInclude, "*") {
			accepted(T+"/include:*", T+".searchInclude", "_include", "*")
		}
	}
	rev := res.SearchRevInclude
	if len(rev) == 0 {
		return
	}
	if !td.ProvenanceTarget || !slices.Contains(rev, "*") && !slices.Contains(rev, "Provenance:target") {
		if slices.Contains(rev, "*") {
			accepted(T+"/revinclude:*", T+".searchRevInclude", "_revinclude", "*")
		}
		return
	}
	var prov string
	r.check(ctx, T, T+"/revinclude:Provenance:target", T+".searchRevInclude", func(c *ct) string {
		body := r.tagged(r.minimal("Provenance"))
		body["target"] = []any{map[string]any{"reference": T + "/" + p0.a}}
		cr := c.do(http.MethodPost, "/Provenance", mustJSON(body))
		c.mustStatus(cr, http.StatusCreated)
		prov = "Provenance/" + str(cr.obj, "id")
		r.noteCreated("Provenance", str(cr.obj, "id"))
		c.revinclude(T, p0.a, "Provenance:target", prov)
		return "_revinclude=Provenance:target adds " + prov
	})
	if prov != "" && slices.Contains(rev, "*") {
		r.check(ctx, T, T+"/revinclude:*", T+".searchRevInclude", func(c *ct) string {
			c.revinclude(T, p0.a, "*", prov)
			return "_revinclude=* adds " + prov
		})
	}
}

func (c *ct) revinclude(typ, id, inc, want string) {
	resp := c.do(http.MethodGet, "/"+typ+"?_id="+id+"&_revinclude="+q(inc), nil)
	c.mustStatus(resp, http.StatusOK)
	c.expectMatches(resp, typ, []string{id})
	if incl := entriesByMode(resp.obj, "include"); !slices.Contains(incl, want) {
		c.failf("%s: includes %v, want %s", resp.req, incl, want)
	}
}
