package validate

import (
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// IssueType codes used by the validator.
const (
	codeStructure   = "structure"
	codeRequired    = "required"
	codeValue       = "value"
	codeInvariant   = "invariant"
	codeCodeInvalid = "code-invalid"
	codeNotFound    = "not-found"
	codeNotSupp     = "not-supported"
	codeBusiness    = "business-rule"
)

// seg is one step of the FHIRPath of the element being checked.
type seg struct {
	name   string
	idx    int32 // -1: not an array item
	ofType string
}

// resCtx is the resource being walked.
type resCtx struct {
	node *fjson.Value // %resource
	root *fjson.Value // %rootResource
	// contained maps the ids of the root resource's contained resources to
	// their types, for "#id" references.
	contained map[string]string
	bundle    *bundleCtx
}

// walker holds the state of one validation.
type walker struct {
	v      *Validator
	m      *model
	issues []fhir.Issue
	path   []seg
	res    *resCtx
	counts []int32 // per-element value counts of the objects on the stack
	// profiles asked for by the caller, applied to the top resource.
	extraProfiles []string
	// inProfile is set while checking a profile, whose walk does not look
	// at the profiles of nested resources.
	inProfile bool
	// auditGuards (tests only) evaluates the invariants that guards skip
	// and reports a fatal issue when one of them fails.
	auditGuards bool
}

func (w *walker) push(name string, idx int, ofType string) {
	w.path = append(w.path, seg{name: name, idx: int32(idx), ofType: ofType})
}

func (w *walker) pop() { w.path = w.path[:len(w.path)-1] }

func (w *walker) setIdx(i int) { w.path[len(w.path)-1].idx = int32(i) }

func (w *walker) pathString() string {
	var b strings.Builder
	for i, s := range w.path {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.name)
		if s.idx >= 0 {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(int(s.idx)))
			b.WriteByte(']')
		}
		if s.ofType != "" {
			b.WriteString(".ofType(")
			b.WriteString(s.ofType)
			b.WriteByte(')')
		}
	}
	return b.String()
}

// add records an issue at the current path. details must not contain values
// from the resource; diagnostics may.
func (w *walker) add(severity, code, details, diagnostics string) {
	is := fhir.Issue{Severity: severity, Code: code, Details: &fhir.IssueDetails{Text: details}, Diagnostics: diagnostics}
	if len(w.path) > 0 {
		is.Expression = []string{w.pathString()}
	}
	w.issues = append(w.issues, is)
}

func (w *walker) errorf(code, details string) { w.add(fhir.SeverityError, code, details, "") }

// quote renders a value for Diagnostics, shortened.
func quote(v *fjson.Value) string {
	raw := v.Raw
	if v.Kind == fjson.String {
		s := v.Str
		if len(s) > 200 {
			s = s[:200] + "..."
		}
		return strconv.Quote(s)
	}
	if len(raw) > 200 {
		return string(raw[:200]) + "..."
	}
	return string(raw)
}

// topResource validates a resource at the top of the document.
func (w *walker) topResource(node *fjson.Value, profiles []string) {
	w.extraProfiles = profiles
	if node.Kind != fjson.Object {
		w.errorf(codeStructure, "a resource must be a JSON object, not "+kindName(node.Kind))
		return
	}
	w.resource(node, resTop)
}

type resPlace uint8

const (
	resTop       resPlace = iota
	resContained          // DomainResource.contained
	resEntry              // Bundle.entry.resource, Parameters.parameter.resource, ...
)

