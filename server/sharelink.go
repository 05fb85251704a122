package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/release"
	"github.com/fhirgate/fhirgate/shlink"
	"github.com/gin-gonic/gin"
)

// InteractionShareLink names the SMART Health Link routes in the route
// table: they are reached without a token (the link is the credential).
const InteractionShareLink = "smart-health-link"

// ShareLinkPrefix is where manifests and files of SMART Health Links are
// served.
const ShareLinkPrefix = "/shl"

// defaultShareLinkLife is a link's lifetime when the patient gives none.
const defaultShareLinkLife = 30 * 24 * time.Hour

// RegisterShareLinks serves SMART Health Links: Patient/$share-link makes
// one, Patient/$share-links lists them, Patient/$share-link-revoke ends
// one; POST /shl/{token} answers a manifest and GET /shl/{token}/file a
// file, without a token of ours. Call before serving.
func (s *Server) RegisterShareLinks(svc *shlink.Service) {
	s.shl = svc
	s.RegisterOperation(Operation{
		Name: "share-link", Instance: true, Types: []string{"Patient"},
		Def: OpDef{ID: "Patient-share-link", Title: "Hand part of the record to someone with no account (SMART Health Link)",
			Description: "The patient makes a SMART Health Link (HL7 SMART Health Cards and Links IG, STU1) to resources of its own record, typically a second-opinion package or an opinion document: the answer carries the shlink:/ URI (manifest URL, 256-bit key, expiry, flag P when a passcode is set). " +
				"Whoever holds the link POSTs its manifest URL with a recipient and the passcode and gets each resource as a compact JWE (dir, A256GCM, zip DEF). What leaves is decided at each access: the resources chosen, as they are then and as the patient's own release rule gives them then (flag L: the content can change). Every access, and every refused one, is in the patient's audit trail. Wrong passcodes are counted for the link's lifetime; after the limit it is disabled. Only the patient makes links of its record.",
			Parameters: []OpParam{
				param("resource", "in", 1, "*", "Reference", "What to share: resources of the patient's own record (a package, an opinion document, a result…)."),
				param("expires", "in", 0, "1", "dateTime", "When the link stops working (default 30 days, at most a year)."),
				param("passcode", "in", 0, "1", "string", "A passcode the recipient must give (at least 4 characters); told to the recipient apart from the link."),
				param("label", "in", 0, "1", "string", "A short description shown to the recipient (at most 80 characters)."),
				param("link", "out", 1, "1", "string", "The shlink:/ URI, to hand over (as text or a QR code)."),
				param("id", "out", 1, "1", "string", "The link's id, for listing and revoking."),
				param("url", "out", 1, "1", "url", "The manifest URL."),
				param("expires", "out", 1, "1", "instant", ""),
			}},
		Handler: s.createShareLink,
	})
	s.RegisterOperation(Operation{
		Name: "share-links", Instance: true, Types: []string{"Patient"}, Idempotent: true,
		Def: OpDef{ID: "Patient-share-links", Title: "The patient's SMART Health Links",
			Description: "Every SMART Health Link the patient made: id, label, status (active, expired, revoked, disabled after too many wrong passcodes), created, expires, whether it needs a passcode, wrong passcodes so far, manifests given, and what it shares.",
			Parameters:  []OpParam{param("link", "out", 0, "*", "", "One link (parts id, label, status, created, expires, passcode, failures, accesses, resource).")}},
		Handler: s.listShareLinks,
	})
	s.RegisterOperation(Operation{
		Name: "share-link-revoke", Instance: true, Types: []string{"Patient"},
		Def: OpDef{ID: "Patient-share-link-revoke", Title: "End a SMART Health Link",
			Description: "The link stops working at once: its manifest and files answer 404.",
			Parameters:  []OpParam{param("id", "in", 1, "1", "string", "The link's id."), param("status", "out", 1, "1", "code", "revoked")}},
		Handler: s.revokeShareLink,
	})
	for _, r := range []Route{
		{Method: http.MethodPost, Path: ShareLinkPrefix + "/:token", Name: InteractionShareLink, Public: true, handler: s.shareLinkManifest},
		{Method: http.MethodGet, Path: ShareLinkPrefix + "/:token/file", Name: InteractionShareLink, Public: true, handler: s.shareLinkFile},
	} {
		s.routes = append(s.routes, r)
		s.engine.Handle(r.Method, r.Path, r.handler)
		s.publicPaths[r.Path] = true
	}
}

