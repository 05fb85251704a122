package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

// loadedPatient is one Synthea bundle after loading: its resources with
// their server ids and references rewritten, as the test computes them
// from the bundle's own JSON.
type loadedPatient struct {
	name      string
	patientID string
	resources []map[string]any // the bundle's resources, references mapped to server ids
	types     []string
	ids       []string
}

// loadSynthea posts every Synthea bundle and maps urn:uuid fullUrls to the
// server-assigned ids from the transaction-response.
func loadSynthea(t *testing.T, h *harness) []*loadedPatient {
	var out []*loadedPatient
	for _, f := range syntheaFiles(t) {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		w := h.do(http.MethodPost, "/", body, "Prefer: return=minimal")
		mustStatus(t, w, http.StatusOK)
		var rb respBundle
		if err := json.Unmarshal(w.Body.Bytes(), &rb); err != nil {
			t.Fatal(err)
		}
		var in struct {
			Entry []struct {
				FullURL  string         `json:"fullUrl"`
				Resource map[string]any `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(body, &in); err != nil {
			t.Fatal(err)
		}
		lp := &loadedPatient{name: strings.SplitN(filepath.Base(f), "_", 3)[0]}
		ids := map[string]string{}
		for i, e := range in.Entry {
			loc := rb.Entry[i].Response.Location
			ref := loc[:strings.Index(loc, "/_history/")]
			ids[e.FullURL] = ref
			typ, id, _ := strings.Cut(ref, "/")
			lp.types = append(lp.types, typ)
			lp.ids = append(lp.ids, id)
			if typ == "Patient" {
				lp.patientID = id
			}
		}
		for _, e := range in.Entry {
			lp.resources = append(lp.resources, mapRefs(e.Resource, ids).(map[string]any))
		}
		out = append(out, lp)
	}
	return out
}

func mapRefs(v any, ids map[string]string) any {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if s, ok := val.(string); ok && k == "reference" {
				if to, ok := ids[s]; ok {
					x[k] = to
				}
				continue
			}
			x[k] = mapRefs(val, ids)
		}
	case []any:
		for i := range x {
			x[i] = mapRefs(x[i], ids)
		}
	}
	return v
}

// searchAllPages follows next links and returns the match and include entries.
// nextPath is the path of a Bundle's next link, "" on the last page.
func nextPath(b map[string]any) string {
	links, _ := b["link"].([]any)
	for _, l := range links {
		if l := l.(map[string]any); l["relation"] == "next" {
			return strings.TrimPrefix(l["url"].(string), "http://fhir.test")
		}
	}
	return ""
}

func searchAllPages(t *testing.T, h *harness, path string) (matches, includes []map[string]any, total int) {
	t.Helper()
	total = -1
	seen := map[string]bool{}
	for pages := 0; path != ""; pages++ {
		if pages > 500 {
			t.Fatalf("paging does not end at %s", path)
		}
		w := h.do(http.MethodGet, path, nil)
		mustStatus(t, w, http.StatusOK)
		b := jsonMap(t, w.Body.Bytes())
		if b["type"] != "searchset" {
			t.Fatalf("%s: bundle type %v", path, b["type"])
		}
		if n, ok := b["total"].(json.Number); ok && pages == 0 {
			v, _ := n.Int64()
			total = int(v)
		}
		path = nextPath(b)
		entries, _ := b["entry"].([]any)
		for _, e := range entries {
			e := e.(map[string]any)
			res := e["resource"].(map[string]any)
			mode := e["search"].(map[string]any)["mode"]
			key := fmt.Sprint(res["resourceType"], "/", res["id"], "/", mode)
			if seen[key] {
				t.Fatalf("%s: %s repeated across pages", path, key)
			}
			seen[key] = true
			switch mode {
			case "match":
				matches = append(matches, res)
			case "include":
				includes = append(includes, res)
			}
		}
	}
	return matches, includes, total
}

func refTo(r map[string]any, field, target string) bool {
	v, ok := r[field].(map[string]any)
	return ok && v["reference"] == target
}

// codings returns the (system, code) pairs of a CodeableConcept field.
func hasCoding(r map[string]any, field, system, code string) bool {
	cc, ok := r[field].(map[string]any)
	if !ok {
		return false
	}
	cs, _ := cc["coding"].([]any)
	for _, c := range cs {
		c := c.(map[string]any)
		if c["system"] == system && c["code"] == code {
			return true
		}
	}
	return false
}

// precisionRange is the instant range a FHIR dateTime covers at its precision.
func precisionRange(s string) (time.Time, time.Time) {
	for _, l := range []struct {
		layout string
		width  func(time.Time) time.Time
	}{
		{"2006-01-02T15:04:05.999999999Z07:00", nil},
		{"2006-01-02T15:04:05Z07:00", func(t time.Time) time.Time { return t.Add(time.Second) }},
		{"2006-01-02", func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }},
		{"2006-01", func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }},
		{"2006", func(t time.Time) time.Time { return t.AddDate(1, 0, 0) }},
	} {
		if t, err := time.Parse(l.layout, s); err == nil {
			if l.width == nil || strings.Contains(s, ".") {
				return t, t
			}
			return t, l.width(t).Add(-time.Microsecond)
		}
	}
	panic("bad date " + s)
}

// TestSyntheaSearchCounts loads every Synthea patient and checks a set of
// searches against counts computed from the bundles' JSON.
func TestSyntheaSearchCounts(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		patients := loadSynthea(t, h)
		for _, p := range patients {
			pref := "Patient/" + p.patientID
			count := func(pred func(r map[string]any) bool) int {
				n := 0
				for _, r := range p.resources {
					if pred(r) {
						n++
					}
				}
				return n
			}
			check := func(query string, want int) []map[string]any {
				t.Helper()
				m, _, total := searchAllPages(t, h, query)
				if len(m) != want || total != want {
					t.Errorf("%s %s: %d matches (total %d), want %d", p.name, query, len(m), total, want)
				}
				return m
			}
			isObs := func(r map[string]any) bool { return r["resourceType"] == "Observation" && refTo(r, "subject", pref) }
			check("/Observation?patient="+p.patientID+"&_count=37", count(isObs))
			check("/Observation?subject=Patient/"+p.patientID+"&_count=100", count(isObs))
			// most frequent LOINC code of this patient
			freq := map[string]int{}
			for _, r := range p.resources {
				if isObs(r) {
					for _, c := range r["code"].(map[string]any)["coding"].([]any) {
						c := c.(map[string]any)
						if c["system"] == "http://loinc.org" {
							freq[c["code"].(string)]++
						}
					}
				}
			}
			best := ""
			for c, n := range freq {
				if best == "" || n > freq[best] || n == freq[best] && c < best {
					best = c
				}
			}
			if best != "" {
				want := count(func(r map[string]any) bool { return isObs(r) && hasCoding(r, "code", "http://loinc.org", best) })
				check("/Observation?patient="+p.patientID+"&code=http://loinc.org|"+best, want)
				check("/Observation?patient="+p.patientID+"&code="+best, want)
				// date ranges on Observation.effective
				cut := time.Date(2018, 6, 1, 0, 0, 0, 0, time.UTC)
				var ge, lt int
				for _, r := range p.resources {
					if !isObs(r) || !hasCoding(r, "code", "http://loinc.org", best) {
						continue
					}
					lo, hi := precisionRange(r["effectiveDateTime"].(string))
					// ge2018-06-01: t.hi > s.hi, or t within s
					sLo, sHi := cut, cut.AddDate(0, 0, 1).Add(-time.Microsecond)
					if hi.After(sHi) || (!lo.Before(sLo) && !hi.After(sHi)) {
						ge++
					}
					if lo.Before(sLo) {
						lt++
					}
				}
				check("/Observation?patient="+p.patientID+"&code="+best+"&date=ge2018-06-01", ge)
				check("/Observation?patient="+p.patientID+"&code="+best+"&date=lt2018-06-01", lt)
			}
			// status tokens
			for _, st := range []string{"active", "stopped", "completed"} {
				check("/MedicationRequest?patient="+p.patientID+"&status="+st, count(func(r map[string]any) bool {
					return r["resourceType"] == "MedicationRequest" && refTo(r, "subject", pref) && r["status"] == st
				}))
			}
			check("/Condition?patient="+p.patientID+"&clinical-status=http://terminology.hl7.org/CodeSystem/condition-clinical|active", count(func(r map[string]any) bool {
				return r["resourceType"] == "Condition" && refTo(r, "subject", pref) && hasCoding(r, "clinicalStatus", "http://terminology.hl7.org/CodeSystem/condition-clinical", "active")
			}))
			// _include: every encounter the patient's DiagnosticReports point at
			reports := check("/DiagnosticReport?patient="+p.patientID+"&_include=DiagnosticReport:encounter&_count=1000", count(func(r map[string]any) bool {
				return r["resourceType"] == "DiagnosticReport" && refTo(r, "subject", pref)
			}))
			encs := map[string]bool{}
			for _, r := range reports {
				if e, ok := r["encounter"].(map[string]any); ok {
					encs[e["reference"].(string)] = true
				}
			}
			_, inc, _ := searchAllPages(t, h, "/DiagnosticReport?patient="+p.patientID+"&_include=DiagnosticReport:encounter&_count=1000")
			if len(inc) != len(encs) {
				t.Errorf("%s: _include gave %d encounters, want %d", p.name, len(inc), len(encs))
			}
			for _, r := range inc {
				if r["resourceType"] != "Encounter" || !encs["Encounter/"+r["id"].(string)] {
					t.Errorf("%s: unexpected include %v/%v", p.name, r["resourceType"], r["id"])
				}
			}
			// compartment search
			check("/Patient/"+p.patientID+"/Encounter?_count=50", count(func(r map[string]any) bool {
				return r["resourceType"] == "Encounter" && refTo(r, "subject", pref)
			}))
			checkEverything(t, h, p)
		}
	})
}

// checkEverything: $everything returns the patient, every resource that
// refers to it, and every resource those refer to: exactly the bundle
// (Synthea bundles hold one patient's record and what it refers to).
func checkEverything(t *testing.T, h *harness, p *loadedPatient) {
	t.Helper()
	want := map[string]bool{}
	for i := range p.ids {
		want[p.types[i]+"/"+p.ids[i]] = true
	}
	for _, count := range []string{"", "?_count=97"} {
		got := map[string]bool{}
		next := "/Patient/" + p.patientID + "/$everything" + count
		for next != "" {
			b := jsonMap(t, h.do(http.MethodGet, next, nil).Body.Bytes())
			next = nextPath(b)
			for _, e := range b["entry"].([]any) {
				r := e.(map[string]any)["resource"].(map[string]any)
				k := r["resourceType"].(string) + "/" + r["id"].(string)
				if got[k] {
					t.Fatalf("%s: $everything%s repeats %s", p.name, count, k)
				}
				got[k] = true
			}
		}
		var missing, extra []string
		for k := range want {
			if !got[k] {
				missing = append(missing, k)
			}
		}
		for k := range got {
			if !want[k] {
				extra = append(extra, k)
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 || len(extra) > 0 {
			t.Errorf("%s: $everything%s has %d entries for %d: missing %v, extra %v", p.name, count, len(got), len(want), missing, extra)
		}
	}
}

// TestPagingWhileWriting pages through a patient's Observations while
// another goroutine creates and updates Observations: every resource that
// existed at the start is seen exactly once.
func TestPagingWhileWriting(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		pid := h.create(patientBody)
		initial := map[string]bool{}
		for i := 0; i < 60; i++ {
			initial[h.create(fmt.Sprintf(`{"resourceType":"Observation","status":"final","code":{"text":"x%d"},"subject":{"reference":"Patient/%s"},"effectiveDateTime":"2020-01-%02d"}`, i, pid, i%28+1))] = true
		}
		ids := make([]string, 0, len(initial))
		for id := range initial {
			ids = append(ids, id)
		}
		for _, query := range []string{"_count=7", "_count=7&_sort=date", "_count=5&_sort=-_lastUpdated,_id"} {
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					h.create(fmt.Sprintf(`{"resourceType":"Observation","status":"final","code":{"text":"new"},"subject":{"reference":"Patient/%s"},"effectiveDateTime":"2020-02-01"}`, pid))
					id := ids[i%len(ids)]
					h.do(http.MethodPut, "/Observation/"+id, []byte(fmt.Sprintf(`{"resourceType":"Observation","id":"%s","status":"amended","code":{"text":"u"},"subject":{"reference":"Patient/%s"},"effectiveDateTime":"2020-01-%02d"}`, id, pid, i%28+1)))
				}
			}()
			matches, _, _ := searchAllPages(t, h, "/Observation?patient="+pid+"&"+query)
			close(stop)
			wg.Wait()
			seen := map[string]int{}
			for _, m := range matches {
				seen[m["id"].(string)]++
			}
			for id := range initial {
				if seen[id] != 1 {
					t.Errorf("%s: initial Observation %s seen %d times", query, id, seen[id])
				}
			}
		}
	})
}

func TestConditionalOperations(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		ident := `"identifier":[{"system":"http://hospital.example/mrn","value":"12345"}]`
		body := []byte(`{"resourceType":"Patient",` + ident + `,"active":true}`)
		cond := "If-None-Exist: identifier=http://hospital.example/mrn|12345"
		w := h.do(http.MethodPost, "/Patient", body, cond)
		mustStatus(t, w, http.StatusCreated)
		id := jsonMap(t, w.Body.Bytes())["id"]
		w = h.do(http.MethodPost, "/Patient", body, cond)
		mustStatus(t, w, http.StatusOK)
		if jsonMap(t, w.Body.Bytes())["id"] != id {
			t.Fatal("conditional create with a match did not return the existing resource")
		}
		// conditional update: one match updates it
		w = h.do(http.MethodPut, "/Patient?identifier=http://hospital.example/mrn|12345", []byte(`{"resourceType":"Patient",`+ident+`,"active":false}`))
		mustStatus(t, w, http.StatusOK)
		if m := jsonMap(t, w.Body.Bytes()); m["id"] != id || m["active"] != false {
			t.Fatalf("conditional update: %v", m)
		}
		// no match creates
		w = h.do(http.MethodPut, "/Patient?identifier=http://hospital.example/mrn|999", []byte(`{"resourceType":"Patient","identifier":[{"system":"http://hospital.example/mrn","value":"999"}]}`))
		mustStatus(t, w, http.StatusCreated)
		// two matches: 412 for create and update
		h.create(`{"resourceType":"Patient","identifier":[{"system":"http://hospital.example/mrn","value":"12345"}]}`)
		mustStatus(t, h.do(http.MethodPost, "/Patient", body, cond), http.StatusPreconditionFailed)
		is := outcome(t, h.do(http.MethodPut, "/Patient?identifier=http://hospital.example/mrn|12345", body))
		if is["code"] != "multiple-matches" {
			t.Fatalf("412 issue code %v", is["code"])
		}
		// conditional delete removes both
		mustStatus(t, h.do(http.MethodDelete, "/Patient?identifier=http://hospital.example/mrn|12345", nil), http.StatusNoContent)
		m, _, _ := searchAllPages(t, h, "/Patient?identifier=http://hospital.example/mrn|12345")
		if len(m) != 0 {
			t.Fatalf("%d left after conditional delete", len(m))
		}
		mustStatus(t, h.do(http.MethodGet, "/Patient/"+id.(string), nil), http.StatusGone)
		// bad conditions
		mustStatus(t, h.do(http.MethodPost, "/Patient", body, "If-None-Exist: frobnicate=1"), http.StatusBadRequest)
		mustStatus(t, h.do(http.MethodPut, "/Patient?", body), http.StatusBadRequest)
		mustStatus(t, h.do(http.MethodDelete, "/Patient", nil), http.StatusMethodNotAllowed)
	})
}

func TestSearchErrorsAndModes(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		pid := h.create(patientBody)
		h.create(`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}],"text":"Heart rate"},"subject":{"reference":"Patient/` + pid + `"},"valueQuantity":{"value":72,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"},"effectiveDateTime":"2021-03-04T10:00:00Z","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">hr</div>"}}`)
		// lenient: unknown parameter reported in an outcome entry, and not in self
		w := h.do(http.MethodGet, "/Observation?frobnicate=1&code=8867-4", nil)
		mustStatus(t, w, http.StatusOK)
		b := jsonMap(t, w.Body.Bytes())
		if !strings.Contains(w.Body.String(), `"mode":"outcome"`) || b["total"].(json.Number) != "1" {
			t.Fatalf("lenient: %s", w.Body.String())
		}
		self := b["link"].([]any)[0].(map[string]any)["url"].(string)
		if strings.Contains(self, "frobnicate") || !strings.Contains(self, "code=8867-4") {
			t.Fatalf("self link %s", self)
		}
		// strict: 400
		w = h.do(http.MethodGet, "/Observation?frobnicate=1", nil, "Prefer: handling=strict")
		mustStatus(t, w, http.StatusBadRequest)
		outcome(t, w)
		for _, q := range []string{"date=notadate", "value-quantity=abc", "_count=-1", "near=1|2|3", "_sort=frobnicate", "code:frob=1"} {
			w := h.do(http.MethodGet, "/Observation?"+q, nil, "Prefer: handling=strict")
			if w.Code != http.StatusBadRequest {
				t.Errorf("%s: %d", q, w.Code)
			}
		}
		mustStatus(t, h.do(http.MethodGet, "/Observation?_cursor=garbage", nil), http.StatusBadRequest)
		// quantity, :text, :missing, :not, chain, _has, POST _search
		for q, want := range map[string]string{
			"value-quantity=gt70|http://unitsofmeasure.org|/min": "1",
			"value-quantity=lt70":                                "0",
			"code:text=heart":                                    "1",
			"code:not=1234-5":                                    "1",
			"value-string:missing=true":                          "1",
			"subject.name=chalmers":                              "1",
			"subject:Patient.birthdate=1974-12-25":               "1",
			"date=2021-03":                                       "1",
			"date=ap2021-03-04":                                  "1",
			"_lastUpdated=gt2000-01-01":                          "1",
			"_summary=count":                                     "1",
		} {
			b := jsonMap(t, h.do(http.MethodGet, "/Observation?"+q, nil).Body.Bytes())
			if got := fmt.Sprint(b["total"]); got != want {
				t.Errorf("%s: total %s, want %s", q, got, want)
			}
		}
		b = jsonMap(t, h.do(http.MethodGet, "/Patient?_has:Observation:patient:code=8867-4", nil).Body.Bytes())
		if b["total"].(json.Number) != "1" {
			t.Errorf("_has: %v", b["total"])
		}
		w = h.do(http.MethodPost, "/Observation/_search", []byte("code=8867-4"), "Content-Type: application/x-www-form-urlencoded")
		mustStatus(t, w, http.StatusOK)
		if jsonMap(t, w.Body.Bytes())["total"].(json.Number) != "1" {
			t.Fatalf("POST _search: %s", w.Body.String())
		}
		// _summary and _elements subset and tag
		w = h.do(http.MethodGet, "/Observation?_elements=status", nil)
		res := jsonMap(t, w.Body.Bytes())["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)
		if res["valueQuantity"] != nil || res["status"] == nil || !strings.Contains(w.Body.String(), "SUBSETTED") {
			t.Fatalf("_elements: %s", w.Body.String())
		}
		w = h.do(http.MethodGet, "/Observation?_summary=data", nil)
		if strings.Contains(w.Body.String(), `"div"`) || !strings.Contains(w.Body.String(), "valueQuantity") {
			t.Fatalf("_summary=data: %s", w.Body.String())
		}
		// compartment of an unknown patient, non-compartment type
		mustStatus(t, h.do(http.MethodGet, "/Patient/nobody/Observation", nil), http.StatusNotFound)
		mustStatus(t, h.do(http.MethodGet, "/Patient/"+pid+"/Organization", nil), http.StatusNotFound)
		mustStatus(t, h.do(http.MethodGet, "/Patient/nobody/$everything", nil), http.StatusNotFound)
		mustStatus(t, h.do(http.MethodGet, "/Patient/"+pid+"/$everything?start=notadate", nil), http.StatusBadRequest)
		mustStatus(t, h.do(http.MethodGet, "/Patient/"+pid+"/$everything?_type=Nope", nil), http.StatusBadRequest)
		ev := jsonMap(t, h.do(http.MethodGet, "/Patient/"+pid+"/$everything?_type=Observation&start=2021-01-01&end=2021-12-31", nil).Body.Bytes())
		if n := len(ev["entry"].([]any)); n != 1 {
			t.Fatalf("$everything with _type and dates: %d entries", n)
		}
		ev = jsonMap(t, h.do(http.MethodGet, "/Patient/"+pid+"/$everything?end=2020-01-01", nil).Body.Bytes())
		if n := len(ev["entry"].([]any)); n != 1 { // only the Patient
			t.Fatalf("$everything before 2020: %d entries", n)
		}
		_ = url.Values{}
	})
}

// TestReindex: after the index is rebuilt from the stored resources,
// searches answer as before.
func TestReindex(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		pid := h.create(patientBody)
		for i := 0; i < 30; i++ {
			h.create(fmt.Sprintf(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/%s"}}`, pid))
		}
		before := h.do(http.MethodGet, "/Observation?patient="+pid+"&_summary=count", nil).Body.String()
		n, err := h.store.(*sqlstore.Store).Reindex(context.Background(), nil)
		if err != nil || n != 31 {
			t.Fatalf("reindex: %d, %v", n, err)
		}
		after := h.do(http.MethodGet, "/Observation?patient="+pid+"&_summary=count", nil).Body.String()
		if before != after || !strings.Contains(after, `"total":30`) {
			t.Fatalf("before %s, after %s", before, after)
		}
	})
}

