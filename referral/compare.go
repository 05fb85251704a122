package referral

import (
	"context"
	"encoding/json"
	"errors"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/release"
	"github.com/fhirgate/fhirgate/storage"
)

// Code systems whose codes identify a diagnosis, a plan item or a test
// when opinions are compared; any other coding is compared by its text.
var comparedSystems = map[string]bool{
	SNOMED: true, LOINC: true,
	"http://hl7.org/fhir/sid/icd-10":              true,
	"http://hl7.org/fhir/sid/icd-10-cm":           true,
	"http://id.who.int/icd/release/11/mms":        true,
	"http://www.nlm.nih.gov/research/umls/rxnorm": true,
	"http://www.whocc.no/atc":                     true,
	"http://www.ama-assn.org/go/cpt":              true,
}

// Aspects of the comparison, and their verdicts.
const (
	AspectAgreement = "agreement" // agreement with the current diagnosis
	AspectDiagnosis = "diagnosis" // the alternative diagnoses
	AspectPlan      = "plan"
	AspectTests     = "tests"
	AspectUrgency   = "urgency"

	VerdictAgree  = "agree"  // every opinion holds the same
	VerdictDiffer = "differ" // some hold what others do not
	VerdictSingle = "single" // one opinion: nothing to compare
)

// ComparedOpinion is one opinion in a comparison.
type ComparedOpinion struct {
	Task, Document, Performer, Attester, Date, Status string
}

// SectionEntry is what one opinion says in one section.
type SectionEntry struct {
	Document string
	// Text is the section's narrative as plain text.
	Text string
	// Items are the coded (or text) concepts of its entries.
	Items []json.RawMessage
}

// AlignedSection is one section, across the opinions.
type AlignedSection struct {
	Code, Display string
	Entries       []SectionEntry
}

// Item is one diagnosis, plan item, test, agreement or urgency value and
// the opinions that hold it.
type Item struct {
	// Concept is a CodeableConcept (the first holder's).
	Concept json.RawMessage
	// Keys identify it: "system|code" of its compared codings, or
	// "text:<normalised text>" when it has none.
	Keys   []string
	HeldBy []string // documents ("Bundle/x"), in the opinions' order
}

// Aspect compares the opinions on one point.
type Aspect struct {
	Name, Verdict string
	// Shared are held by every opinion, Differing by some only.
	Shared, Differing []Item
}

// Comparison is ServiceRequest/[id]/$opinions.
type Comparison struct {
	Request  string
	Opinions []ComparedOpinion
	Sections []AlignedSection
	Aspects  []Aspect
}

// Opinions compares the final opinions of a second-opinion request, read
// through r (the caller's release rule, *release.Guard): the request
// itself (403 when it is withheld), its Tasks, and the opinions their
// output names. A caller is given the opinions the rule releases to it:
// the patient and the requester every one, a specialist its own.
// Interim reports and Tasks not completed are left out.
func (s *Service) Opinions(ctx context.Context, r storage.Reader, serviceRequestID string) (*Comparison, error) {
	sr, err := r.Read(ctx, "ServiceRequest", serviceRequestID)
	if err != nil {
		return nil, err
	}
	req := sr.Root().Get("requisition")
	if req.Get("system").String() != RequisitionSystem || req.Get("value").String() == "" {
		return nil, fhir.Errorf(http.StatusUnprocessableEntity, "business-rule", nil, "ServiceRequest/%s is not a second-opinion request", serviceRequestID)
	}
	tasks, err := s.search(ctx, r, "Task", url.Values{"group-identifier": {RequisitionSystem + "|" + req.Get("value").String()}, "_sort": {"_id"}}, 1000)
	if err != nil {
		return nil, err
	}
	var ops []*Opinion
	var meta []ComparedOpinion
	for _, t := range tasks {
		if !IsTask(t) || t.Root().Get("status").String() != "completed" {
			continue
		}
		var final *Opinion
		for _, o := range t.Root().Get("output").Elems() {
			id, ok := strings.CutPrefix(localRef(o.Get("valueReference").Get("reference").String()), "Bundle/")
			if !ok {
				continue
			}
			doc, err := r.Read(ctx, "Bundle", id)
			if err != nil {
				if errors.Is(err, release.ErrWithheld) || errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrGone) {
					continue
				}
				return nil, err
			}
			op, err := s.ParseOpinion(doc)
			if err != nil || op.Task != "Task/"+t.ID || !op.Final() {
				continue
			}
			final = op // the last final one the Task names
		}
		if final == nil {
			continue
		}
		ops = append(ops, final)
		meta = append(meta, ComparedOpinion{Task: "Task/" + t.ID, Document: "Bundle/" + final.Bundle.ID,
			Performer: t.Root().Get("owner").Get("reference").String(), Attester: final.Attester, Date: final.Date, Status: final.Status})
	}
	c := Compare(ops)
	c.Request, c.Opinions = "ServiceRequest/"+sr.ID, meta
	return c, nil
}