// shareLinkPatient checks that the caller may manage the patient's links:
// the patient itself (or anyone on a gateway without authentication).
func (s *Server) shareLinkPatient(c *gin.Context, id, operation string) error {
	if _, err := s.authorize(c, "operation", "second-opinion", "Patient"); err != nil {
		return err
	}
	a := accessOf(c)
	a.operation, a.resource = operation, "Patient/"+id
	a.patients["Patient/"+id] = true
	if s.shl == nil {
		return fhir.Errorf(http.StatusNotFound, "not-supported", nil, "SMART Health Links are not served")
	}
	if err := s.guard(c).PatientSelf(id, "makes, lists and ends the SMART Health Links of its record"); err != nil {
		a.refused = "SMART Health Links are the patient's own"
		return err
	}
	return nil
}

// createShareLink answers POST Patient/[id]/$share-link.
func (s *Server) createShareLink(c *gin.Context, _, id string) {
	if err := s.shareLinkPatient(c, id, "share-link"); err != nil {
		s.fail(c, err)
		return
	}
	params, err := s.readParameters(c, "$share-link takes a Parameters resource")
	if err != nil {
		s.fail(c, err)
		return
	}
	ctx := c.Request.Context()
	now := s.shl.Now()
	link := shlink.Link{Patient: "Patient/" + id, Expires: now.Add(defaultShareLinkLife)}
	passcode := ""
	for _, p := range items(params.Root().Get("parameter")) {
		name := p.Get("name").String()
		switch name {
		case "resource":
			ref := p.Get("valueReference").Get("reference").String()
			typ, rid, ok := strings.Cut(ref, "/")
			if !ok || !fhir.IsResourceType(typ) || !fhir.ValidID(rid) {
				s.fail(c, badParam(name, "resource must be a valueReference Type/id"))
				return
			}
			// what the patient's own release gives it now, and of its own
			// record: the link never gives more than the patient may read
			r, err := s.guard(c).Read(ctx, typ, rid)
			if err != nil {
				s.failRead(c, r, err, ref)
				return
			}
			if !slices.Contains(s.decider.PatientsOf(r), id) {
				s.fail(c, fhir.Errorf(http.StatusUnprocessableEntity, "business-rule", []string{"Parameters.parameter[resource]"}, "%s is not of this patient's record", ref))
				return
			}
			v := typ + "/" + rid
			if !slices.Contains(link.Resources, v) {
				link.Resources = append(link.Resources, v)
			}
		case "expires":
			v := p.Get("valueDateTime").String() + p.Get("valueInstant").String()
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				if t, err = time.Parse("2006-01-02", v); err == nil {
					t = t.Add(24 * time.Hour)
				}
			}
			if err != nil {
				s.fail(c, badParam(name, "expires must be a valueDateTime (YYYY-MM-DD or a full instant)"))
				return
			}
			if !t.After(now) || t.Sub(now) > s.shl.MaxLifetime() {
				s.fail(c, badParam(name, "expires must be in the future and within %d days", int(s.shl.MaxLifetime().Hours()/24)))
				return
			}
			link.Expires = t.UTC()
		case "passcode":
			if passcode = p.Get("valueString").String(); len([]rune(passcode)) < 4 || len(passcode) > 128 {
				s.fail(c, badParam(name, "a passcode has 4 to 128 characters"))
				return
			}
		case "label":
			if link.Label = p.Get("valueString").String(); len([]rune(link.Label)) > 80 {
				s.fail(c, badParam(name, "a label has at most 80 characters"))
				return
			}
		default:
			s.fail(c, badParam(name, "$share-link has no parameter %q", name))
			return
		}
	}
	if len(link.Resources) == 0 {
		s.fail(c, badParam("resource", "at least one resource is shared"))
		return
	}
	token, made, err := s.shl.Create(ctx, link, passcode)
	if err != nil {
		s.fail(c, err)
		return
	}
	manifest := s.baseURL(c.Request) + ShareLinkPrefix + "/" + token
	accessOf(c).note = fmt.Sprintf("SMART Health Link %s made, to %s, until %s", shortID(made.ID), strings.Join(made.Resources, ", "), fhir.FormatInstant(made.Expires))
	b, _ := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": []map[string]any{
		{"name": "link", "valueString": shlink.Payload(manifest, made)},
		{"name": "id", "valueString": made.ID},
		{"name": "url", "valueUrl": manifest},
		{"name": "expires", "valueInstant": fhir.FormatInstant(made.Expires)},
	}})
	s.writeJSON(c, http.StatusOK, b)
}