// TestTokenTextSearchAndSort: a concept's text is found with :text
// whether or not a coding's display says the same, and a token sorts by
// its codes (a text is no code): by the smallest ascending, the largest
// descending, concepts with text only last either way.
func TestTokenTextSearchAndSort(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		put := func(id, code string) {
			t.Helper()
			w := h.do(http.MethodPut, "/Observation/"+id, []byte(`{"resourceType":"Observation","id":"`+id+`","status":"final","code":`+code+`}`))
			if w.Code != http.StatusCreated {
				t.Fatalf("status %d: %.500s", w.Code, w.Body.String())
			}
		}
		put("same", `{"coding":[{"system":"http://loinc.org","code":"8302-2","display":"Body height"}],"text":"Body height"}`)
		put("other", `{"coding":[{"system":"http://loinc.org","code":"29463-7","display":"Body weight"}],"text":"Weight"}`)
		put("two", `{"coding":[{"system":"http://loinc.org","code":"39156-5","display":"BMI"},{"system":"http://snomed.info/sct","code":"60621009"}],"text":"Body mass index"}`)
		put("text", `{"text":"Another measurement"}`)
		expectIDs(t, h, "/Observation?code:text=body&_sort=_id", "other", "same", "two")
		expectIDs(t, h, "/Observation?code:text=weight&_sort=_id", "other")
		expectIDs(t, h, "/Observation?code:text=another", "text")
		expectIDs(t, h, "/Observation?_sort=code,_id", "other", "two", "same", "text")
		expectIDs(t, h, "/Observation?_sort=-code,_id", "same", "two", "other", "text")
	})
}

