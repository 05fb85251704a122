package storagetest

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/storage"
)

// SearchFactory returns a new empty store that keeps a search index with
// reg.
type SearchFactory func(t *testing.T, reg *search.Registry) storage.Store

// RunRelease checks that a store applies a storage.Release everywhere a
// read returns resources: search pages (unsorted and sorted), paging links,
// counts, _include/_revinclude, the inner criteria of _has and chains,
// Patient/$everything and history. The release is a fixed rule over a
// generated record; what each read answers is compared with what the rule
// alone says.
func RunRelease(t *testing.T, newStore SearchFactory) {
	reg, err := search.New(search.Options{BaseURL: "http://fhir.test"})
	if err != nil {
		t.Fatal(err)
	}
	s := newStore(t, reg)
	t.Cleanup(func() { s.Close() })
	w := buildReleaseWorld(t, s)
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s storage.Store, reg *search.Registry, w *releaseWorld)
	}{
		{"Paging", testReleasePaging},
		{"Counts", testReleaseCounts},
		{"Includes", testReleaseIncludes},
		{"HasAndChains", testReleaseHasChains},
		{"Everything", testReleaseEverything},
		{"History", testReleaseHistory},
		{"ExactBound", testReleaseExact},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, s, reg, w) })
	}
}

// releaseWorld is three patients' records: Observations and
// MedicationRequests, Medications each named by one request, one
// Practitioner performing some Observations.
type releaseWorld struct {
	obs     map[string]string // id -> patient id
	code    map[string]string // Observation id -> code
	meds    map[string]string // MedicationRequest id -> Medication id
	medPat  map[string]string // MedicationRequest id -> patient id
	deleted map[string]bool   // Observations deleted (their last version released)
}

// testRelease is the rule: the caller is patient p1's provider; of p1's
// Observations those whose number is a multiple of 3 are withheld (decided
// row by row), of its MedicationRequests the odd ones; Patients and
// Medications are decided by the bound alone (exact).
type testRelease struct{ calls atomic.Int64 }

func obsNumber(id string) int {
	var n int
	fmt.Sscanf(id, "o%d", &n)
	return n
}

func (r *testRelease) Released(_ context.Context, res *fhir.Resource) (bool, error) {
	r.calls.Add(1)
	root := res.Root()
	switch res.Type {
	case "Observation":
		return root.Get("subject").Get("reference").String() == "Patient/p1" && obsNumber(res.ID)%3 != 0, nil
	case "MedicationRequest":
		var n int
		fmt.Sscanf(res.ID, "mr%d", &n)
		return root.Get("subject").Get("reference").String() == "Patient/p1" && n%2 == 0, nil
	case "Patient":
		return res.ID == "p1", nil
	case "Medication", "Practitioner":
		return true, nil
	}
	return false, nil
}

func (r *testRelease) Bound(typ string) storage.Bound {
	switch typ {
	case "Patient":
		return storage.Bound{Restrict: true, Patients: []string{"p1"}, Exact: true}
	case "Observation", "MedicationRequest":
		return storage.Bound{Restrict: true, Patients: []string{"p1"}}
	case "Medication", "Practitioner":
		return storage.Bound{Exact: true}
	}
	return storage.Bound{None: true}
}

func (w *releaseWorld) obsReleased(id string) bool {
	return w.obs[id] == "p1" && obsNumber(id)%3 != 0
}

