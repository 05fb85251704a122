package referral

import (
	"encoding/json"
	"fmt"
	"html"
	"sort"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/referral/knowledge"
)

// This file turns a CaseSummary into the document's computed sections:
// narrative people can read, and the same content as FHIR resources the
// gateway authors (the source resources are never rewritten): computed
// Observations (eGFR by CKD-EPI 2021, with interpretation), DetectedIssues
// for abnormal results (the interpretation as evidence), missing tests and
// reviews, and RiskAssessments.

const (
	interpretationSystem = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
	actCodeSystem        = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	ucumSystem           = "http://unitsofmeasure.org"
)

var interpretationDisplay = map[string]string{
	"H": "High", "L": "Low", "HH": "Critical high", "LL": "Critical low", "A": "Abnormal", "AA": "Critical abnormal",
	"HU": "Significantly high", "LU": "Significantly low",
}

// caseBuilder accumulates the generated resources while writing sections.
type caseBuilder struct {
	cs      *CaseSummary
	kb      *knowledge.Base
	newID   func() string
	now     time.Time
	patient reference
	device  reference
	byRef   map[string]*fhir.Resource
	entries []entry
	derived map[*Derived]string // computed Observation fullUrl
	// release is the recipient's filter. The gateway's own resources are
	// put through it too: a stored package is released only when every
	// entry is, so one a narrow Consent would withhold (a class it leaves
	// out) stays out of the package; its content is still in the
	// narrative, which is computed from released data only.
	release func(*fhir.Resource) bool
}

// add authors a resource; "" when the release withholds it.
func (b *caseBuilder) add(v map[string]any) string {
	id := b.newID()
	v["id"] = id
	raw := mustJSON(v)
	if b.release != nil && !b.release(&fhir.Resource{Type: v["resourceType"].(string), ID: id, Raw: raw}) {
		return ""
	}
	full := "urn:uuid:" + id
	b.entries = append(b.entries, entry{FullURL: full, Resource: raw})
	return full
}

// appendRef appends a reference to an authored resource unless it was
// withheld.
func appendRef(refs []reference, full string) []reference {
	if full == "" {
		return refs
	}
	return append(refs, reference{Reference: full})
}

func resRef(r *fhir.Resource) reference { return reference{Reference: r.Type + "/" + r.ID} }

func num(v float64) json.Number { return json.Number(knowledge.FormatNumber(v)) }

func (b *caseBuilder) sections(draft *Draft) []section {
	b.derived = map[*Derived]string{}
	for i := range b.cs.Derived {
		b.derived[&b.cs.Derived[i]] = b.derivedObservation(&b.cs.Derived[i])
	}
	out := []section{b.flagsSection(), b.trendsSection(), b.risksSection(), b.careSection()}
	if c := b.cs.Completeness; c != nil {
		out = append(out, b.completenessSection(c))
	}
	out = append(out,
		b.listSection("Encounter timeline", SectionTimeline, b.cs.Timeline),
		b.listSection("Active medications", SectionActiveMedicines, b.cs.ActiveMedications))
	if draft != nil && (strings.TrimSpace(draft.Text) != "" || draft.Error != "") {
		out = append(out, b.draftSection(draft))
	}
	return out
}

func (b *caseBuilder) listSection(title, code string, rs []*fhir.Resource) section {
	return listSection(title, concept(CaseSummarySystem, code, title), rs, func(rs []*fhir.Resource) []reference {
		out := make([]reference, len(rs))
		for i, r := range rs {
			out[i] = resRef(r)
		}
		return out
	}, func(r *fhir.Resource) string { return describe(r, b.byRef) })
}

func emptySection(title, code, text string) section {
	return section{Title: title, Code: concept(CaseSummarySystem, code, title), Text: narrative("<p>" + html.EscapeString(text) + "</p>"),
		EmptyReason: &codeableConcept{Coding: []coding{{System: listEmptyReason, Code: "unavailable", Display: "Unavailable"}}}}
}

