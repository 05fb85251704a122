package ccda

import (
	"bytes"
	"cmp"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"html"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/internal/sharedtest"
)

// el is the test's own reading of the document (encoding/xml, not the
// converter's tree).
type el struct {
	Name     string
	Attrs    map[string]string
	Children []*el
	Text     string
}

func readXML(t *testing.T, data []byte) *el {
	d := xml.NewDecoder(bytes.NewReader(data))
	var stack []*el
	var root *el
	for {
		tok, err := d.Token()
		if err != nil {
			break
		}
		switch x := tok.(type) {
		case xml.StartElement:
			e := &el{Name: x.Name.Local, Attrs: map[string]string{}}
			if x.Name.Space == "urn:hl7-org:sdtc" {
				e.Name = "sdtc:" + e.Name
			}
			for _, a := range x.Attr {
				e.Attrs[a.Name.Local] = a.Value
			}
			if len(stack) > 0 {
				p := stack[len(stack)-1]
				p.Children = append(p.Children, e)
			} else {
				root = e
			}
			stack = append(stack, e)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].Text += string(x)
			}
		}
	}
	if root == nil {
		t.Fatal("no document element")
	}
	return root
}

// at follows a path like the converter's account paths:
// "ClinicalDocument/component/structuredBody/component[3]/section/entry[1]".
func (e *el) at(path string) *el {
	parts := strings.Split(path, "/")
	if parts[0] != e.Name {
		return nil
	}
	cur := e
	for _, p := range parts[1:] {
		name, idx := p, 1
		if i := strings.IndexByte(p, '['); i >= 0 {
			name = p[:i]
			idx, _ = strconv.Atoi(strings.TrimSuffix(p[i+1:], "]"))
		}
		n := 0
		var next *el
		for _, c := range cur.Children {
			if c.Name == name {
				n++
				if n == idx {
					next = c
					break
				}
			}
		}
		if next == nil {
			return nil
		}
		cur = next
	}
	return cur
}

// codes lists the code attributes of code, value and translation elements
// under e.
func (e *el) codes(out map[string]bool) {
	for _, c := range e.Children {
		if (c.Name == "code" || c.Name == "value" || c.Name == "translation") && c.Attrs["code"] != "" {
			out[c.Attrs["code"]] = true
		}
		c.codes(out)
	}
}

func (e *el) text() string {
	var b strings.Builder
	var walk func(*el)
	walk = func(x *el) {
		b.WriteString(x.Text + " ")
		for _, c := range x.Children {
			walk(c)
		}
	}
	walk(e)
	return strings.Join(strings.Fields(b.String()), " ")
}

// ids maps the ID attributes of the document to their elements (narrative).
func (e *el) ids(m map[string]*el) {
	if id := e.Attrs["ID"]; id != "" {
		m[id] = e
	}
	for _, c := range e.Children {
		c.ids(m)
	}
}

// refs lists the narrative references (#id) under e.
func (e *el) refs(out *[]string) {
	if e.Name == "reference" && strings.HasPrefix(e.Attrs["value"], "#") {
		*out = append(*out, e.Attrs["value"][1:])
	}
	for _, c := range e.Children {
		c.refs(out)
	}
}

// primaryTypes are the resource types an entry of a section (by LOINC
// code) may become.
var primaryTypes = map[string][]string{
	"48765-2": {"AllergyIntolerance"}, "11450-4": {"Condition"}, "10160-0": {"MedicationStatement"}, "11369-6": {"Immunization"},
	"30954-2": {"Observation", "DiagnosticReport"}, "8716-3": {"Observation"}, "47519-4": {"Procedure", "Observation"},
	"46240-8": {"Encounter"}, "29762-2": {"Observation", "Patient"}, "48768-6": {"Coverage"}, "10157-6": {"FamilyMemberHistory"},
	"46264-8": {"DeviceUseStatement", "Procedure"}, "18776-5": {"ServiceRequest", "MedicationRequest", "Goal", "CarePlan"},
	"69730-0": {"CarePlan"}, "47420-5": {"Observation", "Condition", "DeviceUseStatement"}, "10190-7": {"Observation", "Condition"},
	"42348-3": {"Observation"}, "11348-0": {"Condition"}, "46241-6": {"Condition"}, "42347-5": {"Condition"}, "11535-2": {"Condition"},
	"10183-2": {"MedicationStatement"}, "75311-1": {"MedicationStatement"}, "61144-2": {"Observation"}, "8709-8": {"Observation"},
	"42349-1": {"ServiceRequest"}, "61146-7": {"Goal"}, "75310-3": {"Condition"},
	"51847-2": {"ServiceRequest", "MedicationRequest", "Goal", "CarePlan"}, "62387-6": {"Procedure", "ServiceRequest", "MedicationRequest", "Goal", "CarePlan"},
	"42346-7": {"MedicationStatement"},
}