// resource validates a resource object. The caller has pushed the segment
// of the element that holds it (nothing for the top resource).
func (w *walker) resource(node *fjson.Value, place resPlace) {
	rtv := node.Get("resourceType")
	switch {
	case rtv == nil:
		w.errorf(codeRequired, "resourceType is missing")
		return
	case rtv.Kind != fjson.String:
		w.errorf(codeStructure, "resourceType must be a string")
		return
	}
	td := w.m.types[rtv.Str]
	if td == nil || td.kind != kindResource || td.abstract {
		w.add(fhir.SeverityError, codeStructure, "resourceType is not an R4 resource type", "resourceType "+quote(rtv))
		return
	}
	if place == resTop {
		w.push(td.name, -1, "")
		defer w.pop()
	} else {
		w.path[len(w.path)-1].ofType = td.name
	}
	rc := &resCtx{node: node, root: node}
	if w.res != nil {
		rc.bundle = w.res.bundle
	}
	if place == resContained && w.res != nil {
		rc.root = w.res.root
		rc.contained = w.res.contained
		if node.Get("contained") != nil {
			// dom-2, reported here, where the path can name the culprit
			w.push("contained", -1, "")
			w.errorf(codeInvariant, "dom-2: If the resource is contained in another resource, it SHALL NOT contain nested Resources")
			w.pop()
		}
	} else {
		rc.contained = containedIDs(node)
	}
	if td.name == "Bundle" {
		rc.bundle = w.newBundle(node)
	}
	saved := w.res
	w.res = rc
	w.object(node, td.root.children, true)
	if td.name == "Bundle" {
		w.bundleChecks(node)
		if !w.v.opts.SkipInvariants {
			w.checkBdl7(node, td.root.constraints)
		}
	}
	w.invariants(node, td.root.constraints, td.name)
	if !w.v.opts.SkipInvariants && place != resContained {
		w.checkDom3(node, td.root.constraints)
	}
	w.resourceProfiles(node, td, place)
	w.res = saved
}

func containedIDs(node *fjson.Value) map[string]string {
	c := node.Get("contained")
	if c == nil || c.Kind != fjson.Array {
		return nil
	}
	ids := make(map[string]string, len(c.Items))
	for _, it := range c.Items {
		if id := it.Get("id"); id != nil && id.Kind == fjson.String {
			ids[id.Str] = it.Get("resourceType").String()
		}
	}
	return ids
}

func kindName(k fjson.Kind) string {
	switch k {
	case fjson.Object:
		return "an object"
	case fjson.Array:
		return "an array"
	case fjson.String:
		return "a string"
	case fjson.Number:
		return "a number"
	case fjson.Bool:
		return "a boolean"
	}
	return "null"
}

// object validates the members of a JSON object against a set of child
// elements.
func (w *walker) object(node *fjson.Value, cs *childSet, isResource bool) {
	if cs == nil {
		// A type without children (cannot happen for core types).
		return
	}
	base := len(w.counts)
	w.counts = append(w.counts, make([]int32, len(cs.elems))...)
	for i := range node.Members {
		m := &node.Members[i]
		if isResource && m.Key == "resourceType" {
			continue
		}
		s, ok := cs.keys[m.Key]
		if !ok {
			w.unknown(m.Key, node)
			continue
		}
		el := s.el
		var n int
		switch {
		case s.ext:
			if node.Get(s.other) != nil {
				continue // checked with its value
			}
			n = w.primitiveMember(el, s.t, nil, m.Value)
		case s.other != "":
			n = w.primitiveMember(el, s.t, m.Value, node.Get(s.other))
		default:
			n = w.complexMember(el, s.t, m.Value)
		}
		if el.choice && n > 0 && w.counts[base+el.idx] > 0 {
			w.push(el.name, -1, el.types[s.t].code)
			w.errorf(codeStructure, "only one type of "+el.name+"[x] may be present")
			w.pop()
		}
		w.counts[base+el.idx] += int32(n)
	}
	for _, el := range cs.required {
		if int(w.counts[base+el.idx]) < el.min {
			name := el.name
			if el.choice {
				name += "[x]"
			}
			w.push(name, -1, "")
			if el.min == 1 {
				w.errorf(codeRequired, "missing required element "+name)
			} else {
				w.errorf(codeRequired, name+" must occur at least "+strconv.Itoa(el.min)+" times")
			}
			w.pop()
		}
	}
	for _, el := range cs.limited {
		if c := int(w.counts[base+el.idx]); c > el.max {
			w.push(el.name, -1, "")
			if el.max == 0 {
				w.errorf(codeStructure, el.name+" is not allowed here")
			} else {
				w.errorf(codeStructure, el.name+" may occur at most "+strconv.Itoa(el.max)+" times, found "+strconv.Itoa(c))
			}
			w.pop()
		}
	}
	w.counts = w.counts[:base]
	if len(cs.sliced) > 0 {
		w.checkSlices(node, cs)
	}
}

