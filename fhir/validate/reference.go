package validate

import (
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// reference checks Reference.reference: its form (relative Type/id with an
// optional _history/version, an absolute URL or URN, "#id" of a contained
// resource, "#" for the container) and, when the target's type can be told,
// that it is one of the element's allowed targets.
func (w *walker) reference(node *fjson.Value, tr *typeRef) {
	rv := node.Get("reference")
	if rv == nil || rv.Kind != fjson.String || rv.Str == "" {
		return // the primitive checks report the shape
	}
	w.push("reference", -1, "")
	defer w.pop()
	ref := rv.Str
	target, problem := w.resolveReference(ref)
	if problem != "" {
		code := codeValue
		if strings.HasPrefix(ref, "#") {
			code = codeNotFound
		}
		w.add(fhir.SeverityError, code, problem, "reference "+quote(rv))
		return
	}
	if target != "" && tr.targets != nil && !slices.Contains(tr.targets, target) {
		w.add(fhir.SeverityError, codeStructure, "the reference's target type "+target+" is not allowed here (allowed: "+strings.Join(tr.targets, ", ")+")", "reference "+quote(rv))
	}
}

// resolveReference returns the resource type the reference points to, when
// it can be told, or a description of what is wrong with it.
func (w *walker) resolveReference(ref string) (target, problem string) {
	if strings.ContainsAny(ref, " \t\r\n") {
		return "", "a reference must not contain whitespace"
	}
	if ref[0] == '#' {
		if ref == "#" {
			return "", "" // the containing resource
		}
		if w.res == nil {
			return "", ""
		}
		typ, ok := w.res.contained[ref[1:]]
		if !ok {
			return "", "the local reference does not match the id of a contained resource"
		}
		return typ, ""
	}
	if i := strings.IndexAny(ref, ":/?"); i > 0 && ref[i] == ':' {
		return w.absoluteReference(ref)
	}
	// Relative: Type/id, Type/id/_history/vid, or (in transactions) a
	// conditional reference Type?search.
	if typ, query, ok := strings.Cut(ref, "?"); ok {
		if !fhir.IsResourceType(typ) || query == "" {
			return "", "not a valid conditional reference: Type?search parameters"
		}
		if b := w.res.bundle; b == nil || (b.typ != "transaction" && b.typ != "batch") {
			return "", "conditional references (Type?search) are only allowed in transaction and batch Bundles"
		}
		return typ, ""
	}
	parts := strings.Split(ref, "/")
	if len(parts) == 2 || len(parts) == 4 && parts[2] == "_history" && fhir.ValidID(parts[3]) {
		if !fhir.IsResourceType(parts[0]) {
			return "", "a relative reference must start with an R4 resource type"
		}
		if !fhir.ValidID(parts[1]) {
			return "", "a relative reference must be Type/id with a valid id"
		}
		return parts[0], ""
	}
	return "", "not a valid reference: Type/id, an absolute URL, urn:uuid:, urn:oid: or #id"
}

func (w *walker) absoluteReference(ref string) (target, problem string) {
	switch {
	case strings.HasPrefix(ref, "urn:uuid:"):
		if !isUUID(ref) {
			return "", "not a valid urn:uuid reference"
		}
	case strings.HasPrefix(ref, "urn:oid:"):
		if !isOID(ref) {
			return "", "not a valid urn:oid reference"
		}
	case strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://"):
		if len(ref) == strings.Index(ref, "//")+2 {
			return "", "not a valid URL"
		}
	}
	if b := w.res.bundle; b != nil {
		if typ, ok := b.fullURLs[ref]; ok {
			return typ, ""
		}
	}
	return typeFromURL(ref), ""
}

// typeFromURL finds the resource type of a RESTful URL that ends in
// Type/id or Type/id/_history/vid; it returns "" when there is none.
func typeFromURL(u string) string {
	parts := strings.Split(u, "/")
	n := len(parts)
	if n >= 4 && parts[n-2] == "_history" {
		parts = parts[:n-2]
		n -= 2
	}
	if n >= 3 && fhir.IsResourceType(parts[n-2]) && fhir.ValidID(parts[n-1]) {
		return parts[n-2]
	}
	return ""
}
