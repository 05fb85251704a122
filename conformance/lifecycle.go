package conformance

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
)

// checkType runs every check of one resource type.
func (r *runner) checkType(ctx context.Context, res *csResource) {
	if r.minimal(res.Type) == nil {
		r.record(res.Type, Result{Check: res.Type + "/instance", Claim: res.Type, Status: Fail,
			Detail: "the suite has no instance of " + res.Type + " (not an R4 resource type?)"})
		return
	}
	if res.readOnly() {
		r.readOnlyChecks(ctx, res)
		r.validateChecks(ctx, res)
		if res.Type == "AuditEvent" {
			r.auditChecks(ctx, res)
		}
		return
	}
	r.lifecycle(ctx, res)
	r.conditionalChecks(ctx, res)
	r.validateChecks(ctx, res)
	r.searchChecks(ctx, res)
}

// version is what the lifecycle knows of one version of its resource.
type version struct {
	vid  string
	body map[string]any
}

// lifecycle walks one resource through create, read, update, patch,
// vread, history, search and delete, one check per interaction.
func (r *runner) lifecycle(ctx context.Context, res *csResource) {
	T := res.Type
	claim := func(kind string) string { return T + "." + kind }
	var id string
	var versions []version
	sent := r.tagged(r.minimal(T), "life-"+r.uniq)

	created := false
	if res.has("create") {
		r.check(ctx, T, T+"/create", claim("interaction:create"), func(c *ct) string {
			resp := c.do(http.MethodPost, "/"+T, mustJSON(sent))
			c.mustStatus(resp, http.StatusCreated)
			id = str(resp.obj, "id")
			if id == "" {
				c.fatalf("%s: the created resource has no id", resp.req)
			}
			r.noteCreated(T, id)
			c.checkWrite(resp, T, id, true)
			c.checkPreserved(resp, sent)
			versions = append(versions, version{str(resp.obj, "meta", "versionId"), resp.obj})
			created = true
			return fmt.Sprintf("201, Location %s, ETag %s", resp.header.Get("Location"), resp.header.Get("ETag"))
		})
	} else if res.has("update") && res.UpdateCreate {
		id = fmt.Sprintf("conf-%s-%d", r.uniq, r.next())
		created = r.updateCreate(ctx, res, id, sent, &versions)
	}
	if !created {
		return
	}
	versioned := res.Versioning == "versioned-update"

	if res.has("read") {
		r.check(ctx, T, T+"/read", claim("interaction:read"), func(c *ct) string {
			resp := c.do(http.MethodGet, "/"+T+"/"+id, nil)
			c.mustStatus(resp, http.StatusOK)
			c.checkWrite(resp, T, id, false)
			if !jsonEqual(resp.obj, versions[0].body) {
				c.failf("%s: the read resource differs from the one create returned: %s", resp.req, snippet(resp.body))
			}
			return "200, ETag " + resp.header.Get("ETag")
		})
		if res.Versioning == "no-version" {
			r.record(T, Result{Check: T + "/read", Claim: claim("versioning:no-version"), Status: Pass, Detail: "no versioning claimed: read checked"})
		}
	}
	if res.has("update") {
		r.check(ctx, T, T+"/update", claim("interaction:update"), func(c *ct) string {
			body := cloneJSON(versions[len(versions)-1].body)
			body["language"] = "en"
			delete(body, "meta")
			body = r.tagged(body, "life-"+r.uniq)
			hdr := []string{}
			if versioned {
				hdr = append(hdr, `If-Match: W/"`+versions[len(versions)-1].vid+`"`)
			}
			resp := c.do(http.MethodPut, "/"+T+"/"+id, mustJSON(body), hdr...)
			c.mustStatus(resp, http.StatusOK)
			c.checkWrite(resp, T, id, false)
			c.checkPreserved(resp, body)
			if v := str(resp.obj, "meta", "versionId"); v == versions[len(versions)-1].vid {
				c.failf("%s: versionId stayed %s after an update", resp.req, v)
			}
			versions = append(versions, version{str(resp.obj, "meta", "versionId"), resp.obj})
			return "200, ETag " + resp.header.Get("ETag")
		})
		if versioned && len(versions) > 1 {
			r.check(ctx, T, T+"/versioned-update", claim("versioning:versioned-update"), func(c *ct) string {
				body := cloneJSON(versions[len(versions)-1].body)
				body["language"] = "fr"
				resp := c.do(http.MethodPut, "/"+T+"/"+id, mustJSON(body), `If-Match: W/"`+versions[0].vid+`"`)
				c.expectError(resp, http.StatusPreconditionFailed)
				cur := c.do(http.MethodGet, "/"+T+"/"+id, nil)
				if cur.status == http.StatusOK && str(cur.obj, "meta", "versionId") != versions[len(versions)-1].vid {
					c.failf("%s: a refused update changed the resource to version %s", cur.req, str(cur.obj, "meta", "versionId"))
				}
				return "stale If-Match: 412"
			})
		}
	}
	if res.has("patch") {
		r.check(ctx, T, T+"/patch", claim("interaction:patch"), func(c *ct) string {
			op := "add"
			if _, ok := versions[len(versions)-1].body["language"]; ok {
				op = "replace"
			}
			patch := fmt.Sprintf(`[{"op":%q,"path":"/language","value":"de"}]`, op)
			hdr := []string{"Content-Type: application/json-patch+json"}
			if versioned {
				hdr = append(hdr, `If-Match: W/"`+versions[len(versions)-1].vid+`"`)
			}
			resp := c.do(http.MethodPatch, "/"+T+"/"+id, []byte(patch), hdr...)
			c.mustStatus(resp, http.StatusOK)
			c.checkWrite(resp, T, id, false)
			if str(resp.obj, "language") != "de" {
				c.failf("%s: language is %q after the patch, want de", resp.req, str(resp.obj, "language"))
			}
			versions = append(versions, version{str(resp.obj, "meta", "versionId"), resp.obj})
			r.patchFormatOnce.Do(func() {
				r.record(groupCapabilities, Result{Check: T + "/patch", Claim: "patchFormat:application/json-patch+json", Status: Pass,
					Detail: "a JSON Patch applied (to " + T + "; every type's patch check uses one)"})
			})
			return "200, ETag " + resp.header.Get("ETag")
		})
	}
	if res.has("vread") {
		r.check(ctx, T, T+"/vread", claim("interaction:vread"), func(c *ct) string {
			v := versions[0]
			resp := c.do(http.MethodGet, "/"+T+"/"+id+"/_history/"+v.vid, nil)
			c.mustStatus(resp, http.StatusOK)
			if et := resp.header.Get("ETag"); et != `W/"`+v.vid+`"` {
				c.failf("%s: ETag %q, want W/\"%s\"", resp.req, et, v.vid)
			}
			if !jsonEqual(resp.obj, v.body) {
				c.failf("%s: version %s differs from what the server returned when it was written: %s", resp.req, v.vid, snippet(resp.body))
			}
			miss := c.do(http.MethodGet, "/"+T+"/"+id+"/_history/999999", nil)
			c.expectError(miss, http.StatusNotFound)
			if res.Versioning == "versioned" {
				r.record(T, Result{Check: T + "/vread", Claim: claim("versioning:versioned"), Status: Pass, Detail: "versions kept"})
			}
			return "version " + v.vid + " read back; unknown version 404"
		})
		if res.ReadHistory && len(versions) > 2 {
			r.check(ctx, T, T+"/vread-previous", claim("readHistory"), func(c *ct) string {
				v := versions[len(versions)-2]
				resp := c.do(http.MethodGet, "/"+T+"/"+id+"/_history/"+v.vid, nil)
				c.mustStatus(resp, http.StatusOK)
				if !jsonEqual(resp.obj, v.body) {
					c.failf("%s: an earlier version changed after later writes: %s", resp.req, snippet(resp.body))
				}
				return "version " + v.vid + " unchanged after version " + versions[len(versions)-1].vid
			})
		}
	}
	if res.has("history-instance") {
		r.check(ctx, T, T+"/history-instance", claim("interaction:history-instance"), func(c *ct) string {
			resp := c.do(http.MethodGet, "/"+T+"/"+id+"/_history", nil)
			c.mustStatus(resp, http.StatusOK)
			entries := c.checkBundle(resp, "history")
			var got []string
			for _, e := range entries {
				got = append(got, str(e, "resource", "meta", "versionId"))
			}
			var want []string
			for i := len(versions) - 1; i >= 0; i-- {
				want = append(want, versions[i].vid)
			}
			if !slices.Equal(got, want) {
				c.failf("%s: versions %v, want %v (newest first)", resp.req, got, want)
			}
			return fmt.Sprintf("versions %v, newest first", got)
		})
	}
	if res.has("history-type") {
		r.check(ctx, T, T+"/history-type", claim("interaction:history-type"), func(c *ct) string {
			since := c.instant(str(versions[0].body, "meta", "lastUpdated")).Add(-time.Second)
			want := map[string]bool{}
			for _, v := range versions {
				want[v.vid] = true
			}
			path := "/" + T + "/_history?_since=" + q(since.UTC().Format(time.RFC3339)) + "&_count=50"
			pages := 0
			for path != "" && len(want) > 0 && pages < 40 {
				pages++
				resp := c.do(http.MethodGet, path, nil)
				c.mustStatus(resp, http.StatusOK)
				entries := c.checkBundle(resp, "history")
				for _, e := range entries {
					if str(e, "resource", "resourceType") != "" && str(e, "resource", "resourceType") != T {
						c.failf("%s: type history holds a %s", resp.req, str(e, "resource", "resourceType"))
					}
					if str(e, "resource", "id") == id {
						delete(want, str(e, "resource", "meta", "versionId"))
					}
				}
				path = link(resp.obj, "next")
			}
			if len(want) > 0 {
				c.failf("GET /%s/_history?_since=%s: versions %v of %s/%s missing after %d pages", T, since.Format(time.RFC3339), keys(want), T, id, pages)
			}
			return fmt.Sprintf("all %d versions found (%d pages)", len(versions), pages)
		})
	}
	if res.has("search-type") {
		r.check(ctx, T, T+"/search-type", claim("interaction:search-type"), func(c *ct) string {
			resp := c.do(http.MethodGet, "/"+T+"?_id="+id, nil)
			c.mustStatus(resp, http.StatusOK)
			c.expectMatches(resp, T, []string{id})
			post := c.do(http.MethodPost, "/"+T+"/_search", []byte("_id="+id), "Content-Type: application/x-www-form-urlencoded")
			if c.expectStatus(post, http.StatusOK) {
				c.expectMatches(post, T, []string{id})
			}
			return "GET and POST _search find it"
		})
	}
	if res.hasOp("validate") {
		r.check(ctx, T, T+"/$validate-instance", claim("operation:validate"), func(c *ct) string {
			body := cloneJSON(versions[len(versions)-1].body)
			resp := c.do(http.MethodPost, "/"+T+"/"+id+"/$validate?mode=update", mustJSON(body))
			c.mustStatus(resp, http.StatusOK)
			if n := c.outcomeErrors(resp); n > 0 {
				c.failf("%s: %d error issues for a valid update: %s", resp.req, n, snippet(resp.body))
			}
			return "instance-level $validate mode=update: no errors"
		})
	}
	if res.has("delete") {
		r.check(ctx, T, T+"/delete", claim("interaction:delete"), func(c *ct) string {
			resp := c.do(http.MethodDelete, "/"+T+"/"+id, nil)
			c.mustStatus(resp, http.StatusOK, http.StatusNoContent)
			if res.has("read") {
				gone := c.do(http.MethodGet, "/"+T+"/"+id, nil)
				c.expectError(gone, http.StatusGone)
			}
			if res.has("history-instance") {
				h := c.do(http.MethodGet, "/"+T+"/"+id+"/_history", nil)
				if c.expectStatus(h, http.StatusOK) {
					entries := c.checkBundle(h, "history")
					if len(entries) != len(versions)+1 {
						c.failf("%s: %d entries after delete, want %d", h.req, len(entries), len(versions)+1)
					} else if m := str(entries[0], "request", "method"); m != "DELETE" || get(entries[0], "resource") != nil {
						c.failf("%s: newest entry is %s with resource %v, want a DELETE without resource", h.req, m, get(entries[0], "resource") != nil)
					}
				}
			}
			return fmt.Sprintf("%d; then read 410 and history ends with the DELETE", resp.status)
		})
	}
	if res.UpdateCreate && res.has("update") && res.has("create") {
		cid := fmt.Sprintf("conf-%s-%d", r.uniq, r.next())
		var vs []version
		r.updateCreate(ctx, res, cid, r.tagged(r.minimal(T)), &vs)
	}
	if res.ConditionalRead != "" && res.ConditionalRead != "not-supported" {
		r.conditionalRead(ctx, res)
	}
}

