// Package samplegen derives the resources the conformance suite creates
// from the FHIR R4 definitions: a minimal valid instance of every resource
// type (its required elements, plus a small hand-written table for the
// invariants the model cannot express), and, for the search parameters of
// each type, pairs of instances A and B that differ in the parameter's
// element, with the query values that find A and not B and the reverse.
//
// It reads the validator's compact StructureDefinition model
// (fhir/validate/model.json.gz) and the official search-parameters.json
// (fhir/search), and checks every resource it writes with fhir/validate.
// The conformance package embeds its output (samples.json); go generate
// rewrites it and TestSamplesUpToDate fails when it is stale.
package samplegen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/fhir/validate"
)

// Data is the generated file.
type Data struct {
	Types []*TypeData `json:"types"`
}

// TypeData holds what the suite creates for one resource type.
type TypeData struct {
	Type string `json:"type"`
	// Minimal is the smallest valid instance.
	Minimal json.RawMessage `json:"minimal"`
	// Pairs are the search-sample resources; A and B of a pair have the same
	// shape and differ in every sampled element.
	Pairs []Pair `json:"pairs,omitempty"`
	// Samples are the search parameters with a sample, by code.
	Samples []Sample `json:"samples,omitempty"`
	// Unsampled are the parameters the generator could not sample, with why.
	Unsampled []Unsampled `json:"unsampled,omitempty"`
	// ProvenanceTarget tells whether Provenance's target parameter may
	// point to this type (for _revinclude=Provenance:target).
	ProvenanceTarget bool `json:"provenanceTarget,omitempty"`
}

// Pair is two instances told apart by the samples that name it.
type Pair struct {
	A json.RawMessage `json:"a"`
	B json.RawMessage `json:"b"`
}

// Sample is one search parameter exercised on a pair: the query value A
// finds Pairs[Pair].A and not B; the query value B the reverse.
type Sample struct {
	Param string `json:"param"`
	Kind  string `json:"kind"`
	Pair  int    `json:"pair"`
	A     string `json:"a"`
	B     string `json:"b"`
}

// Unsampled is a parameter without a sample.
type Unsampled struct {
	Param  string `json:"param"`
	Kind   string `json:"kind"`
	Reason string `json:"reason"`
}

// Type returns the data of a resource type, or nil.
func (d *Data) Type(name string) *TypeData {
	i := sort.Search(len(d.Types), func(i int) bool { return d.Types[i].Type >= name })
	if i < len(d.Types) && d.Types[i].Type == name {
		return d.Types[i]
	}
	return nil
}

// Decode reads generated data.
func Decode(b []byte) (*Data, error) {
	var d Data
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("samples: %w", err)
	}
	if !sort.SliceIsSorted(d.Types, func(i, j int) bool { return d.Types[i].Type < d.Types[j].Type }) {
		return nil, fmt.Errorf("samples: types are not sorted")
	}
	return &d, nil
}

// Encode writes the data with one type per line, for readable diffs.
func (d *Data) Encode() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("{\"types\":[\n")
	for i, t := range d.Types {
		b, err := json.Marshal(t)
		if err != nil {
			return nil, err
		}
		buf.Write(b)
		if i < len(d.Types)-1 {
			buf.WriteByte(',')
		}
		buf.WriteByte('\n')
	}
	buf.WriteString("]}\n")
	return buf.Bytes(), nil
}

type spDef struct {
	URL        string   `json:"url"`
	Code       string   `json:"code"`
	Base       []string `json:"base"`
	Type       string   `json:"type"`
	Expression string   `json:"expression"`
	Target     []string `json:"target"`
	Component  []struct {
		Definition string `json:"definition"`
		Expression string `json:"expression"`
	} `json:"component"`
}

type gen struct {
	// variant shifts the codes of required bindings that samples use
	variant int
	m       *model
	v       *validate.Validator
	byURL   map[string]*spDef
}

