package fhirpath

import "fmt"

// Checks of an expression's shape that FHIRPath's strict mode makes before
// evaluating it, independent of the data: they must fail even when the
// collections involved are empty.

// staticCheck walks the expression: in strict mode, an element named after
// "as T" / "as(T)" / "ofType(T)" must be an element of T; with
// checkOrdered, a function or indexer that depends on order (first, last,
// tail, skip, take, [i]) must not be applied to a collection whose order is
// undefined (children(), descendants() and what is navigated or filtered
// from them).
func staticCheck(n node, strict, checkOrdered bool) error {
	var err error
	var walk func(n node)
	walk = func(n node) {
		if err != nil || n == nil {
			return
		}
		switch x := n.(type) {
		case *pathNode:
			if m, ok := x.right.(*memberNode); ok && strict {
				if t := staticType(x.left); t != "" {
					if ti := lookupType(t); ti != nil && ti.elems != nil && ti.elems[m.name] == nil {
						err = fmt.Errorf("fhirpath: %s has no element %s", t, m.name)
						return
					}
				}
			}
			if f, ok := x.right.(*funcNode); ok && checkOrdered && orderedFunc[f.name] && unordered(x.left) {
				err = fmt.Errorf("fhirpath: %s() needs an ordered collection; the order of %s is undefined", f.name, describeUnordered(x.left))
				return
			}
			walk(x.left)
			walk(x.right)
		case *indexNode:
			if checkOrdered && unordered(x.x) {
				err = fmt.Errorf("fhirpath: an indexer needs an ordered collection; the order of %s is undefined", describeUnordered(x.x))
				return
			}
			walk(x.x)
			walk(x.index)
		case *negNode:
			walk(x.x)
		case *typeOpNode:
			walk(x.x)
		case *binaryNode:
			walk(x.left)
			walk(x.right)
		case *funcNode:
			for _, a := range x.args {
				walk(a)
			}
		}
	}
	walk(n)
	return err
}

// staticType is the FHIR type an expression's items are known to have
// from its shape alone ("" when unknown): that of "x as T", "x.as(T)",
// "x.ofType(T)".
func staticType(n node) string {
	switch x := n.(type) {
	case *typeOpNode:
		if x.op == opAs && (x.ts.ns == "" || x.ts.ns == "FHIR") {
			return x.ts.name
		}
	case *pathNode:
		if f, ok := x.right.(*funcNode); ok && (f.name == "as" || f.name == "ofType") && (f.ts.ns == "" || f.ts.ns == "FHIR") {
			return f.ts.name
		}
	}
	return ""
}

// orderedFunc are the functions whose result depends on the order of
// their input.
var orderedFunc = map[string]bool{"first": true, "last": true, "tail": true, "skip": true, "take": true}

// unordered reports whether the order of n's items is undefined: the
// result of children() or descendants(), or a navigation, filter or
// projection of such a result.
func unordered(n node) bool {
	p, ok := n.(*pathNode)
	if !ok {
		return false
	}
	switch r := p.right.(type) {
	case *funcNode:
		switch r.name {
		case "children", "descendants":
			return true
		case "where", "select", "ofType", "as", "distinct", "repeat":
			return unordered(p.left)
		}
	case *memberNode:
		return unordered(p.left)
	}
	return false
}

func describeUnordered(n node) string {
	for {
		p, ok := n.(*pathNode)
		if !ok {
			return "the collection"
		}
		if f, ok := p.right.(*funcNode); ok && (f.name == "children" || f.name == "descendants") {
			return f.name + "()"
		}
		n = p.left
	}
}
