package referral

import (
	"fmt"
	"html"
	"strings"

	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// RenderHTML renders a document built by Summary as one printable HTML
// page: the patient's header, then the Composition's sections in order
// (the computed case summary first, then the IPS sections), each with the
// narrative the document carries, so the page says exactly what the FHIR
// document says. The page is well-formed XHTML served as text/html, with
// no script and no external resource; its print stylesheet keeps table
// rows together and repeats table headers across pages. PDF is left to
// the browser's print dialog: a server-made PDF would need an embedded
// Unicode font and text shaping for scripts such as Devanagari, which no
// pure-Go PDF writer does correctly.
func RenderHTML(doc *Document) []byte {
	var sb strings.Builder
	comp := doc.composition
	if comp == nil { // a Document not built by Summary
		comp = firstOf(doc.Bundle.Root().Get("entry")).Get("resource")
	}
	title := comp.Get("title").String()
	facts := doc.Summary.Patient
	var patient *fjson.Value
	if len(doc.Included) > 0 {
		patient = doc.Included[0].Root()
	}
	sb.WriteString("<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\"><head><meta charset=\"utf-8\"/>")
	sb.WriteString(`<meta name="viewport" content="width=device-width, initial-scale=1"/>`)
	fmt.Fprintf(&sb, "<title>%s</title><style>%s</style></head><body>", html.EscapeString(title+" — "+patientName(patient)), pageCSS)
	sb.WriteString("<header>")
	fmt.Fprintf(&sb, "<h1>%s</h1>", html.EscapeString(title))
	sb.WriteString("<dl class=\"patient\">")
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&sb, "<dt>%s</dt><dd>%s</dd>", html.EscapeString(k), html.EscapeString(v))
		}
	}
	row("Patient", patientName(patient))
	row("Born", HumanDate(facts.BirthDate))
	row("Sex", facts.Sex)
	if !facts.Deceased.IsZero() {
		row("Died", HumanDate(facts.Deceased))
	}
	for _, id := range items(patient.Get("identifier")) {
		if v := id.Get("value").String(); v != "" {
			label := conceptLabel(id.Get("type"))
			if label == "" {
				label = "Identifier"
			}
			row(label, v)
			break
		}
	}
	row("Summary as of", HumanDate(doc.Summary.AsOf))
	if t, ok := parseFHIRTime(comp.Get("date").String()); ok {
		row("Assembled", HumanDate(t)+" by fhirgate (software-assembled, not reviewed by a clinician)")
	}
	row("Confidentiality", comp.Get("confidentiality").String())
	sb.WriteString("</dl></header><main>")
	if div := comp.Get("text").Get("div").String(); div != "" {
		sb.WriteString(`<section class="overview">` + div + `</section>`)
	}
	for _, s := range items(comp.Get("section")) {
		code := ""
		for _, c := range codings(s.Get("code")) {
			code = c.Code
		}
		class := "section"
		if code == SectionDraft {
			class = "section draft"
		}
		fmt.Fprintf(&sb, `<section class="%s" id="%s"><h2>%s</h2>%s</section>`, class, html.EscapeString(code),
			html.EscapeString(s.Get("title").String()), s.Get("text").Get("div").String())
	}
	sb.WriteString("</main><footer><p>Values are shown as the sources reported them, rounded for reading; flags, trends, risks and missing tests were computed by fhirgate from the released record, each with the rule and the published source it comes from. Judgements against fhirgate's knowledge tables apply to adults unless stated and do not replace a laboratory's own reference intervals.</p></footer></body></html>\n")
	return []byte(sb.String())
}

// patientName is the Patient's first usable name.
func patientName(p *fjson.Value) string {
	if p == nil {
		return ""
	}
	names := items(p.Get("name"))
	for _, use := range []string{"official", "usual", ""} {
		for _, n := range names {
			if use != "" && n.Get("use").String() != use {
				continue
			}
			if t := n.Get("text").String(); t != "" {
				return t
			}
			var parts []string
			for _, g := range items(n.Get("given")) {
				parts = append(parts, g.String())
			}
			if f := n.Get("family").String(); f != "" {
				parts = append(parts, f)
			}
			if len(parts) > 0 {
				return strings.Join(parts, " ")
			}
		}
	}
	return ""
}

// pageCSS is the page's only style: readable on a phone, printable on A4.
const pageCSS = `body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif;margin:1.5rem auto;max-width:72rem;padding:0 1rem;color:#111;line-height:1.4}
h1{font-size:1.5rem;margin:0 0 .5rem}h2{font-size:1.15rem;border-bottom:2px solid #444;padding-bottom:.2rem;margin-top:1.6rem}
dl.patient{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;margin:0 0 1rem}dl.patient dt{font-weight:600}dl.patient dd{margin:0}
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{border:1px solid #bbb;padding:.25rem .4rem;text-align:left;vertical-align:top}
th{background:#eee}thead{display:table-header-group}tr{page-break-inside:avoid;break-inside:avoid}
section.draft{border:2px dashed #a60;padding:0 .8rem .5rem;background:#fff8ee}section.overview p{font-weight:600}
footer{margin-top:2rem;font-size:.8rem;color:#444}a{color:#035}
@page{size:A4;margin:15mm}@media print{body{margin:0;max-width:none}a{color:inherit;text-decoration:none}h2{break-after:avoid}}`
