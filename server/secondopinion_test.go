package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/internal/sharedtest"
	"github.com/fhirgate/fhirgate/referral"
	"github.com/fhirgate/fhirgate/server"
)

// soConsent is an opt-in Consent of pid for org; deny adds a nested deny
// of PSY-labelled data.
func soConsent(pid, org string, deny bool) string {
	nested := ""
	if deny {
		nested = `,"provision":[{"type":"deny","securityLabel":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]}]`
	}
	return `{"resourceType":"Consent","status":"active",
 "scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
 "category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],
 "patient":{"reference":"Patient/` + pid + `"},"policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTIN"}]},
 "provision":{"type":"permit","actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"IRCP"}]},"reference":{"reference":"` + org + `"}}],
  "action":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentaction","code":"access"}]}]` + nested + `}}`
}

// soFixture is a secured gateway holding one Synthea patient, a
// PSY-labelled Condition and two Consents.
type soFixture struct {
	*secured
	pid, psy string
	c1, c2   string // Consents for clinic (everything) and clinic2 (no PSY)
}

func newSOFixture(t *testing.T, k storeKind, with ...func(*server.Config)) *soFixture {
	s := newSecured(t, k, with...)
	f := &soFixture{secured: s}
	body, err := os.ReadFile(filepath.Join(sharedtest.Path(t, "synthea-r4"), "Darin_Skiles_31c343e9-5d7f-444e-9be4-56b1a6ec6146.json"))
	if err != nil {
		t.Fatal(err)
	}
	w := s.as("system", http.MethodPost, "/", body)
	mustStatus(t, w, http.StatusOK)
	var rb respBundle
	if err := json.Unmarshal(w.Body.Bytes(), &rb); err != nil {
		t.Fatal(err)
	}
	loc := rb.Entry[0].Response.Location // the Patient comes first
	if !strings.HasPrefix(loc, "Patient/") {
		t.Fatalf("first entry is %s", loc)
	}
	f.pid = strings.Split(loc, "/")[1]
	mk := func(who, typ, body string) string {
		w := s.as(who, http.MethodPost, "/"+typ, []byte(body))
		mustStatus(t, w, http.StatusCreated)
		return jsonMap(t, w.Body.Bytes())["id"].(string)
	}
	f.psy = mk("system", "Condition", `{"resourceType":"Condition","meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]},
	 "clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]},
	 "code":{"coding":[{"system":"http://snomed.info/sct","code":"35489007","display":"Depressive disorder"}]},"subject":{"reference":"Patient/`+f.pid+`"},"onsetDateTime":"2019-05-01"}`)
	s.tokens["patientP"] = s.is.PatientToken(t, "Patient/"+f.pid, "openid", "fhirUser", "patient/*.cruds")
	s.tokens["so1"] = s.is.ClientToken(t, "clinic", "system/*.cruds")
	s.tokens["so2"] = s.is.ClientToken(t, "clinic2", "system/*.cruds")
	f.c1 = mk("patientP", "Consent", soConsent(f.pid, "Organization/clinic", false))
	f.c2 = mk("patientP", "Consent", soConsent(f.pid, "Organization/clinic2", true))
	return f
}

func soParams(pid string, recipients, consents []string, extra ...string) []byte {
	var ps []string
	for _, r := range recipients {
		ps = append(ps, `{"name":"recipient","valueReference":{"reference":"`+r+`"}}`)
	}
	for _, c := range consents {
		ps = append(ps, `{"name":"consent","valueReference":{"reference":"Consent/`+c+`"}}`)
	}
	ps = append(ps, `{"name":"specialty","valueCodeableConcept":{"coding":[{"system":"http://snomed.info/sct","code":"394579002","display":"Cardiology"}]}}`,
		`{"name":"question","valueString":"Do I need a stent?"}`, `{"name":"due","valueDate":"2030-01-31"}`)
	ps = append(ps, extra...)
	return []byte(`{"resourceType":"Parameters","parameter":[` + strings.Join(ps, ",") + `]}`)
}

