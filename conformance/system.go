package conformance

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// capabilityChecks checks /metadata itself and the formats it claims.
func (r *runner) capabilityChecks(ctx context.Context) {
	r.check(ctx, groupCapabilities, "rest/metadata", "format:application/fhir+json", func(c *ct) string {
		c.noToken = true // SMART clients read it before they have a token
		resp := c.do(http.MethodGet, "/metadata", nil)
		c.mustStatus(resp, http.StatusOK)
		cs := resp.obj
		if str(cs, "resourceType") != "CapabilityStatement" {
			c.fatalf("%s: a %s", resp.req, str(cs, "resourceType"))
		}
		if v := str(cs, "fhirVersion"); v != "4.0.1" {
			c.failf("fhirVersion %q, want 4.0.1", v)
		}
		if k := str(cs, "kind"); k != "instance" {
			c.failf("kind %q, want instance", k)
		}
		if m := str(arr(cs, "rest")[0], "mode"); m != "server" {
			c.failf("rest[0].mode %q, want server", m)
		}
		return "readable without a token; FHIR 4.0.1, kind instance, rest mode server, valid"
	})
	for _, f := range r.cs.Format {
		switch f {
		case "json", "application/json":
			r.check(ctx, groupCapabilities, "rest/_format", "format:"+f, func(c *ct) string {
				for _, v := range []string{"json", "application/json", "application/fhir+json"} {
					resp := c.do(http.MethodGet, "/metadata?_format="+q(v), nil, "Accept: application/xml")
					c.expectStatus(resp, http.StatusOK)
				}
				if !slices.ContainsFunc(r.cs.Format, func(f string) bool { return strings.Contains(f, "xml") }) {
					resp := c.do(http.MethodGet, "/metadata?_format=xml", nil)
					c.expectError(resp, http.StatusNotAcceptable)
				}
				return "_format=json overrides Accept; _format=xml (not claimed) 406"
			})
		}
	}
}

// newUUID returns a random UUID for urn:uuid fullUrls.
func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// patient is a small valid Patient of this run.
func (r *runner) patient(family string, tags ...string) map[string]any {
	return r.tagged(map[string]any{"resourceType": "Patient", "name": []any{map[string]any{"family": family}}}, tags...)
}