// Compare aligns opinions section by section and computes where they
// agree and differ: on the agreement with the current diagnosis, the
// alternative diagnoses, the plan, the tests and the urgency. Items are
// the same when they share a code of SNOMED CT, ICD-10 (or ICD-11), LOINC,
// RxNorm, ATC or CPT, or, when neither has one, the same text (case,
// spacing and punctuation aside).
func Compare(ops []*Opinion) *Comparison {
	c := &Comparison{}
	displays := opinionDisplays()
	for _, code := range OpinionSections {
		sec := AlignedSection{Code: code, Display: displays[code]}
		for _, o := range ops {
			if o.Sections[code] == nil {
				continue
			}
			e := SectionEntry{Document: "Bundle/" + o.Bundle.ID, Text: plainText(o.SectionText(code))}
			for _, res := range o.Entries(code) {
				if cc := entryConcept(res); cc != nil {
					e.Items = append(e.Items, rawJSON(cc))
				}
			}
			sec.Entries = append(sec.Entries, e)
		}
		c.Sections = append(c.Sections, sec)
	}
	docs := make([]string, len(ops))
	for i, o := range ops {
		docs[i] = "Bundle/" + o.Bundle.ID
	}
	held := func(name string, items func(o *Opinion) []*fjson.Value) {
		per := make([][]*fjson.Value, len(ops))
		for i, o := range ops {
			per[i] = items(o)
		}
		c.Aspects = append(c.Aspects, aspect(name, docs, per))
	}
	valued := func(section, system string) func(o *Opinion) []*fjson.Value {
		return func(o *Opinion) []*fjson.Value {
			var out []*fjson.Value
			for _, obs := range o.Entries(section) {
				if v := obs.Get("valueCodeableConcept"); v != nil {
					out = append(out, v)
				}
			}
			return out
		}
	}
	concepts := func(section string) func(o *Opinion) []*fjson.Value {
		return func(o *Opinion) []*fjson.Value {
			var out []*fjson.Value
			for _, res := range o.Entries(section) {
				if cc := entryConcept(res); cc != nil {
					out = append(out, cc)
				}
			}
			return out
		}
	}
	held(AspectAgreement, valued(OpinionAgreement, OpinionSystem))
	held(AspectDiagnosis, concepts(OpinionAlternatives))
	held(AspectPlan, concepts(OpinionPlan))
	held(AspectTests, concepts(OpinionTests))
	held(AspectUrgency, valued(OpinionUrgency, PrioritySystem))
	return c
}

// aspect groups the items every opinion holds (per[i] for docs[i]) into
// the same ones (sharing a key), shared by all or held by some.
func aspect(name string, docs []string, per [][]*fjson.Value) Aspect {
	a := Aspect{Name: name}
	var items []*Item
	for i, list := range per {
		for _, cc := range list {
			keys := conceptKeys(cc)
			if len(keys) == 0 {
				continue
			}
			// the items this one matches merge into one
			var match *Item
			for j := 0; j < len(items); j++ {
				it := items[j]
				if !slices.ContainsFunc(keys, func(k string) bool { return slices.Contains(it.Keys, k) }) {
					continue
				}
				if match == nil {
					match = it
					continue
				}
				for _, k := range it.Keys {
					if !slices.Contains(match.Keys, k) {
						match.Keys = append(match.Keys, k)
					}
				}
				for _, d := range it.HeldBy {
					if !slices.Contains(match.HeldBy, d) {
						match.HeldBy = append(match.HeldBy, d)
					}
				}
				items = slices.Delete(items, j, j+1)
				j--
			}
			if match == nil {
				match = &Item{Concept: rawJSON(cc)}
				items = append(items, match)
			}
			for _, k := range keys {
				if !slices.Contains(match.Keys, k) {
					match.Keys = append(match.Keys, k)
				}
			}
			if !slices.Contains(match.HeldBy, docs[i]) {
				match.HeldBy = append(match.HeldBy, docs[i])
			}
		}
	}
	for _, it := range items {
		slices.Sort(it.Keys)
		slices.SortFunc(it.HeldBy, func(x, y string) int { return slices.Index(docs, x) - slices.Index(docs, y) })
		if len(it.HeldBy) == len(docs) {
			a.Shared = append(a.Shared, *it)
		} else {
			a.Differing = append(a.Differing, *it)
		}
	}
	switch {
	case len(docs) < 2:
		a.Verdict = VerdictSingle
	case len(a.Differing) == 0:
		a.Verdict = VerdictAgree
	default:
		a.Verdict = VerdictDiffer
	}
	return a
}