// Generate derives the data from the model and the search parameters.
func Generate(modelGz, searchParameters []byte) (*Data, error) {
	m, err := loadModel(modelGz)
	if err != nil {
		return nil, err
	}
	var bundle struct {
		Entry []struct {
			Resource spDef `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(searchParameters, &bundle); err != nil {
		return nil, fmt.Errorf("search parameters: %w", err)
	}
	g := &gen{m: m, v: validate.Default(), byURL: map[string]*spDef{}}
	var params []*spDef
	for i := range bundle.Entry {
		p := &bundle.Entry[i].Resource
		g.byURL[p.URL] = p
		params = append(params, p)
	}
	var types []string
	for _, t := range m.Types {
		if t.Kind == "resource" && !t.Abstract {
			types = append(types, t.Name)
		}
	}
	slices.Sort(types)
	d := &Data{}
	var errs []error
	for _, typ := range types {
		td, err := g.typeData(typ, params)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		d.Types = append(d.Types, td)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return d, nil
}

// appliesTo reports whether a parameter with these bases is defined on typ.
func appliesTo(base []string, typ string) bool {
	for _, b := range base {
		switch {
		case b == typ, b == "Resource":
			return true
		case b == "DomainResource" && typ != "Bundle" && typ != "Binary" && typ != "Parameters":
			return true
		}
	}
	return false
}

// serverSet are the elements the server writes; samples on them cannot be
// created by the client.
var serverSet = []string{"id", "meta/versionId", "meta/lastUpdated"}

func (g *gen) typeData(typ string, params []*spDef) (*TypeData, error) {
	min, err := g.minimal(typ)
	if err != nil {
		return nil, err
	}
	if issues := g.check(min); issues != "" {
		return nil, fmt.Errorf("minimal %s is invalid (add an override): %s", typ, issues)
	}
	td := &TypeData{Type: typ}
	td.Minimal, _ = json.Marshal(min)
	if pt := g.byURL["http://hl7.org/fhir/SearchParameter/Provenance-target"]; pt != nil {
		td.ProvenanceTarget = slices.Contains(pt.Target, typ)
	}
	base := clone(min)
	if pb, ok := pairBases[typ]; ok {
		merge(base, mustJSON(pb).(map[string]any))
		if issues := g.check(base); issues != "" {
			return nil, fmt.Errorf("pair base %s is invalid: %s", typ, issues)
		}
	}
	var pairs [][2]map[string]any
	var owned []map[string]bool
	var mine []*spDef
	for _, p := range params {
		if appliesTo(p.Base, typ) && p.Type != "special" {
			mine = append(mine, p)
		}
	}
	sort.Slice(mine, func(i, j int) bool { return mine[i].Code < mine[j].Code })
	for _, p := range mine {
		if why, ok := notSampled[typ+"."+p.Code]; ok {
			td.Unsampled = append(td.Unsampled, Unsampled{p.Code, p.Type, why})
			continue
		}
		placed := false
		var lastErr string
		for g.variant = 0; g.variant < 3 && !placed; g.variant++ {
			pl, err := g.placements(typ, p)
			if err != nil {
				if g.variant == 0 {
					lastErr = err.Error()
				}
				break
			}
			placed, lastErr = g.place(td, p, pl, base, &pairs, &owned)
		}
		g.variant = 0
		if !placed {
			td.Unsampled = append(td.Unsampled, Unsampled{p.Code, p.Type, lastErr})
		}
	}
	for _, p := range pairs {
		a, _ := json.Marshal(p[0])
		b, _ := json.Marshal(p[1])
		td.Pairs = append(td.Pairs, Pair{A: a, B: b})
	}
	return td, nil
}

// place puts a sample into the first pair where it fits and leaves the
// pair valid, or into a new pair.
func (g *gen) place(td *TypeData, p *spDef, pl *placement, base map[string]any, pairs *[][2]map[string]any, owned *[]map[string]bool) (bool, string) {
	lastErr := ""
	for i := 0; i <= len(*pairs); i++ {
		var a, b map[string]any
		var own map[string]bool
		if i == len(*pairs) {
			a, b, own = clone(base), clone(base), map[string]bool{}
		} else {
			a, b, own = clone((*pairs)[i][0]), clone((*pairs)[i][1]), maps((*owned)[i])
		}
		if err := g.applyAll(a, b, own, pl); err != nil {
			lastErr = err.Error()
			continue
		}
		if is := g.check(a) + g.check(b); is != "" {
			lastErr = "no valid instance: " + is
			continue
		}
		if i == len(*pairs) {
			*pairs = append(*pairs, [2]map[string]any{a, b})
			*owned = append(*owned, own)
		} else {
			(*pairs)[i] = [2]map[string]any{a, b}
			(*owned)[i] = own
		}
		td.Samples = append(td.Samples, Sample{Param: p.Code, Kind: p.Type, Pair: i, A: pl.qa, B: pl.qb})
		return true, ""
	}
	return false, lastErr
}

// hop is one member on the way from the resource root to a sampled value.
type hop struct {
	path       string // element path in the model
	key        string
	choiceBase string // set when key is a type of a choice element
	array      bool
	eq         map[string]string
	into       node // the node of the member's value, for intermediate hops
}

// placement says where a sample's values go: for a plain parameter one
// path, for a composite one path per component below a common item.
type placement struct {
	paths  [][]hop
	values []valuePair
	qa, qb string
}

func (g *gen) placements(typ string, p *spDef) (*placement, error) {
	if p.Expression == "" {
		return nil, fmt.Errorf("no expression")
	}
	var lastErr error = errUnsupported
	for _, br := range branches(p.Expression) {
		steps, err := parsePath(br)
		if err != nil {
			lastErr = err
			continue
		}
		root := steps[0].name
		if root != typ && root != "Resource" && root != "DomainResource" {
			if g.m.byName[root] != nil {
				continue // another type's branch
			}
			if e, _ := g.m.child(node{typ, typ}, root); e == nil {
				continue
			}
			// a path without its type (R4 InsurancePlan-name): relative to typ
			steps = append([]step{{name: typ}}, steps...)
		}
		if p.Type != "composite" {
			hops, vp, err := g.resolve(node{typ, typ}, steps[1:], p.Type, p.Target)
			if err != nil {
				lastErr = err
				continue
			}
			pl := &placement{paths: [][]hop{hops}, values: []valuePair{vp}, qa: vp.qa, qb: vp.qb}
			if c, ok := companions[hops[len(hops)-1].path]; ok {
				comp := slices.Clone(hops)
				comp[len(comp)-1].key, comp[len(comp)-1].path = c, ""
				pl.paths = append(pl.paths, comp)
				pl.values = append(pl.values, vp)
			}
			return pl, nil
		}
		pl, err := g.composite(typ, steps[1:], p)
		if err != nil {
			lastErr = err
			continue
		}
		return pl, nil
	}
	return nil, lastErr
}

func (g *gen) composite(typ string, base []step, p *spDef) (*placement, error) {
	var prefix []hop
	item := node{typ, typ}
	if len(base) > 0 {
		hops, end, err := g.walk(item, base)
		if err != nil {
			return nil, err
		}
		prefix, item = hops, end
	}
	pl := &placement{}
	var qa, qb []string
	for _, c := range p.Component {
		cp := g.byURL[c.Definition]
		if cp == nil {
			return nil, fmt.Errorf("component %s not defined", c.Definition)
		}
		var hops []hop
		var vp valuePair
		var err error = errUnsupported
		for _, br := range branches(c.Expression) {
			var steps []step
			if steps, err = parsePath(br); err != nil {
				continue
			}
			// R4 DocumentReference-relationship pairs each component's
			// definition with the other's expression: when the defined kind
			// has no value for the element, the element's own kind is used
			for _, kind := range append([]string{cp.Type}, "token", "reference", "date", "string", "quantity", "uri", "number") {
				if hops, vp, err = g.resolve(item, steps, kind, cp.Target); err == nil {
					break
				}
			}
			if err == nil {
				break
			}
		}
		if err != nil {
			return nil, fmt.Errorf("component %s: %w", cp.Code, err)
		}
		pl.paths = append(pl.paths, append(slices.Clone(prefix), hops...))
		pl.values = append(pl.values, vp)
		qa, qb = append(qa, vp.qa), append(qb, vp.qb)
	}
	if len(pl.paths) == 0 {
		return nil, fmt.Errorf("composite without components")
	}
	pl.qa, pl.qb = strings.Join(qa, "$"), strings.Join(qb, "$")
	return pl, nil
}

// walk resolves intermediate steps (no value at the end) and returns the
// node they lead to.
func (g *gen) walk(start node, steps []step) ([]hop, node, error) {
	cur := start
	var hops []hop
	for _, s := range steps {
		e, choice := g.m.child(cur, s.name)
		if e == nil {
			return nil, node{}, fmt.Errorf("no element %s.%s", cur.path, s.name)
		}
		tr, key, err := pickType(e, s, choice)
		if err != nil {
			return nil, node{}, err
		}
		next, ok := g.m.into(cur, e, tr)
		if !ok {
			return nil, node{}, fmt.Errorf("%s is a primitive", e.Path)
		}
		h := hop{path: e.Path, key: key, array: e.Array, eq: s.eq, into: next}
		if choice {
			h.choiceBase = s.name
		}
		hops = append(hops, h)
		cur = next
	}
	return hops, cur, nil
}

func pickType(e *element, s step, choice bool) (typeRef, string, error) {
	if e.ContentRef != "" {
		return typeRef{}, s.name, nil
	}
	if len(e.Types) == 0 {
		return typeRef{}, "", fmt.Errorf("%s has no type", e.Path)
	}
	if !choice {
		return e.Types[0], s.name, nil
	}
	if s.as == "" {
		return typeRef{}, "", fmt.Errorf("choice %s without a type", e.Path)
	}
	for _, tr := range e.Types {
		if tr.Code == s.as || typeName(tr) == s.as {
			return tr, s.name + upperFirst(tr.Code), nil
		}
	}
	return typeRef{}, "", fmt.Errorf("%s cannot be a %s", e.Path, s.as)
}

// resolve resolves a path ending at a value of a parameter of kind.
func (g *gen) resolve(start node, steps []step, kind string, paramTargets []string) ([]hop, valuePair, error) {
	if len(steps) == 0 {
		return nil, valuePair{}, errUnsupported
	}
	hops, cur, err := g.walk(start, steps[:len(steps)-1])
	if err != nil {
		return nil, valuePair{}, err
	}
	last := steps[len(steps)-1]
	e, choice := g.m.child(cur, last.name)
	if e == nil {
		return nil, valuePair{}, fmt.Errorf("no element %s.%s", cur.path, last.name)
	}
	if e.ContentRef != "" || len(e.Types) == 0 {
		return nil, valuePair{}, fmt.Errorf("%s: no value type", e.Path)
	}
	path := e.Path
	if start.path == start.typ && slices.Contains(serverSet, strings.TrimPrefix(pathKey(hops)+"/"+last.name, "/")) {
		return nil, valuePair{}, fmt.Errorf("%s is set by the server", path)
	}
	cands := e.Types
	if choice && last.as != "" {
		tr, _, err := pickType(e, last, true)
		if err != nil {
			return nil, valuePair{}, err
		}
		cands = []typeRef{tr}
	}
	if !choice {
		cands = e.Types[:1]
	}
	for _, tr := range cands {
		vp, ok := g.leafValues(kind, tr, e, last.target, paramTargets)
		if !ok {
			continue
		}
		h := hop{path: e.Path, key: last.name, array: e.Array, eq: last.eq}
		if choice {
			h.key, h.choiceBase = last.name+upperFirst(tr.Code), last.name
		}
		if len(last.eq) > 0 {
			// telecom.where(system='email'): the filter's members are part
			// of the value
			ma, oka := vp.a.(map[string]any)
			mb, okb := vp.b.(map[string]any)
			if !oka || !okb {
				return nil, valuePair{}, errUnsupported
			}
			for k, v := range last.eq {
				ma[k], mb[k] = v, v
			}
			h.eq = nil
		}
		return append(hops, h), vp, nil
	}
	return nil, valuePair{}, fmt.Errorf("no %s value for %s", kind, path)
}

// errConflict: the pair already holds another sample's value there.
var errConflict = fmt.Errorf("conflicts with another sample")

func (g *gen) applyAll(a, b map[string]any, own map[string]bool, pl *placement) error {
	for i, hops := range pl.paths {
		if err := g.apply(a, hops, pl.values[i].a, own, true); err != nil {
			return err
		}
		if err := g.apply(b, hops, pl.values[i].b, own, false); err != nil {
			return err
		}
	}
	for _, hops := range pl.paths {
		markOwned(own, hops)
	}
	return nil
}

func pathKey(hops []hop) string {
	var sb strings.Builder
	for _, h := range hops {
		sb.WriteString("/")
		sb.WriteString(h.key)
	}
	return sb.String()
}

func markOwned(own map[string]bool, hops []hop) {
	own[pathKey(hops)] = true
	for i, h := range hops {
		for k := range h.eq {
			own[pathKey(hops[:i+1])+"/"+k] = true
		}
		if h.choiceBase != "" {
			own[pathKey(hops[:i])+"/"+h.choiceBase+"[x]"] = true
		}
	}
}

// apply writes v at the end of hops in res, creating intermediate members
// (with their required children) as needed.
func (g *gen) apply(res map[string]any, hops []hop, v any, own map[string]bool, first bool) error {
	cur := res
	for i, h := range hops {
		prefix := pathKey(hops[:i])
		if h.choiceBase != "" {
			for k := range cur {
				if k != h.key && len(k) > len(h.choiceBase) && strings.HasPrefix(k, h.choiceBase) && k[len(h.choiceBase)] >= 'A' && k[len(h.choiceBase)] <= 'Z' {
					if own[prefix+"/"+h.choiceBase+"[x]"] {
						return errConflict
					}
					delete(cur, k)
				}
			}
		}
		p := prefix + "/" + h.key
		if i == len(hops)-1 {
			// the value replaces what other samples wrote below it
			for k := range own {
				if strings.HasPrefix(k, p+"/") {
					return errConflict
				}
			}
			nv := v
			if h.array {
				nv = []any{v}
			}
			if old, ok := cur[h.key]; ok && own[p] && !equalJSON(old, nv) {
				return errConflict
			}
			cur[h.key] = nv
			return nil
		}
		if own[p] {
			// another sample's value: writing into it would change it
			return errConflict
		}
		var item map[string]any
		switch x := cur[h.key].(type) {
		case map[string]any:
			item = x
		case []any:
			if len(x) > 0 {
				item, _ = x[0].(map[string]any)
			}
		}
		if item == nil {
			item = map[string]any{}
			if d, ok := elementDefaults[h.path]; ok {
				item = mustJSON(d).(map[string]any)
			}
			g.fill(item, h.into, 0)
			if h.array {
				cur[h.key] = []any{item}
			} else {
				cur[h.key] = item
			}
		}
		for k, ev := range h.eq {
			if old, ok := item[k]; ok && own[p+"/"+k] && old != ev {
				return errConflict
			}
			item[k] = ev
		}
		cur = item
	}
	return nil
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

var placeholderRE = regexp.MustCompile(`%R:([A-Za-z]+):([0-9])%`)

// Substitute replaces the placeholders: unique for Unique, ref(type, n) for
// each reference placeholder.
func Substitute(s, unique string, ref func(typ string, n int) string) string {
	s = strings.ReplaceAll(s, Unique, unique)
	return placeholderRE.ReplaceAllStringFunc(s, func(m string) string {
		sm := placeholderRE.FindStringSubmatch(m)
		n, _ := strconv.Atoi(sm[2])
		return ref(sm[1], n)
	})
}

// RefTypes returns the types the reference placeholders in s name.
func RefTypes(s string) []string {
	var out []string
	for _, sm := range placeholderRE.FindAllStringSubmatch(s, -1) {
		if !slices.Contains(out, sm[1]) {
			out = append(out, sm[1])
		}
	}
	return out
}

// check validates a template with its placeholders filled in and returns
// its errors as text ("" when valid).
func (g *gen) check(res map[string]any) string {
	b, err := json.Marshal(res)
	if err != nil {
		return err.Error()
	}
	s := Substitute(string(b), "u0123456789", func(typ string, n int) string { return "ref-" + strconv.Itoa(n) })
	var msgs []string
	for _, is := range g.v.ValidateJSON([]byte(s)) {
		if is.Severity != "error" && is.Severity != "fatal" {
			continue
		}
		msg := strings.Join(is.Expression, ",")
		if is.Details != nil {
			msg += " " + is.Details.Text
		}
		msgs = append(msgs, msg)
	}
	return strings.Join(msgs, "; ")
}

func clone(m map[string]any) map[string]any {
	b, _ := json.Marshal(m)
	v, _ := decodeJSON(b)
	return v.(map[string]any)
}

func maps(m map[string]bool) map[string]bool {
	out := make(map[string]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// Inputs are the files Generate reads, relative to the module root.
var Inputs = []string{"fhir/validate/model.json.gz", "fhir/search/search-parameters.json"}

// GenerateFromModule reads the inputs from the module rooted at root and
// returns the encoded data.
func GenerateFromModule(root string) ([]byte, error) {
	var in [2][]byte
	for i, f := range Inputs {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return nil, err
		}
		in[i] = b
	}
	d, err := Generate(in[0], in[1])
	if err != nil {
		return nil, err
	}
	return d.Encode()
}
