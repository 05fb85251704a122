package server_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/internal/sharedtest"
)

func syntheaFiles(t testing.TB) []string {
	files, err := filepath.Glob(sharedtest.Path(t, "synthea-r4", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Synthea bundles: %v", err)
	}
	sort.Strings(files)
	return files
}

type respBundle struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Entry        []struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
		Response struct {
			Status   string          `json:"status"`
			Location string          `json:"location"`
			Etag     string          `json:"etag"`
			Outcome  json.RawMessage `json:"outcome"`
		} `json:"response"`
	} `json:"entry"`
}

// TestSyntheaTransactions loads each Synthea bundle in one request and
// checks that every entry was created and every urn:uuid reference now
// points at a stored resource.
func TestSyntheaTransactions(t *testing.T) {
	files := syntheaFiles(t)
	eachStore(t, func(t *testing.T, h *harness) {
		total := 0
		for _, f := range files {
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
				Entry []json.RawMessage `json:"entry"`
			}
			_ = json.Unmarshal(body, &in)
			if rb.Type != "transaction-response" || len(rb.Entry) != len(in.Entry) {
				t.Fatalf("%s: %s with %d entries for %d", filepath.Base(f), rb.Type, len(rb.Entry), len(in.Entry))
			}
			for i, e := range rb.Entry {
				if !strings.HasPrefix(e.Response.Status, "201") || e.Response.Location == "" || e.Response.Etag != `W/"1"` {
					t.Fatalf("%s entry %d: %+v", filepath.Base(f), i, e.Response)
				}
			}
			// spot check: each stored resource's references resolve locally
			for _, e := range rb.Entry[:min(len(rb.Entry), 40)] {
				loc := e.Response.Location
				path := "/" + loc[:strings.Index(loc, "/_history/")]
				r := h.do(http.MethodGet, path, nil)
				mustStatus(t, r, http.StatusOK)
				if strings.Contains(r.Body.String(), "urn:uuid:") {
					t.Fatalf("%s still holds urn:uuid references: %.300s", path, r.Body.String())
				}
				for _, ref := range referencesIn(jsonMap(t, r.Body.Bytes())) {
					if strings.Contains(ref, "?") || strings.HasPrefix(ref, "#") {
						continue
					}
					mustStatus(t, h.do(http.MethodGet, "/"+ref, nil), http.StatusOK)
				}
			}
			total += len(in.Entry)
		}
		hist := jsonMap(t, h.do(http.MethodGet, "/_history?_count=1", nil).Body.Bytes())
		if n, _ := hist["total"].(json.Number).Int64(); int(n) != total {
			t.Fatalf("%d versions stored for %d entries", n, total)
		}
	})
}

// referencesIn collects every Reference.reference in a resource.
func referencesIn(v any) []string {
	var out []string
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if s, ok := val.(string); ok && k == "reference" {
				out = append(out, s)
				continue
			}
			out = append(out, referencesIn(val)...)
		}
	case []any:
		for _, it := range x {
			out = append(out, referencesIn(it)...)
		}
	}
	return out
}

func TestTransactionAllOrNothing(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		keep := h.create(patientBody)
		cases := map[string]string{
			"type mismatch": `{"resourceType":"Bundle","type":"transaction","entry":[
				{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},
				{"resource":{"resourceType":"Patient","id":"` + keep + `","active":false},"request":{"method":"PUT","url":"Patient/` + keep + `"}},
				{"resource":{"resourceType":"Observation","status":"final"},"request":{"method":"POST","url":"Patient"}}]}`,
			"stale If-Match": `{"resourceType":"Bundle","type":"transaction","entry":[
				{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},
				{"request":{"method":"DELETE","url":"Patient/` + keep + `","ifMatch":"W/\"9\""}}]}`,
			"bad resource": `{"resourceType":"Bundle","type":"transaction","entry":[
				{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},
				{"resource":{"resourceType":"Patient","id":"x","active":true,"active":false},"request":{"method":"PUT","url":"Patient/x"}}]}`,
			"delete of unknown": `{"resourceType":"Bundle","type":"transaction","entry":[
				{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},
				{"request":{"method":"DELETE","url":"Patient/nobody"}}]}`,
			"read of unknown": `{"resourceType":"Bundle","type":"transaction","entry":[
				{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},
				{"request":{"method":"GET","url":"Patient/nobody"}}]}`,
		}
		for name, body := range cases {
			w := h.do(http.MethodPost, "/", []byte(body))
			if w.Code < 400 || w.Code >= 500 {
				t.Fatalf("%s: status %d: %s", name, w.Code, w.Body.String())
			}
			is := outcome(t, w)
			if ex, _ := is["expression"].([]any); len(ex) == 0 || !strings.HasPrefix(ex[0].(string), "Bundle.entry[") {
				t.Errorf("%s: expression %v does not point at the entry", name, is["expression"])
			}
			hist := jsonMap(t, h.do(http.MethodGet, "/_history", nil).Body.Bytes())
			if hist["total"].(json.Number) != "1" {
				t.Fatalf("%s: the failed transaction wrote something: %s", name, hist["total"])
			}
		}
	})
}

