package server

import (
	"encoding/json"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
)

// DefaultCanonicalBase is the canonical base of the gateway's conformance
// resources (its OperationDefinitions) when Config leaves it unset.
const DefaultCanonicalBase = "https://fhirgate.org/fhir"

// OpDef describes an operation for its published OperationDefinition.
type OpDef struct {
	// ID is the OperationDefinition's id ("Patient-import"); its canonical
	// URL is <canonical base>/OperationDefinition/<ID>.
	ID string
	// Title and Description say what the operation does.
	Title, Description string
	// Base is the canonical of the standard OperationDefinition this one
	// narrows ("" for the gateway's own operations).
	Base string
	// Parameters, in and out.
	Parameters []OpParam
}

// OpParam is one OperationDefinition.parameter.
type OpParam struct {
	Name, Use string // use: "in" or "out"
	Min       int
	Max       string // "1", "*"
	Type      string
	// TargetProfile, for Reference parameters.
	TargetProfile []string
	Documentation string
	// Parts, for a parameter made of parts (it then has no Type).
	Parts []OpParam
}

// definitionURL is the canonical URL of an operation's definition.
func (s *Server) definitionURL(op *Operation) string {
	return s.canonicalBase() + "/OperationDefinition/" + op.Def.ID
}

func (s *Server) canonicalBase() string {
	if s.cfg.CanonicalBase != "" {
		return strings.TrimRight(s.cfg.CanonicalBase, "/")
	}
	return DefaultCanonicalBase
}

// operationDefinition builds the OperationDefinition resource of op.
func (s *Server) operationDefinition(op *Operation) (*fhir.Resource, error) {
	name := strings.NewReplacer("-", "", "_", "").Replace(op.Def.ID)
	types := op.Types
	if types == nil && (op.Type || op.Instance) {
		types = []string{"Resource"}
	}
	def := map[string]any{
		"resourceType": "OperationDefinition", "id": op.Def.ID,
		"meta":    map[string]any{"versionId": "1", "lastUpdated": fhir.FormatInstant(s.started)},
		"url":     s.definitionURL(op),
		"version": s.cfg.Version,
		"name":    strings.ToUpper(name[:1]) + name[1:], "title": op.Def.Title,
		"status": "active", "kind": "operation",
		"publisher":    "fhirgate",
		"description":  op.Def.Description,
		"affectsState": !op.Idempotent,
		"code":         op.Name,
		"system":       op.System, "type": op.Type, "instance": op.Instance,
	}
	if def["version"] == "" {
		delete(def, "version")
	}
	if op.Def.Base != "" {
		def["base"] = op.Def.Base
	}
	if len(types) > 0 {
		def["resource"] = types
	}
	params := opParams(op.Def.Parameters)
	if len(params) > 0 {
		def["parameter"] = params
	}
	b, err := json.Marshal(def)
	if err != nil {
		return nil, err
	}
	return fhir.Parse(b)
}

// opParams renders OperationDefinition.parameter (and .part).
func opParams(ps []OpParam) []any {
	var params []any
	for _, p := range ps {
		pm := map[string]any{"name": p.Name, "use": p.Use, "min": p.Min, "max": p.Max}
		if p.Type != "" {
			pm["type"] = p.Type // none for a parameter made of parts
		}
		if len(p.TargetProfile) > 0 {
			pm["targetProfile"] = p.TargetProfile
		}
		if p.Documentation != "" {
			pm["documentation"] = p.Documentation
		}
		if len(p.Parts) > 0 {
			pm["part"] = opParams(p.Parts)
		}
		params = append(params, pm)
	}
	return params
}

// definition answers the OperationDefinition with this id of an operation
// the server serves (nil when there is none). They are not stored: they
// describe the running server, so they are right from the first request,
// follow the configured canonical base, and cannot be edited through the
// API. Read by id: the last segment of the canonical in the
// CapabilityStatement.
func (s *Server) definition(typ, id string) *fhir.Resource {
	if r := s.conformance[typ+"/"+id]; r != nil {
		return r // the published profiles and code systems (opinion.go)
	}
	if typ != "OperationDefinition" {
		return nil
	}
	for i := range s.operations {
		op := &s.operations[i]
		if op.Def.ID != id {
			continue
		}
		d, err := s.operationDefinition(op)
		if err != nil {
			s.log.Error("operation definition not built", "operation", op.Name, "err", err)
			return nil
		}
		return d
	}
	return nil
}