func shortID(id string) string { return id[:min(12, len(id))] }

// listShareLinks answers GET Patient/[id]/$share-links.
func (s *Server) listShareLinks(c *gin.Context, _, id string) {
	if err := s.shareLinkPatient(c, id, "share-links"); err != nil {
		s.fail(c, err)
		return
	}
	links, err := s.shl.List(c.Request.Context(), "Patient/"+id)
	if err != nil {
		s.fail(c, err)
		return
	}
	now := s.shl.Now()
	var prm []map[string]any
	for _, l := range links {
		parts := []map[string]any{
			{"name": "id", "valueString": l.ID},
			{"name": "status", "valueCode": l.Status(now, s.shl.MaxFailures())},
			{"name": "created", "valueInstant": fhir.FormatInstant(l.Created)},
			{"name": "expires", "valueInstant": fhir.FormatInstant(l.Expires)},
			{"name": "passcode", "valueBoolean": l.Passcode},
			{"name": "failures", "valueInteger": l.Failures},
			{"name": "accesses", "valueInteger": l.Accesses},
		}
		if l.Label != "" {
			parts = append(parts, map[string]any{"name": "label", "valueString": l.Label})
		}
		for _, r := range l.Resources {
			parts = append(parts, map[string]any{"name": "resource", "valueReference": map[string]string{"reference": r}})
		}
		prm = append(prm, map[string]any{"name": "link", "part": parts})
	}
	b, _ := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": prm})
	s.writeJSON(c, http.StatusOK, b)
}

// revokeShareLink answers POST Patient/[id]/$share-link-revoke.
func (s *Server) revokeShareLink(c *gin.Context, _, id string) {
	if err := s.shareLinkPatient(c, id, "share-link-revoke"); err != nil {
		s.fail(c, err)
		return
	}
	params, err := s.readParameters(c, "$share-link-revoke takes a Parameters resource")
	if err != nil {
		s.fail(c, err)
		return
	}
	var linkID string
	for _, p := range items(params.Root().Get("parameter")) {
		if p.Get("name").String() == "id" {
			linkID = p.Get("valueString").String()
		}
	}
	if linkID == "" {
		s.fail(c, badParam("id", "the id of the link to end is required"))
		return
	}
	if err := s.shl.Revoke(c.Request.Context(), "Patient/"+id, linkID); err != nil {
		if errors.Is(err, shlink.ErrNotFound) {
			err = fhir.Errorf(http.StatusNotFound, "not-found", []string{"Parameters.parameter[id]"}, "this patient has no SMART Health Link %s", linkID)
		}
		s.fail(c, err)
		return
	}
	accessOf(c).note = "SMART Health Link " + shortID(linkID) + " revoked"
	b, _ := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": []map[string]any{
		{"name": "id", "valueString": linkID}, {"name": "status", "valueCode": "revoked"}}})
	s.writeJSON(c, http.StatusOK, b)
}

// linkGuard is the release rule of the patient who made a link: what
// leaves through it is what that patient may read now.
func (s *Server) linkGuard(c *gin.Context, l *shlink.Link) *release.Guard {
	p := &auth.Principal{Kind: auth.KindPatient, Patient: l.Patient, FHIRUser: l.Patient, Scopes: auth.ParseScopes("patient/*.rs")}
	return s.decider.Guard(p, accessOf(c))
}

// cleanRecipient makes the recipient a request names safe for the audit
// trail: printable, at most 120 characters.
func cleanRecipient(r string) string {
	r = strings.Map(func(x rune) rune {
		if unicode.IsPrint(x) {
			return x
		}
		return -1
	}, r)
	if rs := []rune(r); len(rs) > 120 {
		r = string(rs[:120])
	}
	return strings.TrimSpace(r)
}

// shareLinkRefused records a refused use of a link in its patient's audit
// trail (when the token names one) and answers.
func (s *Server) shareLinkRefused(c *gin.Context, token, why string, err error) {
	a := accessOf(c)
	a.refused = why
	if l := s.shl.Peek(c.Request.Context(), token); l != nil {
		a.patients[l.Patient] = true
		a.refused = why + " (SMART Health Link " + shortID(l.ID) + ")"
	}
	s.fail(c, err)
}

