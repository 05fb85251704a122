package adapters

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Factory opens sources of one type. Packages export one (for example
// fhirrest.Factory); cmd registers them under their type names.
type Factory interface {
	// Validate decodes cfg strictly (unknown keys are problems) and checks
	// it, including that the secrets it names exist (environment variables
	// set, key files readable and parseable). It reports every problem, not
	// just the first, with paths relative to cfg.
	Validate(cfg *yaml.Node, opts Options) []Problem
	// Open validates cfg and returns the source. It does not contact the
	// upstream: the first fetch does.
	Open(id string, cfg *yaml.Node, opts Options) (Source, error)
}

// Spec is one entry of the config file's sources list.
type Spec struct {
	ID   string
	Type string
	// Config is the entry's config block (may be nil).
	Config *yaml.Node
	// Path locates the entry in the file for messages, for example
	// "sources[2]"; Line is the entry's line (0 if unknown).
	Path string
	Line int
}

// Registry maps source type names to factories.
type Registry struct {
	factories map[string]Factory
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{factories: map[string]Factory{}} }

// Register adds a factory. Registering a name twice panics: it is a wiring
// mistake.
func (r *Registry) Register(typ string, f Factory) {
	if _, dup := r.factories[typ]; dup {
		panic("adapters: type registered twice: " + typ)
	}
	r.factories[typ] = f
}

// Types returns the registered type names, sorted.
func (r *Registry) Types() []string {
	out := make([]string, 0, len(r.factories))
	for t := range r.factories {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Validate checks every spec and returns every problem found, each with
// its path in the file ("sources[0].config.auth.clientID") and line.
func (r *Registry) Validate(specs []Spec, opts Options) []Problem {
	opts = opts.WithDefaults()
	var out []Problem
	seen := map[string]bool{}
	for _, s := range specs {
		switch {
		case s.ID == "":
			out = append(out, Problem{Path: s.Path + ".id", Line: s.Line, Msg: "is required"})
		case seen[s.ID]:
			out = append(out, Problem{Path: s.Path + ".id", Line: s.Line, Msg: fmt.Sprintf("duplicate source id %q", s.ID)})
		}
		seen[s.ID] = true
		f, ok := r.factories[s.Type]
		if !ok {
			out = append(out, Problem{Path: s.Path + ".type", Line: s.Line,
				Msg: fmt.Sprintf("unknown source type %q (known: %s)", s.Type, strings.Join(r.Types(), ", "))})
			continue
		}
		for _, p := range f.Validate(s.Config, opts) {
			p.Path = joinPath(s.Path+".config", p.Path)
			if p.Line == 0 {
				p.Line = s.Line
			}
			out = append(out, p)
		}
	}
	return out
}

// Open opens one source.
func (r *Registry) Open(s Spec, opts Options) (Source, error) {
	f, ok := r.factories[s.Type]
	if !ok {
		return nil, fmt.Errorf("source %s: %w: unknown type %q", s.ID, ErrConfig, s.Type)
	}
	src, err := f.Open(s.ID, s.Config, opts)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", s.ID, err)
	}
	return src, nil
}

// OpenAll validates every spec, then opens them all, or none.
func (r *Registry) OpenAll(specs []Spec, opts Options) ([]Source, error) {
	if ps := r.Validate(specs, opts); len(ps) > 0 {
		return nil, ProblemsError(ps)
	}
	out := make([]Source, 0, len(specs))
	for _, s := range specs {
		src, err := r.Open(s, opts)
		if err != nil {
			for _, o := range out {
				if c, ok := o.(Closer); ok {
					c.Close()
				}
			}
			return nil, err
		}
		out = append(out, src)
	}
	return out, nil
}

// JWKS returns the JSON Web Key Set of the public keys of every source that
// signs with the gateway's keys (KeyPublisher), without duplicates, for
// /.well-known/jwks.json. With no such source it is {"keys":[]}.
func JWKS(sources ...Source) []byte {
	var keys []json.RawMessage
	seen := map[string]bool{}
	for _, s := range sources {
		kp, ok := s.(KeyPublisher)
		if !ok {
			continue
		}
		for _, k := range kp.PublicJWKs() {
			var hdr struct {
				Kid string `json:"kid"`
			}
			if json.Unmarshal(k, &hdr) != nil || seen[hdr.Kid] {
				continue
			}
			seen[hdr.Kid] = true
			keys = append(keys, json.RawMessage(k))
		}
	}
	if keys == nil {
		keys = []json.RawMessage{}
	}
	b, _ := json.Marshal(struct {
		Keys []json.RawMessage `json:"keys"`
	}{keys})
	return b
}

// Problem is one configuration problem.
type Problem struct {
	// Path is the dotted path of the offending key, for example
	// "sources[0].config.auth.clientID".
	Path string
	// Line and Column locate it in the file (0 when unknown).
	Line, Column int
	Msg          string
}

func (p Problem) String() string {
	loc := ""
	if p.Line > 0 {
		loc = fmt.Sprintf("line %d: ", p.Line)
	}
	if p.Path == "" {
		return loc + p.Msg
	}
	return loc + p.Path + ": " + p.Msg
}

// ProblemsError turns problems into one error wrapping ErrConfig that
// lists them all, one per line.
func ProblemsError(ps []Problem) error {
	if len(ps) == 0 {
		return nil
	}
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return fmt.Errorf("%w:\n  %s", ErrConfig, strings.Join(lines, "\n  "))
}

func joinPath(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	case strings.HasPrefix(b, "["):
		return a + b
	}
	return a + "." + b
}

// Decode strictly decodes a config block into out (a pointer to a struct
// with yaml tags): unknown keys are problems, as are values of the wrong
// type. Every problem is reported, with its path and line. A nil or empty
// node leaves out unchanged.
func Decode(node *yaml.Node, out any) []Problem {
	if node == nil || node.Kind == 0 {
		return nil
	}
	if node.Kind == yaml.DocumentNode && len(node.Content) == 1 {
		node = node.Content[0]
	}
	var ps []Problem
	checkKeys(node, typeOf(out), "", &ps)
	if err := node.Decode(out); err != nil {
		ps = append(ps, yamlProblems(err)...)
	}
	return ps
}

// Problems collects semantic problems of a decoded config, locating each
// path in the YAML node it came from.
type Problems struct {
	Root  *yaml.Node
	Items []Problem
}

// Add records a problem at path ("auth.clientID"); the line is that of the
// path's value or, when the key is absent, of its nearest parent.
func (p *Problems) Add(path, format string, args ...any) {
	n := Lookup(p.Root, path)
	pr := Problem{Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		pr.Line, pr.Column = n.Line, n.Column
	}
	p.Items = append(p.Items, pr)
}

// Lookup returns the node at a dotted path under root ("auth.clientID",
// "types[1]"), or the deepest existing ancestor when the path does not
// exist (nil only when root is nil).
func Lookup(root *yaml.Node, path string) *yaml.Node {
	n := root
	if n == nil {
		return nil
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if path == "" {
		return n
	}
	for _, seg := range strings.Split(path, ".") {
		key, idx := seg, -1
		if i := strings.IndexByte(seg, '['); i >= 0 && strings.HasSuffix(seg, "]") {
			key = seg[:i]
			fmt.Sscanf(seg[i+1:len(seg)-1], "%d", &idx)
		}
		if key != "" {
			next := mapValue(n, key)
			if next == nil {
				return n
			}
			n = next
		}
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return n
			}
			n = n.Content[idx]
		}
	}
	return n
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// knownKeys lists the yaml keys of a struct type, following inline fields.
func knownKeys(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() && !f.Anonymous {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if slices.Contains(strings.Split(opts, ","), "inline") {
			ft := derefType(f.Type)
			if ft.Kind() == reflect.Struct {
				for k, v := range knownKeys(ft) {
					out[k] = v
				}
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func checkKeys(n *yaml.Node, t reflect.Type, path string, ps *[]Problem) {
	if n == nil || t == nil {
		return
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	t = derefType(t)
	if implementsUnmarshaler(t) {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return // node.Decode reports the type mismatch
		}
		keys := knownKeys(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := keys[k.Value]
			if !ok {
				names := make([]string, 0, len(keys))
				for name := range keys {
					names = append(names, name)
				}
				sort.Strings(names)
				*ps = append(*ps, Problem{Path: joinPath(path, k.Value), Line: k.Line, Column: k.Column,
					Msg: "unknown key (known: " + strings.Join(names, ", ") + ")"})
				continue
			}
			checkKeys(v, ft, joinPath(path, k.Value), ps)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, it := range n.Content {
			checkKeys(it, t.Elem(), fmt.Sprintf("%s[%d]", path, i), ps)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			checkKeys(n.Content[i+1], t.Elem(), joinPath(path, n.Content[i].Value), ps)
		}
	}
}

// yamlProblems turns a yaml.v3 decoding error ("line 3: cannot unmarshal
// ...") into problems.
func yamlProblems(err error) []Problem {
	var msgs []string
	if te, ok := err.(*yaml.TypeError); ok {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	out := make([]Problem, 0, len(msgs))
	for _, m := range msgs {
		p := Problem{Msg: m}
		var line int
		if n, _ := fmt.Sscanf(m, "line %d:", &line); n == 1 {
			p.Line = line
			_, p.Msg, _ = strings.Cut(m, ": ")
		}
		out = append(out, p)
	}
	return out
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

func implementsUnmarshaler(t reflect.Type) bool {
	return t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType)
}

func derefType(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

func typeOf(v any) reflect.Type {
	if v == nil {
		return nil
	}
	return reflect.TypeOf(v)
}

// ConfigFactory is the Factory of a source type whose configuration is a
// C, decoded strictly and checked by its own Validate; open makes the
// source. The configuration's semantic checks run even after decoding
// problems (yaml.v3 decodes what it can), so that one start reports
// everything.
func ConfigFactory[C any, P interface {
	*C
	Validate(p *Problems, opts Options)
}](open func(id string, cfg C, opts Options) (Source, error)) Factory {
	return configFactory[C, P]{open: open}
}

type configFactory[C any, P interface {
	*C
	Validate(p *Problems, opts Options)
}] struct {
	open func(id string, cfg C, opts Options) (Source, error)
}

func (f configFactory[C, P]) decode(node *yaml.Node, opts Options) (C, []Problem) {
	var cfg C
	ps := Decode(node, &cfg)
	p := &Problems{Root: node}
	P(&cfg).Validate(p, opts)
	return cfg, append(ps, p.Items...)
}

func (f configFactory[C, P]) Validate(node *yaml.Node, opts Options) []Problem {
	_, ps := f.decode(node, opts)
	return ps
}

func (f configFactory[C, P]) Open(id string, node *yaml.Node, opts Options) (Source, error) {
	cfg, ps := f.decode(node, opts)
	if len(ps) > 0 {
		return nil, ProblemsError(ps)
	}
	return f.open(id, cfg, opts)
}