// TestEveryEntryAccounted converts every C-CDA sample and checks that
// each entry of each section is accounted for: converted into resources
// of the types its section calls for, carrying a code the entry carries
// (or its narrative text when it has no code), or not converted and
// listed in the issues; and that every section without entries is a
// section of the Composition with its narrative.
func TestEveryEntryAccounted(t *testing.T) {
	dir := sharedtest.Path(t, "ccda")
	files, _ := filepath.Glob(filepath.Join(dir, "*.xml"))
	if len(files) == 0 {
		t.Skip("no C-CDA samples")
	}
	var docs, entries, converted, notConverted, narrative, narrativeKept int
	bySection := map[string][3]int{} // LOINC section code: converted, not converted, narrative only
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Convert(data, Options{})
			if err != nil {
				t.Fatal(err)
			}
			docs++
			root := readXML(t, data)
			ids := map[string]*el{}
			root.ids(ids)
			byRef := map[string]map[string]any{}
			var comp map[string]any
			for _, r := range res.Resources {
				var m map[string]any
				dec := json.NewDecoder(bytes.NewReader(r.Raw))
				dec.UseNumber()
				if err := dec.Decode(&m); err != nil {
					t.Fatal(err)
				}
				byRef[r.Type+"/"+r.ID] = m
				if r.Type == "Composition" {
					comp = m
				}
			}
			// every entry of the XML has an account
			var xmlEntries []string
			var walk func(e *el, path string)
			walk = func(e *el, path string) {
				n := map[string]int{}
				for _, c := range e.Children {
					n[c.Name]++
					p := fmt.Sprintf("%s/%s[%d]", path, c.Name, n[c.Name])
					if c.Name == "entry" {
						xmlEntries = append(xmlEntries, p)
					}
					if c.Name == "component" || c.Name == "section" || c.Name == "structuredBody" {
						walk(c, p)
					}
				}
			}
			walk(root, "ClinicalDocument")
			accounted := map[string]bool{}
			for _, a := range res.Entries {
				accounted[canonical(a.Where)] = true
			}
			for _, x := range xmlEntries {
				if !accounted[canonical(x)] {
					t.Errorf("entry %s has no account", x)
				}
			}
			for _, a := range res.Entries {
				n := bySection[a.SectionCode]
				switch {
				case a.Narrative:
					n[2]++
				case a.NotConverted != "":
					n[1]++
				default:
					n[0]++
				}
				bySection[a.SectionCode] = n
				switch {
				case a.Narrative:
					narrative++
					if !hasSection(comp, a.Section) {
						t.Errorf("%s: the section %q is not in the Composition", a.Where, a.Section)
					}
				case a.NotConverted != "":
					notConverted++
					listed := false
					for _, is := range res.Issues {
						for _, e := range is.Expression {
							if strings.HasPrefix(a.Where, e) {
								listed = true
							}
						}
					}
					if !listed {
						t.Errorf("%s not converted (%s) but not listed", a.Where, a.NotConverted)
					}
				default:
					entries++
					converted++
					checkEntry(t, root.at(a.Where), ids, a, byRef)
					switch checkNarrativeKept(root.at(a.Where), ids, a, byRef) {
					case "kept":
						narrativeKept++
					case "lost":
						t.Errorf("%s: the narrative of the entry is in none of the resources it became", a.Where)
					}
				}
			}
		})
	}
	var parts []string
	for code, n := range bySection {
		parts = append(parts, fmt.Sprintf("%s %d/%d/%d", cmp.Or(code, "(no code)"), n[0], n[1], n[2]))
	}
	sort.Strings(parts)
	t.Logf("%d documents: %d entries converted (%d with their own narrative, kept as the text of what they became), %d not converted (listed), %d narrative-only sections kept in the Composition; per section (LOINC) converted/not/narrative: %s",
		docs, converted, narrativeKept, notConverted, narrative, strings.Join(parts, ", "))
}