// systemChecks checks the system interactions the statement claims.
func (r *runner) systemChecks(ctx context.Context) {
	cs := r.cs
	if cs.systemHas("transaction") {
		r.check(ctx, groupSystem, "system/transaction", "rest.system:transaction", func(c *ct) string {
			pu := "urn:uuid:" + newUUID()
			obs := r.tagged(map[string]any{"resourceType": "Observation", "status": "final",
				"code": map[string]any{"text": "conformance"}, "subject": map[string]any{"reference": pu}})
			bundle := map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{
				map[string]any{"fullUrl": pu, "resource": r.patient("Tx" + r.uniq), "request": map[string]any{"method": "POST", "url": "Patient"}},
				map[string]any{"resource": obs, "request": map[string]any{"method": "POST", "url": "Observation"}},
			}}
			resp := c.do(http.MethodPost, "/", mustJSON(bundle))
			c.mustStatus(resp, http.StatusOK)
			entries := c.checkBundle(resp, "transaction-response")
			if len(entries) != 2 {
				c.fatalf("%s: %d entries, want 2", resp.req, len(entries))
			}
			var locs []string
			for i, e := range entries {
				st, loc := str(e, "response", "status"), str(e, "response", "location")
				if !strings.HasPrefix(st, "201") {
					c.failf("%s: entry[%d].response.status %q, want 201", resp.req, i, st)
				}
				parts := strings.Split(strings.TrimPrefix(loc, r.base+"/"), "/")
				if len(parts) != 4 || parts[2] != "_history" {
					c.fatalf("%s: entry[%d].response.location %q, want [type]/[id]/_history/[vid]", resp.req, i, loc)
				}
				r.noteCreated(parts[0], parts[1])
				locs = append(locs, parts[0]+"/"+parts[1])
			}
			got := c.do(http.MethodGet, "/"+locs[1], nil)
			c.mustStatus(got, http.StatusOK)
			if ref := str(got.obj, "subject", "reference"); ref != locs[0] {
				c.failf("%s: subject.reference %q, want %q (the urn:uuid rewritten)", got.req, ref, locs[0])
			}
			return "two entries created; urn:uuid reference rewritten to " + locs[0]
		})
		r.check(ctx, groupSystem, "system/transaction-atomic", "rest.system:transaction", func(c *ct) string {
			code := fmt.Sprintf("tx-%s-%d", r.uniq, r.next())
			bad := r.patient("Bad", code)
			bad["gender"] = "not-a-gender"
			bundle := map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{
				map[string]any{"resource": r.patient("Good", code), "request": map[string]any{"method": "POST", "url": "Patient"}},
				map[string]any{"resource": bad, "request": map[string]any{"method": "POST", "url": "Patient"}},
			}}
			resp := c.do(http.MethodPost, "/", mustJSON(bundle))
			c.expectError(resp, http.StatusBadRequest, http.StatusUnprocessableEntity)
			if p := cs.resource("Patient"); p != nil && p.has("search-type") {
				c.expectCount("Patient", "_tag="+q(tagSystem+"|"+code), 0)
			}
			return fmt.Sprintf("a failing entry fails the whole transaction (%d) and nothing is written", resp.status)
		})
	}
	if cs.systemHas("batch") {
		r.check(ctx, groupSystem, "system/batch", "rest.system:batch", func(c *ct) string {
			bad := r.patient("Bad")
			bad["gender"] = "not-a-gender"
			bundle := map[string]any{"resourceType": "Bundle", "type": "batch", "entry": []any{
				map[string]any{"resource": r.patient("Batch" + r.uniq), "request": map[string]any{"method": "POST", "url": "Patient"}},
				map[string]any{"resource": bad, "request": map[string]any{"method": "POST", "url": "Patient"}},
			}}
			resp := c.do(http.MethodPost, "/", mustJSON(bundle))
			c.mustStatus(resp, http.StatusOK)
			entries := c.checkBundle(resp, "batch-response")
			if len(entries) != 2 {
				c.fatalf("%s: %d entries, want 2", resp.req, len(entries))
			}
			if st := str(entries[0], "response", "status"); !strings.HasPrefix(st, "201") {
				c.failf("%s: entry[0].response.status %q, want 201", resp.req, st)
			} else {
				parts := strings.Split(strings.TrimPrefix(str(entries[0], "response", "location"), r.base+"/"), "/")
				if len(parts) >= 2 {
					r.noteCreated(parts[0], parts[1])
				}
			}
			if st := str(entries[1], "response", "status"); !strings.HasPrefix(st, "4") {
				c.failf("%s: entry[1].response.status %q, want 4xx", resp.req, st)
			}
			if str(entries[1], "response", "outcome", "resourceType") != "OperationOutcome" {
				c.failf("%s: entry[1].response.outcome is not an OperationOutcome", resp.req)
			}
			return "entries answered on their own: 201 and 4xx with an OperationOutcome"
		})
	}
	if cs.systemHas("history-system") {
		r.check(ctx, groupSystem, "system/history-system", "rest.system:history-system", func(c *ct) string {
			cr := c.do(http.MethodPost, "/Patient", mustJSON(r.patient("Hist"+r.uniq)))
			c.mustStatus(cr, http.StatusCreated)
			id := str(cr.obj, "id")
			r.noteCreated("Patient", id)
			since := c.instant(str(cr.obj, "meta", "lastUpdated")).Add(-time.Second)
			path := "/_history?_since=" + q(since.UTC().Format(time.RFC3339)) + "&_count=50"
			for pages := 0; path != "" && pages < 40; pages++ {
				resp := c.do(http.MethodGet, path, nil)
				c.mustStatus(resp, http.StatusOK)
				for _, e := range c.checkBundle(resp, "history") {
					if str(e, "resource", "resourceType") == "Patient" && str(e, "resource", "id") == id {
						return fmt.Sprintf("found Patient/%s on page %d", id, pages+1)
					}
				}
				path = link(resp.obj, "next")
			}
			c.failf("GET /_history?_since=%s: Patient/%s not found", since.Format(time.RFC3339), id)
			return ""
		})
	}
	if cs.systemHas("search-system") {
		r.check(ctx, groupSystem, "system/search-system", "rest.system:search-system", func(c *ct) string {
			code := fmt.Sprintf("ss-%s-%d", r.uniq, r.next())
			cr := c.do(http.MethodPost, "/Patient", mustJSON(r.patient("Sys", code)))
			c.mustStatus(cr, http.StatusCreated)
			r.noteCreated("Patient", str(cr.obj, "id"))
			resp := c.do(http.MethodGet, "/?_tag="+q(tagSystem+"|"+code), nil)
			c.mustStatus(resp, http.StatusOK)
			c.expectMatches(resp, "Patient", []string{str(cr.obj, "id")})
			return "GET [base]?_tag finds the Patient"
		})
	}
	if p := cs.resource("Patient"); p != nil && p.hasOp("everything") {
		r.everything(ctx)
	}
	if sub := cs.resource("Subscription"); sub != nil && sub.hasOp("status") {
		r.subscriptionStatusOp(ctx)
	}
	if p := cs.resource("Patient"); p != nil {
		if p.hasOp("summary") {
			r.summaryOp(ctx)
		}
		if p.hasOp("import") {
			r.importOp(ctx)
		}
		if p.hasOp("second-opinion") {
			r.secondOpinionOp(ctx)
		}
	}
	if t := cs.resource("Task"); t != nil && t.hasOp("opinion") {
		r.opinionOp(ctx)
	}
	if sr := cs.resource("ServiceRequest"); sr != nil && sr.hasOp("opinions") {
		r.opinionsOp(ctx)
	}
	if p := cs.resource("Patient"); p != nil && p.hasOp("share-link") && p.hasOp("share-links") && p.hasOp("share-link-revoke") {
		r.shareLinkOp(ctx)
	}
}