func TestTransactionSemantics(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		old := h.create(patientBody)
		other := h.create(patientBody)
		body := `{"resourceType":"Bundle","type":"transaction","entry":[
			{"request":{"method":"GET","url":"Patient/` + other + `"}},
			{"fullUrl":"urn:uuid:2a1b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d","resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:7d4c9a56-1b2f-4c3e-9a8b-0e1f2a3b4c5d"},"hasMember":[{"reference":"urn:uuid:9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"}]},"request":{"method":"POST","url":"Observation"}},
			{"fullUrl":"urn:uuid:7d4c9a56-1b2f-4c3e-9a8b-0e1f2a3b4c5d","resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}},
			{"fullUrl":"http://other.example/Observation/obs2","resource":{"resourceType":"Observation","id":"obs2","status":"final","code":{"text":"y"}},"request":{"method":"PUT","url":"Observation/obs2"}},
			{"request":{"method":"DELETE","url":"Patient/` + old + `"}}]}`
		w := h.do(http.MethodPost, "/", []byte(body))
		mustStatus(t, w, http.StatusOK)
		var rb respBundle
		if err := json.Unmarshal(w.Body.Bytes(), &rb); err != nil {
			t.Fatal(err)
		}
		want := []string{"200", "201", "201", "201", "204"}
		for i, e := range rb.Entry {
			if i >= len(want) || !strings.HasPrefix(e.Response.Status, want[i]) {
				t.Fatalf("entry %d: status %s, want %s", i, e.Response.Status, want[i])
			}
		}
		if got := jsonMap(t, rb.Entry[0].Resource)["id"]; got != other {
			t.Fatalf("GET entry returned %v", got)
		}
		mustStatus(t, h.do(http.MethodGet, "/Patient/"+old, nil), http.StatusGone)
		obs := jsonMap(t, rb.Entry[1].Resource)
		pat := rb.Entry[2].Response.Location
		if ref := obs["subject"].(map[string]any)["reference"]; ref != pat[:strings.Index(pat, "/_history")] {
			t.Fatalf("subject %v, patient at %s", ref, pat)
		}
		if ref := obs["hasMember"].([]any)[0].(map[string]any)["reference"]; ref != "urn:uuid:9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d" {
			t.Fatalf("a reference that matches no fullUrl must stay as is, got %v", ref)
		}
		mustStatus(t, h.do(http.MethodGet, "/Observation/obs2", nil), http.StatusOK)
	})
}

func TestBatchIndependentEntries(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		body := `{"resourceType":"Bundle","type":"batch","entry":[
			{"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}},
			{"request":{"method":"GET","url":"Patient/nobody"}},
			{"resource":{"resourceType":"Patient","id":"a","active":true},"request":{"method":"PUT","url":"Patient/b"}},
			{"resource":{"resourceType":"Patient","id":"c"},"request":{"method":"PUT","url":"Patient/c"}}]}`
		w := h.do(http.MethodPost, "/", []byte(body))
		mustStatus(t, w, http.StatusOK)
		var rb respBundle
		if err := json.Unmarshal(w.Body.Bytes(), &rb); err != nil {
			t.Fatal(err)
		}
		if rb.Type != "batch-response" || len(rb.Entry) != 4 {
			t.Fatalf("%s with %d entries", rb.Type, len(rb.Entry))
		}
		for i, want := range []string{"201", "404", "", "201"} {
			if want != "" && !strings.HasPrefix(rb.Entry[i].Response.Status, want) {
				t.Fatalf("entry %d: %s", i, rb.Entry[i].Response.Status)
			}
		}
		if len(rb.Entry[1].Response.Outcome) == 0 {
			t.Fatal("failed batch entry without outcome")
		}
		mustStatus(t, h.do(http.MethodGet, "/Patient/c", nil), http.StatusOK)
	})
}