type soResult struct {
	requisition, serviceRequest string
	tasks, packages             []string
}

func (f *soFixture) request(t *testing.T, who string, body []byte) soResult {
	t.Helper()
	w := f.as(who, http.MethodPost, "/Patient/"+f.pid+"/$second-opinion", body)
	mustStatus(t, w, http.StatusOK)
	var out soResult
	for _, p := range jsonMap(t, w.Body.Bytes())["parameter"].([]any) {
		pm := p.(map[string]any)
		ref, _ := pm["valueReference"].(map[string]any)
		switch pm["name"] {
		case "requisition":
			out.requisition = pm["valueIdentifier"].(map[string]any)["value"].(string)
		case "serviceRequest":
			out.serviceRequest = ref["reference"].(string)
		case "task":
			out.tasks = append(out.tasks, ref["reference"].(string))
		case "package":
			out.packages = append(out.packages, ref["reference"].(string))
		}
	}
	return out
}

// entryRefs lists the stored resources (Type/id) of a document, without
// the ones authored for it (urn:uuid).
func entryRefs(t *testing.T, raw []byte) []string {
	var out []string
	for _, e := range jsonMap(t, raw)["entry"].([]any) {
		fu := e.(map[string]any)["fullUrl"].(string)
		if strings.HasPrefix(fu, "urn:uuid:") {
			continue
		}
		parts := strings.Split(fu, "/")
		out = append(out, parts[len(parts)-2]+"/"+parts[len(parts)-1])
	}
	sort.Strings(out)
	return out
}