func canonical(path string) string {
	return strings.ReplaceAll(path, "[1]/", "/")
}

func checkEntry(t *testing.T, e *el, ids map[string]*el, a EntryAccount, byRef map[string]map[string]any) {
	t.Helper()
	if e == nil {
		t.Errorf("%s: no such element in the document", a.Where)
		return
	}
	var rs []map[string]any
	for _, ref := range a.Resources {
		r := byRef[ref]
		if r == nil {
			t.Errorf("%s names %s, which the result does not hold", a.Where, ref)
			continue
		}
		rs = append(rs, r)
	}
	if want := primaryTypes[a.SectionCode]; len(want) > 0 {
		ok := false
		for _, r := range rs {
			for _, w := range want {
				if r["resourceType"] == w {
					ok = true
				}
			}
		}
		if !ok {
			var got []string
			for _, r := range rs {
				got = append(got, r["resourceType"].(string))
			}
			t.Errorf("%s (%s): became %v, want one of %v", a.Where, a.Section, got, want)
		}
	}
	codes := map[string]bool{}
	e.codes(codes)
	all, _ := json.Marshal(rs)
	for c := range codes {
		if bytes.Contains(all, []byte(`"code":`+strconv.Quote(c))) {
			return
		}
	}
	// no code of the entry made it (it has none, or only codes that
	// qualify it): the narrative it points at is kept
	var refs []string
	e.refs(&refs)
	for _, r := range refs {
		if n := ids[r]; n != nil {
			words := strings.Fields(n.text())
			if len(words) > 3 {
				words = words[:3]
			}
			if len(words) > 0 && bytes.Contains(all, []byte(strings.Join(words, " "))) {
				return
			}
		}
	}
	keys := make([]string, 0, len(codes))
	for c := range codes {
		keys = append(keys, c)
	}
	sort.Strings(keys)
	t.Errorf("%s: none of the entry's codes %v, nor its narrative, is in what it became", a.Where, keys)
}

func hasSection(comp map[string]any, title string) bool {
	var walk func(ss []any) bool
	walk = func(ss []any) bool {
		for _, s := range ss {
			m := s.(map[string]any)
			if m["title"] == title || title == "" {
				if _, ok := m["text"]; ok || title == "" {
					return true
				}
				if _, ok := m["emptyReason"]; ok {
					return true
				}
			}
			if sub, ok := m["section"].([]any); ok && walk(sub) {
				return true
			}
		}
		return false
	}
	ss, _ := comp["section"].([]any)
	return walk(ss)
}

// checkNarrativeKept: when a statement of the entry has a text pointing
// at (or holding) narrative, the text of one of those statements is in a
// resource the entry became (its text, or an element that holds words). "kept", "lost", or "" when the
// entry has no narrative of its own.
func checkNarrativeKept(e *el, ids map[string]*el, a EntryAccount, byRef map[string]map[string]any) string {
	if e == nil {
		return ""
	}
	var texts []string
	var walk func(x *el)
	walk = func(x *el) {
		for _, c := range x.Children {
			if c.Name == "text" {
				var refs []string
				c.refs(&refs)
				for _, r := range refs {
					if n := ids[r]; n != nil && n.text() != "" {
						texts = append(texts, n.text())
					}
				}
				if t := strings.Join(strings.Fields(c.Text), " "); t != "" {
					texts = append(texts, t)
				}
				continue
			}
			switch c.Name {
			case "act", "observation", "substanceAdministration", "supply", "procedure", "encounter", "organizer", "entryRelationship", "component":
				walk(c)
			}
		}
	}
	walk(e)
	if len(texts) == 0 {
		return ""
	}
	// the resources' narrative (text.div), or a text element holding it
	// (an instruction's CarePlan activity description)
	var divs strings.Builder
	var strs func(v any)
	strs = func(v any) {
		switch x := v.(type) {
		case string:
			divs.WriteString(html.UnescapeString(x) + " ")
		case map[string]any:
			for _, c := range x {
				strs(c)
			}
		case []any:
			for _, c := range x {
				strs(c)
			}
		}
	}
	for _, ref := range a.Resources {
		if r := byRef[ref]; r != nil {
			strs(r)
		}
	}
	have := strings.Join(strings.Fields(divs.String()), " ")
	for _, t := range texts {
		if strings.Contains(have, t) {
			return "kept"
		}
	}
	return "lost"
}
