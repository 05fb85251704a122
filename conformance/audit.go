package conformance

import (
	"context"
	"fmt"
	"net/http"
	"strings"
)

// auditChecks checks what the audit trail adds to a read-only type
// (readOnlyChecks): the conditional and Bundle forms of writing it answer
// 405 too, and the events of an access made here are found, read, paged
// through history and searched by every claimed parameter, which finds
// them and only them.
func (r *runner) auditChecks(ctx context.Context, res *csResource) {
	T := res.Type
	r.check(ctx, T, T+"/write-refused-conditional", "", func(c *ct) string {
		body := mustJSON(r.tagged(r.minimal(T)))
		c.expectError(c.do(http.MethodPut, "/"+T+"?_id=conf-"+r.uniq, body), http.StatusMethodNotAllowed)
		c.expectError(c.do(http.MethodDelete, "/"+T+"?outcome=0", nil), http.StatusMethodNotAllowed)
		tx := mustJSON(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{
			map[string]any{"resource": r.minimal(T), "request": map[string]any{"method": "POST", "url": T}}}})
		c.expectError(c.do(http.MethodPost, "/", tx), http.StatusMethodNotAllowed)
		return "conditional update and delete, and a transaction entry, answer 405"
	})
	if !res.has("search-type") {
		return
	}
	// an access to find in the trail
	var pid, eid, when string
	r.check(ctx, T, T+"/finds-access", "", func(c *ct) string {
		resp := c.do(http.MethodPost, "/Patient", mustJSON(r.patient("Audit-"+r.uniq)))
		c.mustStatus(resp, http.StatusCreated)
		pid = str(resp.obj, "id")
		r.noteCreated("Patient", pid)
		c.mustStatus(c.do(http.MethodGet, "/Patient/"+pid, nil), http.StatusOK)
		resp = c.do(http.MethodGet, "/"+T+"?entity=Patient/"+pid+"&_sort=-date", nil)
		c.mustStatus(resp, http.StatusOK)
		ids := c.matches(resp)
		if len(ids) < 2 {
			c.fatalf("%s: %d events of a create and a read of Patient/%s", resp.req, len(ids), pid)
		}
		eid = ids[0]
		for _, e := range arr(resp.obj, "entry") {
			if str(e, "resource", "id") == eid {
				when = str(e, "resource", "recorded")
			}
		}
		return fmt.Sprintf("%d events about a Patient created and read", len(ids))
	})
	if eid == "" {
		return
	}
	for _, h := range []struct{ name, path string }{{"history-instance", "/" + T + "/" + eid + "/_history"}, {"history-type", "/" + T + "/_history?_count=5"}} {
		if !res.has(h.name) {
			continue
		}
		r.check(ctx, T, T+"/"+h.name, T+".interaction:"+h.name, func(c *ct) string {
			resp := c.do(http.MethodGet, h.path, nil)
			c.mustStatus(resp, http.StatusOK)
			if str(resp.obj, "type") != "history" || len(arr(resp.obj, "entry")) == 0 {
				c.failf("%s: not a history with entries: %s", resp.req, snippet(resp.body))
			}
			return "a history Bundle"
		})
	}
	if r.claimsOperation("Patient", "access-log") {
		r.check(ctx, "Patient", "Patient/$access-log", "Patient.operation:access-log", func(c *ct) string {
			resp := c.do(http.MethodGet, "/Patient/"+pid+"/$access-log", nil)
			c.mustStatus(resp, http.StatusOK)
			n := 0
			for _, p := range arr(resp.obj, "parameter") {
				if str(p, "name") == "access" {
					n++
				}
			}
			if str(resp.obj, "resourceType") != "Parameters" || n < 2 {
				c.failf("%s: %d accesses in %s", resp.req, n, snippet(resp.body))
			}
			return fmt.Sprintf("%d accesses listed", n)
		})
	}
	claimed := map[string]string{}
	for _, sp := range res.SearchParam {
		claimed[sp.Name] = sp.Type
	}
	day := when
	if len(day) >= 10 {
		day = day[:10]
	}
	for _, s := range []struct{ param, hit, miss string }{
		{"_id", eid, "audit-9999999999999999"},
		{"_lastUpdated", "ge" + day, "lt2000-01-01"},
		{"date", day, "2000-01-01"},
		{"patient", "Patient/" + pid, "Patient/conf-none-" + r.uniq},
		{"entity", "Patient/" + pid, "Patient/conf-none-" + r.uniq},
		{"agent", "", "Organization/conf-none-" + r.uniq},
		{"action", "", "D"},
		{"outcome", "", "12"},
		{"type", "rest", "conf-none"},
		{"subtype", "", "conf-none"},
	} {
		if _, ok := claimed[s.param]; !ok {
			continue
		}
		r.check(ctx, T, T+"/finds:"+s.param, "", func(c *ct) string {
			if s.hit != "" {
				resp := c.do(http.MethodGet, "/"+T+"?"+s.param+"="+q(s.hit)+"&_id="+eid, nil)
				if c.expectStatus(resp, http.StatusOK) {
					c.expectMatches(resp, T, []string{eid})
				}
			}
			resp := c.do(http.MethodGet, "/"+T+"?"+s.param+"="+q(s.miss)+"&_id="+eid, nil)
			if c.expectStatus(resp, http.StatusOK) {
				c.expectMatches(resp, T, nil)
			}
			if s.hit == "" {
				return fmt.Sprintf("%s=%s finds nothing", s.param, s.miss)
			}
			return fmt.Sprintf("%s=%s finds the event, =%s does not", s.param, s.hit, s.miss)
		})
	}
}

// claimsOperation reports whether the statement lists an operation of a type.
func (r *runner) claimsOperation(typ, name string) bool {
	for _, res := range r.cs.Rest[0].Resource {
		if res.Type != typ {
			continue
		}
		for _, o := range res.Operation {
			if strings.TrimPrefix(o.Name, "$") == name {
				return true
			}
		}
	}
	return false
}