// shareLinkManifest answers POST /shl/{token}: the SMART Health Link
// manifest request.
func (s *Server) shareLinkManifest(c *gin.Context) {
	a := accessOf(c)
	a.interaction, a.operation, a.resourceType = "operation", "shl-manifest", "Bundle"
	token := c.Param("token")
	var req struct {
		Recipient         string  `json:"recipient"`
		Passcode          *string `json:"passcode"`
		EmbeddedLengthMax int     `json:"embeddedLengthMax"`
	}
	body, err := s.readBody(c)
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil || cleanRecipient(req.Recipient) == "" || req.EmbeddedLengthMax < 0 {
		s.shareLinkRefused(c, token, "malformed manifest request", fhir.Errorf(http.StatusBadRequest, "invalid", nil, "a manifest request is a JSON object with recipient (required), passcode and embeddedLengthMax"))
		return
	}
	recipient := cleanRecipient(req.Recipient)
	ctx := c.Request.Context()
	passcode := ""
	if req.Passcode != nil {
		passcode = *req.Passcode
	}
	l, err := s.shl.Open(ctx, token, passcode)
	var pe *shlink.PasscodeError
	switch {
	case errors.As(err, &pe):
		a.patients[l.Patient] = true
		a.refused = fmt.Sprintf("wrong passcode for SMART Health Link %s from recipient %q (%d attempts remain)", shortID(l.ID), recipient, pe.Remaining)
		c.Header("Content-Type", "application/json")
		c.Status(http.StatusUnauthorized)
		_, _ = c.Writer.Write([]byte(`{"remainingAttempts":` + strconv.Itoa(pe.Remaining) + `}`))
		return
	case errors.Is(err, shlink.ErrNotFound):
		s.shareLinkRefused(c, token, fmt.Sprintf("no active SMART Health Link for recipient %q", recipient), fhir.Errorf(http.StatusNotFound, "not-found", nil, "this SMART Health Link is unknown, expired, revoked or disabled"))
		return
	case err != nil:
		s.fail(c, err)
		return
	}
	a.patients[l.Patient] = true
	a.resource = l.Patient
	files, err := shlink.Released(ctx, s.linkGuard(c, l), l)
	if err != nil {
		s.fail(c, err)
		return
	}
	base := s.baseURL(c.Request) + ShareLinkPrefix + "/" + token
	m, err := s.shl.Manifest(ctx, l, files, req.EmbeddedLengthMax, func(ticket string, _ int) string { return base + "/file?ticket=" + ticket })
	if err != nil {
		s.fail(c, err)
		return
	}
	var given []string
	for i, f := range files {
		if f != nil {
			given = append(given, l.Resources[i])
		}
	}
	a.note = fmt.Sprintf("SMART Health Link %s opened for recipient %q: %s", shortID(l.ID), recipient, cmpOr(strings.Join(given, ", "), "nothing the patient may still share"))
	c.Header("Cache-Control", "no-store")
	c.Header("Content-Type", "application/json")
	c.Status(http.StatusOK)
	_, _ = c.Writer.Write(m)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// shareLinkFile answers GET /shl/{token}/file?ticket=…: a file's
// single-use location.
func (s *Server) shareLinkFile(c *gin.Context) {
	a := accessOf(c)
	a.interaction, a.operation, a.resourceType = "operation", "shl-file", "Bundle"
	token := c.Param("token")
	ctx := c.Request.Context()
	l, n, err := s.shl.Redeem(ctx, token, c.Query("ticket"))
	if err != nil {
		if errors.Is(err, shlink.ErrNotFound) {
			s.shareLinkRefused(c, token, "a file location that is unknown, used or expired", fhir.Errorf(http.StatusNotFound, "not-found", nil, "this file location is unknown, used or expired: ask for the manifest again"))
			return
		}
		s.fail(c, err)
		return
	}
	a.patients[l.Patient] = true
	a.resource = l.Patient
	f, err := shlink.File(ctx, s.linkGuard(c, l), l, n)
	if err != nil {
		s.fail(c, err)
		return
	}
	if f == nil {
		a.refused = "a file the patient may no longer share (SMART Health Link " + shortID(l.ID) + ")"
		s.fail(c, fhir.Errorf(http.StatusNotFound, "not-found", nil, "this file is no longer shared"))
		return
	}
	jwe, err := shlink.Encrypt(l.Key, f.Raw, shlink.ContentType)
	if err != nil {
		s.fail(c, err)
		return
	}
	a.note = fmt.Sprintf("SMART Health Link %s file %s fetched", shortID(l.ID), l.Resources[n])
	c.Header("Cache-Control", "no-store")
	c.Header("Content-Type", "application/jose")
	c.Status(http.StatusOK)
	_, _ = c.Writer.Write([]byte(jwe))
}