// TestSecondOpinionEndToEnd: a Synthea patient asks two clinics with
// different Consents; each sees its inbox and exactly its consented
// package, answers through the Task workflow; the patient reads both
// opinions; a revoked Consent blocks the next fetch.
func TestSecondOpinionEndToEnd(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			f := newSOFixture(t, k)
			res := f.request(t, "patientP", soParams(f.pid, []string{"Organization/clinic", "Organization/clinic2"}, []string{f.c1, f.c2}))
			if len(res.tasks) != 2 || len(res.packages) != 2 || res.requisition == "" {
				t.Fatalf("result %+v", res)
			}
			// the OperationDefinition is published
			mustStatus(t, f.as("system", http.MethodGet, "/OperationDefinition/Patient-second-opinion", nil), http.StatusOK)

			// inboxes: each clinic finds its one requested Task
			for i, who := range []string{"so1", "so2"} {
				org := []string{"Organization/clinic", "Organization/clinic2"}[i]
				w := f.as(who, http.MethodGet, "/Task?owner="+org+"&status=requested", nil)
				mustStatus(t, w, http.StatusOK)
				b := jsonMap(t, w.Body.Bytes())
				entries, _ := b["entry"].([]any)
				if len(entries) != 1 || !strings.HasSuffix(res.tasks[i], entries[0].(map[string]any)["resource"].(map[string]any)["id"].(string)) {
					t.Fatalf("%s inbox: %.400s", who, w.Body.String())
				}
			}
			// an inbox is private: a clinic neither finds nor reads the
			// other clinic's Task, even with a Consent for the same patient
			w := f.as("so1", http.MethodGet, "/Task?owner=Organization/clinic2", nil)
			mustStatus(t, w, http.StatusOK)
			if strings.Contains(w.Body.String(), res.tasks[1]) {
				t.Fatalf("clinic sees clinic2's Task: %.300s", w.Body.String())
			}
			mustStatus(t, f.as("so1", http.MethodGet, "/"+res.tasks[1], nil), http.StatusForbidden)
			// packages: exactly what each Consent allows
			get := func(who, ref string, want int) []byte {
				w := f.as(who, http.MethodGet, "/"+ref, nil)
				mustStatus(t, w, want)
				return w.Body.Bytes()
			}
			p1, p2 := get("so1", res.packages[0], 200), get("so2", res.packages[1], 200)
			e1, e2 := entryRefs(t, p1), entryRefs(t, p2)
			psy := "Condition/" + f.psy
			if !slices.Contains(e1, psy) || slices.Contains(e2, psy) {
				t.Fatalf("PSY Condition in package 1: %v, in package 2: %v", slices.Contains(e1, psy), slices.Contains(e2, psy))
			}
			if want := slices.DeleteFunc(slices.Clone(e1), func(s string) bool { return s == psy }); !slices.Equal(want, e2) {
				t.Errorf("package 2 is not package 1 without the PSY Condition: %d vs %d entries", len(e2), len(e1))
			}
			if len(e1) < 50 {
				t.Errorf("package 1 holds only %d resources", len(e1))
			}
			for _, p := range [][]byte{p1, p2} {
				r, err := fhir.Parse(p)
				if err != nil {
					t.Fatal(err)
				}
				if issues := validate.Default().Validate(r); validate.HasErrors(issues) {
					t.Errorf("package does not validate: %v", issues)
				}
			}
			// clinic2 may not read clinic's package (it holds PSY data), nor
			// another patient either package
			get("so2", res.packages[0], http.StatusForbidden)
			get("patientB", res.packages[0], http.StatusForbidden)
			get("patientB", res.packages[1], http.StatusForbidden)
			get("patientB", res.tasks[0], http.StatusForbidden)

			// the workflow of clinic: received, accepted, answered, completed
			t1, t2 := res.tasks[0], res.tasks[1]
			f.step(t, "so1", t1, "received", "2.0", "", 200)
			f.step(t, "so2", t1, "accepted", "3.0", "", 403) // not its Task
			f.step(t, "so1", t1, "accepted", "3.0", "", 200)
			op1 := f.postOpinion(t, "so1", t1, res.packages[0])
			f.step(t, "so1", t1, "completed", "7.0", "", http.StatusConflict) // no output
			f.step(t, "so1", t1, "completed", "7.0", op1, 200)

			// clinic2 goes through in-progress and answers with a DocumentReference
			f.step(t, "so2", t2, "accepted", "3.0", "", 200)
			f.step(t, "so2", t2, "in-progress", "5.1.1", "", 200)
			op2 := f.postOpinion(t, "so2", t2, res.packages[1])
			f.patchStep(t, "so2", t2, "completed", "7.0", op2, 200)

			// the patient reads both opinions through the Tasks
			for _, tk := range []string{t1, t2} {
				b := jsonMap(t, get("patientP", tk, 200))
				if b["status"] != "completed" {
					t.Errorf("%s is %v", tk, b["status"])
				}
				out := b["output"].([]any)[0].(map[string]any)["valueReference"].(map[string]any)["reference"].(string)
				get("patientP", out, 200)
			}
			// history preserved
			h := jsonMap(t, get("patientP", t1+"/_history", 200))
			if n := len(h["entry"].([]any)); n != 4 {
				t.Errorf("%s has %d versions, want 4", t1, n)
			}
			// revocation of clinic's Consent: its next fetch is refused
			revoked := strings.Replace(soConsent(f.pid, "Organization/clinic", false), `"status":"active"`, `"status":"inactive","id":"`+f.c1+`"`, 1)
			mustStatus(t, f.as("patientP", http.MethodPut, "/Consent/"+f.c1, []byte(revoked)), http.StatusOK)
			get("so1", res.packages[0], http.StatusForbidden)
			get("so1", t1, http.StatusForbidden)
			get("so2", res.packages[1], http.StatusOK)
		})
	}
}