// entryConcept is the concept an opinion entry stands for: a Condition's
// or ServiceRequest's code, a MedicationRequest's medication, a
// CarePlan's activities or title, an Observation's value.
func entryConcept(res *fjson.Value) *fjson.Value {
	switch res.Get("resourceType").String() {
	case "Condition", "ServiceRequest":
		return res.Get("code")
	case "MedicationRequest":
		if cc := res.Get("medicationCodeableConcept"); cc != nil {
			return cc
		}
		if d := res.Get("medicationReference").Get("display").String(); d != "" {
			return textConcept(d)
		}
	case "CarePlan":
		for _, a := range res.Get("activity").Elems() {
			if cc := a.Get("detail").Get("code"); cc != nil {
				return cc
			}
		}
		if t := res.Get("title").String(); t != "" {
			return textConcept(t)
		}
	case "Observation":
		return res.Get("valueCodeableConcept")
	}
	return nil
}

func textConcept(s string) *fjson.Value {
	v, err := fjson.Parse(append(fjson.AppendString([]byte(`{"text":`), s), '}'))
	if err != nil {
		return nil
	}
	return v
}

// conceptKeys are the identities of a concept: its codings of compared
// systems (or of the opinion's own systems), else its text.
func conceptKeys(cc *fjson.Value) []string {
	var keys []string
	for _, c := range cc.Get("coding").Elems() {
		sys, code := c.Get("system").String(), c.Get("code").String()
		if code != "" && (comparedSystems[sys] || sys == OpinionSystem || sys == PrioritySystem) {
			keys = append(keys, sys+"|"+code)
		}
	}
	if len(keys) > 0 {
		return keys
	}
	text := cc.Get("text").String()
	if text == "" {
		for _, c := range cc.Get("coding").Elems() {
			if text = c.Get("display").String(); text != "" {
				break
			}
		}
	}
	if t := NormalText(text); t != "" {
		return []string{"text:" + t}
	}
	return nil
}

var nonWord = regexp.MustCompile(`[^\p{L}\p{N}]+`)

// NormalText is text as the comparison sees it: lower case, words
// separated by single spaces, punctuation dropped.
func NormalText(s string) string {
	return strings.TrimSpace(nonWord.ReplaceAllString(strings.ToLower(s), " "))
}

var tags = regexp.MustCompile(`<[^>]*>`)

// plainText turns a narrative's XHTML into text.
func plainText(div string) string {
	return strings.Join(strings.Fields(html.UnescapeString(tags.ReplaceAllString(div, " "))), " ")
}

// opinionDisplays are the CodeSystem's displays by code.
func opinionDisplays() map[string]string {
	var cs struct {
		Concept []struct{ Code, Display string }
	}
	_ = json.Unmarshal(opinionCodeSystem, &cs)
	out := map[string]string{}
	for _, c := range cs.Concept {
		out[c.Code] = c.Display
	}
	return out
}

// Parameters renders the comparison as the answer of $opinions.
func (c *Comparison) Parameters() ([]byte, error) {
	ref := func(name, r string) map[string]any {
		return map[string]any{"name": name, "valueReference": map[string]string{"reference": r}}
	}
	params := []any{ref("request", c.Request)}
	for _, o := range c.Opinions {
		parts := []any{ref("task", o.Task), ref("document", o.Document), map[string]any{"name": "status", "valueCode": o.Status}}
		if o.Performer != "" {
			parts = append(parts, ref("performer", o.Performer))
		}
		if o.Attester != "" {
			parts = append(parts, ref("attester", o.Attester))
		}
		if o.Date != "" {
			parts = append(parts, map[string]any{"name": "date", "valueDateTime": o.Date})
		}
		params = append(params, map[string]any{"name": "opinion", "part": parts})
	}
	for _, s := range c.Sections {
		parts := []any{map[string]any{"name": "code", "valueCoding": map[string]string{"system": OpinionSystem, "code": s.Code, "display": s.Display}}}
		for _, e := range s.Entries {
			ep := []any{ref("document", e.Document)}
			if e.Text != "" {
				ep = append(ep, map[string]any{"name": "text", "valueString": e.Text})
			}
			for _, it := range e.Items {
				ep = append(ep, map[string]any{"name": "item", "valueCodeableConcept": it})
			}
			parts = append(parts, map[string]any{"name": "entry", "part": ep})
		}
		params = append(params, map[string]any{"name": "section", "part": parts})
	}
	for _, a := range c.Aspects {
		parts := []any{map[string]any{"name": "aspect", "valueCode": a.Name}, map[string]any{"name": "verdict", "valueCode": a.Verdict}}
		item := func(name string, it Item) map[string]any {
			ip := []any{map[string]any{"name": "concept", "valueCodeableConcept": it.Concept}}
			for _, d := range it.HeldBy {
				ip = append(ip, ref("heldBy", d))
			}
			return map[string]any{"name": name, "part": ip}
		}
		for _, it := range a.Shared {
			parts = append(parts, item("shared", it))
		}
		for _, it := range a.Differing {
			parts = append(parts, item("differing", it))
		}
		params = append(params, map[string]any{"name": "comparison", "part": parts})
	}
	return json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": params})
}
