package validate

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir"
)

// Valid base resources that the mutations break one way at a time.
const (
	basePatient = `{
  "resourceType": "Patient",
  "id": "p1",
  "meta": {"versionId": "1", "lastUpdated": "2024-01-02T03:04:05.678Z"},
  "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Jane Doe</p></div>"},
  "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace", "valueAddress": {"city": "Pune"}}],
  "identifier": [{"use": "official", "system": "http://example.org/mrn", "value": "123"}],
  "active": true,
  "name": [{"use": "official", "family": "Doe", "given": ["Jane", "Q"], "_given": [null, {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}]}],
  "telecom": [{"system": "phone", "value": "555-1234"}],
  "gender": "female",
  "birthDate": "1980-02-29",
  "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1980-02-29T10:00:00+05:30"}]},
  "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]},
  "multipleBirthInteger": 1,
  "photo": [{"contentType": "image/png", "data": "iVBORw0KGgo=", "size": 8, "hash": "TK7OU5sDmxbhYgbqJHj4xf+yygU="}],
  "contact": [{"name": {"family": "Doe"}, "organization": {"reference": "#org1"}}],
  "contained": [{"resourceType": "Organization", "id": "org1", "name": "Acme"}],
  "managingOrganization": {"reference": "Organization/o1"}
}`
	baseObservation = `{
  "resourceType": "Observation",
  "id": "o1",
  "status": "final",
  "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
  "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}], "text": "Blood pressure"},
  "subject": {"reference": "Patient/p1"},
  "effectiveDateTime": "2024-01-02T03:04:05Z",
  "issued": "2024-01-02T03:04:05.000+01:00",
  "component": [
    {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}, "valueQuantity": {"value": 120, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
    {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]}, "valueQuantity": {"value": 80.5, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}
  ],
  "referenceRange": [{"low": {"value": 1, "unit": "mmHg"}, "high": {"value": 2}}]
}`
	baseCondition = `{
  "resourceType": "Condition",
  "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active", "display": "Active"}]},
  "code": {"text": "Headache"},
  "subject": {"reference": "urn:uuid:7b1f3f5e-2c3a-4a6b-9d6c-0e8f1a2b3c4d"},
  "onsetPeriod": {"start": "2024-01-01", "end": "2024-01-05"}
}`
	baseBundle = `{
  "resourceType": "Bundle",
  "type": "transaction",
  "entry": [
    {"fullUrl": "urn:uuid:7b1f3f5e-2c3a-4a6b-9d6c-0e8f1a2b3c4d", "resource": {"resourceType": "Patient", "name": [{"family": "Doe"}]},
     "request": {"method": "POST", "url": "Patient"}},
    {"fullUrl": "urn:uuid:8c2f3f5e-2c3a-4a6b-9d6c-0e8f1a2b3c4d", "resource": {"resourceType": "Observation", "status": "final",
      "code": {"text": "x"}, "subject": {"reference": "urn:uuid:7b1f3f5e-2c3a-4a6b-9d6c-0e8f1a2b3c4d"}, "valueString": "ok"},
     "request": {"method": "POST", "url": "Observation"}},
    {"fullUrl": "urn:uuid:9d2f3f5e-2c3a-4a6b-9d6c-0e8f1a2b3c4d", "resource": {"resourceType": "Condition",
      "subject": {"reference": "Patient?identifier=http://example.org/mrn|123"}},
     "request": {"method": "POST", "url": "Condition"}}
  ]
}`
)