// step PUTs the Task with a new status, businessStatus and output.
func (f *soFixture) step(t *testing.T, who, task, status, bs, output string, want int) {
	t.Helper()
	cur := jsonMap(t, f.getAs(t, "system", task))
	cur["status"] = status
	if bs != "" {
		cur["businessStatus"] = map[string]any{"coding": []any{map[string]any{"system": referral.BusinessStatusSystem, "code": bs}}}
	}
	if output != "" {
		cur["output"] = []any{map[string]any{"type": map[string]any{"text": "opinion"}, "valueReference": map[string]any{"reference": output}}}
	}
	delete(cur, "meta")
	body, _ := json.Marshal(cur)
	w := f.as(who, http.MethodPut, "/"+task, body)
	if w.Code != want {
		t.Fatalf("%s %s → %s: %d, want %d: %.400s", who, task, status, w.Code, want, w.Body.String())
	}
	if want >= 400 {
		outcome(t, w)
	}
}

// patchStep is step through JSON Patch.
func (f *soFixture) patchStep(t *testing.T, who, task, status, bs, output string, want int) {
	t.Helper()
	ops := []map[string]any{
		{"op": "replace", "path": "/status", "value": status},
		{"op": "replace", "path": "/businessStatus", "value": map[string]any{"coding": []any{map[string]any{"system": referral.BusinessStatusSystem, "code": bs}}}},
	}
	if output != "" {
		ops = append(ops, map[string]any{"op": "add", "path": "/output", "value": []any{map[string]any{"type": map[string]any{"text": "opinion"}, "valueReference": map[string]any{"reference": output}}}})
	}
	body, _ := json.Marshal(ops)
	w := f.as(who, http.MethodPatch, "/"+task, body, "Content-Type: application/json-patch+json")
	if w.Code != want {
		t.Fatalf("PATCH %s %s → %s: %d, want %d: %.400s", who, task, status, w.Code, want, w.Body.String())
	}
}

func (f *soFixture) getAs(t *testing.T, who, ref string) []byte {
	t.Helper()
	w := f.as(who, http.MethodGet, "/"+ref, nil)
	mustStatus(t, w, http.StatusOK)
	return w.Body.Bytes()
}

func (f *soFixture) create(t *testing.T, who, typ, body string) string {
	t.Helper()
	w := f.as(who, http.MethodPost, "/"+typ, []byte(body))
	mustStatus(t, w, http.StatusCreated)
	return jsonMap(t, w.Body.Bytes())["id"].(string)
}

