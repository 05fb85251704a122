package main

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/fhir/validate/internal/defs"
)

type concept struct {
	Code        string `json:"code"`
	Display     string `json:"display"`
	Designation []struct {
		Value string `json:"value"`
	} `json:"designation"`
	Concept []concept `json:"concept"`
}

type terminology struct {
	codeSystems map[string][]string // url -> all codes, nested ones included
	// complete are the complete code systems with their displays.
	complete  []defs.CodeSystem
	valueSets map[string]valueSetJSON
}

type valueSetJSON struct {
	URL     string `json:"url"`
	Compose *struct {
		Include []include `json:"include"`
		Exclude []include `json:"exclude"`
	} `json:"compose"`
}

type include struct {
	System   string                  `json:"system"`
	Concept  []struct{ Code string } `json:"concept"`
	Filter   []json.RawMessage       `json:"filter"`
	ValueSet []string                `json:"valueSet"`
}

func loadTerminology(dir string) (*terminology, error) {
	t := &terminology{codeSystems: map[string][]string{}, valueSets: map[string]valueSetJSON{}}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var head struct {
			ResourceType string    `json:"resourceType"`
			URL          string    `json:"url"`
			Content      string    `json:"content"`
			Concept      []concept `json:"concept"`
		}
		if err := json.Unmarshal(data, &head); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		switch head.ResourceType {
		case "CodeSystem":
			if head.Content != "" && head.Content != "complete" {
				continue
			}
			var codes []string
			cs := defs.CodeSystem{URL: head.URL}
			var walk func([]concept)
			walk = func(list []concept) {
				for _, c := range list {
					codes = append(codes, c.Code)
					dc := defs.Concept{Code: c.Code}
					if c.Display != "" {
						dc.Displays = append(dc.Displays, c.Display)
					}
					for _, d := range c.Designation {
						if d.Value != "" && !slices.Contains(dc.Displays, d.Value) {
							dc.Displays = append(dc.Displays, d.Value)
						}
					}
					cs.Concepts = append(cs.Concepts, dc)
					walk(c.Concept)
				}
			}
			walk(head.Concept)
			t.codeSystems[head.URL] = codes
			t.complete = append(t.complete, cs)
		case "ValueSet":
			var vs valueSetJSON
			if err := json.Unmarshal(data, &vs); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			t.valueSets[vs.URL] = vs
		}
	}
	return t, nil
}

// expand lists the codes of a value set built from whole code systems and
// enumerated concepts; filters and imported value sets are not supported and
// make it fail.
func (t *terminology) expand(url string) ([]defs.Code, bool) {
	vs, ok := t.valueSets[url]
	if !ok || vs.Compose == nil || len(vs.Compose.Exclude) > 0 {
		return nil, false
	}
	var out []defs.Code
	seen := map[defs.Code]bool{}
	for _, inc := range vs.Compose.Include {
		if len(inc.Filter) > 0 || len(inc.ValueSet) > 0 || inc.System == "" {
			return nil, false
		}
		var codes []string
		if len(inc.Concept) > 0 {
			for _, c := range inc.Concept {
				codes = append(codes, c.Code)
			}
		} else {
			all, ok := t.codeSystems[inc.System]
			if !ok {
				return nil, false
			}
			codes = all
		}
		for _, c := range codes {
			k := defs.Code{System: inc.System, Code: c}
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	return out, len(out) > 0
}

var documentedHere = regexp.MustCompile(`^(\w+) is documented here (\S+)`)

// loadSamplyEnums reads the code enums that samply/golang-fhir-models
// generated from the R4 definitions: for each type documented as a ValueSet,
// the string literals its Code method returns. The value set URL is the
// one the enum is documented with.
func loadSamplyEnums(dir string) (map[string][]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no Go files in %s", dir)
	}
	out := map[string][]string{}
	fset := token.NewFileSet()
	for _, f := range files {
		file, err := parser.ParseFile(fset, f, nil, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		urls := map[string]string{} // type name -> value set URL
		for _, d := range file.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE || gd.Doc == nil {
				continue
			}
			m := documentedHere.FindStringSubmatch(strings.TrimSpace(gd.Doc.Text()))
			if m != nil && strings.Contains(m[2], "/ValueSet/") {
				urls[m[1]] = m[2]
			}
		}
		for _, d := range file.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Name.Name != "Code" || fd.Recv == nil || len(fd.Recv.List) != 1 {
				continue
			}
			id, ok := fd.Recv.List[0].Type.(*ast.Ident)
			if !ok || urls[id.Name] == "" {
				continue
			}
			var codes []string
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				cc, ok := n.(*ast.CaseClause)
				if !ok {
					return true
				}
				for _, st := range cc.Body {
					if rs, ok := st.(*ast.ReturnStmt); ok && len(rs.Results) == 1 {
						if lit, ok := rs.Results[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
							if s, err := strconv.Unquote(lit.Value); err == nil {
								codes = append(codes, s)
							}
						}
					}
				}
				return false
			})
			if len(codes) > 0 {
				out[urls[id.Name]] = codes
			}
		}
	}
	return out, nil
}
