package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

// longText is ordinary text longer than PostgreSQL's B-tree row limit
// (about 2.7 KB): a long laboratory narrative.
func longText(n int, tail string) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "Sample %d examined under the microscope, no abnormal cells seen; ", i)
	}
	return b.String() + tail
}

// searchIDs runs a search and returns the ids of its matches.
func searchIDs(t *testing.T, h *harness, path string) []string {
	t.Helper()
	w := h.do(http.MethodGet, path, nil)
	mustStatus(t, w, http.StatusOK)
	var ids []string
	entries, _ := jsonMap(t, w.Body.Bytes())["entry"].([]any)
	for _, e := range entries {
		e := e.(map[string]any)
		if m, _ := e["search"].(map[string]any); m != nil && m["mode"] == "outcome" {
			continue
		}
		ids = append(ids, e["resource"].(map[string]any)["id"].(string))
	}
	return ids
}

func expectIDs(t *testing.T, h *harness, path string, want ...string) {
	t.Helper()
	got := searchIDs(t, h, path)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("%.200s: ids %v, want %v", path, got, want)
	}
}

// TestHostileIndexedValues stores NUL characters and very long strings in
// indexed elements (strings, tokens, uris), directly and inside a
// transaction, and searches them exactly: no 5xx on either store, bodies
// kept as sent, exact matches exact, prefixes and substrings found past
// the part of a long value an index keeps.
func TestHostileIndexedValues(t *testing.T) {
	long := longText(3500, "END-OF-NARRATIVE")    // search values may be 4 KB
	longOther := longText(3500, "ANOTHER-ENDING") // same first 3500 bytes
	longID := strings.Repeat("9", 3000)
	longURL := "http://example.org/ValueSet/" + strings.Repeat("x", 3000)
	eachStore(t, func(t *testing.T, h *harness) {
		put := func(body string) {
			t.Helper()
			w := h.do(http.MethodPut, "/"+strings.Split(strings.Split(body, `"resourceType":"`)[1], `"`)[0]+"/"+strings.Split(strings.Split(body, `"id":"`)[1], `"`)[0], []byte(body))
			if w.Code != http.StatusCreated {
				t.Fatalf("status %d: %.500s", w.Code, w.Body.String())
			}
		}
		put(`{"resourceType":"Patient","id":"nul","name":[{"family":"Smith\u0000Jones"}],"identifier":[{"system":"http://x.example/\u0000","value":"a\u0000b"}]}`)
		put(`{"resourceType":"Patient","id":"ctl","name":[{"family":"Smith\u0001Jones"}],"identifier":[{"system":"http://x.example/\u0000","value":"a\u0001b"}]}`)
		put(`{"resourceType":"Observation","id":"long1","status":"final","code":{"text":"narrative"},"valueString":"` + long + `",
			"identifier":[{"system":"http://lab.example/","value":"` + longID + `"}]}`)
		put(`{"resourceType":"Observation","id":"long2","status":"final","code":{"text":"narrative"},"valueString":"` + longOther + `",
			"identifier":[{"system":"http://lab.example/","value":"` + longID + `8"}]}`)
		put(`{"resourceType":"ValueSet","id":"longurl","status":"active","url":"` + longURL + `"}`)

		// the body is kept as sent, NUL included
		w := h.do(http.MethodGet, "/Patient/nul", nil)
		mustStatus(t, w, http.StatusOK)
		if !strings.Contains(w.Body.String(), `Smith\u0000Jones`) {
			t.Fatalf("NUL lost from the body: %s", w.Body.String())
		}

		q := func(v string) string { // a search value: commas escaped as FHIR says
			return url.QueryEscape(strings.ReplaceAll(v, ",", `\,`))
		}
		expectIDs(t, h, "/Patient?family="+q("smith\x00jones"), "nul")
		expectIDs(t, h, "/Patient?family:exact="+q("Smith\x00Jones"), "nul")
		expectIDs(t, h, "/Patient?family:exact="+q("Smith\x01Jones"), "ctl")
		expectIDs(t, h, "/Patient?family="+q("smith\x00"), "nul")
		expectIDs(t, h, "/Patient?family:contains="+q("\x00jon"), "nul")
		expectIDs(t, h, "/Patient?identifier="+q("http://x.example/\x00|a\x00b"), "nul")
		expectIDs(t, h, "/Patient?identifier="+q("a\x01b"), "ctl")
		expectIDs(t, h, "/Patient?identifier="+q("a\x00"))
		expectIDs(t, h, "/Patient?_sort=family&family="+q("smith"), "nul", "ctl")

		expectIDs(t, h, "/Observation?value-string="+q(long), "long1")
		expectIDs(t, h, "/Observation?value-string:exact="+q(long), "long1")
		expectIDs(t, h, "/Observation?value-string="+q(long[:3000]), "long1", "long2")
		expectIDs(t, h, "/Observation?value-string="+q(long[:100]), "long1", "long2")
		expectIDs(t, h, "/Observation?value-string:contains="+q("end-of-narr"), "long1")
		expectIDs(t, h, "/Observation?value-string="+q(long+"x"))
		expectIDs(t, h, "/Observation?identifier="+q("http://lab.example/|"+longID), "long1")
		expectIDs(t, h, "/Observation?identifier="+q(longID+"8"), "long2")
		expectIDs(t, h, "/Observation?identifier="+q(longID[:2999]))
		expectIDs(t, h, "/ValueSet?url="+q(longURL), "longurl")
		expectIDs(t, h, "/ValueSet?url:below="+q(longURL[:2500]), "longurl")
		expectIDs(t, h, "/ValueSet?url:below="+q(longURL+"y"))
		expectIDs(t, h, "/ValueSet?url:above="+q(longURL+"/more"), "longurl")

		// a NUL in any search value answers without a 5xx
		for _, path := range []string{
			"/Patient?_id=a%00", "/Patient?_lastUpdated=%00", "/Patient?identifier=%00|%00", "/Patient?name=%00",
			"/Patient?birthdate=%00", "/Patient?gender=%00", "/Patient?general-practitioner=Practitioner/%00",
			"/Patient?_tag=%00", "/Patient?_profile=%00", "/Patient?_security=%00", "/Patient?_source=%00",
			"/Patient?_has:Observation:patient:code=%00", "/Observation?subject:Patient.name=%00", "/Observation?subject=%00",
			"/Patient?_text=%00", "/Patient?_content=%00", "/Patient?_list=%00", "/Patient?_sort=%00", "/Patient?_include=%00",
			"/Patient?_elements=%00", "/Patient?_count=%00", "/Patient?name:missing=%00", "/Patient?%00=1",
			"/Observation?code-value-quantity=%00$%00", "/Observation?value-quantity=%00", "/ValueSet?url:above=%00",
			"/Patient/nul/_history?_since=%00", "/Patient/%00", "/Patient/nul/$everything?_type=%00",
		} {
			if w := h.do(http.MethodGet, path, nil); w.Code >= 500 {
				t.Fatalf("%s: %d %.300s", path, w.Code, w.Body.String())
			}
		}

		// the same values inside a transaction: every entry is stored
		tx := `{"resourceType":"Bundle","type":"transaction","entry":[
			{"resource":{"resourceType":"Patient","name":[{"family":"Tx\u0000Nul"}]},"request":{"method":"POST","url":"Patient"}},
			{"resource":{"resourceType":"Observation","status":"final","code":{"text":"narrative"},"valueString":"` + long + `TX"},"request":{"method":"POST","url":"Observation"}},
			{"resource":{"resourceType":"Patient","name":[{"family":"plain"}]},"request":{"method":"POST","url":"Patient","ifNoneExist":"family=` + q("tx\x00nul") + `"}}]}`
		w = h.do(http.MethodPost, "/", []byte(tx))
		mustStatus(t, w, http.StatusOK)
		if n := len(searchIDs(t, h, "/Patient?family="+q("tx\x00nul"))); n != 1 {
			t.Fatalf("%d Patients from the transaction", n)
		}
		if n := len(searchIDs(t, h, "/Observation?value-string:exact="+q(long+"TX"))); n != 1 {
			t.Fatalf("%d Observations from the transaction", n)
		}
	})
}