// TestTaskTransitionsIllegal: every illegal change of a referral Task
// answers 409 with an OperationOutcome (403 for a stranger), and legal
// cancellation by the patient works.
func TestTaskTransitionsIllegal(t *testing.T) {
	f := newSOFixture(t, storeKinds[0])
	one := func() string {
		return f.request(t, "patientP", soParams(f.pid, []string{"Organization/clinic"}, []string{f.c1})).tasks[0]
	}
	tk := one()
	for _, c := range []struct {
		who, status, bs, output string
		want                    int
	}{
		{"so1", "completed", "7.0", "Observation/x", 409}, // requested → completed skips acceptance
		{"so1", "in-progress", "5.1.1", "", 409},          // requested → in-progress
		{"so1", "accepted", "7.0", "", 409},               // a contradicting businessStatus
		{"so1", "accepted", "4.0", "", 409},               // wrong businessStatus
		{"so1", "cancelled", "6.0", "", 409},              // the owner does not cancel
		{"patientP", "accepted", "3.0", "", 409},          // the patient does not accept
		{"patientP", "received", "2.0", "", 409},          // nor receive
		{"so1", "draft", "2.0", "", 409},                  // not a workflow state
		{"so1", "received", "3.0", "", 409},               // receiving keeps 2.0
		{"so2", "received", "2.0", "", 403},               // a stranger
		{"so1", "entered-in-error", "2.0", "", 409},       // not a workflow state
		{"so1", "on-hold", "2.0", "", 409},                // not a workflow state
	} {
		f.step(t, c.who, tk, c.status, c.bs, c.output, c.want)
	}
	// immutable elements
	cur := jsonMap(t, f.getAs(t, "system", tk))
	for field, val := range map[string]any{"owner": map[string]any{"reference": "Organization/clinic2"}, "for": map[string]any{"reference": "Patient/" + f.pb},
		"focus": map[string]any{"reference": "ServiceRequest/x"}, "input": []any{map[string]any{"type": map[string]any{"text": "x"}, "valueString": "x"}}} {
		m := jsonMap(t, f.getAs(t, "system", tk))
		m[field] = val
		delete(m, "meta")
		body, _ := json.Marshal(m)
		w := f.as("so1", http.MethodPut, "/"+tk, body)
		if w.Code != http.StatusConflict && w.Code != http.StatusForbidden {
			t.Errorf("changing %s: %d %.300s", field, w.Code, w.Body.String())
		}
	}
	_ = cur
	// PATCH goes through the same rule
	f.patchStep(t, "so1", tk, "completed", "7.0", "Observation/x", 409)
	// and so do Task changes inside a transaction; conditional updates of
	// Tasks are refused
	m := jsonMap(t, f.getAs(t, "system", tk))
	m["status"], m["businessStatus"] = "completed", map[string]any{"coding": []any{map[string]any{"system": "http://hl7.org/fhir/us/bser/CodeSystem/TaskBusinessStatusCS", "code": "7.0"}}}
	delete(m, "meta")
	entry, _ := json.Marshal(m)
	bundle := `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + string(entry) + `,"request":{"method":"PUT","url":"` + tk + `"}}]}`
	if w := f.as("so1", http.MethodPost, "/", []byte(bundle)); w.Code != http.StatusConflict {
		t.Errorf("illegal Task change in a transaction: %d %.300s", w.Code, w.Body.String())
	}
	if w := f.as("system", http.MethodPut, "/Task?_id="+strings.TrimPrefix(tk, "Task/"), entry); w.Code != http.StatusBadRequest { // a referral Task
		t.Errorf("conditional update of a Task: %d %.300s", w.Code, w.Body.String())
	}
	// the patient cancels; afterwards nothing moves
	f.step(t, "patientP", tk, "cancelled", "6.0", "", 200)
	f.step(t, "so1", tk, "accepted", "3.0", "", 409)
	f.step(t, "patientP", tk, "requested", "2.0", "", 409)
	// a non-system client may not forge a referral Task
	forged := fmt.Sprintf(`{"resourceType":"Task","id":"forged","groupIdentifier":{"system":%q,"value":"x"},"status":"completed","intent":"order","for":{"reference":"Patient/%s"}}`, referral.RequisitionSystem, f.pid)
	if w := f.as("patientP", http.MethodPut, "/Task/forged", []byte(forged)); w.Code != http.StatusConflict {
		t.Errorf("forged referral Task: %d %.300s", w.Code, w.Body.String())
	}
	// completed → anything
	tk2 := one()
	f.step(t, "so1", tk2, "accepted", "3.0", "", 200)
	pkg := jsonMap(t, f.getAs(t, "system", tk2))["input"].([]any)[0].(map[string]any)["valueReference"].(map[string]any)["reference"].(string)
	f.step(t, "so1", tk2, "completed", "7.0", f.postOpinion(t, "so1", tk2, pkg), 200)
	for _, st := range []string{"in-progress", "cancelled", "failed", "completed"} {
		f.step(t, "so1", tk2, st, referral.BusinessStatusFor(st), "Observation/x", 409)
	}
}

// TestSecondOpinionBadRequests: parameters and permissions.
func TestSecondOpinionBadRequests(t *testing.T) {
	f := newSOFixture(t, storeKinds[0])
	path := "/Patient/" + f.pid + "/$second-opinion"
	for name, c := range map[string]struct {
		who  string
		body []byte
		want int
	}{
		"no recipient":        {"patientP", soParams(f.pid, nil, []string{f.c1}), 400},
		"no consent":          {"patientP", soParams(f.pid, []string{"Organization/clinic"}, nil), 400},
		"recipient a Patient": {"patientP", soParams(f.pid, []string{"Patient/" + f.pid}, []string{f.c1}), 400},
		"recipient twice":     {"patientP", soParams(f.pid, []string{"Organization/clinic", "Organization/clinic"}, []string{f.c1}), 400},
		"unknown parameter":   {"patientP", soParams(f.pid, []string{"Organization/clinic"}, []string{f.c1}, `{"name":"x","valueString":"y"}`), 400},
		"bad due":             {"patientP", soParams(f.pid, []string{"Organization/clinic"}, []string{f.c1}, `{"name":"start","valueDate":"yesterday"}`), 400},
		"not Parameters":      {"patientP", []byte(`{"resourceType":"Patient"}`), 400},
		"uncovered recipient": {"patientP", soParams(f.pid, []string{"Organization/clinic2"}, []string{f.c1}), 422},
		"unknown consent":     {"patientP", soParams(f.pid, []string{"Organization/clinic"}, []string{"nope"}), 422},
		"other patient":       {"patientB", soParams(f.pid, []string{"Organization/clinic"}, []string{f.c1}), 403},
		"provider":            {"so1", soParams(f.pid, []string{"Organization/clinic"}, []string{f.c1}), 403},
		"no token":            {"none", soParams(f.pid, []string{"Organization/clinic"}, []string{f.c1}), 401},
		"reason of another":   {"patientP", soParams(f.pid, []string{"Organization/clinic"}, []string{f.c1}, `{"name":"reason","valueReference":{"reference":"Condition/none"}}`), 422},
		"system, windowed":    {"system", soParams(f.pid, []string{"Organization/clinic"}, []string{f.c1}, `{"name":"start","valueDate":"2015-01-01"}`, `{"name":"end","valueDate":"2016-12-31"}`), 200},
	} {
		t.Run(name, func(t *testing.T) {
			w := f.as(c.who, http.MethodPost, path, c.body)
			if w.Code != c.want {
				t.Fatalf("%d, want %d: %.400s", w.Code, c.want, w.Body.String())
			}
			if c.want >= 400 {
				outcome(t, w)
			}
		})
	}
	// GET is not allowed for a state-changing operation
	mustStatus(t, f.as("patientP", http.MethodGet, path, nil), http.StatusMethodNotAllowed)
}

// TestPatientSummary: $summary for the patient, a consented provider
// (filtered) and an unconsented one.
func TestPatientSummary(t *testing.T) {
	f := newSOFixture(t, storeKinds[0])
	path := "/Patient/" + f.pid + "/$summary"
	w := f.as("patientP", http.MethodGet, path, nil)
	mustStatus(t, w, http.StatusOK)
	r, err := fhir.Parse(w.Body.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if issues := validate.Default().Validate(r); validate.HasErrors(issues) {
		t.Fatalf("summary does not validate: %v", issues)
	}
	all := entryRefs(t, w.Body.Bytes())
	if !slices.Contains(all, "Condition/"+f.psy) {
		t.Error("the patient's summary lacks its PSY Condition")
	}
	w2 := f.as("so2", http.MethodGet, path, nil)
	mustStatus(t, w2, http.StatusOK)
	if filtered := entryRefs(t, w2.Body.Bytes()); slices.Contains(filtered, "Condition/"+f.psy) || len(filtered) != len(all)-1 {
		t.Errorf("clinic2's summary: %d entries of %d, PSY present %v", len(filtered), len(all), slices.Contains(filtered, "Condition/"+f.psy))
	}
	mustStatus(t, f.as("provider-nc", http.MethodGet, "/Patient/"+f.pa+"/$summary", nil), http.StatusForbidden)
	mustStatus(t, f.as("patientB", http.MethodGet, path, nil), http.StatusForbidden)
	mustStatus(t, f.as("system", http.MethodGet, "/Patient/unknown/$summary", nil), http.StatusNotFound)
}