func TestBundleErrors(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		for name, c := range map[string]struct {
			body   string
			status int
			expr   string
		}{
			"not a bundle":      {`{"resourceType":"Patient"}`, 400, "resourceType"},
			"searchset":         {`{"resourceType":"Bundle","type":"searchset"}`, 400, "Bundle.type"},
			"entry not array":   {`{"resourceType":"Bundle","type":"batch","entry":{}}`, 400, "Bundle.entry"},
			"no request":        {`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient"}}]}`, 400, "Bundle.entry[0].request"},
			"bad method":        {`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"FETCH","url":"Patient"}}]}`, 400, "Bundle.entry[0].request.method"},
			"absolute url":      {`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"GET","url":"http://x/Patient/1"}}]}`, 400, "Bundle.entry[0].request.url"},
			"unknown type":      {`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"GET","url":"Nope/1"}}]}`, 400, "Bundle.entry[0].request.url"},
			"post with id":      {`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient/1"}}]}`, 400, "Bundle.entry[0].request.url"},
			"post no resource":  {`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":"Patient"}}]}`, 400, "Bundle.entry[0].resource"},
			"duplicate fullUrl": {`{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:a","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},{"fullUrl":"urn:uuid:a","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}]}`, 400, "Bundle.entry[1].fullUrl"},
			"bad entry json":    {`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Nope"},"request":{"method":"POST","url":"Patient"}}]}`, 400, "Bundle.entry[0].resource.resourceType"},
			"malformed json":    {`{"resourceType":"Bundle","type":"transaction","entry":[}`, 400, "Bundle.entry[0]"},
			"bundle bad id":     {`{"resourceType":"Bundle","id":"a b","type":"transaction"}`, 400, "Bundle.id"},
			"bundle meta array": {`{"resourceType":"Bundle","meta":[],"type":"transaction"}`, 400, "Bundle.meta"},
			"put id mismatch":   {`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","id":"a"},"request":{"method":"PUT","url":"Patient/b"}}]}`, 422, "Bundle.entry[0].resource.id"},
		} {
			w := h.do(http.MethodPost, "/", []byte(c.body))
			if w.Code != c.status {
				t.Errorf("%s: status %d, want %d: %s", name, w.Code, c.status, w.Body.String())
				continue
			}
			is := outcome(t, w)
			if ex, _ := is["expression"].([]any); len(ex) == 0 || ex[0] != c.expr {
				t.Errorf("%s: expression %v, want %s", name, is["expression"], c.expr)
			}
		}
	})
}

func TestConditionalReferences(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		pid := h.create(`{"resourceType":"Patient","identifier":[{"system":"http://hospital.example/mrn","value":"777"}]}`)
		body := `{"resourceType":"Bundle","type":"transaction","entry":[
			{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient?identifier=http://hospital.example/mrn|777"}},"request":{"method":"POST","url":"Observation"}}]}`
		w := h.do(http.MethodPost, "/", []byte(body))
		mustStatus(t, w, http.StatusOK)
		var rb respBundle
		_ = json.Unmarshal(w.Body.Bytes(), &rb)
		obs := jsonMap(t, rb.Entry[0].Resource)
		if ref := obs["subject"].(map[string]any)["reference"]; ref != "Patient/"+pid {
			t.Fatalf("conditional reference resolved to %v", ref)
		}
		none := strings.Replace(body, "|777", "|000", 1)
		mustStatus(t, h.do(http.MethodPost, "/", []byte(none)), http.StatusBadRequest)
		h.create(`{"resourceType":"Patient","identifier":[{"system":"http://hospital.example/mrn","value":"777"}]}`)
		mustStatus(t, h.do(http.MethodPost, "/", []byte(body)), http.StatusPreconditionFailed)
	})
}
