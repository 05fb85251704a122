package conformance

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
)

// readOnly reports whether the statement claims no write of the type: the
// server keeps such resources itself (fhirgate's audit trail), so the
// suite cannot create samples and checks the type as it finds it.
func (res *csResource) readOnly() bool {
	return !res.has("create") && !res.has("update") && !res.has("patch") && !res.has("delete")
}

// readOnlyChecks checks a type the server does not let clients write:
// every write answers 405 with an OperationOutcome, read answers an
// instance the server holds (or 404 for an unknown id when it holds
// none), search answers a searchset, and every claimed search parameter
// is understood (a value of its type gives a searchset without an
// "unknown parameter" outcome).
func (r *runner) readOnlyChecks(ctx context.Context, res *csResource) {
	T := res.Type
	r.check(ctx, T, T+"/write-refused", "", func(c *ct) string {
		id := "conf-" + r.uniq
		for _, w := range []struct{ method, path string }{
			{http.MethodPost, "/" + T}, {http.MethodPut, "/" + T + "/" + id}, {http.MethodPatch, "/" + T + "/" + id}, {http.MethodDelete, "/" + T + "/" + id},
		} {
			var body []byte
			hdr := []string{}
			switch w.method {
			case http.MethodPost, http.MethodPut:
				body = mustJSON(map[string]any{"resourceType": T, "id": id})
			case http.MethodPatch:
				body, hdr = []byte(`[{"op":"add","path":"/language","value":"en"}]`), []string{"Content-Type: application/json-patch+json"}
			}
			resp := c.do(w.method, w.path, body, hdr...)
			if c.expectStatus(resp, http.StatusMethodNotAllowed) {
				c.checkOutcome(resp)
			}
		}
		return "POST, PUT, PATCH and DELETE answer 405"
	})
	var found string
	if res.has("search-type") {
		r.check(ctx, T, T+"/search-type", T+".interaction:search-type", func(c *ct) string {
			resp := c.do(http.MethodGet, "/"+T+"?_count=1", nil)
			c.mustStatus(resp, http.StatusOK)
			for _, e := range c.checkBundle(resp, "searchset") {
				if str(e, "search", "mode") == "match" {
					found = str(obj(e, "resource"), "id")
				}
			}
			return fmt.Sprintf("searchset; an instance: %v", found != "")
		})
		for _, sp := range res.SearchParam {
			val, ok := map[string]string{"token": "x", "string": "x", "date": "ge2000-01-01", "reference": "Patient/x",
				"uri": "http://example.org/x", "number": "1", "quantity": "1"}[sp.Type]
			name, cl := T+"/search:"+sp.Type+":"+sp.Name, T+".searchParam:"+sp.Type
			if sp.Name[0] == '_' {
				name, cl = T+"/search:"+sp.Name, T+".searchParam:"+sp.Name
			}
			if !ok {
				continue
			}
			r.check(ctx, T, name, cl, func(c *ct) string {
				resp := c.do(http.MethodGet, "/"+T+"?"+sp.Name+"="+url.QueryEscape(val), nil, "Prefer: handling=strict")
				if c.expectStatus(resp, http.StatusOK) {
					c.checkBundle(resp, "searchset")
				}
				return sp.Name + "=" + val + " is understood"
			})
		}
	}
	if res.has("vread") {
		vread := func(c *ct) string {
			if found == "" {
				resp := c.do(http.MethodGet, "/"+T+"/conf-unknown-"+r.uniq+"/_history/1", nil)
				if c.expectStatus(resp, http.StatusNotFound) {
					c.checkOutcome(resp)
				}
				return "no instance held: an unknown id answers 404"
			}
			cur := c.do(http.MethodGet, "/"+T+"/"+found, nil)
			c.mustStatus(cur, http.StatusOK)
			vid := str(cur.obj, "meta", "versionId")
			resp := c.do(http.MethodGet, "/"+T+"/"+found+"/_history/"+vid, nil)
			c.mustStatus(resp, http.StatusOK)
			if str(resp.obj, "id") != found || str(resp.obj, "meta", "versionId") != vid {
				c.failf("%s: vread answered %s version %s", resp.req, str(resp.obj, "id"), str(resp.obj, "meta", "versionId"))
			}
			return "vread " + T + "/" + found + "/_history/" + vid
		}
		r.check(ctx, T, T+"/vread", T+".interaction:vread", vread)
		if res.Versioning == "versioned" {
			r.check(ctx, T, T+"/vread", T+".versioning:versioned", vread)
		}
	}
	if res.has("read") {
		r.check(ctx, T, T+"/read", T+".interaction:read", func(c *ct) string {
			if found == "" {
				resp := c.do(http.MethodGet, "/"+T+"/conf-unknown-"+r.uniq, nil)
				if c.expectStatus(resp, http.StatusNotFound) {
					c.checkOutcome(resp)
				}
				return "no instance held: an unknown id answers 404"
			}
			resp := c.do(http.MethodGet, "/"+T+"/"+found, nil)
			c.mustStatus(resp, http.StatusOK)
			if str(resp.obj, "id") != found {
				c.failf("%s: read answered id %q", resp.req, str(resp.obj, "id"))
			}
			return "read " + T + "/" + found
		})
	}
}
