package server_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/fhirrest"
	"github.com/fhirgate/fhirgate/adapters/payer"
	"github.com/fhirgate/fhirgate/adapters/payer/payertest"
	"github.com/fhirgate/fhirgate/adapters/upstream"
	"github.com/fhirgate/fhirgate/referral"
	"github.com/fhirgate/fhirgate/server"
)

// coverageParts reads the coverage parameters of an answer: per
// recipient, each part's value (references, codes, strings, money as
// "value currency").
func coverageParts(t *testing.T, answer map[string]any) []map[string]string {
	t.Helper()
	var out []map[string]string
	for _, p := range asSlice(answer["parameter"]) {
		pm := p.(map[string]any)
		if pm["name"] != "coverage" {
			continue
		}
		m := map[string]string{}
		for _, part := range asSlice(pm["part"]) {
			pp := part.(map[string]any)
			name := pp["name"].(string)
			switch {
			case pp["valueReference"] != nil:
				m[name] = pp["valueReference"].(map[string]any)["reference"].(string)
			case pp["valueMoney"] != nil:
				mv := pp["valueMoney"].(map[string]any)
				m[name] = mv["value"].(json.Number).String() + " " + mv["currency"].(string)
			case pp["valueBoolean"] != nil:
				if pp["valueBoolean"].(bool) {
					m[name] = "true"
				} else {
					m[name] = "false"
				}
			case pp["valueDecimal"] != nil:
				m[name] = pp["valueDecimal"].(json.Number).String()
			default:
				for _, k := range []string{"valueCode", "valueString"} {
					if v, ok := pp[k].(string); ok {
						m[name] = v
					}
				}
			}
		}
		out = append(out, m)
	}
	return out
}

