// Package jsonpatch applies RFC 6902 JSON Patch documents to fjson trees.
// Working on the tree instead of decoded Go values keeps every untouched
// value byte for byte (decimals such as 1.50 included).
package jsonpatch

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// Error kinds: a malformed patch document is the client's syntax error; an
// operation that cannot apply to this target is a semantic one.
var (
	ErrMalformed = errors.New("jsonpatch: malformed patch")
	ErrConflict  = errors.New("jsonpatch: patch does not apply")
)

// Op is one patch operation.
type Op struct {
	Op, Path, From string
	Value          *fjson.Value
}

// Parse reads a patch document: a JSON array of operation objects.
func Parse(doc []byte) ([]Op, error) {
	v, err := fjson.Parse(doc)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if v.Kind != fjson.Array {
		return nil, fmt.Errorf("%w: a JSON Patch document is an array of operations", ErrMalformed)
	}
	ops := make([]Op, 0, len(v.Items))
	for i, it := range v.Items {
		if it.Kind != fjson.Object {
			return nil, fmt.Errorf("%w: operation %d is not an object", ErrMalformed, i)
		}
		op := Op{Op: it.Get("op").String(), Path: it.Get("path").String(), From: it.Get("from").String(), Value: it.Get("value")}
		if it.Get("path") == nil || it.Get("path").Kind != fjson.String {
			return nil, fmt.Errorf("%w: operation %d has no path", ErrMalformed, i)
		}
		switch op.Op {
		case "add", "replace", "test":
			if op.Value == nil {
				return nil, fmt.Errorf("%w: operation %d (%s) has no value", ErrMalformed, i, op.Op)
			}
		case "move", "copy":
			if f := it.Get("from"); f == nil || f.Kind != fjson.String {
				return nil, fmt.Errorf("%w: operation %d (%s) has no from", ErrMalformed, i, op.Op)
			}
		case "remove":
		default:
			return nil, fmt.Errorf("%w: operation %d has unknown op %q", ErrMalformed, i, op.Op)
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// Apply applies ops to a deep copy of doc and returns the result; doc is
// not modified. Errors wrap ErrMalformed or ErrConflict and name the
// operation's index and path (never values).
func Apply(doc *fjson.Value, ops []Op) (*fjson.Value, error) {
	root := clone(doc)
	for i, op := range ops {
		var err error
		root, err = applyOne(root, op)
		if err != nil {
			return nil, fmt.Errorf("operation %d (%s %s): %w", i, op.Op, op.Path, err)
		}
	}
	return root, nil
}

func clone(v *fjson.Value) *fjson.Value {
	if v == nil {
		return nil
	}
	c := *v
	c.Raw = nil // containers are re-serialised; leaves keep Raw below
	switch v.Kind {
	case fjson.Object:
		c.Members = make([]fjson.Member, len(v.Members))
		for i, m := range v.Members {
			c.Members[i] = fjson.Member{Key: m.Key, Value: clone(m.Value)}
		}
	case fjson.Array:
		c.Items = make([]*fjson.Value, len(v.Items))
		for i, it := range v.Items {
			c.Items[i] = clone(it)
		}
	default:
		c.Raw = v.Raw
	}
	return &c
}

func pointer(p string) ([]string, error) {
	if p == "" {
		return nil, nil
	}
	if !strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("%w: path must start with /", ErrMalformed)
	}
	parts := strings.Split(p[1:], "/")
	for i, s := range parts {
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
	}
	return parts, nil
}

// parent walks to the container of the last token.
func parent(root *fjson.Value, toks []string) (*fjson.Value, error) {
	cur := root
	for _, t := range toks[:len(toks)-1] {
		next, err := child(cur, t)
		if err != nil {
			return nil, err
		}
		cur = next
	}
	return cur, nil
}

func child(v *fjson.Value, tok string) (*fjson.Value, error) {
	switch v.Kind {
	case fjson.Object:
		if c := v.Get(tok); c != nil {
			return c, nil
		}
		return nil, fmt.Errorf("%w: no member %q", ErrConflict, tok)
	case fjson.Array:
		i, err := index(tok, len(v.Items), false)
		if err != nil {
			return nil, err
		}
		return v.Items[i], nil
	}
	return nil, fmt.Errorf("%w: cannot descend into a %s", ErrConflict, v.Kind)
}

func index(tok string, n int, allowEnd bool) (int, error) {
	if tok == "-" && allowEnd {
		return n, nil
	}
	if tok == "" || (len(tok) > 1 && tok[0] == '0') {
		return 0, fmt.Errorf("%w: bad array index %q", ErrConflict, tok)
	}
	i, err := strconv.Atoi(tok)
	if err != nil || i < 0 || i > n || (i == n && !allowEnd) {
		return 0, fmt.Errorf("%w: array index %q out of range", ErrConflict, tok)
	}
	return i, nil
}

func get(root *fjson.Value, path string) (*fjson.Value, error) {
	toks, err := pointer(path)
	if err != nil {
		return nil, err
	}
	cur := root
	for _, t := range toks {
		if cur, err = child(cur, t); err != nil {
			return nil, err
		}
	}
	return cur, nil
}

func add(root *fjson.Value, path string, val *fjson.Value) (*fjson.Value, error) {
	toks, err := pointer(path)
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return val, nil
	}
	par, err := parent(root, toks)
	if err != nil {
		return nil, err
	}
	last := toks[len(toks)-1]
	switch par.Kind {
	case fjson.Object:
		for i := range par.Members {
			if par.Members[i].Key == last {
				par.Members[i].Value = val
				return root, nil
			}
		}
		par.Members = append(par.Members, fjson.Member{Key: last, Value: val})
	case fjson.Array:
		i, err := index(last, len(par.Items), true)
		if err != nil {
			return nil, err
		}
		par.Items = append(par.Items, nil)
		copy(par.Items[i+1:], par.Items[i:])
		par.Items[i] = val
	default:
		return nil, fmt.Errorf("%w: cannot add into a %s", ErrConflict, par.Kind)
	}
	return root, nil
}

func remove(root *fjson.Value, path string) (*fjson.Value, *fjson.Value, error) {
	toks, err := pointer(path)
	if err != nil {
		return nil, nil, err
	}
	if len(toks) == 0 {
		return nil, nil, fmt.Errorf("%w: cannot remove the whole document", ErrConflict)
	}
	par, err := parent(root, toks)
	if err != nil {
		return nil, nil, err
	}
	last := toks[len(toks)-1]
	switch par.Kind {
	case fjson.Object:
		for i := range par.Members {
			if par.Members[i].Key == last {
				old := par.Members[i].Value
				par.Members = append(par.Members[:i], par.Members[i+1:]...)
				return root, old, nil
			}
		}
		return nil, nil, fmt.Errorf("%w: no member %q", ErrConflict, last)
	case fjson.Array:
		i, err := index(last, len(par.Items), false)
		if err != nil {
			return nil, nil, err
		}
		old := par.Items[i]
		par.Items = append(par.Items[:i], par.Items[i+1:]...)
		return root, old, nil
	}
	return nil, nil, fmt.Errorf("%w: cannot remove from a %s", ErrConflict, par.Kind)
}

func applyOne(root *fjson.Value, op Op) (*fjson.Value, error) {
	switch op.Op {
	case "add":
		return add(root, op.Path, clone(op.Value))
	case "remove":
		r, _, err := remove(root, op.Path)
		return r, err
	case "replace":
		if op.Path == "" {
			return clone(op.Value), nil
		}
		r, _, err := remove(root, op.Path)
		if err != nil {
			return nil, err
		}
		return add(r, op.Path, clone(op.Value))
	case "move":
		if op.Path == op.From || strings.HasPrefix(op.Path, op.From+"/") {
			if op.Path == op.From {
				return root, nil
			}
			return nil, fmt.Errorf("%w: cannot move a value into itself", ErrConflict)
		}
		r, v, err := remove(root, op.From)
		if err != nil {
			return nil, err
		}
		return add(r, op.Path, v)
	case "copy":
		v, err := get(root, op.From)
		if err != nil {
			return nil, err
		}
		return add(root, op.Path, clone(v))
	case "test":
		v, err := get(root, op.Path)
		if err != nil {
			return nil, err
		}
		if !fjson.Equal(v, op.Value) {
			return nil, fmt.Errorf("%w: test failed", ErrConflict)
		}
		return root, nil
	}
	return nil, fmt.Errorf("%w: unknown op %q", ErrMalformed, op.Op)
}