// updateCreate creates a resource with a client id by PUT.
func (r *runner) updateCreate(ctx context.Context, res *csResource, id string, body map[string]any, versions *[]version) bool {
	T := res.Type
	ok := false
	r.check(ctx, T, T+"/update-create", T+".updateCreate", func(c *ct) string {
		body = cloneJSON(body)
		body["id"] = id
		resp := c.do(http.MethodPut, "/"+T+"/"+id, mustJSON(body))
		c.mustStatus(resp, http.StatusCreated)
		r.noteCreated(T, id)
		c.checkWrite(resp, T, id, true)
		c.checkPreserved(resp, body)
		*versions = append(*versions, version{str(resp.obj, "meta", "versionId"), resp.obj})
		ok = true
		return "PUT to a new id: 201, Location " + resp.header.Get("Location")
	})
	return ok
}

func (r *runner) conditionalRead(ctx context.Context, res *csResource) {
	T := res.Type
	r.check(ctx, T, T+"/conditional-read", T+".conditionalRead:"+res.ConditionalRead, func(c *ct) string {
		cr := c.do(http.MethodPost, "/"+T, mustJSON(r.tagged(r.minimal(T))))
		c.mustStatus(cr, http.StatusCreated)
		id := str(cr.obj, "id")
		r.noteCreated(T, id)
		var hdr string
		switch res.ConditionalRead {
		case "modified-since":
			hdr = "If-Modified-Since: " + cr.header.Get("Last-Modified")
		default:
			hdr = "If-None-Match: " + cr.header.Get("ETag")
		}
		resp := c.do(http.MethodGet, "/"+T+"/"+id, nil, hdr)
		c.expectStatus(resp, http.StatusNotModified)
		return "304 for the current version"
	})
}