// overview is the Composition's opening paragraph: the case in numbers.
func (b *caseBuilder) overview() string {
	cs := b.cs
	crit := 0
	for _, f := range cs.Flags {
		if f.Critical() {
			crit++
		}
	}
	var parts []string
	parts = append(parts, fmt.Sprintf("%d abnormal results (%d critical) among %d judged", len(cs.Flags), crit, cs.Judged))
	parts = append(parts, fmt.Sprintf("%d repeated tests with trends", len(cs.Trends)))
	n := 0
	for _, r := range cs.Risks {
		if r.Computable {
			n++
		}
	}
	parts = append(parts, fmt.Sprintf("%d of %d risks computable", n, len(cs.Risks)))
	parts = append(parts, fmt.Sprintf("%d missing or overdue tests and reviews", len(cs.Gaps())))
	return "<p>Case summary as of " + html.EscapeString(HumanDate(cs.AsOf)) + ": " + html.EscapeString(strings.Join(parts, "; ")) + ".</p>"
}

// derivedObservation authors the Observation of a computed value.
func (b *caseBuilder) derivedObservation(d *Derived) string {
	var from []reference
	for _, r := range d.From {
		from = append(from, resRef(r))
	}
	obs := map[string]any{
		"resourceType": "Observation", "status": "final",
		"category": []codeableConcept{concept("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory", "Laboratory")},
		"code": codeableConcept{Coding: []coding{{System: LOINC, Code: d.Code,
			Display: "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or Blood by Creatinine-based formula (CKD-EPI 2021)"}},
			Text: d.Name},
		"subject":           b.patient,
		"effectiveDateTime": fhirDateTime(d.Date, d.From),
		"issued":            fhir.FormatInstant(b.now),
		"valueQuantity":     map[string]any{"value": num(d.Value), "unit": "mL/min/1.73m2", "system": ucumSystem, "code": d.Unit},
		"method":            codeableConcept{Text: d.Formula + " (" + d.Citation.Source.Short + ")"},
		"device":            b.device,
		"derivedFrom":       from,
		"note":              []map[string]string{{"text": "Computed by fhirgate from serum creatinine, age and sex with the " + d.Formula + "; source: " + d.Citation.Source.Citation + " " + d.Citation.Source.URL}},
	}
	if d.Interpretation != "" {
		obs["interpretation"] = []codeableConcept{concept(interpretationSystem, d.Interpretation, interpretationDisplay[d.Interpretation])}
	}
	return b.add(obs)
}

// fhirDateTime keeps the source's own dateTime when the value was computed
// from one resource, so the computed value carries the same time.
func fhirDateTime(t time.Time, from []*fhir.Resource) string {
	if len(from) == 1 {
		if s := from[0].Root().Get("effectiveDateTime").String(); s != "" {
			return s
		}
	}
	return fhir.FormatInstant(t)
}

// flagRef is the flagged Observation; "" for a computed one withheld.
func (b *caseBuilder) flagRef(f Flag) reference {
	if f.Resource != nil {
		return resRef(f.Resource)
	}
	return reference{Reference: b.derived[f.Derived]}
}

// flagText is one flag in words: "Potassium 5.8 mmol/L on 2 Mar 2020".
func flagValue(f Flag) string {
	if !f.HasValue {
		return "—"
	}
	return valueText(f.Value, f.Unit)
}

func citeLink(c *knowledge.Citation) string {
	if c == nil || c.Source == nil {
		return ""
	}
	return `<a href="` + html.EscapeString(c.Source.URL) + `">` + html.EscapeString(c.String()) + `</a>`
}

func basisText(f Flag) string {
	switch f.Basis {
	case BySourceInterpretation:
		return "the source's interpretation"
	case BySourceRange:
		return "the source's reference range"
	}
	return citeLink(f.Citation)
}