func buildReleaseWorld(t *testing.T, s storage.Store) *releaseWorld {
	ctx := context.Background()
	w := &releaseWorld{obs: map[string]string{}, code: map[string]string{}, meds: map[string]string{}, medPat: map[string]string{}, deleted: map[string]bool{}}
	var rs []*fhir.Resource
	for _, p := range []string{"p1", "p2", "p3"} {
		rs = append(rs, mustParse(t, `{"resourceType":"Patient","id":"`+p+`","name":[{"family":"Same","given":["`+p+`"]}]}`))
	}
	rs = append(rs, mustParse(t, `{"resourceType":"Practitioner","id":"pr1","name":[{"family":"Doc"}]}`))
	pats := []string{"p1", "p2", "p1", "p3"}
	for i := 1; i <= 40; i++ {
		id, pt, code := fmt.Sprintf("o%02d", i), pats[i%4], fmt.Sprintf("c%d", i%2)
		w.obs[id], w.code[id] = pt, code
		perf := ""
		if i%5 == 0 {
			perf = `,"performer":[{"reference":"Practitioner/pr1"}]`
		}
		rs = append(rs, mustParse(t, `{"resourceType":"Observation","id":"`+id+`","status":"final","code":{"coding":[{"system":"urn:test","code":"`+code+`"}]},"subject":{"reference":"Patient/`+pt+`"}`+perf+`}`))
	}
	for i := 1; i <= 8; i++ {
		id, med, pt := fmt.Sprintf("mr%d", i), fmt.Sprintf("m%d", i), pats[i%4]
		w.meds[id], w.medPat[id] = med, pt
		rs = append(rs, mustParse(t, `{"resourceType":"Medication","id":"`+med+`","code":{"text":"drug `+med+`"}}`),
			mustParse(t, `{"resourceType":"MedicationRequest","id":"`+id+`","status":"active","intent":"order","medicationReference":{"reference":"Medication/`+med+`"},"subject":{"reference":"Patient/`+pt+`"}}`))
	}
	if _, err := s.CreateMany(ctx, rs); err != nil {
		t.Fatal(err)
	}
	// o04 (p1, released) moves to p2: its version 2 is withheld; o08 is
	// deleted (its last content released), o12 too (withheld)
	if _, _, err := s.Update(ctx, mustParse(t, `{"resourceType":"Observation","id":"o04","status":"final","code":{"coding":[{"system":"urn:test","code":"c0"}]},"subject":{"reference":"Patient/p2"}}`), storage.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.obs["o04"] = "p2"
	for _, id := range []string{"o08", "o12"} {
		if _, err := s.Delete(ctx, "Observation", id, storage.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		w.deleted[id] = true
	}
	return w
}

func parse(t *testing.T, reg *search.Registry, typ, query string) *search.Query {
	t.Helper()
	v, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	q, err := reg.ParseQuery(typ, v, true)
	if err != nil {
		t.Fatalf("%s?%s: %v", typ, query, err)
	}
	return q
}

// pageAll follows a search to its end; it fails on an empty page that
// promises a next one.
func pageAll(t *testing.T, s storage.Store, reg *search.Registry, rel storage.Release, typ, query string) (matches, included []string) {
	t.Helper()
	q := parse(t, reg, typ, query)
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatalf("%s?%s: more than 100 pages", typ, query)
		}
		res, err := s.Search(context.Background(), storage.SearchRequest{Query: q, Cursor: cursor, Release: rel})
		if err != nil {
			t.Fatalf("%s?%s: %v", typ, query, err)
		}
		for _, r := range res.Matches {
			matches = append(matches, r.Type+"/"+r.ID)
		}
		for _, r := range res.Included {
			included = append(included, r.Type+"/"+r.ID)
		}
		if res.Next == "" {
			return matches, included
		}
		if len(res.Matches) == 0 {
			t.Fatalf("%s?%s: an empty page with a next link", typ, query)
		}
		cursor = res.Next
	}
}

func sameSet(t *testing.T, what string, got, want []string) {
	t.Helper()
	g, w := slices.Clone(got), slices.Clone(want)
	sort.Strings(g)
	sort.Strings(w)
	if !slices.Equal(g, w) {
		t.Errorf("%s:\n got %v\nwant %v", what, g, w)
	}
}

func (w *releaseWorld) releasedObs(pred func(id string) bool) []string {
	var out []string
	for id := range w.obs {
		if !w.deleted[id] && w.obsReleased(id) && pred(id) {
			out = append(out, "Observation/"+id)
		}
	}
	return out
}

func testReleasePaging(t *testing.T, s storage.Store, reg *search.Registry, w *releaseWorld) {
	rel := &testRelease{}
	want := w.releasedObs(func(id string) bool { return w.code[id] == "c0" })
	for _, query := range []string{"code=urn:test|c0&_count=2", "code=urn:test|c0&_count=1", "code=urn:test|c0&_count=2&_sort=-_id", "code=urn:test|c0&_count=3&_sort=_lastUpdated"} {
		got, _ := pageAll(t, s, reg, rel, "Observation", query)
		sameSet(t, query, got, want)
	}
	// sorted pages keep their order
	got, _ := pageAll(t, s, reg, rel, "Observation", "code=urn:test|c0&_count=2&_sort=-_id")
	if !slices.IsSortedFunc(got, func(a, b string) int { return strings.Compare(b, a) }) {
		t.Errorf("_sort=-_id pages out of order: %v", got)
	}
	// every match withheld: one empty page, no next link
	res, err := s.Search(context.Background(), storage.SearchRequest{Query: parse(t, reg, "Observation", "subject=Patient/p2&_count=1"), Release: rel})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Matches) != 0 || res.Next != "" {
		t.Errorf("a search of withheld resources answered %d matches, next %q", len(res.Matches), res.Next)
	}
	// the last released match is followed by withheld ones only: no next
	ids, _ := pageAll(t, s, reg, rel, "Observation", "_count=1")
	sameSet(t, "all Observations", ids, w.releasedObs(func(string) bool { return true }))
	// without a release, everything
	all, _ := pageAll(t, s, reg, nil, "Observation", "_count=7")
	if len(all) != len(w.obs)-len(w.deleted) {
		t.Errorf("without a release: %d Observations, want %d", len(all), len(w.obs)-len(w.deleted))
	}
}

