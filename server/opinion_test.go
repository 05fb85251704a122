package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/referral"
)

// concept is one coded (or text-only) item of an opinion.
type concept struct{ system, code, text string }

func (c concept) json() map[string]any {
	m := map[string]any{}
	if c.code != "" {
		m["coding"] = []any{map[string]any{"system": c.system, "code": c.code, "display": c.text}}
	}
	if c.text != "" {
		m["text"] = c.text
	}
	return m
}

// opinionSpec is what a specialist concludes.
type opinionSpec struct {
	status, practitioner, agreement, urgency string
	alternatives, plan, tests                []concept
	question, comment                        string
}

// opinionDoc writes the opinion document of a Task as a specialist's
// system would: Composition first, its entries after.
func opinionDoc(pid, task, pkg string, o opinionSpec) []byte {
	pt := map[string]any{"reference": "Patient/" + pid}
	n := 0
	var entries []any
	add := func(res map[string]any) string {
		n++
		fu := fmt.Sprintf("urn:uuid:00000000-0000-4000-8000-%012d", n)
		entries = append(entries, map[string]any{"fullUrl": fu, "resource": res})
		return fu
	}
	div := func(s string) map[string]any {
		return map[string]any{"status": "generated", "div": `<div xmlns="http://www.w3.org/1999/xhtml">` + s + `</div>`}
	}
	section := func(code, text string, refs []string) map[string]any {
		s := map[string]any{"title": code, "code": map[string]any{"coding": []any{map[string]any{"system": referral.OpinionSystem, "code": code}}}, "text": div(text)}
		if len(refs) > 0 {
			var es []any
			for _, r := range refs {
				es = append(es, map[string]any{"reference": r})
			}
			s["entry"] = es
		}
		return s
	}
	obs := func(code, system, value string) map[string]any {
		return map[string]any{"resourceType": "Observation", "status": "final", "subject": pt,
			"code":                 map[string]any{"coding": []any{map[string]any{"system": referral.OpinionSystem, "code": code}}},
			"valueCodeableConcept": map[string]any{"coding": []any{map[string]any{"system": system, "code": value}}}}
	}
	sections := []any{section("question", o.question, nil), section("agreement", "Agreement: "+o.agreement, []string{add(obs("diagnosis-agreement", referral.OpinionSystem, o.agreement))})}
	var refs []string
	for _, c := range o.alternatives {
		refs = append(refs, add(map[string]any{"resourceType": "Condition", "subject": pt, "code": c.json()}))
	}
	if len(refs) > 0 {
		sections = append(sections, section("alternatives", "Alternatives", refs))
	}
	refs = nil
	for _, c := range o.plan {
		refs = append(refs, add(map[string]any{"resourceType": "ServiceRequest", "status": "draft", "intent": "proposal", "subject": pt, "code": c.json()}))
	}
	sections = append(sections, section("plan", "Plan", refs))
	refs = nil
	for _, c := range o.tests {
		refs = append(refs, add(map[string]any{"resourceType": "ServiceRequest", "status": "draft", "intent": "proposal", "subject": pt, "code": c.json()}))
	}
	if len(refs) > 0 {
		sections = append(sections, section("tests", "Tests", refs))
	}
	sections = append(sections, section("urgency", "Urgency: "+o.urgency, []string{add(obs("urgency", "http://hl7.org/fhir/request-priority", o.urgency))}))
	if o.comment != "" {
		sections = append(sections, section("comment", o.comment, nil))
	}
	comp := map[string]any{
		"resourceType": "Composition", "status": o.status,
		"type":    map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "11488-4", "display": "Consult note"}}},
		"subject": pt, "date": "2025-03-01T10:00:00Z", "title": "Second opinion",
		"author":   []any{map[string]any{"reference": o.practitioner}},
		"attester": []any{map[string]any{"mode": "legal", "time": "2025-03-01T10:00:00Z", "party": map[string]any{"reference": o.practitioner}}},
		"event":    []any{map[string]any{"detail": []any{map[string]any{"reference": task}, map[string]any{"reference": pkg}}}},
		"section":  sections,
	}
	b, _ := json.Marshal(map[string]any{
		"resourceType": "Bundle", "type": "document", "timestamp": "2025-03-01T10:00:00Z",
		"identifier": map[string]any{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:00000000-0000-4000-9000-" + fmt.Sprintf("%012d", len(task)+len(o.status))},
		"entry":      append([]any{map[string]any{"fullUrl": "urn:uuid:00000000-0000-4000-8000-999999999999", "resource": comp}}, entries...),
	})
	return b
}