// flagsSection lists, per test, the latest abnormal result and how many
// were flagged; every flag is also a DetectedIssue referenced from it.
func (b *caseBuilder) flagsSection() section {
	const title = "Abnormal results"
	cs := b.cs
	if len(cs.Flags) == 0 {
		return emptySection(title, SectionAbnormal, fmt.Sprintf("No abnormal result among the %d values judged.", cs.Judged))
	}
	var refs []reference
	type group struct {
		latest    Flag
		n, crit   int
		criticals []Flag
	}
	groups := map[string]*group{}
	var order []string
	for _, f := range cs.Flags { // most recent first
		refs = appendRef(refs, b.flagIssue(f))
		k := f.Code + "|" + f.Name
		g := groups[k]
		if g == nil {
			g = &group{latest: f}
			groups[k] = g
			order = append(order, k)
		}
		g.n++
		if f.Critical() {
			g.crit++
			g.criticals = append(g.criticals, f)
		}
	}
	sort.SliceStable(order, func(i, j int) bool {
		gi, gj := groups[order[i]], groups[order[j]]
		if (gi.crit > 0) != (gj.crit > 0) {
			return gi.crit > 0
		}
		return gi.latest.Date.After(gj.latest.Date)
	})
	var sb strings.Builder
	fmt.Fprintf(&sb, "<p>%d abnormal results among %d values judged. Per test, the latest abnormal result; critical results are listed in full.</p>", len(cs.Flags), cs.Judged)
	sb.WriteString("<table><thead><tr><th>Test</th><th>Latest abnormal</th><th>Date</th><th>Flag</th><th>Why</th><th>Judged by</th><th>Abnormal results</th></tr></thead><tbody>")
	row := func(f Flag, count string) {
		fmt.Fprintf(&sb, "<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>",
			html.EscapeString(f.Name), html.EscapeString(flagValue(f)), html.EscapeString(HumanDate(f.Date)),
			html.EscapeString(interpretationWord(f.Interpretation)), html.EscapeString(f.Rule), basisText(f), count)
	}
	for _, k := range order {
		g := groups[k]
		row(g.latest, fmt.Sprintf("%d", g.n))
		for _, f := range g.criticals {
			if f.Date != g.latest.Date || f.Value != g.latest.Value {
				row(f, "critical")
			}
		}
	}
	sb.WriteString("</tbody></table>")
	return section{Title: title, Code: concept(CaseSummarySystem, SectionAbnormal, title), Text: narrative(sb.String()), Entry: refs}
}

func interpretationWord(code string) string {
	if d := interpretationDisplay[code]; d != "" {
		return d + " (" + code + ")"
	}
	return code
}

// flagIssue authors the DetectedIssue of one abnormal result.
func (b *caseBuilder) flagIssue(f Flag) string {
	obs := b.flagRef(f)
	if obs.Reference == "" {
		return ""
	}
	severity := "moderate"
	if f.Critical() {
		severity = "high"
	}
	detail := f.Name + " " + flagValue(f)
	if !f.Date.IsZero() {
		detail += " on " + HumanDate(f.Date)
	}
	detail += ": " + f.Rule
	if f.Citation != nil {
		detail += ". Source: " + f.Citation.String()
	}
	di := map[string]any{
		"resourceType": "DetectedIssue", "status": "final",
		"code":               codeableConcept{Coding: []coding{{System: CaseSummarySystem, Code: "abnormal-result", Display: "Abnormal result"}}, Text: "Abnormal result (" + string(f.Basis) + ")"},
		"severity":           severity,
		"patient":            b.patient,
		"identifiedDateTime": fhir.FormatInstant(b.now),
		"author":             b.device,
		"implicated":         []reference{obs},
		"evidence": []map[string]any{{
			"code":   []codeableConcept{concept(interpretationSystem, f.Interpretation, interpretationDisplay[f.Interpretation])},
			"detail": []reference{obs},
		}},
		"detail": detail,
	}
	if f.Citation != nil {
		di["reference"] = f.Citation.Source.URL
	}
	return b.add(di)
}

