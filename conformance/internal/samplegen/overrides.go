package samplegen

// overrides complete the minimal instances of the types whose invariants
// need more than their required elements (or whose required primitive
// needs a particular format). Each is merged over the generated instance.
var overrides = map[string]string{
	"AllergyIntolerance":         `{"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical","code":"active"}]}}`,
	"Appointment":                `{"participant":[{"status":"accepted","actor":{"display":"conformance"}}]}`,
	"AppointmentResponse":        `{"actor":{"display":"conformance"}}`,
	"Bundle":                     `{"type":"collection"}`,
	"CapabilityStatement":        `{"format":["json"],"software":{"name":"conformance"},"implementation":{"description":"conformance"},"rest":[{"mode":"server"}]}`,
	"Consent":                    `{"policyRule":{"text":"conformance"}}`,
	"EventDefinition":            `{"trigger":[{"type":"named-event","name":"conformance"}]}`,
	"ImmunizationRecommendation": `{"recommendation":[{"forecastStatus":{"text":"conformance"},"vaccineCode":[{"text":"conformance"}]}]}`,
	"InsurancePlan":              `{"name":"conformance"}`,
	"Linkage":                    `{"item":[{"type":"source","resource":{"display":"a"}},{"type":"alternate","resource":{"display":"b"}}]}`,
	"Organization":               `{"name":"conformance"}`,
	// fhirgate serves only topic-based Subscriptions and keeps others
	// only when off (see notSampled)
	"Subscription":            `{"status":"off"}`,
	"StructureDefinition":     `{"type":"Patient","kind":"resource","abstract":false,"baseDefinition":"http://hl7.org/fhir/StructureDefinition/Patient","derivation":"constraint","differential":{"element":[{"id":"Patient","path":"Patient"}]}}`,
	"TerminologyCapabilities": `{"software":{"name":"conformance"},"implementation":{"description":"conformance"}}`,
}

// elementDefaults are the values written for elements (by path) when the
// generator creates them, where the generic value breaks an invariant.
var elementDefaults = map[string]string{
	"Questionnaire.item.type":        `"string"`,
	"RequestGroup.action":            `{"resource":{"display":"conformance"}}`,
	"MolecularSequence.referenceSeq": `{"genomeBuild":"GRCh38","chromosome":{"text":"1"}}`,
	"ValueSet.expansion.contains":    `{"system":"urn:fhirgate:conformance"}`,
}

// pairBases are merged over the minimal instance to make the base of the
// search-sample pairs of a type, where sampled elements need company.
var pairBases = map[string]string{
	// con-4: an abated condition is inactive, resolved or in remission
	"Condition": `{"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"resolved"}]}}`,
	// app-3: only proposed or cancelled appointments lack start and end
	"Appointment": `{"start":"2021-01-01T08:00:00Z","end":"2021-01-01T09:00:00Z"}`,
}

// companions are elements (by path) that take the same sampled value as
// another, where an invariant needs both (app-2: start and end together).
var companions = map[string]string{
	"Appointment.start": "end",
}

// notSampled are search parameters (type.code) left without samples,
// with why: the generator would write values the gateway refuses.
var notSampled = map[string]string{
	"Subscription.status": "fhirgate refuses query-based Subscriptions unless their status is off, so every sample is off",
}
