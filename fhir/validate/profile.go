package validate

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/fhir/validate/internal/defs"
)

// profile is a loaded StructureDefinition that constrains a resource type.
type profile struct {
	url  string
	base string // the constrained resource type
	td   *typeDef
	// unsupported lists what of the profile is not checked (slices with
	// discriminators the validator does not evaluate, unknown bindings).
	unsupported []string
}

// sliceDef is one slice of a sliced element in a profile.
type sliceDef struct {
	name     string
	min, max int
	match    func(item *fjson.Value) bool
}

func cutVersion(url string) (string, string, bool) { return strings.Cut(url, "|") }

// AddProfile loads one StructureDefinition (JSON, with a snapshot) that
// constrains a resource type. Resources that claim its URL in meta.profile
// are then also checked against its cardinalities, types, fixed and pattern
// values, required bindings (whose value sets the validator knows), slices
// (extension slices by url, and slices discriminated by value or pattern) and
// invariants. Profiles of data types and extensions are accepted and
// ignored. Adding a profile with the URL of a loaded one replaces it.
func (v *Validator) AddProfile(sdJSON []byte) error {
	var sd defs.StructureDefinition
	if err := json.Unmarshal(sdJSON, &sd); err != nil {
		return fmt.Errorf("add profile: %w", err)
	}
	if sd.ResourceType != "StructureDefinition" || sd.Snapshot == nil || len(sd.Snapshot.Element) == 0 {
		return fmt.Errorf("add profile %s: %w", sd.URL, ErrNotStructureDefinition)
	}
	if sd.URL == "" {
		return fmt.Errorf("add profile: %w: no url", ErrNotStructureDefinition)
	}
	if sd.Kind != "resource" {
		return nil // a data type or extension profile: nothing to check directly
	}
	if base := v.m.types[sd.Type]; base == nil || base.kind != kindResource {
		return fmt.Errorf("add profile %s: type %q is not an R4 resource type", sd.URL, sd.Type)
	}
	p, err := v.buildProfile(&sd)
	if err != nil {
		return fmt.Errorf("add profile %s: %w", sd.URL, err)
	}
	v.mu.Lock()
	v.profiles[p.url] = p
	v.mu.Unlock()
	return nil
}

func (v *Validator) buildProfile(sd *defs.StructureDefinition) (*profile, error) {
	m := v.m
	var table defs.ConstraintTable
	vsByURL := make(map[string]*valueSet, len(m.valueSets))
	for _, vs := range m.valueSets {
		vsByURL[vs.url] = vs
	}
	t, err := defs.Convert(sd, &table, nil)
	if err != nil {
		return nil, err
	}
	p := &profile{url: sd.URL, base: sd.Type}
	cons := make([]*constraint, len(table.List))
	for i, c := range table.List {
		// Share the core constraint (and its compiled expression) when the
		// profile repeats it.
		cons[i] = newConstraint(c)
		for _, cc := range m.constraints {
			if cc.key == c.Key && cc.expr == c.Expression {
				cons[i] = cc
				break
			}
		}
	}
	// Slices and their descendants are not elements of the tree.
	var plain []defs.Element
	for _, el := range t.Elements {
		if strings.Contains(el.ID, ":") {
			continue
		}
		plain = append(plain, el)
	}
	all := t.Elements
	t.Elements = plain
	td, err := m.newType(&t, cons, func(el *defs.Element) *valueSet {
		if el.BindingURL == "" {
			return nil
		}
		vs := vsByURL[el.BindingURL]
		if vs == nil && el.BindingURL != mimeTypesVS {
			p.unsupported = append(p.unsupported, "required binding "+el.BindingURL+" of "+el.Path)
		}
		return vs
	})
	if err != nil {
		return nil, err
	}
	td.kind = kindResource
	td.root.ctxType = sd.Type
	if err := m.resolve(td); err != nil {
		return nil, err
	}
	p.td = td
	p.addSlices(all)
	return p, nil
}

// addSlices attaches the slices of the snapshot to their sliced elements.
func (p *profile) addSlices(all []defs.Element) {
	byID := make(map[string]*defs.Element, len(all))
	for i := range all {
		el := &all[i]
		id := el.ID
		if id == "" {
			id = el.Path
		}
		byID[id] = el
	}
	for i := range all {
		de := &all[i]
		if de.SliceName == "" {
			continue
		}
		sliceID := de.ID
		baseID, _, ok := strings.Cut(sliceID, ":")
		if !ok || strings.Contains(sliceID[len(baseID)+1:], ".") || strings.Contains(sliceID[len(baseID)+1:], ":") {
			continue // nested slices are not checked
		}
		base := p.td.byPath[de.Path]
		sliced := byID[baseID]
		if base == nil || sliced == nil {
			continue
		}
		match := sliceMatcher(de, sliceID, sliced, byID)
		if match == nil {
			p.unsupported = append(p.unsupported, "slice "+sliceID)
			continue
		}
		base.slices = append(base.slices, &sliceDef{name: de.SliceName, min: de.Min, max: de.Max, match: match})
	}
	for _, el := range p.td.byPath {
		if el.children == nil {
			continue
		}
		for _, c := range el.children.elems {
			if len(c.slices) > 0 {
				el.children.sliced = append(el.children.sliced, c)
			}
		}
	}
}

