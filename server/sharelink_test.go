package server_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/shlink"
)

// testClock is a clock the test moves.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// shlPayload decodes a shlink:/ URI as a receiving application does.
type shlPayload struct {
	URL   string `json:"url"`
	Key   string `json:"key"`
	Exp   int64  `json:"exp"`
	Flag  string `json:"flag"`
	Label string `json:"label"`
	V     int    `json:"v"`
}

func decodeLink(t *testing.T, link string) shlPayload {
	t.Helper()
	enc, ok := strings.CutPrefix(link, "shlink:/")
	if !ok {
		t.Fatalf("not a shlink: %q", link)
	}
	b, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		t.Fatal(err)
	}
	var p shlPayload
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// decrypt opens a file's JWE with go-jose, as another implementation would.
func decrypt(t *testing.T, jwe, key string) (map[string]any, string) {
	t.Helper()
	obj, err := jose.ParseEncrypted(jwe, []jose.KeyAlgorithm{jose.DIRECT}, []jose.ContentEncryption{jose.A256GCM})
	if err != nil {
		t.Fatalf("not a JWE: %v", err)
	}
	k, err := base64.RawURLEncoding.DecodeString(key)
	if err != nil || len(k) != 32 {
		t.Fatalf("key: %v (%d bytes)", err, len(k))
	}
	plain, err := obj.Decrypt(k)
	if err != nil {
		t.Fatalf("decrypt: %v", err)
	}
	cty, _ := obj.Header.ExtraHeaders["cty"].(string)
	return jsonMap(t, plain), cty
}