func (w *walker) unknown(key string, parent *fjson.Value) {
	w.push(key, -1, "")
	defer w.pop()
	if strings.HasPrefix(key, "_") {
		if parent.Get(key[1:]) != nil {
			w.errorf(codeStructure, "unrecognized element "+key+": "+key[1:]+" is not a primitive, so it cannot have a "+key+" member")
			return
		}
	}
	w.errorf(codeStructure, "unrecognized element "+key)
}

// primitiveMember validates the value member and the "_name" member of a
// primitive element (either may be nil) and returns the number of values.
func (w *walker) primitiveMember(el *elemDef, t int, val, ext *fjson.Value) int {
	tr := &el.types[t]
	ofType := ""
	if el.choice {
		ofType = tr.code
	}
	w.push(el.name, -1, ofType)
	defer w.pop()
	if !el.array {
		if val != nil && val.Kind == fjson.Array || ext != nil && ext.Kind == fjson.Array {
			w.errorf(codeStructure, el.name+" must not be an array: it occurs at most once")
			return 1
		}
		if val != nil && val.Kind == fjson.Null {
			w.errorf(codeStructure, "null is not allowed; omit the element instead")
			val = nil
			if ext == nil {
				return 0
			}
		}
		w.primitiveValue(el, tr, val, ext)
		return 1
	}
	if val != nil && val.Kind != fjson.Array || ext != nil && ext.Kind != fjson.Array {
		w.errorf(codeStructure, el.name+" must be a JSON array")
		return 1
	}
	var vals, exts []*fjson.Value
	if val != nil {
		vals = val.Items
		if len(vals) == 0 {
			w.errorf(codeStructure, "arrays must not be empty; omit the element instead")
		}
	}
	if ext != nil {
		exts = ext.Items
		if len(exts) == 0 {
			w.errorf(codeStructure, "arrays must not be empty; omit the element instead")
		}
	}
	if val != nil && ext != nil && len(vals) != len(exts) {
		w.errorf(codeStructure, el.name+" and _"+el.name+" must have the same number of items")
	}
	n := max(len(vals), len(exts))
	for i := 0; i < n; i++ {
		w.setIdx(i)
		var vi, ei *fjson.Value
		if i < len(vals) && vals[i].Kind != fjson.Null {
			vi = vals[i]
		}
		if i < len(exts) && exts[i].Kind != fjson.Null {
			ei = exts[i]
		}
		if vi == nil && ei == nil {
			w.errorf(codeStructure, "null is only allowed in an array of primitives where the matching _"+el.name+" item is present")
			continue
		}
		w.primitiveValue(el, tr, vi, ei)
	}
	return n
}