var etagRE = regexp.MustCompile(`^W/"([^"]+)"$`)

// checkWrite checks the headers and body of a read or write answer: a weak
// quoted ETag equal to meta.versionId, Last-Modified equal to
// meta.lastUpdated (to the second), the id, and on a create a Location of
// [base]/[type]/[id]/_history/[vid].
func (c *ct) checkWrite(resp *response, typ, id string, created bool) {
	if str(resp.obj, "resourceType") != typ || str(resp.obj, "id") != id {
		c.failf("%s: body is %s/%s, want %s/%s", resp.req, str(resp.obj, "resourceType"), str(resp.obj, "id"), typ, id)
	}
	vid := str(resp.obj, "meta", "versionId")
	if vid == "" {
		c.failf("%s: no meta.versionId", resp.req)
	}
	et := resp.header.Get("ETag")
	if m := etagRE.FindStringSubmatch(et); m == nil || m[1] != vid {
		c.failf("%s: ETag %q, want W/\"%s\" (meta.versionId)", resp.req, et, vid)
	}
	lu := str(resp.obj, "meta", "lastUpdated")
	lm, err := http.ParseTime(resp.header.Get("Last-Modified"))
	if err != nil {
		c.failf("%s: Last-Modified %q is not an HTTP date", resp.req, resp.header.Get("Last-Modified"))
	} else if t := c.instant(lu); !t.Truncate(time.Second).Equal(lm) {
		c.failf("%s: Last-Modified %s, meta.lastUpdated %s", resp.req, resp.header.Get("Last-Modified"), lu)
	}
	if created {
		loc := resp.header.Get("Location")
		want := typ + "/" + id + "/_history/" + vid
		if loc != c.r.base+"/"+want && loc != want && !strings.HasSuffix(loc, "/"+want) {
			c.failf("%s: Location %q, want [base]/%s", resp.req, loc, want)
		}
	}
}