// Valid Bundles of the types with rules of their own.
const (
	baseDocument = `{
  "resourceType": "Bundle",
  "type": "document",
  "identifier": {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"},
  "timestamp": "2024-01-02T03:04:05Z",
  "entry": [
    {"fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111", "resource": {"resourceType": "Composition", "status": "final",
      "type": {"coding": [{"system": "http://loinc.org", "code": "34133-9"}]}, "date": "2024-01-02", "title": "Summary",
      "subject": {"reference": "urn:uuid:22222222-2222-4222-8222-222222222222"},
      "author": [{"reference": "urn:uuid:33333333-3333-4333-8333-333333333333"}],
      "section": [{"title": "Problems", "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Headache</div>"},
        "entry": [{"reference": "urn:uuid:44444444-4444-4444-8444-444444444444"}]}]}},
    {"fullUrl": "urn:uuid:22222222-2222-4222-8222-222222222222", "resource": {"resourceType": "Patient", "name": [{"family": "Doe"}]}},
    {"fullUrl": "urn:uuid:33333333-3333-4333-8333-333333333333", "resource": {"resourceType": "Practitioner", "name": [{"family": "Who"}]}},
    {"fullUrl": "urn:uuid:44444444-4444-4444-8444-444444444444", "resource": {"resourceType": "Condition", "code": {"text": "Headache"},
      "subject": {"reference": "urn:uuid:22222222-2222-4222-8222-222222222222"}}},
    {"fullUrl": "urn:uuid:55555555-5555-4555-8555-555555555555", "resource": {"resourceType": "Provenance", "recorded": "2024-01-02T03:04:05Z",
      "target": [{"reference": "urn:uuid:44444444-4444-4444-8444-444444444444"}],
      "agent": [{"who": {"reference": "urn:uuid:33333333-3333-4333-8333-333333333333"}}]}}
  ]
}`
	baseSearchset = `{
  "resourceType": "Bundle",
  "type": "searchset",
  "total": 1,
  "link": [{"relation": "self", "url": "https://ehr.example.org/fhir/Patient?name=doe"},
           {"relation": "next", "url": "https://ehr.example.org/fhir/Patient?name=doe&_page=2"}],
  "entry": [
    {"fullUrl": "https://ehr.example.org/fhir/Patient/p1", "resource": {"resourceType": "Patient", "id": "p1", "name": [{"family": "Doe"}]},
     "search": {"mode": "match"}},
    {"fullUrl": "https://ehr.example.org/fhir/Organization/o1", "resource": {"resourceType": "Organization", "id": "o1", "name": "Acme"},
     "search": {"mode": "include"}}
  ]
}`
	baseMessage = `{
  "resourceType": "Bundle",
  "type": "message",
  "entry": [
    {"fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111", "resource": {"resourceType": "MessageHeader",
      "eventCoding": {"system": "http://example.org/events", "code": "admit"}, "source": {"endpoint": "http://example.org/src"},
      "focus": [{"reference": "urn:uuid:22222222-2222-4222-8222-222222222222"}]}},
    {"fullUrl": "urn:uuid:22222222-2222-4222-8222-222222222222", "resource": {"resourceType": "Patient", "name": [{"family": "Doe"}]}}
  ]
}`
)