// shareLinkOp checks SMART Health Links end to end as a receiving
// application would: Patient/$share-link makes a link to an Observation
// with a passcode; the manifest URL (POST, recipient and passcode) gives
// the Observation as a compact JWE that opens with the link's key; a
// wrong passcode answers 401 with remainingAttempts; $share-links lists
// it; after $share-link-revoke the manifest answers 404.
func (r *runner) shareLinkOp(ctx context.Context) {
	var made *struct{ pid, id, url string }
	r.check(ctx, "Patient", "Patient/$share-link", "Patient.operation:share-link", func(c *ct) string {
		cr := c.do(http.MethodPost, "/Patient", mustJSON(r.patient("Shl"+r.uniq)))
		c.mustStatus(cr, http.StatusCreated)
		pid := str(cr.obj, "id")
		r.noteCreated("Patient", pid)
		or := c.do(http.MethodPost, "/Observation", mustJSON(map[string]any{"resourceType": "Observation", "status": "final",
			"code": map[string]any{"text": "conformance " + r.uniq}, "subject": map[string]any{"reference": "Patient/" + pid}}))
		c.mustStatus(or, http.StatusCreated)
		oid := str(or.obj, "id")
		r.noteCreated("Observation", oid)
		resp := c.do(http.MethodPost, "/Patient/"+pid+"/$share-link", mustJSON(map[string]any{"resourceType": "Parameters", "parameter": []any{
			map[string]any{"name": "resource", "valueReference": map[string]any{"reference": "Observation/" + oid}},
			map[string]any{"name": "passcode", "valueString": "conformance"}}}))
		c.mustStatus(resp, http.StatusOK)
		var link, id string
		for _, p := range arr(resp.obj, "parameter") {
			switch str(p, "name") {
			case "link":
				link = str(p, "valueString")
			case "id":
				id = str(p, "valueString")
			}
		}
		enc, ok := strings.CutPrefix(link, "shlink:/")
		raw, err := base64.RawURLEncoding.DecodeString(enc)
		var payload struct{ URL, Key, Flag string }
		if !ok || err != nil || json.Unmarshal(raw, &payload) != nil || payload.URL == "" || !strings.Contains(payload.Flag, "P") {
			c.fatalf("$share-link: %q is not a shlink:/ with a manifest URL and flag P", link)
		}
		c.quiet = true // manifests are application/json, not FHIR
		m := c.do(http.MethodPost, payload.URL, []byte(`{"recipient":"conformance","passcode":"wrong"}`), "Content-Type: application/json")
		var wrong struct{ RemainingAttempts *int }
		if m.status != http.StatusUnauthorized || json.Unmarshal(m.body, &wrong) != nil || wrong.RemainingAttempts == nil {
			c.failf("a wrong passcode: %d %.200s, want 401 with remainingAttempts", m.status, m.body)
		}
		m = c.do(http.MethodPost, payload.URL, []byte(`{"recipient":"conformance","passcode":"conformance"}`), "Content-Type: application/json")
		var manifest struct {
			Files []struct{ ContentType, Embedded string }
		}
		if m.status != http.StatusOK || json.Unmarshal(m.body, &manifest) != nil || len(manifest.Files) != 1 || manifest.Files[0].Embedded == "" {
			c.fatalf("the manifest: %d %.200s", m.status, m.body)
		}
		key, _ := base64.RawURLEncoding.DecodeString(payload.Key)
		obj, err := jose.ParseEncrypted(manifest.Files[0].Embedded, []jose.KeyAlgorithm{jose.DIRECT}, []jose.ContentEncryption{jose.A256GCM})
		if err != nil {
			c.fatalf("the file is not a compact JWE (dir, A256GCM): %v", err)
		}
		plain, err := obj.Decrypt(key)
		var got struct{ ResourceType, ID string }
		if err != nil || json.Unmarshal(plain, &got) != nil || got.ResourceType != "Observation" || got.ID != oid {
			c.failf("the file does not open to Observation/%s with the link's key: %v", oid, err)
		}
		c.quiet = false
		made = &struct{ pid, id, url string }{pid, id, payload.URL}
		return "a link with a passcode: 401 with remainingAttempts for a wrong one, the Observation as a JWE that opens with the link's key"
	})
	r.check(ctx, "Patient", "Patient/$share-links", "Patient.operation:share-links", func(c *ct) string {
		if made == nil {
			c.fatalf("no link was made")
		}
		list := c.do(http.MethodGet, "/Patient/"+made.pid+"/$share-links", nil)
		c.mustStatus(list, http.StatusOK)
		if !strings.Contains(string(list.body), made.id) {
			c.failf("$share-links does not list the link")
		}
		return "the link listed"
	})
	r.check(ctx, "Patient", "Patient/$share-link-revoke", "Patient.operation:share-link-revoke", func(c *ct) string {
		if made == nil {
			c.fatalf("no link was made")
		}
		rv := c.do(http.MethodPost, "/Patient/"+made.pid+"/$share-link-revoke", mustJSON(map[string]any{"resourceType": "Parameters", "parameter": []any{map[string]any{"name": "id", "valueString": made.id}}}))
		c.mustStatus(rv, http.StatusOK)
		c.quiet = true
		if m := c.do(http.MethodPost, made.url, []byte(`{"recipient":"conformance","passcode":"conformance"}`), "Content-Type: application/json"); m.status != http.StatusNotFound {
			c.failf("the manifest of a revoked link: %d, want 404", m.status)
		}
		c.quiet = false
		return "the manifest of the revoked link answers 404"
	})
}

// opinionsOp checks that ServiceRequest/$opinions refuses a ServiceRequest
// of no second-opinion request with a 4xx OperationOutcome and answers 404
// for an unknown one.
func (r *runner) opinionsOp(ctx context.Context) {
	r.check(ctx, "ServiceRequest", "ServiceRequest/$opinions", "ServiceRequest.operation:opinions", func(c *ct) string {
		cr := c.do(http.MethodPost, "/Patient", mustJSON(r.patient("Ops"+r.uniq)))
		c.mustStatus(cr, http.StatusCreated)
		pid := str(cr.obj, "id")
		r.noteCreated("Patient", pid)
		sr := c.do(http.MethodPost, "/ServiceRequest", mustJSON(map[string]any{"resourceType": "ServiceRequest", "status": "active", "intent": "order",
			"subject": map[string]any{"reference": "Patient/" + pid}}))
		c.mustStatus(sr, http.StatusCreated)
		id := str(sr.obj, "id")
		r.noteCreated("ServiceRequest", id)
		resp := c.do(http.MethodGet, "/ServiceRequest/"+id+"/$opinions", nil)
		if resp.status < 400 || resp.status >= 500 {
			c.failf("GET /ServiceRequest/%s/$opinions of no second-opinion request: status %d, want a 4xx", id, resp.status)
		} else {
			c.expectError(resp, resp.status)
		}
		c.expectError(c.do(http.MethodGet, "/ServiceRequest/conf-"+r.uniq+"-nobody/$opinions", nil), http.StatusNotFound)
		return fmt.Sprintf("a ServiceRequest of no second-opinion request: %d with an OperationOutcome; 404 for an unknown one", resp.status)
	})
}

