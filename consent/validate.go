package consent

import (
	"fmt"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// ValidateOptions qualify Validate.
type ValidateOptions struct {
	// Patient, when set, is the patient ("Patient/id") the Consent must be
	// about: a patient may only record Consents for themselves.
	Patient string
}

// recipientTypes are the resource types a sharing Consent may name as the
// recipient of its root permit.
var recipientTypes = []string{"Organization", "PractitionerRole", "Practitioner"}

var statusCodes = []string{"draft", "proposed", "active", "rejected", "inactive", "entered-in-error"}

var dataMeanings = []string{"instance", "related", "dependents", "authoredby"}

// Validate checks a Consent the gateway is asked to accept for sharing
// (on top of structural validation): scope patient-privacy, a patient, a
// policy or policyRule (ppc-1), a root permit provision naming at least
// one recipient (Organization, PractitionerRole or Practitioner) as actor,
// well-formed periods, and nested provisions the decision point can
// evaluate. It returns every problem, each with its FHIRPath; none means
// the Consent is acceptable. Messages never quote the Consent's values.
func Validate(res *fhir.Resource, opts ValidateOptions) []fhir.Issue {
	c := &collector{}
	add := c.add
	if res.Type != "Consent" {
		add("invalid", res.Type, "a Consent is required, not a %s", res.Type)
		return c.issues
	}
	root := res.Root()

	switch st := root.Get("status"); {
	case st == nil:
		add("required", "Consent.status", "status is required")
	case st.Kind != fjson.String || !slices.Contains(statusCodes, st.Str):
		add("value", "Consent.status", "status must be one of %s", strings.Join(statusCodes, ", "))
	}
	if !hasCoding(root.Get("scope"), ScopeSystem, "patient-privacy") {
		add("value", "Consent.scope", "scope must be %s#patient-privacy for a Consent that shares data", ScopeSystem)
	}
	if len(items(root.Get("category"))) == 0 {
		add("required", "Consent.category", "at least one category is required")
	}
	patRef := root.Get("patient").Get("reference")
	switch ref, ok := localRef(patRef.String()); {
	case patRef == nil:
		add("required", "Consent.patient", "the patient is required")
	case !ok || !strings.HasPrefix(ref, "Patient/"):
		add("value", "Consent.patient.reference", "patient must be a relative reference Patient/<id>")
	case opts.Patient != "" && ref != opts.Patient:
		add("forbidden", "Consent.patient.reference", "a Consent can only be recorded for the patient it is about")
	}
	if root.Get("policy") == nil && root.Get("policyRule") == nil {
		add("invariant", "Consent", "ppc-1: either a policy or a policyRule is required")
	}
	if v := root.Get("dateTime"); v != nil {
		if _, err := parseDateTime(v.String()); err != nil {
			add("value", "Consent.dateTime", "dateTime is not a valid FHIR dateTime")
		}
	}

	prov := root.Get("provision")
	if prov == nil {
		add("required", "Consent.provision", "a provision is required: a permit naming the recipient as actor")
		return c.issues
	}
	if prov.Kind != fjson.Object {
		add("structure", "Consent.provision", "provision must be an object")
		return c.issues
	}
	if t := prov.Get("type").String(); t != "permit" {
		add("value", "Consent.provision.type", "the root provision must be a permit")
	}
	recipients := 0
	for i, a := range items(prov.Get("actor")) {
		if t, _, _ := strings.Cut(a.Get("reference").Get("reference").String(), "/"); slices.Contains(recipientTypes, t) {
			recipients++
		} else if a.Get("reference") != nil {
			add("value", fmt.Sprintf("Consent.provision.actor[%d].reference", i), "the recipient must be an Organization, PractitionerRole or Practitioner")
		}
	}
	if recipients == 0 && len(items(prov.Get("actor"))) == 0 {
		add("required", "Consent.provision.actor", "the root provision must name the recipient as actor")
	}
	count := 0
	c.provision(prov, "Consent.provision", 0, &count)
	return c.issues
}

// collector gathers issues.
type collector struct {
	issues []fhir.Issue
}

func (c *collector) add(code, path, format string, args ...any) {
	c.issues = append(c.issues, fhir.NewIssue(code, fmt.Sprintf(format, args...), path))
}

func (c *collector) warn(code, path, text string) {
	is := fhir.NewIssue(code, text, path)
	is.Severity = fhir.SeverityWarning
	c.issues = append(c.issues, is)
}

func (c *collector) provision(v *fjson.Value, path string, depth int, count *int) {
	add := c.add
	*count++
	if depth >= maxDepth {
		add("too-costly", path, "provisions may be nested at most %d deep", maxDepth)
		return
	}
	if *count > maxProvisions {
		if *count == maxProvisions+1 {
			add("too-costly", path, "a Consent may have at most %d provisions", maxProvisions)
		}
		return
	}
	if depth > 0 {
		switch t := v.Get("type"); {
		case t == nil:
			add("required", path+".type", "a nested provision needs a type (permit or deny)")
		case t.String() != "permit" && t.String() != "deny":
			add("value", path+".type", "type must be permit or deny")
		}
	}
	c.period(v.Get("period"), path+".period")
	c.period(v.Get("dataPeriod"), path+".dataPeriod")
	for i, a := range items(v.Get("actor")) {
		p := fmt.Sprintf("%s.actor[%d]", path, i)
		if len(codingsOf(a.Get("role"))) == 0 {
			add("required", p+".role", "an actor needs a coded role (e.g. v3-ParticipationType IRCP)")
		}
		ref := a.Get("reference").Get("reference")
		if ref == nil {
			add("required", p+".reference", "an actor needs a reference")
		} else if _, ok := localRef(ref.String()); !ok {
			add("value", p+".reference.reference", "an actor must be a relative reference Type/id to a resource on this server")
		}
	}
	for i, a := range items(v.Get("action")) {
		if len(codingsOf(a)) == 0 {
			add("required", fmt.Sprintf("%s.action[%d]", path, i), "an action needs a coding (consentaction)")
		}
	}
	for i, cd := range items(v.Get("purpose")) {
		if cd.Get("system").String() == "" || cd.Get("code").String() == "" {
			add("required", fmt.Sprintf("%s.purpose[%d]", path, i), "a purpose needs a system and a code")
		}
	}
	for i, cd := range items(v.Get("securityLabel")) {
		p := fmt.Sprintf("%s.securityLabel[%d]", path, i)
		sys, code := cd.Get("system").String(), cd.Get("code").String()
		switch {
		case sys == "" || code == "":
			add("required", p, "a security label needs a system and a code")
		case sys == ConfidentialitySystem && !isConfidentiality(code):
			add("value", p+".code", "unknown confidentiality code")
		}
	}
	for i, cd := range items(v.Get("class")) {
		p := fmt.Sprintf("%s.class[%d]", path, i)
		sys, code := cd.Get("system").String(), cd.Get("code").String()
		switch {
		case sys == "" || code == "":
			add("required", p, "a class needs a system and a code")
		case sys == ResourceTypesSystem && !fhir.IsResourceType(code):
			add("value", p+".code", "not an R4 resource type")
		case sys != ResourceTypesSystem:
			c.warn("not-supported", p, "only resource-type classes are evaluated: this class makes a permit never apply and a deny always apply")
		}
	}
	for i, d := range items(v.Get("data")) {
		p := fmt.Sprintf("%s.data[%d]", path, i)
		if m := d.Get("meaning").String(); !slices.Contains(dataMeanings, m) {
			add("value", p+".meaning", "meaning must be one of %s", strings.Join(dataMeanings, ", "))
		}
		if _, ok := localRef(d.Get("reference").Get("reference").String()); !ok {
			add("value", p+".reference", "data must reference a resource on this server (Type/id)")
		}
	}
	for i, child := range items(v.Get("provision")) {
		p := fmt.Sprintf("%s.provision[%d]", path, i)
		if child.Kind != fjson.Object {
			add("structure", p, "provision must be an object")
			continue
		}
		c.provision(child, p, depth+1, count)
	}
}

func isConfidentiality(code string) bool {
	_, ok := confidentiality[code]
	return ok
}

func (c *collector) period(v *fjson.Value, path string) {
	add := c.add
	if v == nil {
		return
	}
	start, end := v.Get("start"), v.Get("end")
	for _, x := range []struct {
		v    *fjson.Value
		name string
	}{{start, "start"}, {end, "end"}} {
		if x.v != nil {
			if _, err := parseDateTime(x.v.String()); err != nil {
				add("value", path+"."+x.name, "%s is not a valid FHIR dateTime", x.name)
				return
			}
		}
	}
	if _, err := parsePeriod(start.String(), end.String()); err != nil {
		add("invariant", path, "per-1: start must not be after end")
	}
}