// trendsSection: one row per repeated test.
func (b *caseBuilder) trendsSection() section {
	const title = "Trends"
	cs := b.cs
	if len(cs.Trends) == 0 {
		return emptySection(title, SectionTrends, "No test was measured on two or more dates.")
	}
	var sb strings.Builder
	sb.WriteString("<table><thead><tr><th>Test</th><th>Results</th><th>Latest</th><th>Change</th><th>Worst</th></tr></thead><tbody>")
	var refs []reference
	seen := map[string]bool{}
	for _, t := range cs.Trends {
		change := t.Direction
		if t.HasSlope {
			change += ", " + strings.TrimSpace(signed(t.SlopePerYear)+" "+knowledge.DisplayUnit(t.Unit)) + " per year"
		}
		if t.Note != "" {
			change += "; " + t.Note
		}
		worst := "none flagged"
		if t.Worst != nil {
			worst = fmt.Sprintf("%s (%s) on %s; %d of %d flagged", valueText(t.Worst.Value, t.Unit), t.Worst.Interpretation, HumanDate(t.Worst.Date), t.Flagged, t.Count)
		}
		fmt.Fprintf(&sb, "<tr><td>%s</td><td>%d, %s – %s</td><td>%s on %s</td><td>%s%s</td><td>%s</td></tr>",
			html.EscapeString(t.Name), t.Count, html.EscapeString(HumanDate(t.First.Date)), html.EscapeString(HumanDate(t.Latest.Date)),
			html.EscapeString(valueText(t.Latest.Value, t.Unit)), html.EscapeString(HumanDate(t.Latest.Date)),
			html.EscapeString(change), optionalCite(t.NoteCitation), html.EscapeString(worst))
		if r := t.Latest.Resource; r != nil && !seen[r.Type+"/"+r.ID] {
			seen[r.Type+"/"+r.ID] = true
			refs = append(refs, resRef(r))
		}
	}
	sb.WriteString("</tbody></table>")
	s := section{Title: title, Code: concept(CaseSummarySystem, SectionTrends, title), Text: narrative(sb.String()), Entry: refs}
	if len(refs) == 0 {
		s.EmptyReason = &codeableConcept{Coding: []coding{{System: listEmptyReason, Code: "unavailable", Display: "Unavailable"}}}
	}
	return s
}

func optionalCite(c *knowledge.Citation) string {
	if c == nil {
		return ""
	}
	return " (" + citeLink(c) + ")"
}

func signed(v float64) string {
	s := knowledge.FormatNumber(v)
	if v > 0 {
		return "+" + s
	}
	return s
}

// risksSection: each risk with its result and inputs, or what is missing;
// every computable one is also a RiskAssessment.
func (b *caseBuilder) risksSection() section {
	const title = "Risks"
	var sb strings.Builder
	sb.WriteString("<table><thead><tr><th>Risk</th><th>Result</th><th>Inputs</th><th>Formula and source</th></tr></thead><tbody>")
	var refs []reference
	for _, r := range b.cs.Risks {
		result := ""
		switch {
		case r.Computable:
			result = riskResult(r)
		case r.NotApplicable != "":
			result = "not applicable: " + r.NotApplicable
		default:
			result = "not computable: missing " + strings.Join(r.Missing, ", ")
		}
		if r.Computable && len(r.Missing) > 0 {
			result += " (partial: missing " + strings.Join(r.Missing, ", ") + ")"
		}
		var in []string
		for _, i := range r.Inputs {
			s := i.Name + ": " + i.Value
			if !i.Date.IsZero() {
				s += " (" + HumanDate(i.Date) + ")"
			}
			in = append(in, html.EscapeString(s))
		}
		fmt.Fprintf(&sb, "<tr><td>%s</td><td>%s%s</td><td>%s</td><td>%s: %s</td></tr>", html.EscapeString(r.Name), html.EscapeString(result),
			optionalCite(r.InterpretationCitation), strings.Join(in, "<br/>"), html.EscapeString(r.Formula), citeLink(&r.Citation))
		if r.Computable {
			refs = appendRef(refs, b.riskAssessment(r))
		}
	}
	sb.WriteString("</tbody></table>")
	s := section{Title: title, Code: concept(CaseSummarySystem, SectionRisks, title), Text: narrative(sb.String()), Entry: refs}
	if len(refs) == 0 {
		s.EmptyReason = &codeableConcept{Coding: []coding{{System: listEmptyReason, Code: "unavailable", Display: "Unavailable"}}}
	}
	return s
}

func riskResult(r Risk) string {
	var parts []string
	if r.HasValue && r.ID != "bp-category" && r.ID != "cha2ds2-vasc" {
		switch r.Unit {
		case "%":
			parts = append(parts, knowledge.FormatNumber(r.Value)+"%")
		default:
			parts = append(parts, valueText(r.Value, r.Unit))
		}
	}
	if r.Category != "" {
		parts = append(parts, r.Category)
	}
	if r.Interpretation != "" {
		parts = append(parts, r.Interpretation)
	}
	return strings.Join(parts, ", ")
}