// opinionOp checks that Task/$opinion refuses what is not an opinion of a
// second-opinion Task with a 4xx OperationOutcome (a whole request needs
// Consents and tokens beyond a black-box run), and answers 404 for an
// unknown Task.
func (r *runner) opinionOp(ctx context.Context) {
	r.check(ctx, "Task", "Task/$opinion", "Task.operation:opinion", func(c *ct) string {
		tr := c.do(http.MethodPost, "/Task", mustJSON(map[string]any{"resourceType": "Task", "status": "requested", "intent": "order"}))
		c.mustStatus(tr, http.StatusCreated)
		id := str(tr.obj, "id")
		r.noteCreated("Task", id)
		doc := map[string]any{"resourceType": "Bundle", "type": "document", "timestamp": "2025-01-01T00:00:00Z",
			"identifier": map[string]any{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:0c6b2a3e-4d5f-4a6b-8c7d-9e0f1a2b3c4e"},
			"entry": []any{map[string]any{"fullUrl": "urn:uuid:0c6b2a3e-4d5f-4a6b-8c7d-9e0f1a2b3c4f", "resource": map[string]any{
				"resourceType": "Composition", "status": "final", "type": map[string]any{"text": "opinion"}, "date": "2025-01-01", "title": "conformance",
				"author": []any{map[string]any{"display": "conformance"}},
				"event":  []any{map[string]any{"detail": []any{map[string]any{"reference": "Task/" + id}}}}}}}}
		resp := c.do(http.MethodPost, "/Task/"+id+"/$opinion", mustJSON(doc))
		if resp.status < 400 || resp.status >= 500 {
			c.failf("POST /Task/%s/$opinion for a Task of no second-opinion request: status %d, want a 4xx", id, resp.status)
		} else {
			c.expectError(resp, resp.status)
		}
		c.expectError(c.do(http.MethodPost, "/Task/conf-"+r.uniq+"-nobody/$opinion", mustJSON(doc)), http.StatusNotFound)
		return fmt.Sprintf("an opinion of a Task of no second-opinion request: %d with an OperationOutcome; 404 for an unknown Task", resp.status)
	})
}

// summaryOp checks Patient/$summary: a document Bundle whose first entry
// is a Composition about the patient.
func (r *runner) summaryOp(ctx context.Context) {
	r.check(ctx, "Patient", "Patient/$summary", "Patient.operation:summary", func(c *ct) string {
		cr := c.do(http.MethodPost, "/Patient", mustJSON(r.patient("Sum"+r.uniq)))
		c.mustStatus(cr, http.StatusCreated)
		id := str(cr.obj, "id")
		r.noteCreated("Patient", id)
		resp := c.do(http.MethodGet, "/Patient/"+id+"/$summary", nil)
		c.mustStatus(resp, http.StatusOK)
		if str(resp.obj, "resourceType") != "Bundle" || str(resp.obj, "type") != "document" {
			c.failf("GET /Patient/%s/$summary: not a document Bundle", id)
		}
		entries := arr(resp.obj, "entry")
		if len(entries) == 0 || str(entries[0], "resource", "resourceType") != "Composition" {
			c.failf("GET /Patient/%s/$summary: the first entry is not a Composition", id)
		}
		c.expectError(c.do(http.MethodGet, "/Patient/conf-"+r.uniq+"-nobody/$summary", nil), http.StatusNotFound)
		return "a document Bundle led by a Composition; 404 for an unknown patient"
	})
}

// importOp checks Patient/$import with a small FHIR Bundle, and that a body
// it cannot read is refused.
func (r *runner) importOp(ctx context.Context) {
	r.check(ctx, "Patient", "Patient/$import", "Patient.operation:import", func(c *ct) string {
		cr := c.do(http.MethodPost, "/Patient", mustJSON(r.patient("Imp"+r.uniq)))
		c.mustStatus(cr, http.StatusCreated)
		id := str(cr.obj, "id")
		r.noteCreated("Patient", id)
		bundle := map[string]any{"resourceType": "Bundle", "type": "collection", "entry": []any{map[string]any{
			"fullUrl": "urn:uuid:0c6b2a3e-4d5f-4a6b-8c7d-9e0f1a2b3c4d",
			"resource": map[string]any{"resourceType": "Observation", "status": "final",
				"code":    map[string]any{"text": "conformance import " + r.uniq},
				"subject": map[string]any{"reference": "Patient/" + id}}}}}
		resp := c.do(http.MethodPost, "/Patient/"+id+"/$import", mustJSON(bundle))
		c.mustStatus(resp, http.StatusOK)
		if str(resp.obj, "resourceType") != "Bundle" {
			c.failf("POST /Patient/%s/$import: the answer is not a Bundle", id)
		}
		c.expectError(c.do(http.MethodPost, "/Patient/"+id+"/$import", []byte("%PDF- not really"), "Content-Type: text/plain"), http.StatusUnsupportedMediaType)
		return "a FHIR Bundle imported (200 with a Bundle); text/plain refused with 415"
	})
}

// secondOpinionOp checks that Patient/$second-opinion answers a request it
// cannot honour (no consent for the recipient) with a 4xx OperationOutcome;
// the full workflow needs Consents and tokens beyond a black-box run.
func (r *runner) secondOpinionOp(ctx context.Context) {
	r.check(ctx, "Patient", "Patient/$second-opinion", "Patient.operation:second-opinion", func(c *ct) string {
		cr := c.do(http.MethodPost, "/Patient", mustJSON(r.patient("So"+r.uniq)))
		c.mustStatus(cr, http.StatusCreated)
		id := str(cr.obj, "id")
		r.noteCreated("Patient", id)
		params := map[string]any{"resourceType": "Parameters", "parameter": []any{
			map[string]any{"name": "recipient", "valueReference": map[string]any{"reference": "Organization/conf-" + r.uniq + "-nobody"}},
			map[string]any{"name": "question", "valueString": "conformance"}}}
		resp := c.do(http.MethodPost, "/Patient/"+id+"/$second-opinion", mustJSON(params))
		if resp.status < 400 || resp.status >= 500 {
			c.failf("POST /Patient/%s/$second-opinion without a consent: status %d, want a 4xx", id, resp.status)
		} else {
			c.expectError(resp, resp.status)
		}
		return fmt.Sprintf("a request without a consent for the recipient: %d with an OperationOutcome", resp.status)
	})
}

// everything checks Patient/$everything: the patient, its compartment and
// what those refer to, and nothing of another patient.
func (r *runner) everything(ctx context.Context) {
	r.check(ctx, "Patient", "Patient/$everything", "Patient.operation:everything", func(c *ct) string {
		create := func(res map[string]any) string {
			resp := c.do(http.MethodPost, "/"+str(res, "resourceType"), mustJSON(res))
			c.mustStatus(resp, http.StatusCreated)
			id := str(resp.obj, "id")
			r.noteCreated(str(res, "resourceType"), id)
			return str(res, "resourceType") + "/" + id
		}
		pr := create(r.tagged(map[string]any{"resourceType": "Practitioner", "name": []any{map[string]any{"family": "Ev" + r.uniq}}}))
		p := create(r.patient("Ev" + r.uniq))
		other := create(r.patient("Other" + r.uniq))
		obs := func(subject string) string {
			return create(r.tagged(map[string]any{"resourceType": "Observation", "status": "final", "code": map[string]any{"text": "conformance"},
				"subject": map[string]any{"reference": subject}, "performer": []any{map[string]any{"reference": pr}}}))
		}
		o := obs(p)
		o2 := obs(other)
		resp := c.do(http.MethodGet, "/"+p+"/$everything", nil)
		c.mustStatus(resp, http.StatusOK)
		c.checkBundle(resp, "searchset")
		var got []string
		for path := "/" + p + "/$everything"; ; {
			for _, e := range arr(resp.obj, "entry") {
				got = append(got, str(e, "resource", "resourceType")+"/"+str(e, "resource", "id"))
			}
			if path = link(resp.obj, "next"); path == "" {
				break
			}
			resp = c.do(http.MethodGet, path, nil)
			c.mustStatus(resp, http.StatusOK)
			c.checkBundle(resp, "searchset")
		}
		for _, want := range []string{p, o, pr} {
			if !slices.Contains(got, want) {
				c.failf("GET /%s/$everything: %s missing from %v", p, want, got)
			}
		}
		for _, not := range []string{other, o2} {
			if slices.Contains(got, not) {
				c.failf("GET /%s/$everything: holds %s of another patient", p, not)
			}
		}
		return fmt.Sprintf("%d resources: the patient, its Observation and the Practitioner it refers to", len(got))
	})
}

// securityChecks checks a claimed security service: without a token a
// FHIR request is refused with 401, a Bearer challenge and an
// OperationOutcome; with the run's token it is served.
func (r *runner) securityChecks(ctx context.Context) {
	for _, code := range r.cs.securityServices() {
		r.check(ctx, groupREST, "rest/security", "rest.security:"+code, func(c *ct) string {
			if r.opts.Token == "" {
				c.fatalf("the server claims security service %s: run the suite with a token (--token)", code)
			}
			c.noToken = true
			resp := c.do(http.MethodGet, "/Patient?_count=1", nil)
			c.expectError(resp, http.StatusUnauthorized)
			if !strings.HasPrefix(resp.header.Get("WWW-Authenticate"), "Bearer") {
				c.failf("%s: 401 without a WWW-Authenticate: Bearer challenge", resp.req)
			}
			if code == "SMART-on-FHIR" {
				// SMART App Launch: the endpoints in the oauth-uris extension
				// are those of /.well-known/smart-configuration
				uris := r.cs.oauthURIs()
				c.quiet = true // a JSON document, not a FHIR resource
				wk := c.do(http.MethodGet, "/.well-known/smart-configuration", nil)
				c.quiet = false
				var doc map[string]any
				if wk.status != http.StatusOK || json.Unmarshal(wk.body, &doc) != nil {
					c.failf("%s: %d, want 200 with a JSON object", wk.req, wk.status)
				} else if uris["authorize"] != fmt.Sprint(doc["authorization_endpoint"]) || uris["token"] != fmt.Sprint(doc["token_endpoint"]) {
					c.failf("rest.security oauth-uris %v differ from the smart-configuration's endpoints", uris)
				}
			}
			c.noToken = false
			c.expectStatus(c.do(http.MethodGet, "/Patient?_count=1", nil), http.StatusOK)
			return "no token: 401 with a Bearer challenge; with the token: 200"
		})
	}
}

// restChecks checks the REST rules of FHIR R4 (STANDARDS.md §4) on
// Patient resources.
func (r *runner) restChecks(ctx context.Context) {
	r.securityChecks(ctx)
	p := r.cs.resource("Patient")
	if p == nil || !p.has("create") || !p.has("read") || !p.has("search-type") {
		r.record(groupREST, Result{Check: "rest/subject", Claim: "rest", Status: Fail,
			Detail: "the REST rule checks run on Patient, which the server does not claim with create, read and search-type"})
		return
	}
	var id string
	r.check(ctx, groupREST, "rest/prefer", "rest:Prefer", func(c *ct) string {
		for _, pref := range []string{"return=representation", "return=minimal", "return=OperationOutcome"} {
			resp := c.do(http.MethodPost, "/Patient", mustJSON(r.patient("Prefer"+r.uniq)), "Prefer: "+pref)
			c.mustStatus(resp, http.StatusCreated)
			if resp.header.Get("Location") == "" || resp.header.Get("ETag") == "" {
				c.failf("%s (Prefer: %s): no Location or ETag", resp.req, pref)
			}
			if i := c.writtenID(resp, "Patient"); i != "" {
				r.noteCreated("Patient", i)
				id = i
			}
			switch t := str(resp.obj, "resourceType"); pref {
			case "return=representation":
				if t != "Patient" {
					c.failf("%s (Prefer: %s): body is %q, want the Patient", resp.req, pref, t)
				}
			case "return=minimal":
				if len(strings.TrimSpace(string(resp.body))) != 0 {
					c.failf("%s (Prefer: %s): body %s, want none", resp.req, pref, snippet(resp.body))
				}
			case "return=OperationOutcome":
				if t != "OperationOutcome" {
					c.failf("%s (Prefer: %s): body is %q, want an OperationOutcome", resp.req, pref, t)
				}
			}
		}
		return "representation: the resource; minimal: no body; OperationOutcome: an outcome"
	})
	if id == "" {
		return
	}
	errorCase := func(name, claim string, fn func(c *ct) string) { r.check(ctx, groupREST, name, claim, fn) }
	errorCase("rest/status-404-unknown-id", "rest:404", func(c *ct) string {
		c.expectError(c.do(http.MethodGet, "/Patient/conf-"+r.uniq+"-missing", nil), http.StatusNotFound)
		return "404 with an OperationOutcome"
	})
	errorCase("rest/status-404-unknown-type", "rest:404", func(c *ct) string {
		c.expectError(c.do(http.MethodGet, "/NotAResourceType/1", nil), http.StatusNotFound)
		c.expectError(c.do(http.MethodPost, "/NotAResourceType", []byte(`{"resourceType":"NotAResourceType"}`)), http.StatusNotFound)
		return "404 with an OperationOutcome"
	})
	errorCase("rest/status-400-malformed-json", "rest:400", func(c *ct) string {
		c.expectError(c.do(http.MethodPost, "/Patient", []byte(`{"resourceType":"Patient",`)), http.StatusBadRequest)
		c.expectError(c.do(http.MethodPost, "/Patient", []byte(`{"resourceType":"Patient","active":true,"active":false}`)), http.StatusBadRequest)
		return "truncated JSON and duplicate keys: 400"
	})
	errorCase("rest/status-400-update-id", "rest:400", func(c *ct) string {
		body := r.patient("NoID")
		c.expectError(c.do(http.MethodPut, "/Patient/"+id, mustJSON(body)), http.StatusBadRequest)
		// fhirgate's outside contract: a body that does not fit the URL
		// (type or id mismatch) is a 422 (R4's text says 400 for both)
		body["id"] = "conf-" + r.uniq + "-other"
		c.expectError(c.do(http.MethodPut, "/Patient/"+id, mustJSON(body)), http.StatusUnprocessableEntity)
		return "update without id: 400; with another id: 422"
	})
	errorCase("rest/status-405", "rest:405", func(c *ct) string {
		c.expectError(c.do(http.MethodPost, "/Patient/"+id, mustJSON(r.patient("X"))), http.StatusMethodNotAllowed)
		return "POST to an instance: 405"
	})
	errorCase("rest/status-406", "rest:406", func(c *ct) string {
		c.expectError(c.do(http.MethodGet, "/Patient/"+id, nil, "Accept: application/fhir+xml"), http.StatusNotAcceptable)
		c.expectError(c.do(http.MethodGet, "/Patient/"+id+"?_format=xml", nil), http.StatusNotAcceptable)
		return "Accept or _format XML: 406"
	})
	errorCase("rest/status-415", "rest:415", func(c *ct) string {
		c.expectError(c.do(http.MethodPost, "/Patient", []byte(`<Patient xmlns="http://hl7.org/fhir"/>`), "Content-Type: application/fhir+xml"), http.StatusUnsupportedMediaType)
		c.expectError(c.do(http.MethodPost, "/Patient", []byte(`{"resourceType":"Patient"}`), "Content-Type: text/plain"), http.StatusUnsupportedMediaType)
		return "XML and text/plain bodies: 415"
	})
	errorCase("rest/status-422", "rest:422", func(c *ct) string {
		bad := r.patient("Bad")
		bad["gender"] = "not-a-gender"
		resp := c.do(http.MethodPost, "/Patient", mustJSON(bad))
		c.expectError(resp, http.StatusUnprocessableEntity)
		if !strings.Contains(string(resp.body), "gender") {
			c.failf("%s: the OperationOutcome does not name Patient.gender: %s", resp.req, snippet(resp.body))
		}
		return "invalid resource: 422 naming the element"
	})
	errorCase("rest/status-type-mismatch", "rest:400", func(c *ct) string {
		obs := r.tagged(map[string]any{"resourceType": "Observation", "status": "final", "code": map[string]any{"text": "x"}})
		c.expectError(c.do(http.MethodPost, "/Patient", mustJSON(obs)), http.StatusBadRequest, http.StatusUnprocessableEntity)
		return "an Observation posted to /Patient is refused"
	})
	r.check(ctx, groupREST, "rest/accept", "rest:content negotiation", func(c *ct) string {
		for _, acc := range []string{"application/json", "application/fhir+json; fhirVersion=4.0", "*/*"} {
			resp := c.do(http.MethodGet, "/Patient/"+id, nil, "Accept: "+acc)
			if c.expectStatus(resp, http.StatusOK) && str(resp.obj, "resourceType") != "Patient" {
				c.failf("%s (Accept: %s): not the Patient", resp.req, acc)
			}
		}
		return "application/json, fhirVersion parameter and */* give FHIR JSON"
	})
	r.check(ctx, groupREST, "rest/unknown-parameter", "rest:search parameters", func(c *ct) string {
		resp := c.do(http.MethodGet, "/Patient?conformance-unknown=1&_id="+id, nil)
		if resp.status == http.StatusOK {
			c.checkBundle(resp, "searchset")
			if len(entriesByMode(resp.obj, "outcome")) == 0 {
				c.failf("%s: the unknown parameter was ignored without an outcome entry", resp.req)
			}
			if strings.Contains(link(resp.obj, "self"), "conformance-unknown") {
				c.failf("%s: the self link keeps the ignored parameter", resp.req)
			}
		} else {
			c.expectError(resp, http.StatusBadRequest)
		}
		c.expectError(c.do(http.MethodGet, "/Patient?conformance-unknown=1", nil, "Prefer: handling=strict"), http.StatusBadRequest)
		bad := c.do(http.MethodGet, "/Patient?birthdate=not-a-date", nil, "Prefer: handling=strict")
		c.expectError(bad, http.StatusBadRequest)
		return "ignored and reported when lenient; 400 with handling=strict"
	})
	r.pagingChecks(ctx)
}

// pagingChecks checks paging and the result parameters on five Patients
// of this run.
func (r *runner) pagingChecks(ctx context.Context) {
	code := fmt.Sprintf("pg-%s-%d", r.uniq, r.next())
	tag := "_tag=" + q(tagSystem+"|"+code)
	// created out of birth-date order, so that sorting is visible
	births := []string{"1990-03-03", "1990-01-01", "1990-05-05", "1990-02-02", "1990-04-04"}
	var ids []string
	byBirth := map[string]string{}
	ok := false
	r.check(ctx, groupREST, "rest/paging", "rest:paging", func(c *ct) string {
		for i, b := range births {
			p := r.patient(fmt.Sprintf("Page%s%c", r.uniq, 'a'+i), code)
			p["birthDate"] = b
			resp := c.do(http.MethodPost, "/Patient", mustJSON(p))
			c.mustStatus(resp, http.StatusCreated)
			id := str(resp.obj, "id")
			r.noteCreated("Patient", id)
			ids = append(ids, id)
			byBirth[b] = id
		}
		ok = true
		seen := map[string]bool{}
		path := "/Patient?" + tag + "&_count=2"
		pages := 0
		for ; path != "" && pages < 10; pages++ {
			resp := c.do(http.MethodGet, path, nil)
			c.mustStatus(resp, http.StatusOK)
			got := c.matches(resp)
			if len(got) > 2 {
				c.failf("%s: %d entries on a page of _count=2", resp.req, len(got))
			}
			if pages == 0 && (len(got) != 2 || link(resp.obj, "next") == "") {
				c.failf("%s: first page has %d entries and next link %q, want 2 and a next link", resp.req, len(got), link(resp.obj, "next"))
			}
			for _, id := range got {
				if seen[id] {
					c.failf("%s: %s repeated across pages", resp.req, id)
				}
				seen[id] = true
			}
			path = link(resp.obj, "next")
		}
		if len(seen) != len(ids) {
			c.failf("paging _count=2 over %d pages found %d of %d resources", pages, len(seen), len(ids))
		}
		return fmt.Sprintf("_count=2: %d pages, all %d resources once, last page without next", pages, len(ids))
	})
	if !ok {
		return
	}
	sorted := func(desc bool) []string {
		bs := slices.Clone(births)
		slices.Sort(bs)
		if desc {
			slices.Reverse(bs)
		}
		var out []string
		for _, b := range bs {
			out = append(out, byBirth[b])
		}
		return out
	}
	r.check(ctx, groupREST, "rest/_sort", "rest:_sort", func(c *ct) string {
		for _, s := range []struct {
			param string
			desc  bool
		}{{"birthdate", false}, {"-birthdate", true}, {"family", false}, {"-family", true}} {
			resp := c.do(http.MethodGet, "/Patient?"+tag+"&_sort="+s.param+"&_count=2", nil)
			c.mustStatus(resp, http.StatusOK)
			var got []string
			for page := 0; ; page++ {
				got = append(got, c.matches(resp)...)
				next := link(resp.obj, "next")
				if next == "" || page > 5 {
					break
				}
				resp = c.do(http.MethodGet, next, nil)
				c.mustStatus(resp, http.StatusOK)
			}
			want := sorted(s.desc)
			if strings.HasSuffix(s.param, "family") {
				want = slices.Clone(ids) // families are in creation order
				if s.desc {
					slices.Reverse(want)
				}
			}
			if !slices.Equal(got, want) {
				c.failf("GET /Patient?_sort=%s: order %v, want %v", s.param, got, want)
			}
		}
		return "birthdate and family, ascending and descending, across pages"
	})
	r.check(ctx, groupREST, "rest/_total", "rest:_total", func(c *ct) string {
		resp := c.do(http.MethodGet, "/Patient?"+tag+"&_total=accurate&_count=2", nil)
		c.mustStatus(resp, http.StatusOK)
		c.checkBundle(resp, "searchset")
		if n, _ := get(resp.obj, "total").(interface{ String() string }); n == nil || n.String() != "5" {
			c.failf("%s: total %v, want 5", resp.req, get(resp.obj, "total"))
		}
		return "_total=accurate: 5"
	})
	r.check(ctx, groupREST, "rest/_summary=count", "rest:_summary", func(c *ct) string {
		resp := c.do(http.MethodGet, "/Patient?"+tag+"&_summary=count", nil)
		c.mustStatus(resp, http.StatusOK)
		c.checkBundle(resp, "searchset")
		if n, _ := get(resp.obj, "total").(interface{ String() string }); n == nil || n.String() != "5" {
			c.failf("%s: total %v, want 5", resp.req, get(resp.obj, "total"))
		}
		if len(entriesByMode(resp.obj, "match")) != 0 {
			c.failf("%s: _summary=count returned entries", resp.req)
		}
		return "total 5, no entries"
	})
	subsetted := func(res map[string]any) bool {
		for _, t := range arr(res, "meta", "tag") {
			if str(t, "system") == subsettedSystem && str(t, "code") == subsettedCode {
				return true
			}
		}
		return false
	}
	r.check(ctx, groupREST, "rest/_elements", "rest:_elements", func(c *ct) string {
		c.lenientSubset = true
		resp := c.do(http.MethodGet, "/Patient?"+tag+"&_elements=birthDate", nil)
		c.mustStatus(resp, http.StatusOK)
		c.checkBundle(resp, "searchset")
		for _, e := range arr(resp.obj, "entry") {
			res := obj(e, "resource")
			if str(res, "birthDate") == "" || get(res, "name") != nil {
				c.failf("%s: %s/%s holds %v, want birthDate without name", resp.req, str(res, "resourceType"), str(res, "id"), keysOf(res))
			}
			if !subsetted(res) {
				c.failf("%s: %s/%s lacks the SUBSETTED tag", resp.req, str(res, "resourceType"), str(res, "id"))
			}
		}
		return "only birthDate (and id, meta), tagged SUBSETTED"
	})
	r.check(ctx, groupREST, "rest/_summary=true", "rest:_summary", func(c *ct) string {
		c.lenientSubset = true
		resp := c.do(http.MethodGet, "/Patient?"+tag+"&_summary=true", nil)
		c.mustStatus(resp, http.StatusOK)
		c.checkBundle(resp, "searchset")
		if n := len(entriesByMode(resp.obj, "match")); n != 5 {
			c.failf("%s: %d matches, want 5", resp.req, n)
		}
		for _, e := range arr(resp.obj, "entry") {
			if res := obj(e, "resource"); !subsetted(res) {
				c.failf("%s: %s/%s lacks the SUBSETTED tag", resp.req, str(res, "resourceType"), str(res, "id"))
			}
		}
		return "summary resources tagged SUBSETTED"
	})
}

func keysOf(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// subscriptionStatusOp checks Subscription/$status on an R4 backport
// Subscription to one of the topics the server lists: a Bundle about it,
// and 404 for an unknown Subscription.
func (r *runner) subscriptionStatusOp(ctx context.Context) {
	r.check(ctx, "Subscription", "Subscription/$status", "Subscription.operation:status", func(c *ct) string {
		const backport = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
		sub := r.tagged(map[string]any{"resourceType": "Subscription", "status": "requested", "reason": "conformance",
			"meta":      map[string]any{"profile": []any{backport + "backport-subscription"}},
			"criteria":  "https://fhirgate.org/fhir/SubscriptionTopic/second-opinion-request",
			"_criteria": map[string]any{"extension": []any{map[string]any{"url": backport + "backport-filter-criteria", "valueString": "Task?owner=Organization/conf-" + r.uniq}}},
			"channel": map[string]any{"type": "rest-hook", "endpoint": "https://127.0.0.1:9/conformance-hook", "payload": "application/fhir+json",
				"_payload": map[string]any{"extension": []any{map[string]any{"url": backport + "backport-payload-content", "valueCode": "id-only"}}}}})
		cr := c.do(http.MethodPost, "/Subscription", mustJSON(sub))
		c.mustStatus(cr, http.StatusCreated)
		id := str(cr.obj, "id")
		r.noteCreated("Subscription", id)
		resp := c.do(http.MethodGet, "/Subscription/"+id+"/$status", nil)
		c.mustStatus(resp, http.StatusOK)
		if str(resp.obj, "resourceType") != "Bundle" {
			c.failf("GET /Subscription/%s/$status: not a Bundle", id)
		}
		c.expectError(c.do(http.MethodGet, "/Subscription/conf-"+r.uniq+"-nobody/$status", nil), http.StatusNotFound)
		return "a Bundle about the Subscription; 404 for an unknown one"
	})
}