// checkPreserved checks that the server kept every element the client sent
// (meta aside, where only the tags must survive).
func (c *ct) checkPreserved(resp *response, sent map[string]any) {
	for k, v := range sent {
		switch k {
		case "meta", "id":
			continue
		}
		if !jsonEqual(resp.obj[k], v) {
			c.failf("%s: element %s sent as %s came back as %s", resp.req, k, snippet(mustJSON(v)), snippet(mustJSON(resp.obj[k])))
		}
	}
	got := mustJSONs(arr(resp.obj, "meta", "tag"))
	for _, t := range arr(sent, "meta", "tag") {
		if !slices.Contains(got, string(mustJSON(t))) {
			c.failf("%s: meta.tag %s was dropped", resp.req, mustJSON(t))
		}
	}
}

func mustJSONs(vs []any) []string {
	var out []string
	for _, v := range vs {
		out = append(out, string(mustJSON(v)))
	}
	return out
}

// instant parses a FHIR instant, failing the check when it is not one.
func (c *ct) instant(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		c.failf("meta.lastUpdated %q is not an instant", s)
	}
	return t
}

// outcomeErrors counts the error and fatal issues of an OperationOutcome.
func (c *ct) outcomeErrors(resp *response) int {
	if str(resp.obj, "resourceType") != "OperationOutcome" {
		c.failf("%s: answer is a %s, want an OperationOutcome", resp.req, str(resp.obj, "resourceType"))
		return 0
	}
	n := 0
	for _, is := range arr(resp.obj, "issue") {
		if s := str(is, "severity"); s == "error" || s == "fatal" {
			n++
		}
	}
	return n
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// conditionalChecks checks the conditional create, update and delete the
// type claims, each on resources marked with a tag of their own.
func (r *runner) conditionalChecks(ctx context.Context, res *csResource) {
	T := res.Type
	cond := func(prefix string) (code, query string) {
		code = fmt.Sprintf("%s-%s-%d", prefix, r.uniq, r.next())
		return code, "_tag=" + q(tagSystem+"|"+code)
	}
	post := func(c *ct, code string, hdr ...string) *response {
		resp := c.do(http.MethodPost, "/"+T, mustJSON(r.tagged(r.minimal(T), code)), hdr...)
		if resp.status == http.StatusCreated {
			r.noteCreated(T, str(resp.obj, "id"))
		}
		return resp
	}
	if res.ConditionalCreate {
		r.check(ctx, T, T+"/conditional-create", T+".conditionalCreate", func(c *ct) string {
			code, query := cond("cc")
			first := post(c, code, "If-None-Exist: "+query)
			c.mustStatus(first, http.StatusCreated)
			id := str(first.obj, "id")
			again := post(c, code, "If-None-Exist: "+query)
			c.mustStatus(again, http.StatusOK)
			if got := c.writtenID(again, T); got != "" && got != id {
				c.failf("%s: a match answered %s, want the existing %s", again.req, got, id)
			}
			if res.has("search-type") {
				c.expectCount(T, query, 1)
			}
			c.mustStatus(post(c, code), http.StatusCreated)
			many := post(c, code, "If-None-Exist: "+query)
			c.expectError(many, http.StatusPreconditionFailed)
			return "no match 201, one match 200 without a new resource, two matches 412"
		})
	}
	if res.ConditionalUpdate {
		r.check(ctx, T, T+"/conditional-update", T+".conditionalUpdate", func(c *ct) string {
			code, query := cond("cu")
			body := mustJSON(r.tagged(r.minimal(T), code))
			first := c.do(http.MethodPut, "/"+T+"?"+query, body)
			c.mustStatus(first, http.StatusCreated)
			id := c.writtenID(first, T)
			r.noteCreated(T, id)
			again := c.do(http.MethodPut, "/"+T+"?"+query, body)
			c.mustStatus(again, http.StatusOK)
			if got := c.writtenID(again, T); got != id {
				c.failf("%s: updated %s, want %s", again.req, got, id)
			}
			if v := str(again.obj, "meta", "versionId"); v == str(first.obj, "meta", "versionId") {
				c.failf("%s: versionId stayed %s", again.req, v)
			}
			c.mustStatus(post(c, code), http.StatusCreated)
			many := c.do(http.MethodPut, "/"+T+"?"+query, body)
			c.expectError(many, http.StatusPreconditionFailed)
			return "no match 201, one match 200 (same id, new version), two matches 412"
		})
	}
	if res.ConditionalDelete == "single" || res.ConditionalDelete == "multiple" {
		r.check(ctx, T, T+"/conditional-delete", T+".conditionalDelete:"+res.ConditionalDelete, func(c *ct) string {
			code, query := cond("cd")
			a := post(c, code)
			c.mustStatus(a, http.StatusCreated)
			b := post(c, code)
			c.mustStatus(b, http.StatusCreated)
			resp := c.do(http.MethodDelete, "/"+T+"?"+query, nil)
			if res.ConditionalDelete == "single" {
				c.expectError(resp, http.StatusPreconditionFailed)
				return "two matches: 412"
			}
			c.mustStatus(resp, http.StatusOK, http.StatusNoContent)
			if res.has("read") {
				for _, x := range []*response{a, b} {
					g := c.do(http.MethodGet, "/"+T+"/"+str(x.obj, "id"), nil)
					c.expectError(g, http.StatusGone)
				}
			}
			return "both matches deleted"
		})
	}
}

// writtenID is the id of the typ a write answered with: from the body,
// else from Location.
func (c *ct) writtenID(resp *response, typ string) string {
	if id := str(resp.obj, "id"); id != "" && str(resp.obj, "resourceType") == typ {
		return id
	}
	loc := strings.TrimPrefix(resp.header.Get("Location"), c.r.base+"/")
	parts := strings.Split(loc, "/")
	if len(parts) >= 2 {
		return parts[1]
	}
	return ""
}

// expectCount checks how many resources of typ a query finds.
func (c *ct) expectCount(typ, query string, want int) {
	resp := c.do(http.MethodGet, "/"+typ+"?"+query+"&_total=accurate", nil)
	if !c.expectStatus(resp, http.StatusOK) {
		return
	}
	if n := len(c.matches(resp)); n != want {
		c.failf("%s: %d matches, want %d", resp.req, n, want)
	}
}

// validateChecks checks type-level $validate: a valid resource gives no
// error issue, an invalid one at least one.
func (r *runner) validateChecks(ctx context.Context, res *csResource) {
	if !res.hasOp("validate") {
		return
	}
	T := res.Type
	r.check(ctx, T, T+"/$validate", T+".operation:validate", func(c *ct) string {
		ok := c.do(http.MethodPost, "/"+T+"/$validate", mustJSON(r.minimal(T)))
		c.mustStatus(ok, http.StatusOK)
		if n := c.outcomeErrors(ok); n > 0 {
			c.failf("%s: %d error issues for a valid %s: %s", ok.req, n, T, snippet(ok.body))
		}
		bad := r.minimal(T)
		bad["conformanceUnknownElement"] = true
		resp := c.do(http.MethodPost, "/"+T+"/$validate", mustJSON(bad))
		if resp.status == http.StatusOK {
			if c.outcomeErrors(resp) == 0 {
				c.failf("%s: no error issue for an unknown element: %s", resp.req, snippet(resp.body))
			}
		} else {
			c.expectError(resp, http.StatusBadRequest, http.StatusUnprocessableEntity)
		}
		return "valid: no errors; unknown element: an error issue"
	})
}