// submit posts an opinion with $opinion and returns the status and body.
func (f *soFixture) submit(t *testing.T, who, task string, doc []byte) (int, map[string]any) {
	t.Helper()
	w := f.as(who, http.MethodPost, "/"+task+"/$opinion", doc)
	return w.Code, jsonMap(t, w.Body.Bytes())
}

func paramRef(m map[string]any, name string) string {
	for _, p := range asSlice(m["parameter"]) {
		pm := p.(map[string]any)
		if pm["name"] == name {
			ref, _ := pm["valueReference"].(map[string]any)["reference"].(string)
			return strings.Split(ref, "/_history/")[0]
		}
	}
	return ""
}

var (
	cadSNOMED    = concept{"http://snomed.info/sct", "53741008", "Coronary arteriosclerosis"}
	anginaSNOMED = concept{"http://snomed.info/sct", "194828000", "Angina"}
	statinPlan   = concept{"http://snomed.info/sct", "414064009", "Statin therapy"}
	stressTest   = concept{"http://loinc.org", "18752-6", "Exercise stress test study"}
)

// TestOpinionDocument: a specialist answers with an opinion document, first
// an interim report (POST Bundle, then a status-only PATCH that links it:
// BSeR 5.1.4), then the final opinion with $opinion, which completes the
// Task (7.0) in one transaction. The patient reads it; the other specialist,
// whose Consent would release every resource of the patient, is not given
// it; the profile and the operation's definition are served; what breaks
// the workflow is refused.
func TestOpinionDocument(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			f := newSOFixture(t, k)
			// clinic2 gets a Consent as broad as clinic's
			mustStatus(t, f.as("patientP", http.MethodPut, "/Consent/"+f.c2, []byte(strings.Replace(soConsent(f.pid, "Organization/clinic2", false), `"status":"active"`, `"id":"`+f.c2+`","status":"active"`, 1))), http.StatusOK)
			res := f.request(t, "patientP", soParams(f.pid, []string{"Organization/clinic", "Organization/clinic2"}, []string{f.c1, f.c2}))
			t1, pkg1 := res.tasks[0], res.packages[0]
			spec := opinionSpec{status: "preliminary", practitioner: "Practitioner/dr-rao", agreement: "agree", urgency: "routine",
				question: "Do I need a stent?", plan: []concept{statinPlan}, tests: []concept{stressTest}}

			// before the specialist accepts, it cannot answer
			if code, body := f.submit(t, "so1", t1, opinionDoc(f.pid, t1, pkg1, spec)); code != http.StatusConflict {
				t.Fatalf("an opinion before acceptance: %d %v", code, body)
			}
			f.plainPatch(t, "so1", t1, "accepted", "")
			// an interim report: POST the document, then link it with a
			// status-only PATCH
			w := f.as("so1", http.MethodPost, "/Bundle", opinionDoc(f.pid, t1, pkg1, spec))
			mustStatus(t, w, http.StatusCreated)
			interim := "Bundle/" + jsonMap(t, w.Body.Bytes())["id"].(string)
			code, got := f.plainPatch(t, "so1", t1, "in-progress", interim)
			if code != http.StatusOK || bserOf(got) != "5.1.4" {
				t.Fatalf("the interim report: %d businessStatus %s %v", code, bserOf(got), got)
			}
			// an interim report does not complete the Task
			if code, body := f.plainPatch(t, "so1", t1, "completed", interim); code != http.StatusConflict {
				t.Fatalf("completed with an interim report: %d %v", code, body)
			}
			// neither does a report that is not an opinion of this Task
			dr := f.create(t, "so1", "DiagnosticReport", `{"resourceType":"DiagnosticReport","status":"final","code":{"text":"note"},"subject":{"reference":"Patient/`+f.pid+`"}}`)
			if code, body := f.plainPatch(t, "so1", t1, "completed", "DiagnosticReport/"+dr); code != http.StatusConflict {
				t.Fatalf("completed with a DiagnosticReport: %d %v", code, body)
			}
			// clinic2 may not answer clinic's Task, nor write an opinion of it
			spec.status = "final"
			if code, body := f.submit(t, "so2", t1, opinionDoc(f.pid, t1, pkg1, spec)); code != http.StatusForbidden {
				t.Fatalf("another clinic's opinion: %d %v", code, body)
			}
			// a document that breaks the profile or the workflow: 422
			bad := opinionSpec{status: "final", practitioner: "Practitioner/dr-rao", agreement: "maybe", urgency: "routine"}
			if code, body := f.submit(t, "so1", t1, opinionDoc(f.pid, t1, pkg1, bad)); code != http.StatusUnprocessableEntity {
				t.Fatalf("an unknown agreement: %d %v", code, body)
			}
			if code, body := f.submit(t, "so1", t1, opinionDoc(f.pid, t1, res.packages[1], spec)); code != http.StatusUnprocessableEntity {
				t.Fatalf("another recipient's package: %d %v", code, body)
			}
			if code, body := f.submit(t, "so1", t1, opinionDoc(f.pb, t1, pkg1, spec)); code != http.StatusUnprocessableEntity && code != http.StatusForbidden {
				t.Fatalf("about another patient: %d %v", code, body)
			}
			// the final opinion completes the Task
			code, out := f.submit(t, "so1", t1, opinionDoc(f.pid, t1, pkg1, spec))
			if code != http.StatusOK {
				t.Fatalf("$opinion: %d %v", code, out)
			}
			final := paramRef(out, "opinion")
			task := jsonMap(t, f.getAs(t, "patientP", t1))
			if task["status"] != "completed" || bserOf(task) != "7.0" {
				t.Fatalf("the Task after $opinion: %v/%s", task["status"], bserOf(task))
			}
			var outs []string
			for _, o := range asSlice(task["output"]) {
				outs = append(outs, o.(map[string]any)["valueReference"].(map[string]any)["reference"].(string))
			}
			if strings.Join(outs, " ") != interim+" "+final {
				t.Errorf("Task.output %v, want %s %s", outs, interim, final)
			}
			// the patient reads both documents; the stored one is the one sent
			doc := f.getAs(t, "patientP", final)
			r, err := fhir.Parse(doc)
			if err != nil {
				t.Fatal(err)
			}
			if issues := validate.Default().Validate(r); validate.HasErrors(issues) {
				t.Errorf("the stored opinion is not valid: %v", issues)
			}
			if !strings.Contains(string(doc), "18752-6") || !strings.Contains(string(doc), "Practitioner/dr-rao") {
				t.Errorf("the opinion lost its content")
			}
			f.getAs(t, "patientP", interim)
			// the author reads its own; the other specialist, whose Consent
			// releases everything of the patient, neither reads nor finds it
			f.getAs(t, "so1", final)
			mustStatus(t, f.as("so2", http.MethodGet, "/"+final, nil), http.StatusForbidden)
			w = f.as("so2", http.MethodGet, "/Bundle?_count=500", nil)
			mustStatus(t, w, http.StatusOK)
			if strings.Contains(w.Body.String(), strings.TrimPrefix(final, "Bundle/")) || strings.Contains(w.Body.String(), strings.TrimPrefix(interim, "Bundle/")) {
				t.Error("clinic2's Bundle search finds clinic's opinion")
			}
			// ... while it still reads the patient's other data
			f.getAs(t, "so2", res.packages[1])
			// a delivered opinion no longer changes
			mustStatus(t, f.as("so1", http.MethodPut, "/"+final, []byte(strings.Replace(string(doc), `"status":"final"`, `"status":"amended"`, 1))), http.StatusConflict)
			mustStatus(t, f.as("so1", http.MethodDelete, "/"+final, nil), http.StatusConflict)
			// the profile, its code system and the operation are published
			sd := f.getAs(t, "system", "StructureDefinition/second-opinion")
			v := validate.New(validate.Options{})
			if err := v.AddProfile(sd); err != nil {
				t.Fatalf("the served profile does not load: %v", err)
			}
			if issues := v.ValidateAgainst(compositionOf(t, doc), "https://fhirgate.org/fhir/StructureDefinition/second-opinion"); validate.HasErrors(issues) {
				t.Errorf("the opinion does not conform to the served profile: %v", issues)
			}
			f.getAs(t, "system", "CodeSystem/second-opinion")
			f.getAs(t, "system", "OperationDefinition/Task-opinion")
		})
	}
}