func testReleaseCounts(t *testing.T, s storage.Store, reg *search.Registry, w *releaseWorld) {
	rel := &testRelease{}
	want := len(w.releasedObs(func(id string) bool { return w.code[id] == "c1" }))
	for _, query := range []string{"code=urn:test|c1&_summary=count", "code=urn:test|c1&_total=accurate&_count=2"} {
		res, err := s.Search(context.Background(), storage.SearchRequest{Query: parse(t, reg, "Observation", query), Release: rel})
		if err != nil {
			t.Fatal(err)
		}
		if res.Total != want {
			t.Errorf("%s: total %d, want %d (the released ones)", query, res.Total, want)
		}
	}
	// by default a count that would need every row decided is not given
	res, err := s.Search(context.Background(), storage.SearchRequest{Query: parse(t, reg, "Observation", "code=urn:test|c1"), Release: rel})
	if err != nil {
		t.Fatal(err)
	}
	if res.Total != -1 && res.Total != want {
		t.Errorf("default total %d: neither left out nor the released count %d", res.Total, want)
	}
}

func testReleaseIncludes(t *testing.T, s storage.Store, reg *search.Registry, w *releaseWorld) {
	rel := &testRelease{}
	var wantMR, wantMed []string
	for id, med := range w.meds {
		var n int
		fmt.Sscanf(id, "mr%d", &n)
		if w.medPat[id] == "p1" && n%2 == 0 {
			wantMR = append(wantMR, "MedicationRequest/"+id)
			wantMed = append(wantMed, "Medication/"+med)
		}
	}
	got, inc := pageAll(t, s, reg, rel, "MedicationRequest", "_include=MedicationRequest:medication&_count=2")
	sameSet(t, "MedicationRequests", got, wantMR)
	sameSet(t, "Medications included through released requests only", inc, wantMed)
	// _revinclude: only released Observations of p1; :iterate from them only
	_, inc = pageAll(t, s, reg, rel, "Patient", "_id=p1,p2&_revinclude=Observation:subject&_include:iterate=Observation:performer")
	wantInc := w.releasedObs(func(string) bool { return true })
	for _, id := range wantInc {
		if n := obsNumber(strings.TrimPrefix(id, "Observation/")); n%5 == 0 {
			wantInc = append(wantInc, "Practitioner/pr1")
			break
		}
	}
	sameSet(t, "revincluded Observations (and their performer)", inc, wantInc)
}

func testReleaseHasChains(t *testing.T, s storage.Store, reg *search.Registry, w *releaseWorld) {
	rel := &testRelease{}
	// only p2 and p3 have c1 Observations, all withheld; p1's c0 ones
	// include released ones
	got, _ := pageAll(t, s, reg, rel, "Patient", "_has:Observation:subject:code=urn:test|c1")
	sameSet(t, "_has over withheld Observations", got, nil)
	got, _ = pageAll(t, s, reg, nil, "Patient", "_has:Observation:subject:code=urn:test|c1")
	sameSet(t, "_has without a release", got, []string{"Patient/p2", "Patient/p3"})
	got, _ = pageAll(t, s, reg, rel, "Patient", "_has:Observation:subject:code=urn:test|c0")
	sameSet(t, "_has over released Observations", got, []string{"Patient/p1"})
	// a Practitioner performs Observations of every patient: _has finds it
	// only through a released one
	got, _ = pageAll(t, s, reg, rel, "Practitioner", "_has:Observation:performer:subject=Patient/p2")
	sameSet(t, "_has through withheld Observations only", got, nil)
	got, _ = pageAll(t, s, reg, rel, "Practitioner", "_has:Observation:performer:subject=Patient/p1")
	want := []string{}
	if len(w.releasedObs(func(id string) bool { return obsNumber(id)%5 == 0 })) > 0 {
		want = []string{"Practitioner/pr1"}
	}
	sameSet(t, "_has through released Observations", got, want)
	// a Medication probed through withheld requests is not found
	got, _ = pageAll(t, s, reg, rel, "Medication", "_has:MedicationRequest:medication:subject=Patient/p2")
	sameSet(t, "_has on a Medication through withheld requests", got, nil)
	// chain: the subject's name matches every patient; only released ones count
	got, _ = pageAll(t, s, reg, rel, "Observation", "subject:Patient.family=Same&_count=5")
	sameSet(t, "chain over released Patients", got, w.releasedObs(func(string) bool { return true }))
	got, _ = pageAll(t, s, reg, rel, "Observation", "subject:Patient.given=p2")
	sameSet(t, "chain to a withheld Patient", got, nil)
}