func (b *caseBuilder) riskAssessment(r Risk) string {
	var basis []reference
	seen := map[string]bool{}
	for _, in := range r.Inputs {
		if in.Resource != nil && !seen[in.Resource.Type+"/"+in.Resource.ID] {
			seen[in.Resource.Type+"/"+in.Resource.ID] = true
			basis = append(basis, resRef(in.Resource))
		}
	}
	pred := map[string]any{"outcome": codeableConcept{Text: r.Name}}
	if r.ID == "ascvd-pce" {
		pred["outcome"] = codeableConcept{Text: "Atherosclerotic cardiovascular disease event within 10 years"}
		pred["probabilityDecimal"] = json.Number(fmt.Sprintf("%.4f", r.Value/100))
		pred["whenRange"] = map[string]any{"high": map[string]any{"value": 10, "unit": "years", "system": ucumSystem, "code": "a"}}
	}
	if r.Category != "" {
		pred["qualitativeRisk"] = codeableConcept{Text: r.Category}
	}
	if t := riskResult(r); t != "" {
		pred["rationale"] = t
	}
	date := r.Date
	if date.IsZero() {
		date = b.now
	}
	note := r.Formula + ". Source: " + r.Citation.Source.Citation + " " + r.Citation.Source.URL
	if r.InterpretationCitation != nil {
		note += ". Interpretation: " + r.InterpretationCitation.Source.Citation + " " + r.InterpretationCitation.Source.URL
	}
	ra := map[string]any{
		"resourceType": "RiskAssessment", "status": "final",
		"method":             codeableConcept{Coding: []coding{{System: CaseSummarySystem, Code: r.ID, Display: r.Formula}}, Text: r.Formula},
		"subject":            b.patient,
		"occurrenceDateTime": fhir.FormatInstant(date),
		"performer":          b.device,
		"prediction":         []map[string]any{pred},
		"note":               []map[string]string{{"text": note}},
	}
	if len(basis) > 0 {
		ra["basis"] = basis
	}
	return b.add(ra)
}

// careSection: the expected tests and reviews, unmet first; each unmet
// one is a DetectedIssue (CAREGAP for a test).
func (b *caseBuilder) careSection() section {
	const title = "Missing tests and reviews"
	cs := b.cs
	if len(cs.Care) == 0 {
		return emptySection(title, SectionMissingTests, "No rule of the knowledge tables applies to the active conditions and medications.")
	}
	var sb strings.Builder
	gaps := cs.Gaps()
	fmt.Fprintf(&sb, "<p>%d of %d expected tests and reviews are missing, overdue or call for a review.</p>", len(gaps), len(cs.Care))
	sb.WriteString("<table><thead><tr><th>Expected</th><th>Because of</th><th>Last done</th><th>Status</th><th>Source</th></tr></thead><tbody>")
	var refs []reference
	for _, c := range cs.Care {
		last := "never in the record"
		if !c.LastDone.IsZero() {
			last = HumanDate(c.LastDone)
		} else if c.LastResource != nil {
			last = "undated"
		}
		if c.Kind == CareReview && c.Value != "" {
			last = c.Value + " on " + HumanDate(c.ValueDate)
		}
		fmt.Fprintf(&sb, "<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>",
			html.EscapeString(c.Text), html.EscapeString(c.Trigger), html.EscapeString(last), html.EscapeString(careStatus(c)), citeLink(&c.Citation))
		if !c.Met {
			refs = appendRef(refs, b.careIssue(c))
		}
	}
	sb.WriteString("</tbody></table>")
	s := section{Title: title, Code: concept(CaseSummarySystem, SectionMissingTests, title), Text: narrative(sb.String()), Entry: refs}
	if len(refs) == 0 {
		s.EmptyReason = &codeableConcept{Coding: []coding{{System: listEmptyReason, Code: "unavailable", Display: "Unavailable"}}}
	}
	return s
}