func compositionOf(t *testing.T, doc []byte) *fhir.Resource {
	t.Helper()
	var b struct {
		Entry []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(doc, &b); err != nil || len(b.Entry) == 0 {
		t.Fatalf("not a document: %v", err)
	}
	r, err := fhir.Parse(b.Entry[0].Resource)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// cluster is an expected item of a comparison: the keys that identify it
// and the documents that hold it.
type cluster struct {
	keys   map[string]bool
	holder []string
}

// testKeys identifies a concept the way the issue asks: its SNOMED, ICD or
// LOINC codes (and the opinion's own code systems), else its text without
// case, spacing and punctuation.
func testKeys(cc map[string]any) []string {
	coded := map[string]bool{"http://snomed.info/sct": true, "http://loinc.org": true, "http://hl7.org/fhir/sid/icd-10": true,
		referral.OpinionSystem: true, "http://hl7.org/fhir/request-priority": true}
	var keys []string
	for _, c := range asSlice(cc["coding"]) {
		cm := c.(map[string]any)
		if s, _ := cm["system"].(string); coded[s] {
			keys = append(keys, s+"|"+cm["code"].(string))
		}
	}
	if len(keys) > 0 {
		return keys
	}
	text, _ := cc["text"].(string)
	var words []string
	for _, w := range strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
	}) {
		words = append(words, w)
	}
	return []string{"text:" + strings.Join(words, " ")}
}

