package fhirpath

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"strings"

	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// fhirXMLToJSON converts a FHIR XML resource to its JSON form, for the
// suite's inputs that exist only as XML: element names become members,
// repeated elements arrays, value attributes primitives (numbers and
// booleans as JSON literals, by the element's type in the model), id and
// extensions of primitives their "_name" companions, the narrative div
// its XHTML text, and nested resources objects with their resourceType.
func fhirXMLToJSON(data []byte) (*fjson.Value, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	var root *xnode
	var stack []*xnode
	for {
		tok, err := d.Token()
		if err != nil {
			break
		}
		switch t := tok.(type) {
		case xml.StartElement:
			n := &xnode{name: t.Name.Local, attrs: map[string]string{}}
			for _, a := range t.Attr {
				n.attrs[a.Name.Local] = a.Value
			}
			if t.Name.Local == "div" && t.Name.Space == "http://www.w3.org/1999/xhtml" {
				// the narrative: kept as its XHTML text
				var b strings.Builder
				enc := xml.NewEncoder(&b)
				if err := enc.EncodeToken(t); err != nil {
					return nil, err
				}
				depth := 1
				for depth > 0 {
					tk, err := d.Token()
					if err != nil {
						return nil, err
					}
					switch tk.(type) {
					case xml.StartElement:
						depth++
					case xml.EndElement:
						depth--
					}
					if err := enc.EncodeToken(xml.CopyToken(tk)); err != nil {
						return nil, err
					}
				}
				enc.Flush()
				n.xhtml = b.String()
				stack[len(stack)-1].children = append(stack[len(stack)-1].children, n)
				continue
			}
			if len(stack) > 0 {
				stack[len(stack)-1].children = append(stack[len(stack)-1].children, n)
			} else {
				root = n
			}
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		}
	}
	if root == nil {
		return nil, fmt.Errorf("no document element")
	}
	var b strings.Builder
	writeResource(&b, root)
	return fjson.Parse([]byte(b.String()))
}

type xnode struct {
	name     string
	attrs    map[string]string
	children []*xnode
	xhtml    string
}

func writeResource(b *strings.Builder, n *xnode) {
	b.WriteString(`{"resourceType":`)
	b.Write(fjson.AppendString(nil, n.name))
	writeMembers(b, n, n.name, true)
	b.WriteString("}")
}

// writeMembers writes n's children (and id/url attributes) as members,
// after a first member already written when more is set.
func writeMembers(b *strings.Builder, n *xnode, typ string, more bool) {
	sep := func() {
		if more {
			b.WriteByte(',')
		}
		more = true
	}
	for _, a := range []string{"id", "url"} {
		if v, ok := n.attrs[a]; ok && n.attrs["value"] == "" || ok && a == "url" {
			sep()
			b.Write(fjson.AppendString(nil, a))
			b.WriteByte(':')
			b.Write(fjson.AppendString(nil, v))
		}
	}
	var order []string
	groups := map[string][]*xnode{}
	for _, c := range n.children {
		if _, ok := groups[c.name]; !ok {
			order = append(order, c.name)
		}
		groups[c.name] = append(groups[c.name], c)
	}
	for _, name := range order {
		cs := groups[name]
		ctyp, _, _ := ElementType(typ, name)
		if ctyp == "" {
			ctyp = typeFromSuffix(strings.TrimPrefix(name, "value"))
		}
		if isPrimitiveName(ctyp) || ctyp == "" && cs[0].attrs["value"] != "" {
			sep()
			b.Write(fjson.AppendString(nil, name))
			b.WriteByte(':')
			writeList(b, cs, func(c *xnode) { writePrimitive(b, ctyp, c) })
			// ids and extensions of primitives
			hasExt := false
			for _, c := range cs {
				if len(c.children) > 0 || c.attrs["id"] != "" {
					hasExt = true
				}
			}
			if hasExt {
				b.WriteString(`,"_` + name + `":`)
				writeList(b, cs, func(c *xnode) {
					b.WriteByte('{')
					writeMembers(b, &xnode{children: c.children, attrs: map[string]string{"id": c.attrs["id"]}}, "Element", false)
					b.WriteByte('}')
				})
			}
			continue
		}
		sep()
		b.Write(fjson.AppendString(nil, name))
		b.WriteByte(':')
		writeList(b, cs, func(c *xnode) {
			switch {
			case c.xhtml != "":
				b.Write(fjson.AppendString(nil, c.xhtml))
			case ctyp == "Resource" && len(c.children) == 1:
				writeResource(b, c.children[0])
			default:
				b.WriteByte('{')
				writeMembers(b, c, ctyp, false)
				b.WriteByte('}')
			}
		})
	}
}

func writeList(b *strings.Builder, cs []*xnode, one func(*xnode)) {
	if len(cs) > 1 {
		b.WriteByte('[')
	}
	for i, c := range cs {
		if i > 0 {
			b.WriteByte(',')
		}
		one(c)
	}
	if len(cs) > 1 {
		b.WriteByte(']')
	}
}

func writePrimitive(b *strings.Builder, typ string, c *xnode) {
	v, ok := c.attrs["value"]
	if !ok {
		b.WriteString("null")
		return
	}
	switch typ {
	case "boolean", "integer", "decimal", "positiveInt", "unsignedInt", "integer64":
		b.WriteString(v)
	default:
		b.Write(fjson.AppendString(nil, v))
	}
}