func careStatus(c CareCheck) string {
	switch {
	case c.Kind == CareReview:
		return "review needed"
	case c.Met && c.WithinMonths > 0:
		return fmt.Sprintf("up to date (due again by %s)", HumanDate(c.DueBy))
	case c.Met:
		return "done"
	case c.LastDone.IsZero() && c.LastResource == nil:
		return "missing"
	case c.WithinMonths > 0 && !c.DueBy.IsZero():
		return fmt.Sprintf("overdue since %s (expected every %d months)", HumanDate(c.DueBy), c.WithinMonths)
	}
	return "missing"
}

func (b *caseBuilder) careIssue(c CareCheck) string {
	code := codeableConcept{Coding: []coding{{System: actCodeSystem, Code: "CAREGAP", Display: "Care Gaps"}}, Text: "Missing or overdue test"}
	if c.Kind == CareReview {
		code = codeableConcept{Coding: []coding{{System: CaseSummarySystem, Code: "treatment-review", Display: "Treatment review"}}, Text: "Treatment review"}
	}
	detail := c.Text + ". Because of " + c.Trigger + ". "
	switch {
	case c.Kind == CareReview:
		detail += "Latest value " + c.Value + " on " + HumanDate(c.ValueDate) + "."
	case c.LastDone.IsZero():
		detail += "Never done in the record."
	default:
		detail += "Last done " + HumanDate(c.LastDone) + "; " + careStatus(c) + "."
	}
	detail += " Source: " + c.Citation.String()
	di := map[string]any{
		"resourceType": "DetectedIssue", "status": "final", "code": code, "severity": "moderate",
		"patient": b.patient, "identifiedDateTime": fhir.FormatInstant(b.now), "author": b.device,
		"detail": detail, "reference": c.Citation.Source.URL,
	}
	if c.TriggerResource != nil {
		di["implicated"] = []reference{resRef(c.TriggerResource)}
	}
	if c.LastResource != nil {
		di["evidence"] = []map[string]any{{"detail": []reference{resRef(c.LastResource)}}}
	}
	return b.add(di)
}

// completenessSection: the specialty's expected investigations, each
// missing one with the guideline it comes from.
func (b *caseBuilder) completenessSection(c *Completeness) section {
	title := "Completeness for " + c.Specialty.Display
	var sb strings.Builder
	sb.WriteString("<table><thead><tr><th>Expected investigation</th><th>Status</th><th>Source</th></tr></thead><tbody>")
	var ev []*fhir.Resource
	for _, f := range c.Present {
		last := time.Time{}
		for _, r := range f.Evidence {
			if d := whenOf(r); d.After(last) {
				last = d
			}
		}
		status := fmt.Sprintf("present (%d)", len(f.Evidence))
		if !last.IsZero() {
			status += ", latest " + HumanDate(last)
		}
		fmt.Fprintf(&sb, "<tr><td>%s</td><td>%s</td><td>%s</td></tr>", html.EscapeString(f.Investigation.Name), html.EscapeString(status), b.investigationCite(f.Investigation))
		ev = append(ev, f.Evidence...)
	}
	for _, m := range c.Missing {
		fmt.Fprintf(&sb, "<tr><td>%s</td><td>missing</td><td>%s</td></tr>", html.EscapeString(m.Name), b.investigationCite(m))
	}
	sb.WriteString("</tbody></table>")
	s := section{Title: title, Code: concept(CaseSummarySystem, SectionCompleteness, "Completeness"), Text: narrative(sb.String())}
	seen := map[*fhir.Resource]bool{}
	for _, r := range ev {
		if !seen[r] {
			seen[r] = true
			s.Entry = append(s.Entry, resRef(r))
		}
	}
	if len(s.Entry) == 0 {
		s.EmptyReason = &codeableConcept{Coding: []coding{{System: listEmptyReason, Code: "unavailable", Display: "Unavailable"}}}
	}
	return s
}

func (b *caseBuilder) investigationCite(inv Investigation) string {
	c, ok := inv.Cite(b.kb)
	if !ok {
		return ""
	}
	return citeLink(&c)
}

