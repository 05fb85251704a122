package consent

import (
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// Coding is a code in a code system.
type Coding struct {
	System string
	Code   string
}

// Data is what the decision needs to know about one resource being
// released. DataOf extracts it from a resource; tests and callers with
// unusual data may fill it themselves.
type Data struct {
	Type, ID string
	// Security are the resource's meta.security labels.
	Security []Coding
	// Codes are the codings of the resource's code element (or the type of
	// a DocumentReference), for provision.code.
	Codes []Coding
	// Dated reports whether the resource type has a clinical date (see
	// ClinicalDate); Period is then that date, and HasPeriod whether this
	// resource carries it.
	Dated, HasPeriod bool
	Period           Interval
	// References are the local references ("Type/id") the resource makes,
	// for provision.data with meaning "dependents".
	References []string
	// Authors are the references in the resource's author-like elements
	// (author, recorder, asserter, requester, performer, ...), for meaning
	// "authoredby".
	Authors []string
}

// Ref returns the data's reference, "Type/id".
func (d *Data) Ref() string { return d.Type + "/" + d.ID }

// clinicalDates lists, per resource type, the elements that carry the
// clinical date of a resource, in order of preference; the first present
// one is used. A choice element is given by its base name ("effective"
// for effectiveDateTime and effectivePeriod). A path with a dot is an
// element of a backbone element.
var clinicalDates = map[string][]string{
	"AllergyIntolerance":       {"onset", "recordedDate"},
	"Appointment":              {"start"},
	"AuditEvent":               {"recorded"},
	"CarePlan":                 {"period", "created"},
	"CareTeam":                 {"period"},
	"Claim":                    {"billablePeriod", "created"},
	"ClinicalImpression":       {"effective", "date"},
	"Communication":            {"sent", "received"},
	"CommunicationRequest":     {"occurrence", "authoredOn"},
	"Composition":              {"date"},
	"Condition":                {"onset", "recordedDate"},
	"Consent":                  {"dateTime"},
	"Coverage":                 {"period"},
	"DetectedIssue":            {"identified"},
	"DeviceRequest":            {"occurrence", "authoredOn"},
	"DeviceUseStatement":       {"timing", "recordedOn"},
	"DiagnosticReport":         {"effective", "issued"},
	"DocumentReference":        {"context.period", "date"},
	"Encounter":                {"period"},
	"EpisodeOfCare":            {"period"},
	"ExplanationOfBenefit":     {"billablePeriod", "created"},
	"FamilyMemberHistory":      {"date"},
	"Flag":                     {"period"},
	"Goal":                     {"start", "statusDate"},
	"ImagingStudy":             {"started"},
	"Immunization":             {"occurrence", "recorded"},
	"List":                     {"date"},
	"Media":                    {"created", "issued"},
	"MedicationAdministration": {"effective"},
	"MedicationDispense":       {"whenHandedOver", "whenPrepared"},
	"MedicationRequest":        {"authoredOn"},
	"MedicationStatement":      {"effective", "dateAsserted"},
	"NutritionOrder":           {"dateTime"},
	"Observation":              {"effective", "issued"},
	"Procedure":                {"performed"},
	"Provenance":               {"occurred", "recorded"},
	"QuestionnaireResponse":    {"authored"},
	"RiskAssessment":           {"occurrence"},
	"ServiceRequest":           {"occurrence", "authoredOn"},
	"Specimen":                 {"collection.collected", "receivedTime"},
	"SupplyDelivery":           {"occurrence"},
	"Task":                     {"executionPeriod", "authoredOn"},
}

// ClinicalDate returns the elements that carry the clinical date of a
// resource type, nil for types without one (Patient, Organization, ...),
// which a provision's dataPeriod does not restrict.
func ClinicalDate(resourceType string) []string { return clinicalDates[resourceType] }

// authorElements are the top-level elements whose references say who
// authored a resource.
var authorElements = []string{"author", "recorder", "asserter", "requester", "performer", "informationSource", "enterer", "sender", "participant"}

// DataOf extracts what a decision needs from a resource.
func DataOf(res *fhir.Resource) Data {
	d := dataHeader(res)
	root := res.Root()
	d.Codes = codingsOf(root.Get("code"))
	if res.Type == "DocumentReference" {
		d.Codes = append(d.Codes, codingsOf(root.Get("type"))...)
	}
	d.References = collectRefs(nil, root, 0)
	for _, name := range authorElements {
		d.Authors = collectRefs(d.Authors, root.Get(name), 0)
	}
	return d
}

// dataHeader extracts the cheap part of Data: type, id, labels and date.
func dataHeader(res *fhir.Resource) Data {
	d := Data{Type: res.Type, ID: res.ID}
	root := res.Root()
	if meta := root.Get("meta"); meta != nil {
		if sec := meta.Get("security"); sec != nil && sec.Kind == fjson.Array {
			for _, c := range sec.Items {
				if code := c.Get("code").String(); code != "" {
					d.Security = append(d.Security, Coding{System: c.Get("system").String(), Code: code})
				}
			}
		}
	}
	paths := clinicalDates[res.Type]
	d.Dated = paths != nil
	for _, p := range paths {
		if iv, ok := dateAt(root, p); ok {
			d.Period, d.HasPeriod = iv, true
			break
		}
	}
	return d
}

// dateAt reads a date-like element (date, dateTime, instant, Period, or a
// choice of them) at a path of at most two steps.
func dateAt(root *fjson.Value, path string) (Interval, bool) {
	v := root
	parent, name, nested := strings.Cut(path, ".")
	if nested {
		v = root.Get(parent)
		if v == nil || v.Kind != fjson.Object {
			return Interval{}, false
		}
	} else {
		name = parent
	}
	candidates := []string{name, name + "DateTime", name + "Period", name + "Instant", name + "Date"}
	for _, key := range candidates {
		x := v.Get(key)
		if x == nil {
			continue
		}
		switch x.Kind {
		case fjson.String:
			if iv, err := parseDateTime(x.Str); err == nil {
				return iv, true
			}
		case fjson.Object: // Period
			iv, err := parsePeriod(x.Get("start").String(), x.Get("end").String())
			if err == nil && (!iv.Start.IsZero() || !iv.End.IsZero()) {
				return iv, true
			}
		}
	}
	return Interval{}, false
}

func codingsOf(cc *fjson.Value) []Coding {
	if cc == nil {
		return nil
	}
	var out []Coding
	if cs := cc.Get("coding"); cs != nil && cs.Kind == fjson.Array {
		for _, c := range cs.Items {
			if code := c.Get("code").String(); code != "" {
				out = append(out, Coding{System: c.Get("system").String(), Code: code})
			}
		}
	}
	return out
}

// maxRefDepth bounds the walk for references.
const maxRefDepth = 64

// collectRefs appends the local references ("Type/id") found anywhere in v.
func collectRefs(out []string, v *fjson.Value, depth int) []string {
	if v == nil || depth > maxRefDepth {
		return out
	}
	switch v.Kind {
	case fjson.Object:
		for _, m := range v.Members {
			if m.Key == "reference" && m.Value.Kind == fjson.String {
				if ref, ok := localRef(m.Value.Str); ok {
					out = append(out, ref)
				}
				continue
			}
			if m.Key == "contained" {
				continue // contained resources speak for themselves
			}
			out = collectRefs(out, m.Value, depth+1)
		}
	case fjson.Array:
		for _, it := range v.Items {
			out = collectRefs(out, it, depth+1)
		}
	}
	return out
}

// localRef checks a relative reference "Type/id" (a version suffix is
// dropped). Absolute and contained references are not local.
func localRef(s string) (string, bool) {
	if i := strings.Index(s, "/_history/"); i >= 0 {
		s = s[:i]
	}
	typ, id, ok := strings.Cut(s, "/")
	if !ok || !fhir.IsResourceType(typ) || !fhir.ValidID(id) {
		return "", false
	}
	return s, true
}