// expectedAspects computes, from the stored opinion documents alone,
// every aspect's items and holders.
func expectedAspects(t *testing.T, docs map[string][]byte, order []string) map[string][]*cluster {
	t.Helper()
	out := map[string][]*cluster{}
	for _, ref := range order {
		doc := jsonMap(t, docs[ref])
		entries := asSlice(doc["entry"])
		byURL := map[string]map[string]any{}
		for _, e := range entries[1:] {
			em := e.(map[string]any)
			byURL[em["fullUrl"].(string)] = em["resource"].(map[string]any)
		}
		comp := entries[0].(map[string]any)["resource"].(map[string]any)
		for _, sec := range asSlice(comp["section"]) {
			sm := sec.(map[string]any)
			code := asSlice(sm["code"].(map[string]any)["coding"])[0].(map[string]any)["code"].(string)
			aspect := map[string]string{"agreement": "agreement", "alternatives": "diagnosis", "plan": "plan", "tests": "tests", "urgency": "urgency"}[code]
			if aspect == "" {
				continue
			}
			for _, e := range asSlice(sm["entry"]) {
				res := byURL[e.(map[string]any)["reference"].(string)]
				cc, _ := res["code"].(map[string]any)
				if res["resourceType"] == "Observation" {
					cc = res["valueCodeableConcept"].(map[string]any)
				}
				keys := testKeys(cc)
				var into *cluster
				for _, cl := range out[aspect] {
					for _, k := range keys {
						if cl.keys[k] {
							into = cl
						}
					}
				}
				if into == nil {
					into = &cluster{keys: map[string]bool{}}
					out[aspect] = append(out[aspect], into)
				}
				for _, k := range keys {
					into.keys[k] = true
				}
				if !slices.Contains(into.holder, ref) {
					into.holder = append(into.holder, ref)
				}
			}
		}
	}
	return out
}