// primitiveValue validates one primitive value and its extension object.
func (w *walker) primitiveValue(el *elemDef, tr *typeRef, val, ext *fjson.Value) {
	if val != nil {
		p := tr.td.prim
		problem, warning := checkPrimitive(p, val)
		switch {
		case problem != "":
			w.add(fhir.SeverityError, codeValue, "invalid "+tr.code+": "+string(problem), "value "+quote(val))
		case warning != "":
			w.add(fhir.SeverityWarning, codeValue, string(warning), "value "+quote(val))
		default:
			if el.maxLength > 0 && val.Kind == fjson.String && len(val.Str) > el.maxLength {
				w.add(fhir.SeverityError, codeValue, "value is longer than the maximum length "+strconv.Itoa(el.maxLength), "")
			}
			if el.binding != nil && val.Kind == fjson.String && !el.binding.hasCode(val.Str) {
				w.add(fhir.SeverityError, codeCodeInvalid, "the code is not in the required value set "+el.binding.url, "code "+quote(val))
			} else if el.bindingURL == mimeTypesVS && val.Kind == fjson.String && !isMediaType(val.Str) {
				w.add(fhir.SeverityError, codeCodeInvalid, "not a valid media type (BCP 13)", "value "+quote(val))
			}
		}
		if el.fixed != nil && problem == "" && !fjson.Equal(el.fixed, val) {
			w.add(fhir.SeverityError, codeValue, "the value must be the profile's fixed value", "value "+quote(val))
		}
		if el.pattern != nil && problem == "" && !fjson.Equal(el.pattern, val) {
			w.add(fhir.SeverityError, codeValue, "the value must be the profile's pattern value", "value "+quote(val))
		}
	}
	if ext != nil {
		if ext.Kind != fjson.Object {
			w.errorf(codeStructure, "_"+el.name+" must be a JSON object")
			return
		}
		if len(ext.Members) == 0 {
			w.errorf(codeStructure, "objects must not be empty; omit the element instead")
			return
		}
		w.object(ext, w.m.element.root.children, false)
		if val == nil && ext.Get("extension") == nil {
			w.errorf(codeInvariant, "ele-1: a primitive element without a value must have extensions")
		}
	}
}

// complexMember validates the value of a complex element and returns the
// number of values.
func (w *walker) complexMember(el *elemDef, t int, val *fjson.Value) int {
	tr := &el.types[t]
	ofType := ""
	if el.choice {
		ofType = tr.code
	}
	w.push(el.name, -1, ofType)
	defer w.pop()
	if !el.array {
		if val.Kind == fjson.Array {
			w.errorf(codeStructure, el.name+" must not be an array: it occurs at most once")
			return 1
		}
		if val.Kind == fjson.Null {
			w.errorf(codeStructure, "null is not allowed; omit the element instead")
			return 0
		}
		w.complexValue(el, tr, val)
		return 1
	}
	if val.Kind != fjson.Array {
		w.errorf(codeStructure, el.name+" must be a JSON array, not "+kindName(val.Kind))
		return 1
	}
	if len(val.Items) == 0 {
		w.errorf(codeStructure, "arrays must not be empty; omit the element instead")
		return 0
	}
	for i, it := range val.Items {
		w.setIdx(i)
		if it.Kind == fjson.Null {
			w.errorf(codeStructure, "null is not allowed in this array")
			continue
		}
		w.complexValue(el, tr, it)
	}
	return len(val.Items)
}

func (w *walker) complexValue(el *elemDef, tr *typeRef, node *fjson.Value) {
	if node.Kind != fjson.Object {
		name := tr.code
		if tr.td == nil {
			name = "element"
		}
		w.add(fhir.SeverityError, codeStructure, el.name+" must be a JSON object ("+name+"), not "+kindName(node.Kind), "value "+quote(node))
		return
	}
	if len(node.Members) == 0 {
		w.errorf(codeStructure, "objects must not be empty; omit the element instead")
		return
	}
	if tr.code == "Resource" {
		place := resEntry
		if el.name == "contained" {
			place = resContained
		}
		w.resource(node, place)
		return
	}
	if len(node.Members) == 1 && node.Members[0].Key == "id" {
		w.errorf(codeInvariant, "ele-1: an element must have a value or children other than id")
	}
	if tr.td == nil || tr.td.kind != kindComplex {
		w.object(node, el.children, false)
		w.invariants(node, el.constraints, el.ctxType)
	} else {
		children := tr.td.root.children
		if el.children != nil {
			children = el.children // expanded in a profile's snapshot
		}
		w.object(node, children, false)
		switch tr.td.name {
		case "Reference":
			w.reference(node, tr)
		case "Extension":
			w.extension(node)
		case "CodeableConcept", "Coding":
			if el.binding != nil {
				w.codingBinding(node, el.binding, tr.td.name == "Coding")
			}
			if tr.td.name == "Coding" && !w.inProfile {
				w.coding(node)
			}
		case "Attachment":
			if !w.inProfile {
				w.attachment(node)
			}
		}
		w.invariants(node, tr.constraints, tr.td.root.ctxType)
	}
	if el.fixed != nil && !fjson.Equal(el.fixed, node) {
		w.errorf(codeValue, "the value must be the profile's fixed value")
	}
	if el.pattern != nil && !matchesPattern(el.pattern, node) {
		w.errorf(codeValue, "the value does not match the profile's pattern")
	}
}