// TestShareLink: the patient hands a second-opinion package and an
// opinion to someone with no account as SMART Health Links: resolved with
// the right passcode (files embedded, or at single-use locations when
// they are too long), each decrypted by another JWE implementation and
// equal to what the patient reads; refused with a wrong passcode (the
// remaining attempts counted down, then disabled), after expiry and after
// revocation; what leaves is what the patient may read at the access;
// every access and refusal is in the patient's audit trail; nobody but the
// patient makes links of its record.
func TestShareLink(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			f := newSOFixture(t, k)
			clock := &testClock{t: time.Now().UTC()}
			svc, err := shlink.New(context.Background(), shlink.Config{Store: f.store, Now: clock.now, MaxFailures: 3})
			if err != nil {
				t.Fatal(err)
			}
			f.srv.RegisterShareLinks(svc)
			res := f.request(t, "patientP", soParams(f.pid, []string{"Organization/clinic"}, []string{f.c1}))
			f.plainPatch(t, "so1", res.tasks[0], "accepted", "")
			code, out := f.submit(t, "so1", res.tasks[0], opinionDoc(f.pid, res.tasks[0], res.packages[0], opinionSpec{status: "final", practitioner: "Practitioner/dr-rao",
				agreement: "agree", urgency: "routine", question: "Do I need a stent?", plan: []concept{statinPlan}}))
			if code != http.StatusOK {
				t.Fatalf("opinion: %d %v", code, out)
			}
			opinion := paramRef(out, "opinion")
			mk := func(who, body string, want int) map[string]string {
				t.Helper()
				w := f.as(who, http.MethodPost, "/Patient/"+f.pid+"/$share-link", []byte(body))
				if w.Code != want {
					t.Fatalf("$share-link as %s: %d, want %d: %.400s", who, w.Code, want, w.Body.String())
				}
				m := map[string]string{}
				if want == http.StatusOK {
					for _, p := range asSlice(jsonMap(t, w.Body.Bytes())["parameter"]) {
						pm := p.(map[string]any)
						for _, k := range []string{"valueString", "valueUrl", "valueInstant"} {
							if v, ok := pm[k].(string); ok {
								m[pm["name"].(string)] = v
							}
						}
					}
				}
				return m
			}
			params := func(extra string, refs ...string) string {
				var ps []string
				for _, r := range refs {
					ps = append(ps, `{"name":"resource","valueReference":{"reference":"`+r+`"}}`)
				}
				if extra != "" {
					ps = append(ps, extra)
				}
				return `{"resourceType":"Parameters","parameter":[` + strings.Join(ps, ",") + `]}`
			}
			manifest := func(p shlPayload, body string) (int, map[string]any) {
				t.Helper()
				w := f.do(http.MethodPost, strings.TrimPrefix(p.URL, "http://fhir.test"), []byte(body), "Content-Type: application/json")
				if w.Code == http.StatusOK && !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
					t.Errorf("manifest content type %q", w.Header().Get("Content-Type"))
				}
				return w.Code, jsonMap(t, w.Body.Bytes())
			}

			// nobody but the patient makes links of its record
			mk("so1", params("", res.packages[0]), http.StatusForbidden)
			mk("patientB", params("", res.packages[0]), http.StatusForbidden)
			mk("system", params("", res.packages[0]), http.StatusForbidden)
			mk("patientP", params("", "Observation/"+f.create(t, "system", "Observation", obsFor(f.pb))), http.StatusForbidden)
			mk("patientP", params(`{"name":"passcode","valueString":"12"}`, res.packages[0]), http.StatusBadRequest)
			mk("patientP", params(`{"name":"expires","valueDateTime":"2001-01-01"}`, res.packages[0]), http.StatusBadRequest)

			// the package and the opinion, with a passcode
			l1 := mk("patientP", params(`{"name":"passcode","valueString":"4711"},{"name":"label","valueString":"Second opinion for Dr. Ortiz"}`, res.packages[0], opinion), http.StatusOK)
			p1 := decodeLink(t, l1["link"])
			if p1.Flag != "LP" || p1.Label != "Second opinion for Dr. Ortiz" || p1.URL != l1["url"] || len(p1.URL) > 128 || p1.Exp <= clock.now().Unix() || len(p1.Key) != 43 {
				t.Fatalf("the link's payload: %+v", p1)
			}
			// the right passcode: both files, embedded, equal to what the
			// patient reads
			code, m := manifest(p1, `{"recipient":"Dr. Ortiz, City Clinic","passcode":"4711"}`)
			if code != http.StatusOK {
				t.Fatalf("manifest: %d %v", code, m)
			}
			files := asSlice(m["files"])
			if len(files) != 2 {
				t.Fatalf("%d files", len(files))
			}
			for i, ref := range []string{res.packages[0], opinion} {
				fm := files[i].(map[string]any)
				got, cty := decrypt(t, fm["embedded"].(string), p1.Key)
				if fm["contentType"] != "application/fhir+json" || cty != "application/fhir+json" {
					t.Errorf("file %d content type %v / %s", i, fm["contentType"], cty)
				}
				want := jsonMap(t, f.getAs(t, "patientP", ref))
				if got["id"] != want["id"] || got["meta"].(map[string]any)["versionId"] != want["meta"].(map[string]any)["versionId"] || len(asSlice(got["entry"])) != len(asSlice(want["entry"])) {
					t.Errorf("file %d is not %s as the patient reads it", i, ref)
				}
			}
			// a recipient that accepts only short embedded files gets
			// single-use locations
			code, m = manifest(p1, `{"recipient":"Dr. Ortiz","passcode":"4711","embeddedLengthMax":100}`)
			if code != http.StatusOK {
				t.Fatalf("manifest: %d", code)
			}
			loc := asSlice(m["files"])[1].(map[string]any)["location"].(string)
			w := f.do(http.MethodGet, strings.TrimPrefix(loc, "http://fhir.test"), nil)
			mustStatus(t, w, http.StatusOK)
			if ct := w.Header().Get("Content-Type"); ct != "application/jose" {
				t.Errorf("file content type %q", ct)
			}
			if got, _ := decrypt(t, w.Body.String(), p1.Key); got["id"] != strings.TrimPrefix(opinion, "Bundle/") {
				t.Errorf("the located file is %v", got["id"])
			}
			mustStatus(t, f.do(http.MethodGet, strings.TrimPrefix(loc, "http://fhir.test"), nil), http.StatusNotFound) // used up
			// a manifest request without a recipient is malformed
			if code, _ := manifest(p1, `{"passcode":"4711"}`); code != http.StatusBadRequest {
				t.Errorf("no recipient: %d", code)
			}

			// wrong passcodes count down, then the link is disabled even for
			// the right one
			l2 := mk("patientP", params(`{"name":"passcode","valueString":"2468"}`, opinion), http.StatusOK)
			p2 := decodeLink(t, l2["link"])
			for want := 2; want >= 0; want-- {
				code, m := manifest(p2, `{"recipient":"someone","passcode":"0000"}`)
				if code != http.StatusUnauthorized || m["remainingAttempts"] != json.Number(itoa(want)) {
					t.Fatalf("wrong passcode: %d %v, want 401 with %d remaining", code, m, want)
				}
			}
			if code, _ := manifest(p2, `{"recipient":"someone","passcode":"2468"}`); code != http.StatusNotFound {
				t.Errorf("after the lock-out the right passcode: %d", code)
			}
			if code, _ := manifest(p2, `{"recipient":"someone"}`); code != http.StatusNotFound {
				t.Errorf("after the lock-out without passcode: %d", code)
			}

			// expiry: a link of an hour, two hours later
			l3 := mk("patientP", params(`{"name":"expires","valueDateTime":"`+clock.now().Add(time.Hour).Format(time.RFC3339)+`"}`, opinion), http.StatusOK)
			p3 := decodeLink(t, l3["link"])
			if p3.Flag != "L" {
				t.Errorf("a link without passcode has flag %q", p3.Flag)
			}
			if code, _ := manifest(p3, `{"recipient":"someone"}`); code != http.StatusOK {
				t.Fatalf("before expiry: %d", code)
			}
			clock.add(2 * time.Hour)
			if code, _ := manifest(p3, `{"recipient":"someone"}`); code != http.StatusNotFound {
				t.Errorf("after expiry: %d", code)
			}

			// what leaves is decided at the access: a result the patient
			// deletes no longer leaves
			obs := f.create(t, "patientP", "Observation", obsFor(f.pid))
			l4 := mk("patientP", params("", "Observation/"+obs, opinion), http.StatusOK)
			p4 := decodeLink(t, l4["link"])
			if _, m := manifest(p4, `{"recipient":"someone"}`); len(asSlice(m["files"])) != 2 {
				t.Fatalf("before the deletion: %v", m)
			}
			mustStatus(t, f.as("patientP", http.MethodDelete, "/Observation/"+obs, nil), http.StatusNoContent)
			if _, m := manifest(p4, `{"recipient":"someone"}`); len(asSlice(m["files"])) != 1 {
				t.Errorf("after the deletion the link still gives %d files", len(asSlice(m["files"])))
			}

			// revocation ends the first link at once; only the patient may
			w = f.as("so1", http.MethodPost, "/Patient/"+f.pid+"/$share-link-revoke", []byte(`{"resourceType":"Parameters","parameter":[{"name":"id","valueString":"`+l1["id"]+`"}]}`))
			mustStatus(t, w, http.StatusForbidden)
			w = f.as("patientP", http.MethodPost, "/Patient/"+f.pid+"/$share-link-revoke", []byte(`{"resourceType":"Parameters","parameter":[{"name":"id","valueString":"`+l1["id"]+`"}]}`))
			mustStatus(t, w, http.StatusOK)
			if code, _ := manifest(p1, `{"recipient":"Dr. Ortiz","passcode":"4711"}`); code != http.StatusNotFound {
				t.Errorf("after revocation: %d", code)
			}
			// an unknown link
			if code, _ := manifest(shlPayload{URL: "http://fhir.test/shl/" + strings.Repeat("A", 43)}, `{"recipient":"x"}`); code != http.StatusNotFound {
				t.Errorf("an unknown link: %d", code)
			}

			// the patient lists its links and their states
			w = f.as("patientP", http.MethodGet, "/Patient/"+f.pid+"/$share-links", nil)
			mustStatus(t, w, http.StatusOK)
			states := map[string]string{}
			for _, p := range asSlice(jsonMap(t, w.Body.Bytes())["parameter"]) {
				var id, st string
				for _, part := range asSlice(p.(map[string]any)["part"]) {
					pp := part.(map[string]any)
					switch pp["name"] {
					case "id":
						id = pp["valueString"].(string)
					case "status":
						st = pp["valueCode"].(string)
					}
				}
				states[id] = st
			}
			for id, want := range map[string]string{l1["id"]: "revoked", l2["id"]: "disabled", l3["id"]: "expired", l4["id"]: "active"} {
				if states[id] != want {
					t.Errorf("link %s is %q, want %q", id[:8], states[id], want)
				}
			}
			mustStatus(t, f.as("patientB", http.MethodGet, "/Patient/"+f.pid+"/$share-links", nil), http.StatusForbidden)

			// every access and refusal is in the patient's audit trail
			w = f.as("patientP", http.MethodGet, "/AuditEvent?patient=Patient/"+f.pid+"&_count=1000", nil)
			mustStatus(t, w, http.StatusOK)
			trail := w.Body.String()
			for _, want := range []string{"opened for recipient \\\"Dr. Ortiz, City Clinic\\\"", "wrong passcode for SMART Health Link", "no active SMART Health Link", "fetched"} {
				if !strings.Contains(trail, want) {
					t.Errorf("the audit trail lacks %q", want)
				}
			}
		})
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