// checkComparison compares an $opinions answer with the expected items.
func checkComparison(t *testing.T, answer map[string]any, want map[string][]*cluster, docs []string) {
	t.Helper()
	seen := map[string]bool{}
	for _, p := range asSlice(answer["parameter"]) {
		pm := p.(map[string]any)
		if pm["name"] != "comparison" {
			continue
		}
		var aspect, verdict string
		type got struct {
			shared  bool
			keys    []string
			holders []string
		}
		var items []got
		for _, part := range asSlice(pm["part"]) {
			pp := part.(map[string]any)
			switch pp["name"] {
			case "aspect":
				aspect = pp["valueCode"].(string)
			case "verdict":
				verdict = pp["valueCode"].(string)
			case "shared", "differing":
				g := got{shared: pp["name"] == "shared"}
				for _, ip := range asSlice(pp["part"]) {
					ipm := ip.(map[string]any)
					if ipm["name"] == "concept" {
						g.keys = testKeys(ipm["valueCodeableConcept"].(map[string]any))
					} else {
						g.holders = append(g.holders, ipm["valueReference"].(map[string]any)["reference"].(string))
					}
				}
				items = append(items, g)
			}
		}
		seen[aspect] = true
		exp := want[aspect]
		if len(items) != len(exp) {
			t.Errorf("%s: %d items, want %d", aspect, len(items), len(exp))
			continue
		}
		wantVerdict := "agree"
		if len(docs) == 1 {
			wantVerdict = "single"
		}
		for _, g := range items {
			var cl *cluster
			for _, c := range exp {
				for _, k := range g.keys {
					if c.keys[k] {
						cl = c
					}
				}
			}
			if cl == nil {
				t.Errorf("%s: item %v is in no opinion", aspect, g.keys)
				continue
			}
			if strings.Join(g.holders, " ") != strings.Join(cl.holder, " ") {
				t.Errorf("%s: item %v held by %v, want %v", aspect, g.keys, g.holders, cl.holder)
			}
			if g.shared != (len(cl.holder) == len(docs)) {
				t.Errorf("%s: item %v shared=%v with holders %v of %d", aspect, g.keys, g.shared, cl.holder, len(docs))
			}
			if len(cl.holder) != len(docs) && len(docs) > 1 {
				wantVerdict = "differ"
			}
		}
		if verdict != wantVerdict {
			t.Errorf("%s: verdict %s, want %s", aspect, verdict, wantVerdict)
		}
	}
	for _, a := range []string{"agreement", "diagnosis", "plan", "tests", "urgency"} {
		if !seen[a] {
			t.Errorf("no comparison of %s", a)
		}
	}
}

func answerOpinions(t *testing.T, answer map[string]any) []string {
	var out []string
	for _, p := range asSlice(answer["parameter"]) {
		pm := p.(map[string]any)
		if pm["name"] != "opinion" {
			continue
		}
		for _, part := range asSlice(pm["part"]) {
			pp := part.(map[string]any)
			if pp["name"] == "document" {
				out = append(out, pp["valueReference"].(map[string]any)["reference"].(string))
			}
		}
	}
	return out
}