// sliceMatcher builds the test that tells whether an item belongs to a slice,
// or returns nil when the discriminators are not supported.
func sliceMatcher(slice *defs.Element, sliceID string, sliced *defs.Element, byID map[string]*defs.Element) func(*fjson.Value) bool {
	isExt := len(sliced.Types) == 1 && sliced.Types[0].Code == "Extension"
	if isExt && (sliced.Slicing == nil || len(sliced.Slicing.Discriminators) == 0 ||
		len(sliced.Slicing.Discriminators) == 1 && sliced.Slicing.Discriminators[0].Path == "url") {
		url := ""
		if len(slice.Types) == 1 {
			url = slice.Types[0].Profile
		}
		if u := byID[sliceID+".url"]; u != nil && len(u.Fixed) > 0 {
			_ = json.Unmarshal(u.Fixed, &url)
		}
		if url == "" {
			return nil
		}
		return func(it *fjson.Value) bool { return it.Get("url").String() == url }
	}
	if sliced.Slicing == nil || len(sliced.Slicing.Discriminators) == 0 {
		return nil
	}
	type test struct {
		path []string
		want *fjson.Value
	}
	var tests []test
	for _, d := range sliced.Slicing.Discriminators {
		if d.Type != "value" && d.Type != "pattern" {
			return nil
		}
		id := sliceID
		var path []string
		if d.Path != "$this" {
			for _, part := range strings.Split(d.Path, ".") {
				if strings.ContainsAny(part, "()") {
					return nil
				}
				path = append(path, part)
			}
			id += "." + d.Path
		}
		el := byID[id]
		if el == nil {
			return nil
		}
		raw := el.Fixed
		if len(raw) == 0 {
			raw = el.Pattern
		}
		if len(raw) == 0 {
			return nil
		}
		want, err := fjson.Parse(raw)
		if err != nil {
			return nil
		}
		tests = append(tests, test{path: path, want: want})
	}
	return func(it *fjson.Value) bool {
		for _, t := range tests {
			if !anyAt(it, t.path, t.want) {
				return false
			}
		}
		return true
	}
}

// anyAt reports whether some value at path below v (through arrays) matches
// want as a pattern.
func anyAt(v *fjson.Value, path []string, want *fjson.Value) bool {
	if v == nil {
		return false
	}
	if v.Kind == fjson.Array {
		for _, it := range v.Items {
			if anyAt(it, path, want) {
				return true
			}
		}
		return false
	}
	if len(path) == 0 {
		return matchesPattern(want, v)
	}
	return anyAt(v.Get(path[0]), path[1:], want)
}

// checkSlices checks the slice cardinalities of the sliced elements of an
// object.
func (w *walker) checkSlices(node *fjson.Value, cs *childSet) {
	for _, el := range cs.sliced {
		val := node.Get(el.name)
		var items []*fjson.Value
		if val != nil {
			if val.Kind == fjson.Array {
				items = val.Items
			} else {
				items = []*fjson.Value{val}
			}
		}
		for _, s := range el.slices {
			n := 0
			for _, it := range items {
				if s.match(it) {
					n++
				}
			}
			if n < s.min || s.max >= 0 && n > s.max {
				w.push(el.name, -1, "")
				code := codeStructure
				if n < s.min {
					code = codeRequired
				}
				w.errorf(code, fmt.Sprintf("slice %s of %s must occur %d..%s times, found %d", s.name, el.name, s.min, maxString(s.max), n))
				w.pop()
			}
		}
	}
}

func maxString(n int) string {
	if n < 0 {
		return "*"
	}
	return fmt.Sprint(n)
}

// resourceProfiles checks a resource against the loaded profiles it claims
// (and, for the top resource, those the caller asked for).
func (w *walker) resourceProfiles(node *fjson.Value, td *typeDef, place resPlace) {
	if w.inProfile {
		return
	}
	var urls []string
	explicit := 0
	if place == resTop {
		urls = append(urls, w.extraProfiles...)
		explicit = len(urls)
	}
	if mp := node.Get("meta").Get("profile"); mp != nil && mp.Kind == fjson.Array {
		for _, it := range mp.Items {
			if it.Kind == fjson.String && it.Str != "" {
				urls = append(urls, it.Str)
			}
		}
	}
	done := map[string]bool{}
	for i, u := range urls {
		url, _, _ := cutVersion(u)
		if done[url] {
			continue
		}
		done[url] = true
		if url == defs.CoreURL+td.name {
			continue // the base definition itself
		}
		p := w.v.profile(url)
		if p == nil {
			if i < explicit {
				w.add(fhir.SeverityError, codeNotSupp, "the profile "+url+" is not known to this server", "")
			} else {
				w.push("meta", -1, "")
				w.push("profile", -1, "")
				w.add(fhir.SeverityWarning, codeNotSupp, "the claimed profile "+url+" is not known, so it was not checked", "")
				w.pop()
				w.pop()
			}
			continue
		}
		if p.base != td.name {
			w.add(fhir.SeverityError, codeStructure, "the profile "+url+" is for "+p.base+" resources, not "+td.name, "")
			continue
		}
		w.profileWalk(node, p)
	}
}

// profileWalk validates node against a profile's element tree and adds the
// issues that the core walk has not already reported.
func (w *walker) profileWalk(node *fjson.Value, p *profile) {
	sub := &walker{v: w.v, m: w.m, path: append([]seg(nil), w.path...), res: w.res, inProfile: true}
	sub.object(node, p.td.root.children, true)
	sub.invariants(node, p.td.root.constraints, p.base)
	if len(sub.issues) == 0 {
		return
	}
	type key struct{ sev, code, expr, text string }
	seen := make(map[key]bool, len(w.issues))
	k := func(is *fhir.Issue) key {
		var e string
		if len(is.Expression) > 0 {
			e = is.Expression[0]
		}
		return key{is.Severity, is.Code, e, is.Details.Text}
	}
	for i := range w.issues {
		seen[k(&w.issues[i])] = true
	}
	for _, is := range sub.issues {
		if seen[k(&is)] {
			continue
		}
		seen[k(&is)] = true
		is.Details.Text += " (profile " + p.url + ")"
		w.issues = append(w.issues, is)
	}
}