// decode parses JSON into generic values, keeping numbers as written.
func decode(t *testing.T, s string) any {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// edit applies a change at a dotted path ("name.0.given"): set to val, or
// delete when val is deleteMark.
func edit(t *testing.T, doc any, path string, val any) {
	t.Helper()
	parts := strings.Split(path, ".")
	cur := doc
	for i, p := range parts {
		last := i == len(parts)-1
		switch c := cur.(type) {
		case map[string]any:
			if last {
				if val == deleteMark {
					delete(c, p)
				} else {
					c[p] = val
				}
				return
			}
			cur = c[p]
		case []any:
			n, err := strconv.Atoi(p)
			if err != nil || n >= len(c) {
				t.Fatalf("bad index %s in %s", p, path)
			}
			if last {
				c[n] = val
				return
			}
			cur = c[n]
		default:
			t.Fatalf("cannot descend into %s of %s", p, path)
		}
	}
}

type deleteType struct{}

var deleteMark = deleteType{}

func raw(t *testing.T, s string) any { return json.RawMessage(s) }

type mutation struct {
	name string
	base string
	// edits are path/value pairs (value deleteMark deletes).
	edits []any
	// rawBody replaces the document entirely when set.
	rawBody string
	code    string
	expr    string
	sev     string // default error
}

// TestMutations breaks valid resources one way at a time and checks the
// exact issue code and path that result.
func TestMutations(t *testing.T) {
	r := func(s string) any { return json.RawMessage(s) }
	cases := []mutation{
		// wrong JSON types
		{name: "boolean as string", base: basePatient, edits: []any{"active", "yes"}, code: codeValue, expr: "Patient.active"},
		{name: "object for primitive", base: basePatient, edits: []any{"gender", r(`{"code":"female"}`)}, code: codeValue, expr: "Patient.gender"},
		{name: "string for complex", base: basePatient, edits: []any{"maritalStatus", "married"}, code: codeStructure, expr: "Patient.maritalStatus"},
		{name: "integer with fraction", base: basePatient, edits: []any{"multipleBirthInteger", r(`1.5`)}, code: codeValue, expr: "Patient.multipleBirth.ofType(integer)"},
		{name: "integer as string", base: basePatient, edits: []any{"multipleBirthInteger", "2"}, code: codeValue, expr: "Patient.multipleBirth.ofType(integer)"},
		{name: "integer too big", base: basePatient, edits: []any{"multipleBirthInteger", r(`2147483648`)}, code: codeValue, expr: "Patient.multipleBirth.ofType(integer)"},
		{name: "decimal as string", base: baseObservation, edits: []any{"component.0.valueQuantity.value", "120"}, code: codeValue, expr: "Observation.component[0].value.ofType(Quantity).value"},
		// required elements
		{name: "missing status", base: baseObservation, edits: []any{"status", deleteMark}, code: codeRequired, expr: "Observation.status"},
		{name: "missing code", base: baseObservation, edits: []any{"code", deleteMark}, code: codeRequired, expr: "Observation.code"},
		{name: "missing component code", base: baseObservation, edits: []any{"component.1.code", deleteMark}, code: codeRequired, expr: "Observation.component[1].code"},
		{name: "missing extension url", base: basePatient, edits: []any{"extension.0.url", deleteMark}, code: codeRequired, expr: "Patient.extension[0].url"},
		{name: "missing resourceType", base: basePatient, edits: []any{"resourceType", deleteMark}, code: codeRequired, expr: ""},
		{name: "missing Bundle.type", base: baseBundle, edits: []any{"type", deleteMark}, code: codeRequired, expr: "Bundle.type"},
		// primitive formats
		{name: "bad date", base: basePatient, edits: []any{"birthDate", "1981-02-29"}, code: codeValue, expr: "Patient.birthDate"},
		{name: "date with time", base: basePatient, edits: []any{"birthDate", "1980-02-29T10:00:00Z"}, code: codeValue, expr: "Patient.birthDate"},
		{name: "dateTime without zone", base: baseObservation, edits: []any{"effectiveDateTime", "2024-01-02T03:04:05"}, code: codeValue, expr: "Observation.effective.ofType(dateTime)"},
		{name: "instant without seconds", base: baseObservation, edits: []any{"issued", "2024-01-02T03:04Z"}, code: codeValue, expr: "Observation.issued"},
		{name: "meta.lastUpdated bad", base: basePatient, edits: []any{"meta.lastUpdated", "2024-01-02"}, code: codeValue, expr: "Patient.meta.lastUpdated"},
		{name: "bad id", base: basePatient, edits: []any{"id", "p_1"}, code: codeValue, expr: "Patient.id"},
		{name: "id too long", base: basePatient, edits: []any{"id", strings.Repeat("a", 65)}, code: codeValue, expr: "Patient.id"},
		{name: "uri with space", base: basePatient, edits: []any{"identifier.0.system", "http://example.org/a b"}, code: codeValue, expr: "Patient.identifier[0].system"},
		{name: "code with double space", base: basePatient, edits: []any{"telecom.0.system", "e  mail"}, code: codeValue, expr: "Patient.telecom[0].system"},
		{name: "bad base64", base: basePatient, edits: []any{"photo.0.data", "abc"}, code: codeValue, expr: "Patient.photo[0].data"},
		{name: "bad narrative", base: basePatient, edits: []any{"text.div", "<p>not a div</p>"}, code: codeValue, expr: "Patient.text.div"},
		{name: "narrative with script", base: basePatient, edits: []any{"text.div", `<div xmlns="http://www.w3.org/1999/xhtml"><script>x()</script></div>`}, code: codeValue, expr: "Patient.text.div"},
		{name: "string with form feed", base: basePatient, edits: []any{"name.0.family", "Do\fe"}, code: codeValue, expr: "Patient.name[0].family"},
		{name: "whitespace-only string", base: basePatient, edits: []any{"name.0.family", "   "}, code: codeValue, expr: "Patient.name[0].family", sev: fhir.SeverityWarning},
		{name: "bad media type", base: basePatient, edits: []any{"photo.0.contentType", "png"}, code: codeCodeInvalid, expr: "Patient.photo[0].contentType"},
		// empty and null values
		{name: "empty string", base: basePatient, edits: []any{"name.0.family", ""}, code: codeValue, expr: "Patient.name[0].family"},
		{name: "empty array", base: basePatient, edits: []any{"telecom", r(`[]`)}, code: codeStructure, expr: "Patient.telecom"},
		{name: "empty object", base: basePatient, edits: []any{"maritalStatus", r(`{}`)}, code: codeStructure, expr: "Patient.maritalStatus"},
		{name: "null value", base: basePatient, edits: []any{"gender", nil}, code: codeStructure, expr: "Patient.gender"},
		{name: "null in complex array", base: basePatient, edits: []any{"telecom", r(`[null]`)}, code: codeStructure, expr: "Patient.telecom[0]"},
		{name: "null given without extension", base: basePatient, edits: []any{"name.0._given", deleteMark, "name.0.given", r(`["Jane", null]`)}, code: codeStructure, expr: "Patient.name[0].given[1]"},
		{name: "element with only id", base: basePatient, edits: []any{"maritalStatus", r(`{"id":"x"}`)}, code: codeInvariant, expr: "Patient.maritalStatus"},
		// unknown elements and shapes
		{name: "unknown element", base: basePatient, edits: []any{"favouriteColour", "blue"}, code: codeStructure, expr: "Patient.favouriteColour"},
		{name: "unknown nested element", base: baseObservation, edits: []any{"component.1.foo", r(`1`)}, code: codeStructure, expr: "Observation.component[1].foo"},
		{name: "unknown choice type", base: baseObservation, edits: []any{"valueFoo", "x"}, code: codeStructure, expr: "Observation.valueFoo"},
		{name: "two choice types", base: baseObservation, edits: []any{"effectivePeriod", r(`{"start":"2024-01-01"}`)}, code: codeStructure, expr: "Observation.effective.ofType(Period)"},
		{name: "underscore on complex", base: basePatient, edits: []any{"_maritalStatus", r(`{"id":"a"}`)}, code: codeStructure, expr: "Patient._maritalStatus"},
		{name: "bad primitive extension member", base: basePatient, edits: []any{"_birthDate", r(`{"foo":1}`)}, code: codeStructure, expr: "Patient.birthDate.foo"},
		{name: "primitive extension not object", base: basePatient, edits: []any{"_birthDate", "x"}, code: codeStructure, expr: "Patient.birthDate"},
		{name: "primitive extension array mismatch", base: basePatient, edits: []any{"name.0._given", r(`[null]`)}, code: codeStructure, expr: "Patient.name[0].given"},
		{name: "primitive extension with only id", base: basePatient, edits: []any{"birthDate", deleteMark, "_birthDate", r(`{"id":"b"}`)}, code: codeInvariant, expr: "Patient.birthDate"},
		// cardinality and arrays
		{name: "array for 0..1", base: basePatient, edits: []any{"birthDate", r(`["1980-01-01","1981-01-01"]`)}, code: codeStructure, expr: "Patient.birthDate"},
		{name: "array for 0..1 complex", base: baseObservation, edits: []any{"subject", r(`[{"reference":"Patient/1"},{"reference":"Patient/2"}]`)}, code: codeStructure, expr: "Observation.subject"},
		{name: "object for 0..*", base: basePatient, edits: []any{"telecom", r(`{"system":"phone","value":"1"}`)}, code: codeStructure, expr: "Patient.telecom"},
		{name: "string for 0..* primitive", base: basePatient, edits: []any{"name.0._given", deleteMark, "name.0.given", "Jane"}, code: codeStructure, expr: "Patient.name[0].given"},
		// codes and bindings
		{name: "bad gender code", base: basePatient, edits: []any{"gender", "mail"}, code: codeCodeInvalid, expr: "Patient.gender"},
		{name: "bad status code", base: baseObservation, edits: []any{"status", "done"}, code: codeCodeInvalid, expr: "Observation.status"},
		{name: "bad quantity comparator", base: baseObservation, edits: []any{"component.0.valueQuantity.comparator", "=="}, code: codeCodeInvalid, expr: "Observation.component[0].value.ofType(Quantity).comparator"},
		{name: "bad clinicalStatus coding", base: baseCondition, edits: []any{"clinicalStatus.coding.0.code", "better"}, code: codeCodeInvalid, expr: "Condition.clinicalStatus"},
		{name: "SimpleQuantity comparator", base: baseObservation, edits: []any{"referenceRange.0.low.comparator", "<"}, code: codeStructure, expr: "Observation.referenceRange[0].low.comparator"},
		// references
		{name: "reference with space", base: baseObservation, edits: []any{"subject.reference", "Patient/p 1"}, code: codeValue, expr: "Observation.subject.reference"},
		{name: "reference unknown type", base: baseObservation, edits: []any{"subject.reference", "Foo/1"}, code: codeValue, expr: "Observation.subject.reference"},
		{name: "reference bad id", base: baseObservation, edits: []any{"subject.reference", "Patient/a_b"}, code: codeValue, expr: "Observation.subject.reference"},
		{name: "reference too many parts", base: baseObservation, edits: []any{"subject.reference", "fhir/Patient/1"}, code: codeValue, expr: "Observation.subject.reference"},
		{name: "reference bad uuid", base: baseObservation, edits: []any{"subject.reference", "urn:uuid:not-a-uuid"}, code: codeValue, expr: "Observation.subject.reference"},
		{name: "reference wrong target", base: baseObservation, edits: []any{"subject.reference", "Medication/m1"}, code: codeStructure, expr: "Observation.subject.reference"},
		{name: "absolute reference wrong target", base: baseObservation, edits: []any{"subject.reference", "https://ehr.example.org/fhir/Medication/m1/_history/2"}, code: codeStructure, expr: "Observation.subject.reference"},
		{name: "contained reference missing", base: basePatient, edits: []any{"contact.0.organization.reference", "#org2"}, code: codeNotFound, expr: "Patient.contact[0].organization.reference"},
		{name: "conditional reference outside transaction", base: baseObservation, edits: []any{"subject.reference", "Patient?identifier=x"}, code: codeValue, expr: "Observation.subject.reference"},
		{name: "bundle entry reference wrong target", base: baseBundle, edits: []any{"entry.1.resource.subject.reference", "urn:uuid:9d2f3f5e-2c3a-4a6b-9d6c-0e8f1a2b3c4d"}, code: codeStructure, expr: "Bundle.entry[1].resource.ofType(Observation).subject.reference"},
		// contained and bundled resources
		{name: "contained unknown type", base: basePatient, edits: []any{"contained.0.resourceType", "Organisation"}, code: codeStructure, expr: "Patient.contained[0]"},
		{name: "contained without resourceType", base: basePatient, edits: []any{"contained.0.resourceType", deleteMark}, code: codeRequired, expr: "Patient.contained[0]"},
		{name: "contained bad element", base: basePatient, edits: []any{"contained.0.name", r(`5`)}, code: codeValue, expr: "Patient.contained[0].ofType(Organization).name"},
		{name: "contained nested contained", base: basePatient, edits: []any{"contained.0.contained", r(`[{"resourceType":"Organization","id":"x"}]`)}, code: codeInvariant, expr: "Patient.contained[0].ofType(Organization).contained"},
		{name: "contained not referenced", base: basePatient, edits: []any{"contact.0.organization.reference", "Organization/o2"}, code: codeInvariant, expr: "Patient.contained[0]"},
		{name: "bundle entry bad date", base: baseBundle, edits: []any{"entry.0.resource.birthDate", "1980-13-01"}, code: codeValue, expr: "Bundle.entry[0].resource.ofType(Patient).birthDate"},
		{name: "bundle entry abstract type", base: baseBundle, edits: []any{"entry.0.resource.resourceType", "DomainResource"}, code: codeStructure, expr: "Bundle.entry[0].resource"},
		{name: "bundle relative fullUrl", base: baseBundle, edits: []any{"entry.0.fullUrl", "Patient/1"}, code: codeValue, expr: "Bundle.entry[0].fullUrl"},
		{name: "bundle bad request method", base: baseBundle, edits: []any{"entry.0.request.method", "FETCH"}, code: codeCodeInvalid, expr: "Bundle.entry[0].request.method"},
		// Bundle rules per type
		{name: "document entry not referenced", base: baseDocument, edits: []any{"entry.4.resource", r(`{"resourceType":"Basic","code":{"text":"x"}}`)}, code: codeBusiness, expr: "Bundle.entry[4]", sev: fhir.SeverityWarning},
		{name: "document reverse link", base: baseDocument, edits: []any{"entry.0.resource.section.0.entry.0.reference", "urn:uuid:22222222-2222-4222-8222-222222222222"}, code: codeBusiness, expr: "Bundle.entry[3]", sev: fhir.SeverityWarning},
		{name: "document subject not in bundle", base: baseDocument, edits: []any{"entry.0.resource.subject.reference", "urn:uuid:99999999-9999-4999-8999-999999999999"}, code: codeNotFound, expr: "Bundle.entry[0].resource.ofType(Composition)"},
		{name: "document without entries", base: baseDocument, edits: []any{"entry", deleteMark}, code: codeRequired, expr: "Bundle.entry"},
		{name: "document entry without fullUrl", base: baseDocument, edits: []any{"entry.2.fullUrl", deleteMark}, code: codeRequired, expr: "Bundle.entry[2].fullUrl"},
		{name: "document paging link", base: baseDocument, edits: []any{"link", r(`[{"relation":"next","url":"https://x.example/b"}]`)}, code: codeBusiness, expr: "Bundle.link[0].relation"},
		{name: "document without identifier (bdl-9)", base: baseDocument, edits: []any{"identifier", deleteMark}, code: codeInvariant, expr: "Bundle"},
		{name: "document without Composition (bdl-11)", base: baseDocument, edits: []any{"entry.0.resource.resourceType", "List", "entry.0.resource", r(`{"resourceType":"List","status":"current","mode":"working"}`)}, code: codeInvariant, expr: "Bundle"},
		{name: "message focus not in bundle", base: baseMessage, edits: []any{"entry.0.resource.focus.0.reference", "urn:uuid:99999999-9999-4999-8999-999999999999"}, code: codeNotFound, expr: "Bundle.entry[0].resource.ofType(MessageHeader)"},
		{name: "message entry not referenced", base: baseMessage, edits: []any{"entry.0.resource.focus", deleteMark}, code: codeBusiness, expr: "Bundle.entry[1]", sev: fhir.SeverityWarning},
		{name: "message without MessageHeader (bdl-12)", base: baseMessage, edits: []any{"entry.0.resource", r(`{"resourceType":"Basic","code":{"text":"x"}}`)}, code: codeInvariant, expr: "Bundle"},
		{name: "fullUrl disagrees with id", base: baseSearchset, edits: []any{"entry.0.resource.id", "p2"}, code: codeValue, expr: "Bundle.entry[0].fullUrl"},
		{name: "fullUrl disagrees with type", base: baseSearchset, edits: []any{"entry.1.fullUrl", "https://ehr.example.org/fhir/Location/o1"}, code: codeValue, expr: "Bundle.entry[1].fullUrl"},
		{name: "RESTful fullUrl without id", base: baseSearchset, edits: []any{"entry.0.resource.id", deleteMark}, code: codeRequired, expr: "Bundle.entry[0].resource.ofType(Patient)"},
		{name: "searchset match of another type", base: baseSearchset, edits: []any{"link.0.url", "https://ehr.example.org/fhir/Observation?code=x"}, code: codeValue, expr: "Bundle.entry[0].resource.ofType(Patient)"},
		{name: "searchset match not in _type", base: baseSearchset, edits: []any{"link.0.url", "https://ehr.example.org/fhir?_type=Observation,Condition&_lastUpdated=gt2024"}, code: codeValue, expr: "Bundle.entry[0].resource.ofType(Patient)"},
		{name: "searchset match without id", base: baseSearchset, edits: []any{"entry.0.fullUrl", "urn:uuid:7b1f3f5e-2c3a-4a6b-9d6c-0e8f1a2b3c4d", "entry.0.resource.id", deleteMark}, code: codeRequired, expr: "Bundle.entry[0].resource.ofType(Patient)", sev: fhir.SeverityWarning},
		{name: "searchset entry without fullUrl", base: baseSearchset, edits: []any{"entry.0.fullUrl", deleteMark}, code: codeRequired, expr: "Bundle.entry[0].fullUrl", sev: fhir.SeverityWarning},
		{name: "document relative reference not in bundle", base: baseDocument, edits: []any{"entry.0.resource.author.0.reference", "Practitioner/x1"}, code: codeNotFound, expr: "Bundle.entry[0].resource.ofType(Composition)", sev: fhir.SeverityWarning},
		{name: "searchset outcome not an OperationOutcome", base: baseSearchset, edits: []any{"entry.1.search.mode", "outcome"}, code: codeValue, expr: "Bundle.entry[1].resource.ofType(Organization)"},
		{name: "searchset entry without resource", base: baseSearchset, edits: []any{"entry.1.resource", deleteMark}, code: codeRequired, expr: "Bundle.entry[1].resource"},
		{name: "searchset without self link", base: baseSearchset, edits: []any{"link", r(`[{"relation":"next","url":"https://ehr.example.org/fhir/Patient?name=doe&_page=2"}]`)}, code: codeRequired, expr: "Bundle.link", sev: fhir.SeverityWarning},
		{name: "searchset duplicate next link", base: baseSearchset, edits: []any{"link.0.relation", "next"}, code: codeBusiness, expr: "Bundle.link[1].relation"},
		{name: "search in a transaction (bdl-2)", base: baseBundle, edits: []any{"entry.0.search", r(`{"mode":"match"}`)}, code: codeInvariant, expr: "Bundle"},
		{name: "request missing in a transaction (bdl-3)", base: baseBundle, edits: []any{"entry.0.request", deleteMark}, code: codeInvariant, expr: "Bundle"},
		{name: "request in a searchset (bdl-3)", base: baseSearchset, edits: []any{"entry.0.request", r(`{"method":"GET","url":"Patient/p1"}`)}, code: codeInvariant, expr: "Bundle"},
		{name: "response in a transaction (bdl-4)", base: baseBundle, edits: []any{"entry.0.response", r(`{"status":"201"}`)}, code: codeInvariant, expr: "Bundle"},
		{name: "PUT url names another resource", base: baseBundle, edits: []any{"entry.0.request", r(`{"method":"PUT","url":"Observation/1"}`)}, code: codeValue, expr: "Bundle.entry[0].request.url"},
		{name: "PUT url names another id", base: baseBundle, edits: []any{"entry.0.request", r(`{"method":"PUT","url":"Patient/1"}`), "entry.0.resource.id", "2"}, code: codeValue, expr: "Bundle.entry[0].request.url"},
		// attachments and codes of the shipped code systems
		{name: "attachment size", base: basePatient, edits: []any{"photo.0.size", r(`9`)}, code: codeValue, expr: "Patient.photo[0].size"},
		{name: "attachment hash", base: basePatient, edits: []any{"photo.0.hash", "2jmj7l5rSw0yVb/vlWAYkK/YBwk="}, code: codeValue, expr: "Patient.photo[0].hash"},
		{name: "attachment hash not SHA-1", base: basePatient, edits: []any{"photo.0.hash", "AAAA"}, code: codeValue, expr: "Patient.photo[0].hash"},
		{name: "wrong display", base: baseCondition, edits: []any{"clinicalStatus.coding.0.display", "Acitve"}, code: codeCodeInvalid, expr: "Condition.clinicalStatus.coding[0].display"},
		{name: "unknown code of a shipped code system", base: baseObservation, edits: []any{"code.coding.0.system", "http://hl7.org/fhir/observation-status"}, code: codeCodeInvalid, expr: "Observation.code.coding[0].code"},
		// invariants
		{name: "extension with value and extensions", base: basePatient, edits: []any{"extension.0.extension", r(`[{"url":"a","valueString":"b"}]`)}, code: codeInvariant, expr: "Patient.extension[0]"},
		{name: "extension without value", base: basePatient, edits: []any{"extension.0.valueAddress", deleteMark}, code: codeInvariant, expr: "Patient.extension[0]"},
		{name: "obs-6 value and dataAbsentReason", base: baseObservation, edits: []any{"valueString", "x", "dataAbsentReason", r(`{"text":"unknown"}`)}, code: codeInvariant, expr: "Observation"},
		{name: "per-1 end before start", base: baseCondition, edits: []any{"onsetPeriod.end", "2023-12-31"}, code: codeInvariant, expr: "Condition.onset.ofType(Period)"},
		{name: "con-4 abated but active", base: baseCondition, edits: []any{"abatementDateTime", "2024-02-01"}, code: codeInvariant, expr: "Condition"},
		{name: "qty-3 code without system", base: baseObservation, edits: []any{"component.0.valueQuantity.system", deleteMark}, code: codeInvariant, expr: "Observation.component[0].value.ofType(Quantity)"},
		// the document itself
		{name: "duplicate key", rawBody: `{"resourceType":"Patient","gender":"male","gender":"female"}`, code: codeStructure, expr: "gender", sev: fhir.SeverityFatal},
		{name: "not an object", rawBody: `["Patient"]`, code: codeStructure, expr: ""},
		{name: "truncated", rawBody: `{"resourceType":"Patient"`, code: codeStructure, expr: "", sev: fhir.SeverityFatal},
		{name: "unknown resource type", rawBody: `{"resourceType":"Patients"}`, code: codeStructure, expr: ""},
	}
	v := New(Options{})
	for _, base := range []string{basePatient, baseObservation, baseCondition, baseBundle, baseDocument, baseSearchset, baseMessage} {
		if issues := v.ValidateJSON([]byte(base)); len(issues) > 0 {
			t.Fatalf("base resource is not valid:\n%s\n%s", base[:60], dump(issues))
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := []byte(c.rawBody)
			if c.rawBody == "" {
				doc := decode(t, c.base)
				for i := 0; i < len(c.edits); i += 2 {
					edit(t, doc, c.edits[i].(string), c.edits[i+1])
				}
				var buf bytes.Buffer
				enc := json.NewEncoder(&buf)
				enc.SetEscapeHTML(false)
				if err := enc.Encode(doc); err != nil {
					t.Fatal(err)
				}
				body = buf.Bytes()
			}
			issues := v.ValidateJSON(body)
			sev := c.sev
			if sev == "" {
				sev = fhir.SeverityError
			}
			for _, is := range issues {
				checkIssueShape(t, is)
				expr := ""
				if len(is.Expression) > 0 {
					expr = is.Expression[0]
				}
				if is.Code == c.code && expr == c.expr && is.Severity == sev {
					return
				}
			}
			t.Errorf("want %s %s at %q, got\n%s", sev, c.code, c.expr, dump(issues))
		})
	}
}