// TestCoverage: with a payer source configured, $second-opinion asks the
// patient's insurer (a fake one) before sending, records what it asked and
// was told, links it from the request, and tells the patient: covered (in
// network, what the patient pays), not covered, pre-authorisation required
// then approved, and the insurer down (the request still made, the
// patient told). $coverage-check asks without sending. The Coverage is in
// the package.
func TestCoverage(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			fake := payertest.New(t)
			zero := 0
			src, err := payer.New("acme", payer.Config{
				Config: fhirrest.Config{Config: upstream.Config{BaseURL: fake.URL, MaxRetries: &zero, Timeout: 5 * time.Second}},
				Payors: []payer.Identifier{{System: fake.PayorSystem, Value: fake.PayorValue}},
			}, adapters.Options{})
			if err != nil {
				t.Fatal(err)
			}
			f := newSOFixture(t, k, func(c *server.Config) { c.Payers = []referral.Payer{src} })
			org := f.create(t, "system", "Organization", `{"resourceType":"Organization","name":"Acme Health","identifier":[{"system":"`+fake.PayorSystem+`","value":"`+fake.PayorValue+`"}]}`)
			cov := "Coverage/" + f.create(t, "system", "Coverage", `{"resourceType":"Coverage","status":"active","subscriberId":"M-1",
			 "beneficiary":{"reference":"Patient/`+f.pid+`"},"payor":[{"reference":"Organization/`+org+`"}],
			 "type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"EHCPOL","display":"extended healthcare"}]}}`)
			open := func(mode string) (soResult, map[string]string, map[string]any) {
				t.Helper()
				fake.SetMode(mode)
				w := f.as("patientP", http.MethodPost, "/Patient/"+f.pid+"/$second-opinion", soParams(f.pid, []string{"Organization/clinic"}, []string{f.c1}))
				mustStatus(t, w, http.StatusOK)
				answer := jsonMap(t, w.Body.Bytes())
				parts := coverageParts(t, answer)
				if len(parts) != 1 {
					t.Fatalf("%s: %d coverage answers", mode, len(parts))
				}
				var res soResult
				for _, p := range asSlice(answer["parameter"]) {
					pm := p.(map[string]any)
					if ref, ok := pm["valueReference"].(map[string]any); ok {
						switch pm["name"] {
						case "task":
							res.tasks = append(res.tasks, ref["reference"].(string))
						case "serviceRequest":
							res.serviceRequest = ref["reference"].(string)
						case "package":
							res.packages = append(res.packages, ref["reference"].(string))
						}
					}
				}
				// the request is made whatever the insurer says
				f.getAs(t, "patientP", res.tasks[0])
				return res, parts[0], answer
			}
			insurance := func(ref string) []string {
				var out []string
				for _, i := range asSlice(jsonMap(t, f.getAs(t, "patientP", ref))["insurance"]) {
					out = append(out, i.(map[string]any)["reference"].(string))
				}
				return out
			}

			// covered, in network, a co-payment and the rest of a deductible
			res, c, _ := open(payertest.Covered)
			want := map[string]string{"status": "covered", "coverage": cov, "payer": "acme", "inNetwork": "true", "preauthorization": "not-required",
				"copay": "25.00 EUR", "deductibleRemaining": "100.00 EUR"}
			for k, v := range want {
				if c[k] != v {
					t.Errorf("covered: %s = %q, want %q (%v)", k, c[k], v, c)
				}
			}
			if !strings.Contains(c["message"], "covered") || !strings.Contains(c["message"], "in network") || !strings.Contains(c["message"], "25.00 EUR") {
				t.Errorf("covered: the patient is told %q", c["message"])
			}
			if !slices.Contains(insurance(res.serviceRequest), cov) || !slices.Contains(insurance(res.tasks[0]), cov) {
				t.Errorf("the request does not name the Coverage")
			}
			// what was asked and answered is in the patient's record
			resp := jsonMap(t, f.getAs(t, "patientP", c["eligibilityResponse"]))
			if resp["outcome"] != "complete" || resp["request"].(map[string]any)["reference"] != c["eligibilityRequest"] {
				t.Errorf("the stored response: %v", resp)
			}
			req := jsonMap(t, f.getAs(t, "patientP", c["eligibilityRequest"]))
			if req["patient"].(map[string]any)["reference"] != "Patient/"+f.pid || req["provider"].(map[string]any)["reference"] != "Organization/clinic" {
				t.Errorf("the stored request: %v", req)
			}
			// the insurer was sent the request, the patient and the Coverage
			sent := fake.Received()[0]
			var types []string
			for _, e := range asSlice(sent["entry"]) {
				types = append(types, e.(map[string]any)["resource"].(map[string]any)["resourceType"].(string))
			}
			if len(types) < 3 || types[0] != "CoverageEligibilityRequest" || !slices.Contains(types, "Patient") || !slices.Contains(types, "Coverage") {
				t.Errorf("the insurer was sent %v", types)
			}
			// the package shows the insurance
			pkg := f.getAs(t, "so1", res.packages[0])
			if !strings.Contains(string(pkg), `"code":"48768-6"`) || !slices.Contains(entryRefs(t, pkg), cov) {
				t.Errorf("the package has no Payers section with the Coverage")
			}

			// not covered: told so, with the insurer's reason
			_, c, _ = open(payertest.NotCovered)
			if c["status"] != "not-covered" || !strings.Contains(c["message"], "not a benefit of this plan") {
				t.Errorf("not covered: %v", c)
			}

			// pre-authorisation required, then approved
			n := len(fake.Received())
			res, c, _ = open(payertest.Preauth)
			if c["status"] != "covered" || c["preauthorization"] != "approved" || !strings.HasPrefix(c["preAuthRef"], "PA-") || c["inNetwork"] != "false" || c["copayPercent"] != "20" {
				t.Errorf("pre-authorisation: %v", c)
			}
			if !strings.Contains(c["message"], "approved") || !strings.Contains(c["message"], "out of network") || !strings.Contains(c["message"], "20%") {
				t.Errorf("pre-authorisation: the patient is told %q", c["message"])
			}
			got := fake.Received()
			if len(got) != n+2 {
				t.Fatalf("the insurer got %d requests, want an eligibility request and a Claim", len(got)-n)
			}
			claim := asSlice(got[n+1]["entry"])[0].(map[string]any)["resource"].(map[string]any)
			if claim["resourceType"] != "Claim" || claim["use"] != "preauthorization" || claim["referral"].(map[string]any)["reference"] != res.serviceRequest {
				t.Errorf("the pre-authorisation sent: %v", claim)
			}
			if !slices.Contains(insurance(res.tasks[0]), c["claimResponse"]) {
				t.Errorf("the Task does not name the pre-authorisation")
			}
			if cr := jsonMap(t, f.getAs(t, "patientP", c["claimResponse"])); cr["preAuthRef"] != c["preAuthRef"] {
				t.Errorf("the stored ClaimResponse: %v", cr)
			}

			// the insurer down: the request is made and the patient told
			res, c, _ = open(payertest.Down)
			if c["status"] != "unknown" || !strings.Contains(c["message"], "could not be reached") || c["eligibilityResponse"] != "" {
				t.Errorf("insurer down: %v", c)
			}
			if len(res.tasks) != 1 {
				t.Errorf("insurer down: no request")
			}

			// $coverage-check asks without sending
			fake.SetMode(payertest.Covered)
			tasksBefore := len(entriesOf(t, f.getAs(t, "patientP", "Task?patient=Patient/"+f.pid+"&_count=100")))
			body := []byte(`{"resourceType":"Parameters","parameter":[{"name":"recipient","valueReference":{"reference":"Organization/clinic2"}}]}`)
			w := f.as("patientP", http.MethodPost, "/Patient/"+f.pid+"/$coverage-check", body)
			mustStatus(t, w, http.StatusOK)
			if cc := coverageParts(t, jsonMap(t, w.Body.Bytes())); len(cc) != 1 || cc[0]["status"] != "covered" || cc[0]["recipient"] != "Organization/clinic2" {
				t.Errorf("$coverage-check: %v", cc)
			}
			if after := len(entriesOf(t, f.getAs(t, "patientP", "Task?patient=Patient/"+f.pid+"&_count=100"))); after != tasksBefore {
				t.Errorf("$coverage-check opened a request")
			}
			mustStatus(t, f.as("patientB", http.MethodPost, "/Patient/"+f.pid+"/$coverage-check", body), http.StatusForbidden)
			mustStatus(t, f.as("so1", http.MethodPost, "/Patient/"+f.pid+"/$coverage-check", body), http.StatusForbidden)
			f.getAs(t, "system", "OperationDefinition/Patient-coverage-check")
		})
	}
}
