package ccda

import (
	"fmt"
	"html"
	"net/url"
	"strings"
)

// The document as a Composition: every section with its title, code and
// narrative (converted to FHIR's XHTML), the resources its entries became,
// and its subsections, so that sections made only of narrative (history
// of present illness, hospital course, assessment…) are kept too. Each
// converted resource keeps its entry's own narrative as its text.

// EntryAccount says what became of one entry (or of a section without
// entries) of the document.
type EntryAccount struct {
	// Section is the section's title and LOINC code.
	Section, SectionCode string
	// Where locates the entry ("ClinicalDocument/…/section/entry[2]"), or
	// the section for a section without entries.
	Where string
	// Resources are what the entry became ("Type/id").
	Resources []string
	// NotConverted says why it was not converted (listed in the issues).
	NotConverted string
	// Narrative: a section without entries, kept as the Composition
	// section's text.
	Narrative bool
}

// compSection is a section being converted.
type compSection struct {
	title    string
	code     obj
	text     string // XHTML div
	entries  []any
	sections []*compSection
}

// narrativeDiv converts a section's CDA narrative block (<text>) to a FHIR
// XHTML div: paragraph, list, item, table and its parts, content (span),
// linkHtml (a, http(s) and fragment links only), sub, sup, br, caption.
// Attributes are dropped except colspan and rowspan; anything else
// (renderMultiMedia, footnotes, comments) keeps only its text. "" when
// the narrative is empty.
func narrativeDiv(text *node) string {
	if text == nil || text.textContent() == "" {
		return ""
	}
	var b strings.Builder
	b.WriteString(`<div xmlns="http://www.w3.org/1999/xhtml">`)
	writeNarrative(&b, text, 0)
	b.WriteString(`</div>`)
	return b.String()
}

var narrativeTags = map[string]string{
	"paragraph": "p", "item": "li", "table": "table", "thead": "thead", "tbody": "tbody", "tfoot": "tfoot",
	"tr": "tr", "th": "th", "td": "td", "content": "span", "sub": "sub", "sup": "sup", "caption": "b",
	"colgroup": "colgroup", "col": "col", "footnote": "span",
}

// block elements may not sit inside a paragraph or span in XHTML.
var inlineOnly = map[string]bool{"p": true, "span": true, "b": true, "sub": true, "sup": true, "a": true}

func writeNarrative(b *strings.Builder, n *node, depth int) {
	if depth > 50 {
		return
	}
	writeText(b, n.lead)
	for _, ch := range n.children {
		tag := narrativeTags[ch.name]
		switch ch.name {
		case "br":
			b.WriteString("<br/>")
			writeText(b, ch.tail)
			continue
		case "renderMultiMedia", "footnoteRef":
			writeText(b, ch.tail)
			continue
		case "linkHtml":
			href := ch.attr("href")
			if u, err := url.Parse(href); err == nil && (u.Scheme == "http" || u.Scheme == "https" || u.Scheme == "" && strings.HasPrefix(href, "#")) {
				b.WriteString(`<a href="` + html.EscapeString(href) + `">`)
				writeNarrative(b, ch, depth+1)
				b.WriteString("</a>")
			} else {
				writeNarrative(b, ch, depth+1)
			}
			writeText(b, ch.tail)
			continue
		case "list":
			// a list's caption goes before it: ul and ol hold only li
			tag = "ul"
			if ch.attr("listType") == "ordered" {
				tag = "ol"
			}
			var items []*node
			for _, it := range ch.children {
				if it.name == "caption" {
					b.WriteString("<p><b>")
					writeNarrative(b, it, depth+1)
					b.WriteString("</b></p>")
				} else if it.name == "item" {
					items = append(items, it)
				}
			}
			if len(items) > 0 {
				b.WriteString("<" + tag + ">")
				for _, it := range items {
					b.WriteString("<li>")
					writeNarrative(b, it, depth+1)
					b.WriteString("</li>")
				}
				b.WriteString("</" + tag + ">")
			}
			writeText(b, ch.tail)
			continue
		case "caption":
			if n.name == "table" {
				tag = "caption"
			}
		}
		if tag == "" {
			writeNarrative(b, ch, depth+1)
			writeText(b, ch.tail)
			continue
		}
		b.WriteString("<" + tag)
		for _, a := range []string{"colspan", "rowspan"} {
			if v := ch.attr(a); v != "" && allDigits(v) {
				b.WriteString(" " + a + `="` + v + `"`)
			}
		}
		b.WriteString(">")
		writeNarrative(b, ch, depth+1)
		b.WriteString("</" + tag + ">")
		writeText(b, ch.tail)
	}
}

func writeText(b *strings.Builder, s string) {
	if strings.TrimSpace(s) == "" {
		if s != "" {
			b.WriteByte(' ')
		}
		return
	}
	b.WriteString(html.EscapeString(collapse(s)))
}

