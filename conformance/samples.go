package conformance

import (
	_ "embed"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/fhirgate/fhirgate/conformance/internal/samplegen"
)

//go:generate go run ./internal/samplegen/gen -root .. -o samples.json

// samplesJSON holds the resources the suite creates: a minimal valid
// instance of every R4 resource type and the search-sample pairs, derived
// from the R4 definitions by internal/samplegen.
//
//go:embed samples.json
var samplesJSON []byte

type sampleData = samplegen.Data

var (
	samplesOnce sync.Once
	samples     *sampleData
	samplesErr  error
)

func loadSamples() (*sampleData, error) {
	samplesOnce.Do(func() { samples, samplesErr = samplegen.Decode(samplesJSON) })
	return samples, samplesErr
}

// Tag system and codes the suite marks its resources with.
const (
	tagSystem = "urn:fhirgate:conformance"
	// subsettedSystem and subsettedCode mark a subsetted resource (R4 search.html).
	subsettedSystem = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
	subsettedCode   = "SUBSETTED"
)

// runTag is the code of the tag every resource of this run carries.
func (r *runner) runTag() string { return "run-" + r.uniq }

// tagged returns a resource with the run tag and the extra tags (codes in
// tagSystem) added to meta.tag.
func (r *runner) tagged(res map[string]any, extra ...string) map[string]any {
	res = cloneJSON(res)
	meta, _ := res["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		res["meta"] = meta
	}
	tags, _ := meta["tag"].([]any)
	for _, code := range append([]string{r.runTag()}, extra...) {
		tags = append(tags, map[string]any{"system": tagSystem, "code": code})
	}
	meta["tag"] = tags
	return res
}

// minimal returns the minimal instance of a type, or nil when the suite has
// none (a type that is not in R4).
func (r *runner) minimal(typ string) map[string]any {
	td := r.data.Type(typ)
	if td == nil {
		return nil
	}
	v, err := decodeObject(td.Minimal)
	if err != nil {
		panic(fmt.Sprintf("conformance: samples.json: %s: %v", typ, err))
	}
	return v
}

// instantiate replaces a template's placeholders: the run's unique token,
// and reference placeholders by ids of pool resources (created on demand).
func (c *ct) instantiate(template []byte) map[string]any {
	s := c.subst(string(template))
	v, err := decodeObject([]byte(s))
	if err != nil {
		c.fatalf("template: %v", err)
	}
	return v
}

// subst replaces the placeholders of a template or query.
func (c *ct) subst(s string) string {
	for _, typ := range samplegen.RefTypes(s) {
		for n := range 2 {
			if _, err := c.r.poolID(c, typ, n); err != nil {
				c.fatalf("creating the %s the samples refer to: %v", typ, err)
			}
		}
	}
	return samplegen.Substitute(s, c.r.uniq, func(typ string, n int) string {
		id, _ := c.r.poolID(c, typ, n)
		return id
	})
}

// poolEntry is a resource samples refer to, created once per run.
type poolEntry struct {
	once sync.Once
	id   string
	err  error
}

// poolID returns the id of the run's n-th target resource of typ.
func (r *runner) poolID(c *ct, typ string, n int) (string, error) {
	key := fmt.Sprintf("%s/%d", typ, n)
	r.mu.Lock()
	e := r.pool[key]
	if e == nil {
		e = &poolEntry{}
		r.pool[key] = e
	}
	r.mu.Unlock()
	e.once.Do(func() {
		min := r.minimal(typ)
		if min == nil {
			e.err = fmt.Errorf("no minimal %s", typ)
			return
		}
		pc := &ct{r: r, ctx: c.ctx}
		resp := pc.do(http.MethodPost, "/"+typ, mustJSON(r.tagged(min)))
		if resp.status != http.StatusCreated || str(resp.obj, "id") == "" {
			e.err = fmt.Errorf("%s", resp)
			return
		}
		if pc.failed() {
			e.err = fmt.Errorf("%s", strings.Join(pc.fails, "; "))
		}
		e.id = str(resp.obj, "id")
		r.noteCreated(typ, e.id)
	})
	return e.id, e.err
}

func cloneJSON(v map[string]any) map[string]any {
	out, err := decodeObject(mustJSON(v))
	if err != nil {
		panic(err)
	}
	return out
}

// narrative is a Narrative whose text holds word.
func narrative(word string) map[string]any {
	return map[string]any{"status": "generated", "div": `<div xmlns="http://www.w3.org/1999/xhtml">` + word + ` narrative</div>`}
}
