package fhirrest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/upstream"
	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// maxCandidates bounds how many patients one lookup returns.
const maxCandidates = 10

// FindPatient looks the patient up by identifier, then with Patient/$match
// when the server offers it, then by demographics.
func (s *Source) FindPatient(ctx context.Context, q adapters.PatientQuery) ([]adapters.PatientMatch, error) {
	ms, err := s.findPatient(ctx, q)
	return ms, adapters.WithSource(s.id, err)
}

func (s *Source) findPatient(ctx context.Context, q adapters.PatientQuery) ([]adapters.PatientMatch, error) {
	for _, id := range q.Identifiers {
		if id.Value == "" {
			continue
		}
		v := escapeSearch(id.Value)
		if id.System != "" {
			v = escapeSearch(id.System) + "|" + v
		}
		b, err := s.searchPatients(ctx, "find Patient by identifier", url.Values{"identifier": {v}})
		if err != nil {
			return nil, err
		}
		if len(b.resources) > 0 {
			return matches(b, "identifier", func(entryScore) (float64, bool) { return 1, true }), nil
		}
	}
	caps, err := s.capabilities(ctx)
	if err != nil {
		return nil, err
	}
	if caps.match && (q.Patient != nil || q.Family != "" || len(q.Given) > 0 || q.BirthDate != "") {
		ms, err := s.match(ctx, q)
		if err != nil {
			return nil, err
		}
		if len(ms) > 0 {
			return ms, nil
		}
	}
	if q.Family != "" && q.BirthDate != "" {
		// Never by name alone: a common name matches strangers.
		v := url.Values{"family": {q.Family}, "birthdate": {q.BirthDate}}
		if len(q.Given) > 0 {
			v.Set("given", strings.Join(q.Given, " "))
		}
		if q.Gender != "" {
			v.Set("gender", q.Gender)
		}
		b, err := s.searchPatients(ctx, "find Patient by demographics", v)
		if err != nil {
			return nil, err
		}
		if len(b.resources) > 0 {
			return matches(b, "demographics", func(entryScore) (float64, bool) { return 0, false }), nil
		}
	}
	return nil, &adapters.Error{Op: "find Patient", Err: adapters.ErrPatientNotFound}
}

func (s *Source) searchPatients(ctx context.Context, op string, q url.Values) (*bundle, error) {
	q.Set("_count", fmt.Sprint(maxCandidates))
	u := "Patient?" + q.Encode()
	resp, err := s.c.Do(ctx, &upstream.Request{Op: op, URL: u})
	if err != nil {
		return nil, err
	}
	return s.parseBundle(resp, op, u)
}

// match calls Patient/$match (FHIR R4 patient-match) with the gateway's
// Patient, or one built from the query.
func (s *Source) match(ctx context.Context, q adapters.PatientQuery) ([]adapters.PatientMatch, error) {
	const op = "Patient/$match"
	var pat []byte
	if q.Patient != nil {
		pat = q.Patient.Raw
	} else {
		pat = patientJSON(q)
	}
	body := []byte(`{"resourceType":"Parameters","parameter":[{"name":"resource","resource":`)
	body = append(body, pat...)
	body = append(body, fmt.Sprintf(`},{"name":"count","valueInteger":%d}]}`, maxCandidates)...)
	resp, err := s.c.Do(ctx, &upstream.Request{
		Op: op, Method: http.MethodPost, URL: "Patient/$match", Body: body,
		Header: http.Header{"Content-Type": {"application/fhir+json"}},
	})
	if err != nil {
		if errors.Is(err, adapters.ErrRejected) || errors.Is(err, adapters.ErrNotFound) {
			// Offered but refused (often: not enough data to match on);
			// the demographics search still has a go.
			return nil, nil
		}
		return nil, err
	}
	b, err := s.parseBundle(resp, op, "Patient/$match")
	if err != nil {
		return nil, err
	}
	ms := matches(b, "match", func(sc entryScore) (float64, bool) { return sc.score, sc.grade == "certain" })
	out := ms[:0]
	for i, m := range ms {
		if b.scores[i].grade != "certainly-not" {
			out = append(out, m)
		}
	}
	return out, nil
}

func matches(b *bundle, method string, score func(entryScore) (float64, bool)) []adapters.PatientMatch {
	var out []adapters.PatientMatch
	for i, r := range b.resources {
		if r.Type != "Patient" || r.ID == "" {
			continue
		}
		sc, certain := score(b.scores[i])
		out = append(out, adapters.PatientMatch{ID: r.ID, Resource: r, Method: method, Score: sc, Certain: certain})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Score > out[j].Score })
	return out
}

// patientJSON builds a minimal Patient for $match.
func patientJSON(q adapters.PatientQuery) []byte {
	b := []byte(`{"resourceType":"Patient"`)
	if len(q.Identifiers) > 0 {
		b = append(b, `,"identifier":[`...)
		for i, id := range q.Identifiers {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"system":`...)
			b = fjson.AppendString(b, id.System)
			b = append(b, `,"value":`...)
			b = fjson.AppendString(b, id.Value)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if q.Family != "" || len(q.Given) > 0 {
		b = append(b, `,"name":[{`...)
		sep := ""
		if q.Family != "" {
			b = append(b, `"family":`...)
			b = fjson.AppendString(b, q.Family)
			sep = ","
		}
		if len(q.Given) > 0 {
			b = append(b, sep+`"given":[`...)
			for i, g := range q.Given {
				if i > 0 {
					b = append(b, ',')
				}
				b = fjson.AppendString(b, g)
			}
			b = append(b, ']')
		}
		b = append(b, "}]"...)
	}
	if q.Gender != "" {
		b = append(b, `,"gender":`...)
		b = fjson.AppendString(b, q.Gender)
	}
	if q.BirthDate != "" {
		b = append(b, `,"birthDate":`...)
		b = fjson.AppendString(b, q.BirthDate)
	}
	return append(b, '}')
}

// escapeSearch escapes the FHIR search separators \ , $ | in a value.
func escapeSearch(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `,`, `\,`, `$`, `\$`, `|`, `\|`)
	return r.Replace(v)
}
