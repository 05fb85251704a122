package server

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/gin-gonic/gin"
)

// Patient/[id]/$access-log: who accessed the patient's record, in plain
// terms: for each event about the patient, when, who (and for which
// organisation, through which client), what they did to what, under which
// Consents, and whether it was allowed, refused or failed. Newest first.
// The patient asks for its own; a system client needs an explicit
// AuditEvent scope, as for the trail itself.

const (
	defaultAccessLog = 100
	maxAccessLog     = 1000
)

// accessLogDef describes $access-log for its OperationDefinition.
var accessLogDef = OpDef{ID: "Patient-access-log", Title: "Who accessed my record",
	Description: "A plain summary of the audit trail of one patient, newest first: for every access, refusal and write about the patient, when it happened, who asked (and for which organisation, through which client), what was done to which resources, under which Consents, and whether it was allowed, refused or failed. For the patient itself, and for system clients with an explicit AuditEvent scope.",
	Parameters: []OpParam{
		param("start", "in", 0, "1", "dateTime", "Only events recorded at or after this time."),
		param("end", "in", 0, "1", "dateTime", "Only events recorded before this time."),
		param("_count", "in", 0, "1", "integer", "Events per page (default 100, at most 1000)."),
		param("patient", "out", 1, "1", "Reference", "The patient.", "Patient"),
		{Name: "access", Use: "out", Min: 0, Max: "*", Documentation: "One event.", Parts: []OpParam{
			param("when", "out", 1, "1", "instant", "When it happened."),
			param("text", "out", 1, "1", "string", "The event in one sentence."),
			param("who", "out", 0, "1", "Reference", "The user or organisation that asked."),
			param("organization", "out", 0, "1", "Reference", "The organisation it acted for.", "Organization"),
			param("client", "out", 0, "1", "string", "The application (OAuth client) it used."),
			param("action", "out", 1, "1", "code", "read, vread, search-type, create, update, patch, delete, history-*, transaction, batch or the $operation."),
			param("resource", "out", 0, "*", "Reference", "What was read or written."),
			param("search", "out", 0, "1", "string", "The search, for searches."),
			param("consent", "out", 0, "*", "Reference", "The Consents that allowed it.", "Consent"),
			param("outcome", "out", 1, "1", "code", "allowed, refused or failed."),
			param("reason", "out", 0, "1", "string", "Why it was refused or failed, or what was noted."),
			param("origin", "out", 0, "1", "string", "For imports: where the data came from."),
			param("event", "out", 1, "1", "Reference", "The AuditEvent.", "AuditEvent"),
		}},
		param("next", "out", 0, "1", "uri", "The next page."),
	}}

func (s *Server) registerAccessLog() {
	if s.cfg.Auditor == nil {
		return
	}
	s.RegisterOperation(Operation{
		Name: "access-log", Def: accessLogDef,
		Instance: true, Types: []string{"Patient"}, Idempotent: true,
		Handler: s.patientAccessLog,
	})
}

// param is a Parameters.parameter as written here.
type accessParam struct {
	Name           string        `json:"name"`
	ValueString    string        `json:"valueString,omitempty"`
	ValueCode      string        `json:"valueCode,omitempty"`
	ValueInstant   string        `json:"valueInstant,omitempty"`
	ValueURI       string        `json:"valueUri,omitempty"`
	ValueReference *reference    `json:"valueReference,omitempty"`
	Part           []accessParam `json:"part,omitempty"`
}

type reference struct {
	Reference string `json:"reference"`
}

func (s *Server) patientAccessLog(c *gin.Context, _, id string) {
	if _, err := s.authorize(c, "search-type", "", "AuditEvent"); err != nil {
		s.fail(c, err)
		return
	}
	a := accessOf(c)
	a.interaction, a.operation, a.resourceType, a.resource = "operation", "access-log", "Patient", "Patient/"+id
	pat := "Patient/" + id
	a.patients[pat] = true
	if p := principal(c); p != nil && p.Kind != auth.KindAnonymous {
		filter, ok := s.guard(c).AuditFilter()
		switch {
		case p.Kind == auth.KindPatient && p.Patient == pat:
		case p.Kind == auth.KindSystem && ok && filter == nil:
		default:
			a.refused = "another's access log"
			s.fail(c, fhir.Errorf(http.StatusForbidden, "forbidden", nil, "the access log of %s is for the patient itself (or a system client with an AuditEvent scope)", pat))
			return
		}
	}
	q := c.Request.URL.Query()
	aq := storage.AuditQuery{Refs: []storage.AuditRefFilter{{Refs: []string{pat}, Roles: storage.AuditPatientRole}}, Desc: true, Count: defaultAccessLog}
	var err error
	for _, b := range []struct {
		name string
		at   *time.Time
	}{{"start", &aq.From}, {"end", &aq.To}} {
		if v := q.Get(b.name); v != "" {
			if *b.at, err = parseInstant(b.name, v); err != nil {
				s.fail(c, err)
				return
			}
		}
	}
	if v := q.Get("_count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			s.fail(c, fhir.Errorf(http.StatusBadRequest, "value", []string{"_count"}, "_count must be a positive integer"))
			return
		}
		aq.Count = min(n, maxAccessLog)
	}
	if v := q.Get(cursorParam); v != "" {
		if err = parseAuditCursor(v, &aq); err != nil {
			s.fail(c, err)
			return
		}
	}
	page, aq, err := s.auditPage(c, aq)
	if err != nil {
		s.fail(c, err)
		return
	}
	out := []accessParam{{Name: "patient", ValueReference: &reference{pat}}}
	for _, rec := range page.Records {
		ev, err := audit.EventOf(rec)
		if err != nil {
			s.fail(c, err)
			return
		}
		out = append(out, accessEntry(rec, ev))
	}
	if page.Next != 0 {
		nq := url.Values{}
		for k, v := range q {
			nq[k] = v
		}
		nq.Set(cursorParam, auditCursor(page.Next, aq))
		out = append(out, accessParam{Name: "next", ValueURI: s.baseURL(c.Request) + c.Request.URL.Path + encodeQuery(nq)})
	}
	body, err := json.Marshal(struct {
		ResourceType string        `json:"resourceType"`
		Parameter    []accessParam `json:"parameter"`
	}{"Parameters", out})
	if err != nil {
		s.fail(c, err)
		return
	}
	s.writeJSON(c, http.StatusOK, body)
}