// TestReencodeOldIndexRows: index rows written before the encoding (raw
// control characters; on SQLite also NUL and long values) are found again
// once the store has brought them up to date after the migration.
func TestReencodeOldIndexRows(t *testing.T) {
	long := longText(2000, "END")
	eachStore(t, func(t *testing.T, h *harness) {
		st := h.store.(*sqlstore.Store)
		ctx := context.Background()
		values := map[string]string{"ctl": "Smith\x01Jones"}
		if st.Dialect().Name == "sqlite" {
			values["nul"] = "Smith\x00Jones"
			values["long"] = long
		}
		for id, v := range values {
			b, _ := json.Marshal(map[string]any{"resourceType": "Patient", "id": id, "name": []any{map[string]any{"family": v}}})
			mustStatus(t, h.do(http.MethodPut, "/Patient/"+id, b), http.StatusCreated)
			// what the index held before: the value itself
			if _, err := st.DB().Exec(ctx, `UPDATE idx_string SET norm = ?, norm_full = '', exact = ? WHERE res_type = 'Patient' AND res_id = ? AND param = 'family'`,
				search.Normalize(v), v, id); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.AfterMigrate(ctx, []string{"006_long_index_values.sql"}); err != nil {
			t.Fatal(err)
		}
		for id, v := range values {
			expectIDs(t, h, "/Patient?family:exact="+url.QueryEscape(strings.ReplaceAll(v, ",", `\,`)), id)
		}
	})
}