// collapse folds runs of white space to one space.
func collapse(s string) string {
	f := strings.Fields(s)
	out := strings.Join(f, " ")
	if s != "" && isSpace(s[0]) {
		out = " " + out
	}
	if len(s) > 1 && isSpace(s[len(s)-1]) {
		out += " "
	}
	return out
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// textDiv is plain text as an XHTML div.
func textDiv(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			b.WriteString("<p>" + html.EscapeString(p) + "</p>")
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return `<div xmlns="http://www.w3.org/1999/xhtml">` + b.String() + `</div>`
}

// keepNarrative gives each resource an entry became (the indexes of c.out)
// the narrative of the statement it was made from: the statement's own
// text, else those of the statements nested in it (an organizer's
// DiagnosticReport lists its results'). When the entry became one
// resource, that resource carries the entry's narrative failing its own
// statement's (a concern act around the problem observation).
func (c *converter) keepNarrative(entryStmt *node, made []int) {
	for _, j := range made {
		p := &c.out[j]
		if p.body.get("text") != nil {
			continue
		}
		var parts []string
		if p.stmt != nil {
			parts = c.entryNarrative(p.stmt)
		}
		if len(parts) == 0 && len(made) == 1 && p.stmt != entryStmt {
			parts = c.entryNarrative(entryStmt)
		}
		if div := textDiv(parts...); div != "" {
			p.body = append(obj{{"text", obj{{"status", "additional"}, {"div", div}}}}, p.body...)
		}
	}
}

// entryNarrative is the narrative an entry's statement points at: its
// text (a reference into the section narrative, or inline text), then the
// texts of the statements nested in it (a concern act's problem or allergy
// observation, its reaction and severity; an organizer's results), each
// once; failing all of them, the original text of its code or value.
func (c *converter) entryNarrative(st *node) []string {
	if st == nil {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	add := func(s string) {
		if s = strings.TrimSpace(s); s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	var walk func(n *node, depth int)
	walk = func(n *node, depth int) {
		add(c.originalText(n.child("text")))
		if depth >= 4 {
			return
		}
		for _, ch := range n.children {
			if ch.name == "entryRelationship" || ch.name == "component" {
				if inner := statement(ch); inner != nil {
					walk(inner, depth+1)
				}
			}
		}
	}
	walk(st, 0)
	if len(out) == 0 {
		for _, name := range []string{"code", "value"} {
			if n := st.child(name); n != nil {
				add(c.originalText(n.child("originalText")))
			}
		}
	}
	return out
}

// composition makes the document's Composition.
func (c *converter) composition(docRefID string) {
	var sections []any
	for _, s := range c.sections {
		if cs := compSectionObj(s); cs != nil {
			sections = append(sections, cs)
		}
	}
	date := c.ts(c.root.child("effectiveTime"), "ClinicalDocument/effectiveTime")
	if len(date) <= 10 && date != "" {
		// a date alone is a dateTime too
	} else if date == "" {
		date = c.now.UTC().Format("2006-01-02T15:04:05Z")
	}
	var authors []any
	for _, a := range c.authorRefs {
		authors = append(authors, a)
	}
	if len(authors) == 0 && c.custodianRef != nil {
		authors = append(authors, c.custodianRef)
	}
	if len(authors) == 0 {
		authors = append(authors, obj{{"display", "unknown author"}})
	}
	typ := c.concept(c.root.child("code"))
	if typ == nil {
		typ = obj{{"text", "clinical document"}}
	}
	title := c.root.child("title").textContent()
	if title == "" {
		title = firstNonEmpty(typ.text(), "Clinical document")
	}
	body := obj{}.
		add("identifier", identifier(c.root.child("id"))).
		add("status", "final").
		add("type", typ).
		add("subject", c.patientRef).
		add("encounter", c.encounterRef).
		add("date", date).
		add("author", authors).
		add("title", title)
	if conf := c.root.child("confidentialityCode").attr("code"); conf != "" {
		if _, ok := map[string]bool{"U": true, "L": true, "M": true, "N": true, "R": true, "V": true}[conf]; ok {
			body = body.add("confidentiality", conf)
		}
	}
	var attesters []obj
	for _, a := range []struct{ path, mode string }{{"legalAuthenticator", "legal"}, {"authenticator", "professional"}} {
		for _, n := range c.root.all(a.path) {
			ae := n.child("assignedEntity")
			if ae.child("assignedPerson") == nil {
				continue
			}
			at := obj{}.add("mode", a.mode).add("time", c.ts(n.child("time"), "ClinicalDocument/"+a.path+"/time")).
				add("party", c.practitioner(ae, "ClinicalDocument/"+a.path))
			attesters = append(attesters, at)
		}
	}
	body = body.add("attester", attesters).
		add("custodian", c.custodianRef).
		add("relatesTo", nil).
		add("section", sections)
	if docRefID != "" {
		body = body.add("extension", []obj{{{"url", "http://hl7.org/fhir/StructureDefinition/composition-clinicaldocument-versionNumber"}, {"valueString", firstNonEmpty(c.root.child("versionNumber").attr("value"), "1")}}})
	}
	ref := c.emit("Composition", body, "ClinicalDocument", true)
	for i := range c.accounts {
		if c.accounts[i].Narrative {
			c.accounts[i].Resources = []string{ref[0].val.(string)}
		}
	}
}

func compSectionObj(s *compSection) obj {
	var subs []any
	for _, sub := range s.sections {
		if so := compSectionObj(sub); so != nil {
			subs = append(subs, so)
		}
	}
	o := obj{}.add("title", s.title).add("code", s.code)
	if s.text != "" {
		o = o.add("text", obj{{"status", "generated"}, {"div", s.text}})
	}
	o = o.add("entry", s.entries).add("section", subs)
	if s.text == "" && len(s.entries) == 0 && len(subs) == 0 {
		o = o.add("emptyReason", cc("http://terminology.hl7.org/CodeSystem/list-empty-reason", "unavailable", "Unavailable"))
	}
	return o
}

// accountFor adds ref to the account of the entry at where.
func (c *converter) accountFor(where, ref string) {
	for i := range c.accounts {
		if w := c.accounts[i].Where; w == where || strings.HasPrefix(where, w+"/") {
			c.accounts[i].Resources = append(c.accounts[i].Resources, ref)
			c.accounts[i].NotConverted = ""
			return
		}
	}
}

// documentEncounter converts componentOf/encompassingEncounter: the
// encounter the document is about.
func (c *converter) documentEncounter(ee *node, where string) {
	class := obj{{"system", "http://terminology.hl7.org/CodeSystem/v3-ActCode"}, {"code", "AMB"}, {"display", "ambulatory"}}
	code := ee.child("code")
	for _, cd := range append([]*node{code}, code.all("translation")...) {
		if cd.attr("codeSystem") == "2.16.840.1.113883.5.4" && cd.attr("code") != "" {
			class = obj{}.add("system", "http://terminology.hl7.org/CodeSystem/v3-ActCode").add("code", cd.attr("code")).add("display", cd.attr("displayName"))
		}
	}
	var types []obj
	if t := c.concept(code); t != nil {
		types = append(types, t)
	}
	period := c.periodObj(ee.child("effectiveTime"), where+"/effectiveTime")
	stat := "finished"
	if period.get("end") == nil && period.get("start") != nil {
		stat = "in-progress"
	}
	if period.get("start") == nil {
		stat = "unknown"
	}
	body := obj{}.
		add("identifier", identifiers(ee.all("id"))).
		add("status", stat).
		add("class", class).
		add("type", types).
		add("subject", c.patientRef).
		add("period", period)
	var parts []obj
	if rp := ee.path("responsibleParty", "assignedEntity"); rp != nil && rp.child("assignedPerson") != nil {
		parts = append(parts, obj{{"type", []obj{cc("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "PPRF", "primary performer")}}, {"individual", c.practitioner(rp, where+"/responsibleParty")}})
	}
	for i, p := range ee.all("encounterParticipant") {
		ae := p.child("assignedEntity")
		if ae.child("assignedPerson") == nil {
			continue
		}
		pt := obj{}.add("individual", c.practitioner(ae, fmt.Sprintf("%s/encounterParticipant[%d]", where, i+1)))
		if tc := p.attr("typeCode"); tc != "" {
			pt = append(obj{{"type", []obj{cc("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", tc, "")}}}, pt...)
		}
		parts = append(parts, pt)
	}
	body = body.add("participant", parts)
	if fac := ee.path("location", "healthCareFacility"); fac != nil {
		name := firstNonEmpty(fac.path("location", "name").textContent(), fac.path("serviceProviderOrganization", "name").textContent(), c.concept(fac.child("code")).text())
		if name != "" {
			body = body.add("location", []obj{{{"location", obj{{"display", name}}}}})
		}
		if org := fac.child("serviceProviderOrganization"); org != nil {
			body = body.add("serviceProvider", c.organization(org, where+"/location/healthCareFacility/serviceProviderOrganization"))
		}
	}
	c.encounterRef = c.emit("Encounter", body, where, true)
}

// birthSex puts the Birth Sex Observation on the Patient as the US Core
// birth-sex extension (F, M or UNK).
func (c *converter) birthSex(o *node, where string) {
	v := o.child("value")
	code := v.attr("code")
	if code == "" && v.attr("nullFlavor") != "" {
		code = "UNK"
	}
	if code != "F" && code != "M" && code != "UNK" {
		c.warn("code-invalid", "birth sex "+code+" is not F, M or UNK", where+"/value")
		return
	}
	c.patientExtension(obj{{"url", "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex"}, {"valueCode", code}})
	c.accountTouch(c.patientRef)
}

// patientExtension adds an extension to the Patient (the first resource).
func (c *converter) patientExtension(ext obj) {
	for i := range c.out {
		if c.out[i].typ == "Patient" && "Patient/"+c.out[i].id == c.patientRef[0].val {
			exts, _ := c.out[i].body.get("extension").([]obj)
			c.out[i].body = c.out[i].body.set("extension", append(exts, ext))
			return
		}
	}
}

// accountTouch notes that the entry being converted went into ref, a
// resource made before it (read by section through touched).
func (c *converter) accountTouch(ref obj) {
	if s, ok := ref.get("reference").(string); ok {
		c.touched = append(c.touched, s)
	}
}