// param shortens OperationDefinition parameter lists.
func param(name, use string, min int, max, typ, doc string, targets ...string) OpParam {
	var tp []string
	for _, t := range targets {
		tp = append(tp, "http://hl7.org/fhir/StructureDefinition/"+t)
	}
	return OpParam{Name: name, Use: use, Min: min, Max: max, Type: typ, TargetProfile: tp, Documentation: doc}
}

// builtinDefs describe the operations the gateway registers itself.
var builtinDefs = map[string]OpDef{
	"validate": {ID: "Resource-validate", Title: "Validate a resource",
		Description: "Checks a resource against the R4 StructureDefinitions (cardinality, types, primitive formats, required bindings, invariants, Attachment and Bundle rules) and, with profile, a profile the server knows. The answer is an OperationOutcome listing every issue with its FHIRPath location (\"All OK\" when there is none). The body is the resource itself or a Parameters with resource, mode and profile.",
		Parameters: []OpParam{
			param("resource", "in", 0, "1", "Resource", "The resource to check (or the request body itself)."),
			param("mode", "in", 0, "1", "code", "create, update or delete: the checks of that interaction."),
			param("profile", "in", 0, "1", "uri", "A profile to check against as well."),
			param("return", "out", 1, "1", "OperationOutcome", "Every issue found."),
		}},
	"everything": {ID: "Patient-everything", Title: "Fetch a patient's record",
		Description: "The Patient, every resource of its compartment the caller may see, and the resources those refer to (only through a released resource), as a searchset Bundle paged with next links.",
		Parameters: []OpParam{
			param("start", "in", 0, "1", "date", "Care dated from this day."),
			param("end", "in", 0, "1", "date", "Care dated up to this day."),
			param("_since", "in", 0, "1", "instant", "Only resources changed since."),
			param("_type", "in", 0, "*", "string", "Only these resource types (comma-separated)."),
			param("_count", "in", 0, "1", "integer", "Page size (default 1000, at most 5000)."),
			param("return", "out", 1, "1", "Bundle", "A searchset Bundle."),
		}},
	"summary": {ID: "Patient-summary", Title: "International Patient Summary",
		Description: "The patient's record the caller may see, as an IPS document Bundle (hl7.fhir.uv.ips 2.0.0), with the case summary the gateway computes from it: abnormal results (each with the rule and published source that flagged it), trends, risks (CKD-EPI 2021 eGFR, KDIGO CKD category, blood-pressure and BMI categories, pooled-cohort 10-year ASCVD risk, CHA2DS2-VASc) and missing tests, as narrative and as DetectedIssue, RiskAssessment and computed Observation entries. With _format=html, or an Accept header preferring text/html, the same document is answered as one printable HTML page.",
		Parameters: []OpParam{
			param("narrative", "in", 0, "1", "code", "draft: add a machine-written narrative drafted by the configured text model from the computed, de-identified case summary, in its own labelled section (400 when no model is configured)."),
			param("return", "out", 1, "1", "Bundle", "An IPS document Bundle."),
		}},
	"status": {ID: "Subscription-status", Title: "Subscription status",
		Description: "The status of a topic-based Subscription (R5 backport on R4): its state and the number of events since it started, as a subscription-notification Bundle of type history.",
		Parameters: []OpParam{
			param("return", "out", 1, "1", "Bundle", "A subscription-notification Bundle with the SubscriptionStatus Parameters."),
		}},
	"second-opinion": {ID: "Patient-second-opinion", Title: "Request second opinions",
		Description: "Packages the patient's consented record for each recipient (a document Bundle with an IPS-style Composition and a computed case summary) and creates, in one transaction, the packages, a referral ServiceRequest and one Task per recipient under one requisition identifier.",
		Parameters: []OpParam{
			param("recipient", "in", 1, "*", "Reference", "Who is asked; each needs an active Consent among those given.", "Organization", "PractitionerRole"),
			param("specialty", "in", 0, "1", "CodeableConcept", "The specialty asked (SNOMED CT); selects the completeness check."),
			param("question", "in", 0, "1", "string", "The patient's question."),
			param("reason", "in", 0, "*", "Reference", "", "Condition"),
			param("consent", "in", 1, "*", "Reference", "Active Consents of the patient; together they must permit every recipient. With preview=true a consent may also be a draft, given as a resource and not stored.", "Consent"),
			param("preview", "in", 0, "1", "boolean", "true: store nothing and answer, per recipient, the package it would receive under the Consents named and the drafts given (see the preview output)."),
			param("due", "in", 0, "1", "date", ""),
			param("start", "in", 0, "1", "date", "Data window: only care dated from this day."),
			param("end", "in", 0, "1", "date", "Data window: only care dated up to this day."),
			param("requester", "in", 0, "1", "Reference", "Who asks, for system clients acting for a hospital; the patient by default."),
			param("requisition", "out", 1, "1", "Identifier", ""),
			param("serviceRequest", "out", 1, "1", "Reference", ""),
			param("task", "out", 1, "*", "Reference", ""),
			param("package", "out", 1, "*", "Reference", ""),
			withParts(param("preview", "out", 0, "*", "", "With preview=true (and then no other output): one per recipient."),
				param("recipient", "out", 1, "1", "Reference", "", "Organization", "PractitionerRole"),
				param("package", "out", 1, "1", "Bundle", "The package, not stored.")),
		}},
	"import": {ID: "Patient-import", Title: "Import a document, message or file into a patient's record",
		Description: "The request body is the input itself, its media type in Content-Type: a C-CDA R2.1 document (application/cda+xml), one HL7 v2 message or an FHS/BHS batch (x-application/hl7-v2+er7), a FHIR Bundle of one patient (application/fhir+json), or a file (application/pdf, image/jpeg, image/png, application/dicom: kept as a Binary with a DocumentReference that carries the title, type, date and specialty given and a generated thumbnail of an image or a PDF's first page; a DICOM file is described by an ImagingStudy). Documents and messages are converted to FHIR R4 and filed through consolidation with Provenance; the original is always kept as a Binary and a DocumentReference. A document whose demographics contradict the Patient is refused (422) unless a system client accepts it. The answer is a collection Bundle: an OperationOutcome of what was filed and what was not converted, then every resource written.",
		Parameters: []OpParam{
			param("demographicsMismatch", "in", 0, "1", "code", "refuse (the default) or accept: file a document whose demographics contradict the Patient anyway (system clients only; recorded in Provenance and the audit trail)."),
			param("title", "in", 0, "1", "string", "Files: the document's title, at most 256 characters (or the X-Title header); DocumentReference.description."),
			param("type", "in", 0, "1", "string", "Files: the LOINC document type, a code such as 11524-6 or http://loinc.org|code, its check digit verified (or the X-Document-Type header); DocumentReference.type."),
			param("date", "in", 0, "1", "dateTime", "Files: when the content was made, a FHIR date or dateTime (or the X-Document-Date header); DocumentReference.context.period."),
			param("specialty", "in", 0, "1", "string", "Files: the clinical specialty, one of the gateway's specialty names (cardiology), a SNOMED CT code or system|code (or the X-Specialty header); DocumentReference.context.practiceSetting."),
			param("return", "out", 1, "1", "Bundle", "A collection Bundle: the OperationOutcome first, then the resources written."),
		}},
	"pull": {ID: "Patient-pull", Title: "Pull a patient's records from the configured sources",
		Description: "Starts a durable pull of the patient's records from the configured sources (all of them, or those named), consolidated into the patient's record with Provenance. Answers 202 with the status URL in Content-Location (FHIR asynchronous pattern); polling it answers 202 while the pull runs and 200 with the report.",
		Parameters: []OpParam{
			param("source", "in", 0, "*", "string", "Ids of configured sources to pull from (comma-separated); all when absent."),
			param("return", "out", 1, "1", "OperationOutcome", "The pull was accepted; where to poll."),
		}},
}