// draftSection is the model's narrative, labelled as machine-written and
// authored by its own Device.
func (b *caseBuilder) draftSection(d *Draft) section {
	const title = "Machine-written narrative (draft)"
	empty := &codeableConcept{Coding: []coding{{System: listEmptyReason, Code: "unavailable", Display: "Unavailable"}}}
	if strings.TrimSpace(d.Text) == "" {
		return section{Title: title, Code: concept(CaseSummarySystem, SectionDraft, "Machine-written narrative"), EmptyReason: empty,
			Text: narrative("<p>No machine-written draft: " + html.EscapeString(d.Error) + ". The computed sections above are complete without it.</p>")}
	}
	dev := b.add(map[string]any{
		"resourceType": "Device",
		"deviceName":   []map[string]string{{"name": "text model " + d.Model + " at " + d.Endpoint, "type": "model-name"}},
		"type":         codeableConcept{Text: "Text model that drafted a narrative from the computed case summary"},
	})
	var sb strings.Builder
	sb.WriteString("<p><b>Machine-written draft.</b> A text model (" + html.EscapeString(d.Model) + ") wrote this from the computed sections above; it was not reviewed by a clinician and does not replace them.</p>")
	for _, para := range strings.Split(strings.TrimSpace(d.Text), "\n\n") {
		sb.WriteString("<p>" + strings.ReplaceAll(html.EscapeString(strings.TrimSpace(para)), "\n", "<br/>") + "</p>")
	}
	var author []reference
	if dev != "" {
		author = []reference{{Reference: dev}}
	}
	return section{Title: title, Code: concept(CaseSummarySystem, SectionDraft, "Machine-written narrative"), Author: author,
		Text: narrative(sb.String()), EmptyReason: empty}
}

// describe is a one-line human label: what, when, the value and status.
func describe(r *fhir.Resource, byRef map[string]*fhir.Resource) string {
	root := r.Root()
	parts := []string{display(r, byRef)}
	if r.Type == "Observation" {
		if v := observationValue(root); v != "" {
			parts[0] += " " + v
		}
	}
	if d := whenOf(r); !d.IsZero() {
		prefix := ""
		switch r.Type {
		case "Condition", "MedicationRequest", "MedicationStatement", "CarePlan":
			prefix = "since "
		}
		parts = append(parts, prefix+HumanDate(d))
	}
	switch r.Type {
	case "Condition", "AllergyIntolerance":
		if t, ok := parseFHIRTime(root.Get("abatementDateTime").String()); ok {
			parts = append(parts, "resolved "+HumanDate(t))
		} else if s := statusLabel(root.Get("clinicalStatus")); s != "" {
			parts = append(parts, s)
		}
	case "Observation", "Patient":
	default:
		if s := root.Get("status").String(); s != "" {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, ", ")
}

// observationValue renders an Observation's value (and components'):
// "178 cm", "148/92 mmHg" for a blood pressure, "Never smoked".
func observationValue(root *fjson.Value) string {
	if v := elementValue(root); v != "" {
		return v
	}
	comps := items(root.Get("component"))
	var sys, dia string
	var parts []string
	for _, c := range comps {
		v := elementValue(c)
		switch loincOf(c.Get("code")) {
		case loincSBP:
			if q, ok := quantityOf(c.Get("valueQuantity")); ok {
				sys = knowledge.FormatNumber(q.value)
			}
		case loincDBP:
			if q, ok := quantityOf(c.Get("valueQuantity")); ok {
				dia = knowledge.FormatNumber(q.value)
			}
		}
		if v != "" {
			parts = append(parts, conceptLabel(c.Get("code"))+" "+v)
		}
	}
	if sys != "" && dia != "" && len(comps) == 2 {
		return sys + "/" + dia + " mmHg"
	}
	return strings.Join(parts, "; ")
}

func elementValue(el *fjson.Value) string {
	if q, ok := quantityOf(el.Get("valueQuantity")); ok {
		return q.comparator + valueText(q.value, q.unit)
	}
	if cc := el.Get("valueCodeableConcept"); cc != nil {
		return conceptLabel(cc)
	}
	if s := el.Get("valueString").String(); s != "" {
		return s
	}
	for _, k := range []string{"valueInteger", "valueBoolean"} {
		if v := el.Get(k); v != nil {
			return v.Str
		}
	}
	return ""
}
