package ccda

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// node is one XML element of the document. CDA is small enough (a few
// hundred kilobytes) that a tree is simpler and more robust to vendor quirks
// than streaming: sections refer to narrative ids anywhere in the document.
type node struct {
	name     string // local name
	space    string // namespace URI
	attrs    []xml.Attr
	children []*node
	text     strings.Builder // character data directly inside the element
	// lead is the character data before the first child, tail the
	// character data after this element up to its next sibling: mixed
	// content (narrative) in document order
	lead, tail string
}

const (
	nsV3   = "urn:hl7-org:v3"
	nsSDTC = "urn:hl7-org:sdtc"
	nsXSI  = "http://www.w3.org/2001/XMLSchema-instance"
)

// maxDepth bounds element nesting so a hostile document cannot exhaust the stack
// of the recursive walks below.
const maxDepth = 200

// parseXML reads a document into a tree rooted at its document element.
func parseXML(data []byte) (*node, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	// CDA documents are UTF-8 in practice; accept declared Latin-1/ASCII as is
	// rather than failing on the declaration.
	d.CharsetReader = func(label string, in io.Reader) (io.Reader, error) { return in, nil }
	var stack []*node
	var root *node
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("xml: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			n := &node{name: t.Name.Local, space: t.Name.Space, attrs: t.Attr}
			if len(stack) == 0 {
				if root != nil {
					return nil, errors.New("xml: more than one document element")
				}
				root = n
			} else {
				p := stack[len(stack)-1]
				p.children = append(p.children, n)
			}
			stack = append(stack, n)
			if len(stack) > maxDepth {
				return nil, fmt.Errorf("xml: nesting deeper than %d", maxDepth)
			}
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				p := stack[len(stack)-1]
				p.text.Write(t)
				if len(p.children) == 0 {
					p.lead += string(t)
				} else {
					last := p.children[len(p.children)-1]
					last.tail += string(t)
				}
			}
		}
	}
	if root == nil {
		return nil, errors.New("xml: no document element")
	}
	return root, nil
}

// attr returns the value of the attribute with this local name (any namespace
// but xsi, whose "type" would shadow CDA's own attributes), trimmed.
func (n *node) attr(name string) string {
	if n == nil {
		return ""
	}
	for _, a := range n.attrs {
		if a.Name.Local == name && a.Name.Space != nsXSI {
			return strings.TrimSpace(a.Value)
		}
	}
	return ""
}

// xsiType returns the local part of xsi:type ("PQ", "CD", ...).
func (n *node) xsiType() string {
	if n == nil {
		return ""
	}
	for _, a := range n.attrs {
		if a.Name.Local == "type" && (a.Name.Space == nsXSI || a.Name.Space == "xsi") {
			v := strings.TrimSpace(a.Value)
			if i := strings.IndexByte(v, ':'); i >= 0 {
				v = v[i+1:]
			}
			return v
		}
	}
	return ""
}

// child returns the first child element with this local name in the CDA
// namespace (or with no namespace, which some vendors emit).
func (n *node) child(name string) *node {
	if n == nil {
		return nil
	}
	for _, c := range n.children {
		if c.name == name && c.space != nsSDTC {
			return c
		}
	}
	return nil
}

// all returns the child elements with this local name.
func (n *node) all(name string) []*node {
	if n == nil {
		return nil
	}
	var out []*node
	for _, c := range n.children {
		if c.name == name && c.space != nsSDTC {
			out = append(out, c)
		}
	}
	return out
}

// allSDTC returns the child elements with this local name in the sdtc
// extension namespace (sdtc:raceCode…).
func (n *node) allSDTC(name string) []*node {
	if n == nil {
		return nil
	}
	var out []*node
	for _, c := range n.children {
		if c.name == name && c.space == nsSDTC {
			out = append(out, c)
		}
	}
	return out
}

// path follows child names.
func (n *node) path(names ...string) *node {
	for _, name := range names {
		n = n.child(name)
	}
	return n
}

// textContent is the element's text including descendants, whitespace collapsed.
func (n *node) textContent() string {
	if n == nil {
		return ""
	}
	var b strings.Builder
	n.appendText(&b)
	return strings.Join(strings.Fields(b.String()), " ")
}

func (n *node) appendText(b *strings.Builder) {
	b.WriteString(n.text.String())
	for _, c := range n.children {
		b.WriteByte(' ')
		c.appendText(b)
	}
}

// hasTemplate reports whether the element declares a templateId with one of
// these roots (the extension, a version date, is ignored).
func (n *node) hasTemplate(roots ...string) bool {
	for _, t := range n.all("templateId") {
		r := t.attr("root")
		for _, want := range roots {
			if r == want {
				return true
			}
		}
	}
	return false
}

// nullFlavored reports whether the element is absent or only a nullFlavor.
func (n *node) nullFlavored() bool {
	return n == nil || n.attr("nullFlavor") != ""
}

// indexIDs records every element carrying an ID attribute, for narrative
// references (<reference value="#id"/>).
func indexIDs(n *node, m map[string]*node) {
	if id := n.attr("ID"); id != "" {
		m[id] = n
	}
	for _, c := range n.children {
		indexIDs(c, m)
	}
}