func testReleaseEverything(t *testing.T, s storage.Store, _ *search.Registry, w *releaseWorld) {
	rel := &testRelease{}
	want := append([]string{"Patient/p1"}, w.releasedObs(func(string) bool { return true })...)
	perf := false
	for _, id := range want {
		if strings.HasPrefix(id, "Observation/") && obsNumber(strings.TrimPrefix(id, "Observation/"))%5 == 0 {
			perf = true
		}
	}
	if perf {
		want = append(want, "Practitioner/pr1")
	}
	for id, med := range w.meds {
		var n int
		fmt.Sscanf(id, "mr%d", &n)
		if w.medPat[id] == "p1" && n%2 == 0 {
			want = append(want, "MedicationRequest/"+id, "Medication/"+med)
		}
	}
	for _, count := range []int{1000, 3, 1} {
		var got []string
		req := storage.EverythingRequest{PatientID: "p1", Count: count, Release: rel}
		for pages := 0; ; pages++ {
			res, err := s.Everything(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res.Matches {
				got = append(got, r.Type+"/"+r.ID)
			}
			if res.Next == "" {
				break
			}
			if len(res.Matches) == 0 || pages > 200 {
				t.Fatalf("_count=%d: empty page with a next link, or no end", count)
			}
			req.Cursor = res.Next
		}
		sameSet(t, fmt.Sprintf("$everything _count=%d", count), got, want)
	}
	// p2's record holds nothing released but what it refers to must not
	// come through withheld resources either
	res, err := s.Everything(context.Background(), storage.EverythingRequest{PatientID: "p2", Release: rel})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Matches) != 0 {
		var got []string
		for _, r := range res.Matches {
			got = append(got, r.Type+"/"+r.ID)
		}
		t.Errorf("$everything of a withheld record answered %v", got)
	}
}

func testReleaseHistory(t *testing.T, s storage.Store, _ *search.Registry, w *releaseWorld) {
	rel := &testRelease{}
	var want []string
	for id, pt := range w.obs {
		n := obsNumber(id)
		if id == "o04" {
			pt = "p1" // version 1 was p1's and released; version 2 is p2's
		}
		if pt == "p1" && n%3 != 0 {
			want = append(want, "Observation/"+id+"/1")
			if w.deleted[id] {
				want = append(want, "Observation/"+id+"/2") // decided on the version it deleted
			}
		}
	}
	for _, count := range []int{1, 4, 100} {
		var got []string
		q := storage.HistoryQuery{Type: "Observation", Count: count, Release: rel}
		for pages := 0; ; pages++ {
			page, err := s.History(context.Background(), q)
			if err != nil {
				t.Fatal(err)
			}
			if page.Total != -1 {
				t.Errorf("a released history counts %d", page.Total)
			}
			for _, e := range page.Entries {
				got = append(got, e.Type+"/"+e.ID+"/"+e.VersionID)
			}
			if page.Next == "" {
				break
			}
			if len(page.Entries) == 0 || pages > 200 {
				t.Fatalf("_count=%d: empty history page with a next link", count)
			}
			q.Cursor = page.Next
		}
		sameSet(t, fmt.Sprintf("history _count=%d", count), got, want)
	}
}

// testReleaseExact: what the bound decides exactly is decided in SQL,
// without asking Released about each row.
func testReleaseExact(t *testing.T, s storage.Store, reg *search.Registry, _ *releaseWorld) {
	rel := &testRelease{}
	got, _ := pageAll(t, s, reg, rel, "Patient", "family=Same")
	sameSet(t, "Patients", got, []string{"Patient/p1"})
	res, err := s.Search(context.Background(), storage.SearchRequest{Query: parse(t, reg, "Patient", "family=Same&_summary=count"), Release: rel})
	if err != nil {
		t.Fatal(err)
	}
	if res.Total != 1 {
		t.Errorf("Patient count %d, want 1", res.Total)
	}
	if n := rel.calls.Load(); n != 0 {
		t.Errorf("an exact bound still asked Released %d times", n)
	}
}
