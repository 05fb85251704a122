package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// TestSecondOpinionPreview: with preview=true, $second-opinion answers the
// package each recipient would receive under draft Consents (not stored)
// and stores nothing; the packages hold exactly what the same request
// files once those Consents are stored; the drafts give no access; only
// the patient's own active drafts are taken.
func TestSecondOpinionPreview(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			f := newSOFixture(t, k)
			// a third clinic, not yet shared with: the drafts name it (and
			// clinic2's draft leaves out the PSY-labelled Condition and
			// everything before 2015)
			draft := func(org string, narrow bool) string {
				c := soConsent(f.pid, org, narrow)
				if narrow {
					c = strings.Replace(c, `"provision":[{"type":"deny"`, `"provision":[{"type":"deny","dataPeriod":{"end":"2014-12-31"}},{"type":"deny"`, 1)
				}
				return c
			}
			d1, d2 := draft("Organization/clinic", false), draft("Organization/clinic2", true)
			counts := func() string {
				var b strings.Builder
				for _, typ := range []string{"Bundle", "Task", "ServiceRequest", "Consent"} {
					w := f.as("system", http.MethodGet, "/"+typ+"?_summary=count", nil)
					fmt.Fprintf(&b, "%s=%v ", typ, jsonMap(t, w.Body.Bytes())["total"])
				}
				return b.String()
			}
			before := counts()
			body := soParams(f.pid, []string{"Organization/clinic", "Organization/clinic2"}, nil,
				`{"name":"preview","valueBoolean":true}`, `{"name":"consent","resource":`+d1+`}`, `{"name":"consent","resource":`+d2+`}`)
			// the stored Consents c1 and c2 stand aside: revoke them, so that
			// only the drafts can release anything
			for _, c := range []string{f.c1, f.c2} {
				mustStatus(t, f.as("patientP", http.MethodPatch, "/Consent/"+c, []byte(`[{"op":"replace","path":"/status","value":"inactive"}]`), "Content-Type: application/json-patch+json"), http.StatusOK)
			}
			w := f.as("patientP", http.MethodPost, "/Patient/"+f.pid+"/$second-opinion", body)
			mustStatus(t, w, http.StatusOK)
			previews := map[string][]string{}
			for _, p := range jsonMap(t, w.Body.Bytes())["parameter"].([]any) {
				pm := p.(map[string]any)
				if pm["name"] != "preview" {
					t.Fatalf("a preview answers only previews, got %v", pm["name"])
				}
				var rc string
				var pkg []byte
				for _, part := range pm["part"].([]any) {
					pp := part.(map[string]any)
					switch pp["name"] {
					case "recipient":
						rc = pp["valueReference"].(map[string]any)["reference"].(string)
					case "package":
						pkg, _ = json.Marshal(pp["resource"])
					}
				}
				previews[rc] = entryRefs(t, pkg)
			}
			if after := counts(); after != before {
				t.Fatalf("a preview stored something: %s -> %s", before, after)
			}
			if len(previews["Organization/clinic"]) == 0 || len(previews["Organization/clinic2"]) >= len(previews["Organization/clinic"]) {
				t.Fatalf("clinic2's narrowed package (%d) should be smaller than clinic's (%d)", len(previews["Organization/clinic2"]), len(previews["Organization/clinic"]))
			}
			for _, r := range previews["Organization/clinic2"] {
				if r == "Condition/"+f.psy {
					t.Error("the PSY Condition is in clinic2's preview")
				}
			}
			// the drafts gave nothing: the clinics still see nothing
			if w := f.as("so1", http.MethodGet, "/Patient/"+f.pid, nil); w.Code != http.StatusForbidden {
				t.Errorf("after a preview the clinic reads the patient: %d", w.Code)
			}

			// the same request for real, with the drafts stored
			var ids []string
			for _, d := range []string{d1, d2} {
				w := f.as("patientP", http.MethodPost, "/Consent", []byte(d))
				mustStatus(t, w, http.StatusCreated)
				ids = append(ids, jsonMap(t, w.Body.Bytes())["id"].(string))
			}
			res := f.request(t, "patientP", soParams(f.pid, []string{"Organization/clinic", "Organization/clinic2"}, ids))
			for i, rc := range []string{"Organization/clinic", "Organization/clinic2"} {
				filed := entryRefs(t, f.getAs(t, "patientP", res.packages[i]))
				if !reflect.DeepEqual(filed, previews[rc]) {
					t.Errorf("%s: the preview held %d resources, the filed package %d:\npreview %v\nfiled   %v", rc, len(previews[rc]), len(filed), previews[rc], filed)
				}
			}

			// refusals
			for _, tc := range []struct {
				who, body string
				want      int
			}{
				{"patientB", string(body), http.StatusForbidden},
				{"so1", string(body), http.StatusForbidden},
				{"patientP", string(soParams(f.pid, []string{"Organization/clinic"}, nil, `{"name":"consent","resource":`+d1+`}`)), http.StatusBadRequest}, // a draft without preview
				{"patientP", string(soParams(f.pid, []string{"Organization/clinic"}, nil, `{"name":"preview","valueBoolean":true}`, `{"name":"consent","resource":`+strings.Replace(d1, f.pid, f.pb, 1)+`}`)), http.StatusUnprocessableEntity},
				{"patientP", string(soParams(f.pid, []string{"Organization/clinic"}, nil, `{"name":"preview","valueBoolean":true}`, `{"name":"consent","resource":`+strings.Replace(d1, `"active"`, `"inactive"`, 1)+`}`)), http.StatusUnprocessableEntity},
				{"patientP", string(soParams(f.pid, []string{"Organization/clinic3"}, nil, `{"name":"preview","valueBoolean":true}`, `{"name":"consent","resource":`+d1+`}`)), http.StatusUnprocessableEntity},
				{"patientP", string(soParams(f.pid, []string{"Organization/clinic"}, nil, `{"name":"preview","valueString":"yes"}`)), http.StatusBadRequest},
			} {
				w := f.as(tc.who, http.MethodPost, "/Patient/"+f.pid+"/$second-opinion", []byte(tc.body))
				if w.Code != tc.want {
					t.Errorf("%s: %d, want %d: %.300s", tc.who, w.Code, tc.want, w.Body.String())
				}
			}
		})
	}
}