// TestOpinionsCompared: two specialists answer one request (one after an
// interim report); ServiceRequest/$opinions aligns their final opinions
// and says where they agree and differ, checked against what the test
// computes from the two stored documents; each specialist is given its
// own opinion only, the patient and the hospital both, another patient
// nothing.
func TestOpinionsCompared(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			f := newSOFixture(t, k)
			mustStatus(t, f.as("patientP", http.MethodPut, "/Consent/"+f.c2, []byte(strings.Replace(soConsent(f.pid, "Organization/clinic2", false), `"status":"active"`, `"id":"`+f.c2+`","status":"active"`, 1))), http.StatusOK)
			res := f.request(t, "patientP", soParams(f.pid, []string{"Organization/clinic", "Organization/clinic2"}, []string{f.c1, f.c2}))
			sr := res.serviceRequest
			a := opinionSpec{status: "final", practitioner: "Practitioner/dr-rao", agreement: "agree", urgency: "routine", question: "Do I need a stent?",
				alternatives: []concept{anginaSNOMED},
				plan:         []concept{statinPlan, {text: "Lifestyle advice"}},
				tests:        []concept{stressTest, {"http://loinc.org", "34552-0", "2D echocardiogram"}}}
			b := opinionSpec{status: "final", practitioner: "Practitioner/dr-b", agreement: "partially-agree", urgency: "urgent", question: "A stent?",
				alternatives: []concept{{"http://hl7.org/fhir/sid/icd-10", "I20.9", "Angina pectoris, unspecified"}, {"http://hl7.org/fhir/sid/icd-10", "I25.1", "Atherosclerotic heart disease"}},
				plan:         []concept{statinPlan, {text: "lifestyle  ADVICE."}, {text: "Aspirin 75 mg daily"}},
				tests:        []concept{stressTest}, comment: "See me in a month."}
			// B's angina also carries A's SNOMED code: the same diagnosis
			b.alternatives[0] = concept{"http://snomed.info/sct", "194828000", "Angina"}
			bDoc := opinionDoc(f.pid, res.tasks[1], res.packages[1], b)
			bDoc = []byte(strings.Replace(string(bDoc), `"code":"194828000","display":"Angina","system":"http://snomed.info/sct"}]`,
				`"code":"194828000","display":"Angina","system":"http://snomed.info/sct"},{"system":"http://hl7.org/fhir/sid/icd-10","code":"I20.9"}]`, 1))

			// nothing completed yet
			if got := answerOpinions(t, jsonMap(t, f.getAs(t, "patientP", sr+"/$opinions"))); len(got) != 0 {
				t.Fatalf("opinions before any: %v", got)
			}
			for i, who := range []string{"so1", "so2"} {
				f.plainPatch(t, who, res.tasks[i], "accepted", "")
			}
			// B sends an interim report first: it is not compared
			interim := b
			interim.status, interim.agreement = "preliminary", "cannot-assess"
			if code, body := f.submit(t, "so2", res.tasks[1], opinionDoc(f.pid, res.tasks[1], res.packages[1], interim)); code != http.StatusOK {
				t.Fatalf("interim: %d %v", code, body)
			}
			code, outA := f.submit(t, "so1", res.tasks[0], opinionDoc(f.pid, res.tasks[0], res.packages[0], a))
			if code != http.StatusOK {
				t.Fatalf("A: %d %v", code, outA)
			}
			code, outB := f.submit(t, "so2", res.tasks[1], bDoc)
			if code != http.StatusOK {
				t.Fatalf("B: %d %v", code, outB)
			}
			docA, docB := paramRef(outA, "opinion"), paramRef(outB, "opinion")
			docs := map[string][]byte{docA: f.getAs(t, "patientP", docA), docB: f.getAs(t, "patientP", docB)}
			order := []string{docA, docB}
			if strings.Compare(res.tasks[1], res.tasks[0]) < 0 {
				order = []string{docB, docA}
			}
			want := expectedAspects(t, docs, order)
			if len(want["diagnosis"]) != 2 || len(want["plan"]) != 3 || len(want["tests"]) != 2 {
				t.Fatalf("the test's own expectation is off: %d diagnoses, %d plan items, %d tests", len(want["diagnosis"]), len(want["plan"]), len(want["tests"]))
			}
			for _, who := range []string{"patientP", "system"} {
				answer := jsonMap(t, f.getAs(t, who, sr+"/$opinions"))
				if got := answerOpinions(t, answer); strings.Join(got, " ") != strings.Join(order, " ") {
					t.Fatalf("%s: opinions %v, want %v", who, got, order)
				}
				checkComparison(t, answer, want, order)
				// every section is aligned, with each opinion's text
				for _, p := range asSlice(answer["parameter"]) {
					pm := p.(map[string]any)
					if pm["name"] != "section" {
						continue
					}
					parts := asSlice(pm["part"])
					code := parts[0].(map[string]any)["valueCoding"].(map[string]any)["code"]
					n := len(parts) - 1
					wantN := map[any]int{"question": 2, "agreement": 2, "alternatives": 2, "plan": 2, "tests": 2, "urgency": 2, "comment": 1}[code]
					if n != wantN {
						t.Errorf("%s: section %v has %d entries, want %d", who, code, n, wantN)
					}
				}
				if w := f.as(who, http.MethodPost, "/"+sr+"/$opinions", nil); w.Code != http.StatusOK {
					t.Errorf("%s: POST $opinions: %d", who, w.Code)
				}
			}
			// each specialist is given its own opinion only
			for i, who := range []string{"so1", "so2"} {
				answer := jsonMap(t, f.getAs(t, who, sr+"/$opinions"))
				mine := []string{docA, docB}[i]
				if got := answerOpinions(t, answer); len(got) != 1 || got[0] != mine {
					t.Fatalf("%s is given %v, want only %s", who, got, mine)
				}
				checkComparison(t, answer, expectedAspects(t, docs, []string{mine}), []string{mine})
			}
			mustStatus(t, f.as("patientB", http.MethodGet, "/"+sr+"/$opinions", nil), http.StatusForbidden)
			mustStatus(t, f.as("system", http.MethodGet, "/ServiceRequest/nope/$opinions", nil), http.StatusNotFound)
			f.getAs(t, "system", "OperationDefinition/ServiceRequest-opinions")
		})
	}
}