// extension checks ext-1: an extension has either a value or nested
// extensions, not both and not neither.
func (w *walker) extension(node *fjson.Value) {
	hasExt, hasValue := false, false
	for _, m := range node.Members {
		switch {
		case m.Key == "extension":
			hasExt = true
		case strings.HasPrefix(m.Key, "value") || strings.HasPrefix(m.Key, "_value"):
			hasValue = true
		}
	}
	if hasExt == hasValue {
		w.errorf(codeInvariant, "ext-1: an extension must have either extensions or a value[x], not both")
	}
}

// codingBinding checks a Coding or CodeableConcept against a required value
// set whose code systems are known: some coding must be in it. Codings of
// other systems do not count; a concept with only text passes.
func (w *walker) codingBinding(node *fjson.Value, vs *valueSet, single bool) {
	if len(vs.systems) == 0 {
		return
	}
	codings := []*fjson.Value{node}
	if !single {
		c := node.Get("coding")
		if c == nil || c.Kind != fjson.Array {
			return
		}
		codings = c.Items
	}
	var bad *fjson.Value
	for _, c := range codings {
		sys, code := c.Get("system"), c.Get("code")
		if sys == nil || code == nil || sys.Kind != fjson.String || code.Kind != fjson.String {
			continue
		}
		if _, ok := vs.systems[sys.Str]; !ok {
			continue
		}
		if vs.hasCode(code.Str) {
			return
		}
		bad = code
	}
	if bad != nil {
		w.add(fhir.SeverityError, codeCodeInvalid, "no coding is in the required value set "+vs.url, "code "+quote(bad))
	}
}

// matchesPattern reports whether v holds everything in pattern: objects
// recursively, each pattern array item matched by some item of v.
func matchesPattern(pattern, v *fjson.Value) bool {
	switch pattern.Kind {
	case fjson.Object:
		if v.Kind != fjson.Object {
			return false
		}
		for _, m := range pattern.Members {
			o := v.Get(m.Key)
			if o == nil || !matchesPattern(m.Value, o) {
				return false
			}
		}
		return true
	case fjson.Array:
		if v.Kind != fjson.Array {
			return false
		}
		for _, p := range pattern.Items {
			found := false
			for _, it := range v.Items {
				if matchesPattern(p, it) {
					found = true
					break
				}
			}
			if !found {
				return false
			}
		}
		return true
	default:
		return fjson.Equal(pattern, v)
	}
}

// invariants evaluates the non-native constraints on node.
func (w *walker) invariants(node *fjson.Value, cs []*constraint, typeName string) {
	if w.v.opts.SkipInvariants || engine == nil {
		return
	}
	for _, c := range cs {
		if c.native != notNative || c.bestPractice && !w.v.opts.BestPractice {
			continue
		}
		if c.needed != nil && !c.needed(node) && !w.auditGuards {
			continue
		}
		e := c.compiledExpr()
		if e == nil {
			continue
		}
		ok, nonEmpty, err := e.evalBool(node, typeName, w.res.node, w.res.root)
		if err != nil {
			c.evalErrors.Add(1)
			continue
		}
		if nonEmpty && !ok {
			if w.auditGuards && c.needed != nil && !c.needed(node) {
				w.add(fhir.SeverityFatal, codeInvariant, "guard of "+c.key+" skipped a failing node", "")
				continue
			}
			sev := fhir.SeverityError
			if c.severity == "warning" || c.bestPractice {
				sev = fhir.SeverityWarning
			}
			w.add(sev, codeInvariant, c.key+": "+c.human, "")
		}
	}
}
