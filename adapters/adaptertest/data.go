package adaptertest

import (
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/internal/sharedtest"
)

// DataEpoch is the meta.lastUpdated of the first stored resource; each next
// one is a second later, so that _since can split a record anywhere.
var DataEpoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// SyntheaBundles returns the paths of the shared Synthea transaction
// bundles, sorted, or skips the test when the shared test data is absent.
func SyntheaBundles(t testing.TB) []string {
	dir := sharedtest.Path(t, "synthea-r4")
	m, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(m) == 0 {
		t.Skipf("no Synthea bundles in %s", dir)
	}
	sort.Strings(m)
	return m
}

// store is the fake server's data: resources as a FHIR server would hold
// them (urn:uuid references resolved, meta.versionId and lastUpdated set).
type store struct {
	reg   *search.Registry
	order []string // keys in load order
	byKey map[string]*entry
	// patients are the Patient ids in load order.
	patients []string
}

type entry struct {
	res *fhir.Resource
	// refs are the reference search values: param -> "Type/id" targets.
	refs map[string][]string
	// compartments are the Patients whose compartment holds the resource.
	compartments []string
	// outside are the "Type/id" of referenced resources outside the patient
	// compartment.
	outside []string
}

func key(r *fhir.Resource) string { return r.Type + "/" + r.ID }

func newStore() (*store, error) {
	reg, err := search.New(search.Options{})
	if err != nil {
		return nil, err
	}
	return &store{reg: reg, byKey: map[string]*entry{}}, nil
}

// loadBundle adds the resources of a transaction bundle file.
func (s *store) loadBundle(path string, keep func(*fhir.Resource) bool) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	root, err := fjson.Parse(b)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	// urn:uuid fullUrls become Type/id, as a server processing the
	// transaction would do.
	ids := map[string]string{}
	for _, e := range root.Get("entry").Elems() {
		r := e.Get("resource")
		if fu := e.Get("fullUrl").String(); strings.HasPrefix(fu, "urn:uuid:") {
			ids[fu] = r.Get("resourceType").String() + "/" + r.Get("id").String()
		}
	}
	for _, e := range root.Get("entry").Elems() {
		raw := appendRewritten(nil, e.Get("resource"), ids)
		r, err := fhir.Parse(raw)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if keep != nil && r.Type != "Patient" && !keep(r) {
			continue
		}
		if err := s.add(r); err != nil {
			return err
		}
	}
	return nil
}

// add stores r with the next lastUpdated.
func (s *store) add(r *fhir.Resource) error {
	k := key(r)
	if _, dup := s.byKey[k]; dup {
		return nil // shared Organizations/Practitioners across bundles
	}
	r = r.WithMeta(r.ID, "1", DataEpoch.Add(time.Duration(len(s.order))*time.Second))
	ix, err := s.reg.Extract(r)
	if err != nil {
		return err
	}
	e := &entry{res: r, refs: map[string][]string{}, compartments: ix.Patients}
	for _, v := range ix.Refs {
		if v.URL == "" && v.TargetType != "" && v.TargetID != "" {
			e.refs[v.Param] = append(e.refs[v.Param], v.TargetType+"/"+v.TargetID)
		}
	}
	seen := map[string]bool{}
	collectOutside(r.Root(), s.reg, seen)
	for ref := range seen {
		e.outside = append(e.outside, ref)
	}
	sort.Strings(e.outside)
	s.byKey[k] = e
	s.order = append(s.order, k)
	if r.Type == "Patient" {
		s.patients = append(s.patients, r.ID)
	}
	return nil
}

// record returns the keys of a patient's record, in load order: the
// Patient, its compartment, and the resources outside the compartment that
// those reference (one level, as Patient/$everything does).
func (s *store) record(pid string) []string {
	if _, ok := s.byKey["Patient/"+pid]; !ok {
		return nil
	}
	in := map[string]bool{}
	for _, k := range s.order {
		e := s.byKey[k]
		if k == "Patient/"+pid || slices.Contains(e.compartments, pid) {
			in[k] = true
		}
	}
	for k := range in {
		for _, ref := range s.byKey[k].outside {
			if _, ok := s.byKey[ref]; ok {
				in[ref] = true
			}
		}
	}
	var out []string
	for _, k := range s.order {
		if in[k] {
			out = append(out, k)
		}
	}
	return out
}

// collectOutside adds the "Type/id" of relative references to resource
// types outside the patient compartment.
func collectOutside(v *fjson.Value, reg *search.Registry, out map[string]bool) {
	switch v.Kind {
	case fjson.Object:
		for _, m := range v.Members {
			if m.Key == "reference" && m.Value.Kind == fjson.String {
				typ, id, ok := strings.Cut(m.Value.Str, "/")
				if ok && fhir.IsResourceType(typ) && fhir.ValidID(id) && typ != "Patient" && !reg.InPatientCompartment(typ) {
					out[typ+"/"+id] = true
				}
				continue
			}
			collectOutside(m.Value, reg, out)
		}
	case fjson.Array:
		for _, it := range v.Items {
			collectOutside(it, reg, out)
		}
	}
}

// appendRewritten is fjson.AppendCompact with urn:uuid references replaced.
func appendRewritten(dst []byte, v *fjson.Value, ids map[string]string) []byte {
	switch v.Kind {
	case fjson.Object:
		dst = append(dst, '{')
		for i, m := range v.Members {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = fjson.AppendString(dst, m.Key)
			dst = append(dst, ':')
			if m.Key == "reference" && m.Value.Kind == fjson.String {
				if to, ok := ids[m.Value.Str]; ok {
					dst = fjson.AppendString(dst, to)
					continue
				}
			}
			dst = appendRewritten(dst, m.Value, ids)
		}
		return append(dst, '}')
	case fjson.Array:
		dst = append(dst, '[')
		for i, it := range v.Items {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendRewritten(dst, it, ids)
		}
		return append(dst, ']')
	}
	return append(dst, v.Raw...)
}

// items returns the elements of an array value, nil for anything else
// (including a missing member).
func items(v *fjson.Value) []*fjson.Value {
	if v == nil || v.Kind != fjson.Array {
		return nil
	}
	return v.Items
}

// Overlap returns a ServerOptions.Keep for source i of n that keeps each
// resource in two neighbouring sources (by a hash of its type and id): n
// fake servers built with Overlap(0, n) … Overlap(n-1, n) together hold
// the whole record, and every resource is held twice.
func Overlap(i, n int) func(*fhir.Resource) bool {
	return func(r *fhir.Resource) bool {
		h := fnv.New32a()
		h.Write([]byte(r.Type + "/" + r.ID))
		k := int(h.Sum32() % uint32(n))
		return k == i || k == (i+1)%n
	}
}