// TestSearchTotalPages: a search counts its matches on the first page
// when nothing asks otherwise (later pages leave total out: a count reads
// every match, and counting on each page made paging quadratic), on every
// page with _total=accurate or estimate, and never with _total=none.
func TestSearchTotalPages(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		pid := h.create(patientBody)
		for i := 0; i < 12; i++ {
			h.create(fmt.Sprintf(`{"resourceType":"Observation","status":"final","code":{"text":"x%d"},"subject":{"reference":"Patient/%s"},"effectiveDateTime":"2020-01-%02d"}`, i, pid, i+1))
		}
		totals := func(path string) string {
			t.Helper()
			var out []string
			for pages := 0; path != ""; pages++ {
				if pages > 10 {
					t.Fatalf("paging does not end at %s", path)
				}
				w := h.do(http.MethodGet, path, nil)
				mustStatus(t, w, http.StatusOK)
				b := jsonMap(t, w.Body.Bytes())
				if n, ok := b["total"].(json.Number); ok {
					out = append(out, n.String())
				} else {
					out = append(out, "-")
				}
				path = nextPath(b)
			}
			return strings.Join(out, ",")
		}
		for q, want := range map[string]string{
			"/Observation?patient=" + pid + "&_count=5":                             "12,-,-",
			"/Observation?patient=" + pid + "&_count=5&_sort=date":                  "12,-,-",
			"/Observation?patient=" + pid + "&_count=5&_total=accurate":             "12,12,12",
			"/Observation?patient=" + pid + "&_count=5&_total=estimate":             "12,12,12",
			"/Observation?patient=" + pid + "&_count=5&_total=none":                 "-,-,-",
			"/Patient/" + pid + "/Observation?_count=5":                             "12,-,-",
			"/Observation?patient=" + pid + "&_count=5&_summary=count":              "12",
			"/Observation?patient=" + pid + "&_count=5&_sort=-date&_total=accurate": "12,12,12",
		} {
			if got := totals(q); got != want {
				t.Errorf("%s: totals %s, want %s", q, got, want)
			}
		}
	})
}