// accessEntry summarises one event.
func accessEntry(rec *storage.AuditRecord, ev *audit.Event) accessParam {
	p := accessParam{Name: "access"}
	add := func(q accessParam) { p.Part = append(p.Part, q) }
	ref := func(name, r string) {
		if r != "" {
			add(accessParam{Name: name, ValueReference: &reference{r}})
		}
	}
	when := fhir.FormatInstant(rec.Recorded)
	add(accessParam{Name: "when", ValueInstant: when})

	who := ev.Who
	org := ""
	switch {
	case strings.HasPrefix(ev.OnBehalfOf, "Organization/"):
		org = ev.OnBehalfOf
	case strings.HasPrefix(who, "Organization/"):
		org = who
	}
	action := ev.Interaction
	if action == "operation" && ev.Operation != "" {
		action = "$" + strings.TrimPrefix(ev.Operation, "$")
	}
	var outcome string
	switch {
	case ev.Outcome == audit.Success:
		outcome = "allowed"
	case ev.Outcome == audit.MinorFailure:
		outcome = "refused"
	default:
		outcome = "failed"
	}
	resources := ev.Resources
	if ev.Resource != "" {
		resources = append([]string{ev.Resource}, resources...)
	}
	search := ""
	if ev.Query != "" || strings.HasPrefix(ev.Interaction, "search") {
		search = ev.ResourceType + "?" + ev.Query
	}

	// the sentence
	var t strings.Builder
	t.WriteString(rec.Recorded.UTC().Format("2006-01-02 15:04:05 UTC") + ": ")
	switch {
	case who != "" && org != "" && org != who:
		t.WriteString(who + " of " + org)
	case who != "":
		t.WriteString(who)
	case ev.ClientID != "":
		t.WriteString("the application " + ev.ClientID)
	case ev.Origin != "":
		t.WriteString(ev.Origin)
	default:
		t.WriteString("someone not signed in")
	}
	if ev.ClientID != "" && who != "" {
		t.WriteString(" (through " + ev.ClientID + ")")
	}
	if ev.OnBehalfOf != "" && strings.HasPrefix(ev.OnBehalfOf, "Patient/") {
		t.WriteString(" on behalf of " + ev.OnBehalfOf)
	}
	switch outcome {
	case "refused":
		t.WriteString(" was refused " + action)
	case "failed":
		t.WriteString(" failed " + action)
	default:
		t.WriteString(" " + action)
	}
	switch {
	case len(resources) == 1:
		t.WriteString(" of " + resources[0])
	case len(resources) > 1:
		t.WriteString(" of " + strconv.Itoa(len(resources)) + " resources")
	case search != "":
		t.WriteString(" (search " + search + ")")
	}
	if ev.Origin != "" && who != "" {
		t.WriteString(", data from " + ev.Origin)
	}
	if len(ev.Consents) > 0 {
		t.WriteString(", under " + strings.Join(ev.Consents, ", "))
	}
	if ev.OutcomeDesc != "" && outcome != "allowed" {
		t.WriteString(": " + ev.OutcomeDesc)
	}
	add(accessParam{Name: "text", ValueString: t.String()})
	ref("who", who)
	ref("organization", org)
	if ev.ClientID != "" {
		add(accessParam{Name: "client", ValueString: ev.ClientID})
	}
	add(accessParam{Name: "action", ValueCode: action})
	for _, r := range resources {
		ref("resource", r)
	}
	if search != "" {
		add(accessParam{Name: "search", ValueString: search})
	}
	for _, cn := range ev.Consents {
		ref("consent", cn)
	}
	add(accessParam{Name: "outcome", ValueCode: outcome})
	if ev.OutcomeDesc != "" && outcome != "allowed" {
		add(accessParam{Name: "reason", ValueString: ev.OutcomeDesc})
	}
	if ev.Origin != "" {
		add(accessParam{Name: "origin", ValueString: ev.Origin})
	}
	ref("event", "AuditEvent/"+audit.ID(rec.Seq))
	return p
}
