package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/fhirgate/fhirgate/consolidate"
	"github.com/fhirgate/fhirgate/convert/subject"
	"github.com/fhirgate/fhirgate/fhir"
)

// ErrDemographicsMismatch: the document or message is about someone the
// target Patient is not (its identifiers, name, birth date or sex
// contradict the Patient's); nothing was filed. The error is a
// *MismatchError.
var ErrDemographicsMismatch = errors.New("ingest: the demographics contradict the target Patient")

// MismatchError lists the contradictions that stopped an import.
type MismatchError struct {
	// Mismatches hold values (patient data): for the caller's response
	// only, never for a log. Error() holds none.
	Mismatches []subject.Mismatch
}

// Error names the contradicting elements by their place in the document,
// without values, so that it can be logged.
func (e *MismatchError) Error() string {
	var parts []string
	for _, m := range e.Mismatches {
		parts = append(parts, m.Element+" at "+m.SourcePath)
	}
	return fmt.Sprintf("%s: %s", ErrDemographicsMismatch, strings.Join(parts, ", "))
}

// Is makes errors.Is(err, ErrDemographicsMismatch) hold.
func (e *MismatchError) Is(target error) bool { return target == ErrDemographicsMismatch }

// Options tune one import.
type Options struct {
	// AcceptMismatch files a document whose demographics contradict the
	// target Patient anyway (an explicit decision of a system client that
	// knows better, e.g. after a registration error was corrected). The
	// contradictions and AcceptedBy are recorded in the Provenance of what
	// was filed, and listed in Result.Accepted.
	AcceptMismatch bool
	// AcceptedBy names who accepted a mismatch (an OAuth client id).
	AcceptedBy string
}

// checkSubject compares what a document says about its patient with the
// target Patient: the contradictions are an error unless opts accepts them.
func checkSubject(target *fhir.Resource, doc subject.Demographics, opts Options) ([]subject.Mismatch, error) {
	ms := subject.Compare(doc, subject.FromPatient(target))
	if len(ms) == 0 {
		return nil, nil
	}
	if !opts.AcceptMismatch {
		return nil, &MismatchError{Mismatches: ms}
	}
	return ms, nil
}

// acceptedURL is the extension recording, in a Provenance, one
// contradiction between a document and the Patient it was filed under that
// a client accepted.
const acceptedURL = "https://fhirgate.org/fhir/StructureDefinition/demographics-mismatch-accepted"

// recordAcceptance adds the accepted contradictions to the Provenance the
// converter made (the last Provenance of rs, with converted), or else adds
// a Provenance naming every resource (a FHIR Bundle, whose own Provenances
// are the source's): an agent of type
// "verifier" for who accepted it, and one extension per contradiction
// naming the elements on both sides (not their values: those are in the
// document and the Patient).
func recordAcceptance(rs []*fhir.Resource, converted bool, ms []subject.Mismatch, by, source, now string) ([]*fhir.Resource, error) {
	if len(ms) == 0 {
		return rs, nil
	}
	at := -1
	for i, r := range rs {
		if converted && r.Type == "Provenance" {
			at = i
		}
	}
	prov := map[string]any{}
	if at >= 0 {
		dec := json.NewDecoder(strings.NewReader(string(rs[at].Raw)))
		dec.UseNumber()
		if err := dec.Decode(&prov); err != nil {
			return nil, fmt.Errorf("provenance: %w", err)
		}
	} else {
		var targets []any
		for _, r := range rs {
			if r.ID != "" {
				targets = append(targets, map[string]any{"reference": r.Type + "/" + r.ID})
			}
		}
		prov = map[string]any{
			"resourceType": "Provenance", "id": consolidate.LocalID(source, "Provenance", "accepted"),
			"target":   targets,
			"recorded": now,
			"activity": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "CREATE"}}},
		}
	}
	var exts []any
	if e, ok := prov["extension"].([]any); ok {
		exts = e
	}
	for _, m := range ms {
		exts = append(exts, map[string]any{"url": acceptedURL, "valueString": m.Element + ": " + m.SourcePath + " contradicts " + m.TargetPath})
	}
	prov["extension"] = exts
	who := map[string]any{"display": "the importing client"}
	if by != "" {
		who = map[string]any{"identifier": map[string]any{"system": clientSystem, "value": by}, "display": by}
	}
	agents, _ := prov["agent"].([]any)
	prov["agent"] = append(agents, map[string]any{
		"type": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "verifier", "display": "Verifier"}},
			"text": "accepted the demographics mismatch"},
		"who": who,
	})
	out, err := resourcesOf(prov)
	if err != nil {
		return nil, err
	}
	rs = append([]*fhir.Resource(nil), rs...)
	if at >= 0 {
		rs[at] = out[0]
	} else {
		rs = append(rs, out[0])
	}
	return rs, nil
}

// clientSystem identifies OAuth clients in Provenance agents.
const clientSystem = "https://fhirgate.org/fhir/oauth-client"
