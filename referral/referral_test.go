package referral_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/internal/sharedtest"
	"github.com/fhirgate/fhirgate/referral"
	"github.com/fhirgate/fhirgate/referral/knowledge"
)

// record is one Synthea patient: the parsed resources and the raw JSON
// maps the test computes its expectations from.
type record struct {
	patient   *fhir.Resource
	resources []*fhir.Resource
	raw       []map[string]any
}

// ranges gives some Synthea lab codes a reference range (Synthea writes
// none), so that the abnormal-result rule is exercised on real values.
var ranges = map[string][2]float64{
	"2339-0":  {70, 99},  // glucose mg/dL
	"4548-4":  {4, 5.6},  // HbA1c %
	"2093-3":  {0, 200},  // total cholesterol mg/dL
	"18262-6": {0, 100},  // LDL mg/dL
	"2085-9":  {40, 200}, // HDL mg/dL
	"39156-5": {18.5, 25},
}

func loadRecord(t testing.TB, file string) record {
	t.Helper()
	body, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var b struct {
		Entry []struct {
			Resource map[string]any `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatal(err)
	}
	var rec record
	n := 0
	for _, e := range b.Entry {
		m := e.Resource
		if m["resourceType"] == "Observation" {
			code := firstCode(m["code"])
			if rg, ok := ranges[code]; ok {
				vq, _ := m["valueQuantity"].(map[string]any)
				unit, _ := vq["code"].(string)
				m["referenceRange"] = []any{map[string]any{
					"low":  map[string]any{"value": rg[0], "code": unit, "system": "http://unitsofmeasure.org", "unit": unit},
					"high": map[string]any{"value": rg[1], "code": unit, "system": "http://unitsofmeasure.org", "unit": unit}}}
			}
			// every seventh observation is flagged by its source
			if n++; n%7 == 0 {
				m["interpretation"] = []any{map[string]any{"coding": []any{map[string]any{
					"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": []string{"H", "L", "A", "HH", "LL", "N"}[n/7%6]}}}}
			}
		}
		raw, _ := json.Marshal(m)
		r, err := fhir.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if r.Type == "Patient" {
			rec.patient = r
		}
		rec.resources = append(rec.resources, r)
		rec.raw = append(rec.raw, m)
	}
	if rec.patient == nil {
		t.Fatal("no Patient in", file)
	}
	return rec
}

func firstCode(cc any) string {
	m, _ := cc.(map[string]any)
	cs, _ := m["coding"].([]any)
	if len(cs) == 0 {
		return ""
	}
	c, _ := cs[0].(map[string]any)
	s, _ := c["code"].(string)
	return s
}

func asList(v any) []any { l, _ := v.([]any); return l }

// expectedMissing computes, from the raw maps, which investigations of sp
// no resource shows.
func expectedMissing(rec record, sp *referral.Specialty) []string {
	have := map[string]bool{}
	add := func(cc any) {
		m, _ := cc.(map[string]any)
		for _, c := range asList(m["coding"]) {
			cm := c.(map[string]any)
			have[fmt.Sprint(cm["system"], "|", cm["code"])] = true
		}
	}
	for _, m := range rec.raw {
		switch m["resourceType"] {
		case "Observation":
			add(m["code"])
			for _, c := range asList(m["component"]) {
				add(c.(map[string]any)["code"])
			}
		case "DiagnosticReport", "Procedure":
			add(m["code"])
		case "ImagingStudy":
			for _, c := range asList(m["procedureCode"]) {
				add(c)
			}
		case "DocumentReference":
			add(m["type"])
		}
	}
	var out []string
	for _, inv := range sp.Investigations {
		found := false
		for _, c := range inv.Codes {
			found = found || have[c.System+"|"+c.Code]
		}
		if !found {
			out = append(out, inv.Name)
		}
	}
	return out
}

func syntheaFiles(t testing.TB) []string {
	files, err := filepath.Glob(sharedtest.Path(t, "synthea-r4", "*.json"))
	if err != nil || len(files) == 0 {
		t.Skip("no Synthea bundles in the shared test data")
	}
	sort.Strings(files)
	return files
}

func counter() func() string {
	n := 0
	return func() string { n++; return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) }
}

// TestSummarySynthea: on every Synthea patient and every specialty, the
// document validates, its abnormal results and missing investigations are
// those computed here from the raw bundle, and its structure is IPS's.
func TestSummarySynthea(t *testing.T) {
	v := validate.Default()
	now := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	totalAbnormal := 0
	for i, f := range syntheaFiles(t) {
		rec := loadRecord(t, f)
		t.Run(filepath.Base(f), func(t *testing.T) {
			sp := referral.Specialties()[i%len(referral.Specialties())]
			doc, err := referral.Summary(rec.patient, rec.resources, referral.Options{
				BaseURL: "https://gw.test/fhir", Now: now, NewID: counter(), Specialty: sp, Question: "Is surgery needed? <b>",
				Policies: []string{"Consent/c1"},
			})
			if err != nil {
				t.Fatal(err)
			}
			if issues := v.Validate(doc.Bundle); validate.HasErrors(issues) {
				t.Fatalf("document does not validate: %v", errorsOnly(issues))
			}
			for _, f := range doc.Summary.Flags {
				if f.Rule == "" || f.Interpretation == "" || f.Basis == referral.ByKnowledge && f.Citation == nil {
					t.Errorf("%+v flagged without a rule or citation", f)
				}
			}
			totalAbnormal += len(doc.Summary.Flags)
			var missing []string
			for _, m := range doc.Summary.Completeness.Missing {
				missing = append(missing, m.Name)
			}
			if wantM := expectedMissing(rec, sp); !slices.Equal(missing, wantM) {
				t.Errorf("%s missing: got %v, want %v", sp.Code, missing, wantM)
			}
			if len(doc.Summary.Completeness.Present)+len(missing) != len(sp.Investigations) {
				t.Error("present + missing != expected investigations")
			}
			// each missing investigation is shown with its guideline
			div := ""
			for _, sec := range doc.Bundle.Root().Get("entry").Elems()[0].Get("resource").Get("section").Elems() {
				if sec.Get("code").Get("coding").Elems()[0].Get("code").String() == referral.SectionCompleteness {
					div = sec.Get("text").Get("div").String()
				}
			}
			for _, inv := range doc.Summary.Completeness.Missing {
				c, _ := inv.Cite(knowledge.Builtin())
				row := "<td>" + html.EscapeString(inv.Name) + "</td><td>missing</td><td><a href=\"" + c.Source.URL + "\">"
				if !strings.Contains(div, row) {
					t.Errorf("missing %s is not shown with its citation %s", inv.Name, c)
				}
			}
			checkStructure(t, doc, rec, len(doc.Summary.Flags))
		})
	}
	if totalAbnormal == 0 {
		t.Fatal("no abnormal result in the whole data set: the test checks nothing")
	}
}

func errorsOnly(issues []fhir.Issue) []string {
	var out []string
	for _, is := range issues {
		if is.Severity == fhir.SeverityError || is.Severity == fhir.SeverityFatal {
			out = append(out, fmt.Sprint(is.Expression, " ", is.Diagnostics, is.Details))
		}
	}
	return out
}

// checkStructure: document Bundle, Composition first with the IPS
// sections, every section reference resolves to an entry.
func checkStructure(t *testing.T, doc *referral.Document, rec record, abnormal int) {
	t.Helper()
	var b struct {
		Type       string `json:"type"`
		Timestamp  string `json:"timestamp"`
		Identifier struct{ Value string }
		Entry      []struct {
			FullURL  string         `json:"fullUrl"`
			Resource map[string]any `json:"resource"`
		}
	}
	if err := json.Unmarshal(doc.Bundle.Raw, &b); err != nil {
		t.Fatal(err)
	}
	if b.Type != "document" || b.Timestamp == "" || b.Identifier.Value == "" {
		t.Fatalf("not a document Bundle: %s %s %s", b.Type, b.Timestamp, b.Identifier.Value)
	}
	comp := b.Entry[0].Resource
	if comp["resourceType"] != "Composition" || firstCode(comp["type"]) != "60591-5" {
		t.Fatalf("first entry is not the IPS Composition")
	}
	full := map[string]bool{}
	types := map[string]int{}
	for _, e := range b.Entry {
		full[e.FullURL] = true
		types[e.Resource["resourceType"].(string)]++
	}
	if types["Composition"] != 1 || types["Patient"] != 1 || types["Provenance"] != 1 || types["Device"] != 1 {
		t.Errorf("entry types %v", types)
	}
	codes := map[string]map[string]any{}
	for _, s := range asList(comp["section"]) {
		sm := s.(map[string]any)
		code := firstCode(sm["code"])
		codes[code] = sm
		if sm["text"] == nil {
			t.Errorf("section %s without narrative", code)
		}
		entries := asList(sm["entry"])
		if len(entries) == 0 && sm["emptyReason"] == nil && code != "42349-1" && code != referral.SectionCompleteness {
			t.Errorf("empty section %s without emptyReason", code)
		}
		for _, e := range entries {
			ref := e.(map[string]any)["reference"].(string)
			if !full["https://gw.test/fhir/"+ref] && !full[ref] {
				t.Errorf("section %s refers to %s, which is not in the document", code, ref)
			}
		}
	}
	for _, c := range []string{"11450-4", "10160-0", "48765-2", "30954-2", "8716-3", "47519-4", "11369-6", "42349-1",
		referral.SectionAbnormal, referral.SectionCompleteness, referral.SectionTimeline, referral.SectionActiveMedicines,
		referral.SectionTrends, referral.SectionRisks, referral.SectionMissingTests} {
		if codes[c] == nil {
			t.Errorf("no section %s", c)
		}
	}
	if n := len(asList(codes[referral.SectionAbnormal]["entry"])); n != abnormal {
		t.Errorf("abnormal section has %d entries, want %d", n, abnormal)
	}
	encounters := 0
	for _, m := range rec.raw {
		if m["resourceType"] == "Encounter" {
			encounters++
		}
	}
	if n := len(asList(codes[referral.SectionTimeline]["entry"])); n != encounters {
		t.Errorf("timeline has %d encounters, want %d", n, encounters)
	}
	if q := fmt.Sprint(codes["42349-1"]["text"]); !strings.Contains(q, "&lt;b&gt;") {
		t.Errorf("question narrative is not escaped: %s", q)
	}
}

// TestSummaryRelease: the release function decides what goes in; the
// case summary is computed over what was released only.
func TestSummaryRelease(t *testing.T) {
	rec := loadRecord(t, syntheaFiles(t)[0])
	noObs := func(r *fhir.Resource) bool { return r.Type != "Observation" }
	doc, err := referral.Summary(rec.patient, rec.resources, referral.Options{BaseURL: "https://gw.test", Release: noObs, Specialty: referral.Specialties()[0]})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(doc.Bundle.Raw), `"resourceType":"Observation"`) {
		t.Error("a withheld Observation is in the document")
	}
	if doc.Withheld == 0 || len(doc.Summary.Flags) != 0 || len(doc.Summary.Trends) != 0 {
		t.Errorf("withheld %d, flags %d, trends %d", doc.Withheld, len(doc.Summary.Flags), len(doc.Summary.Trends))
	}
	if issues := validate.Default().Validate(doc.Bundle); validate.HasErrors(issues) {
		t.Fatal(errorsOnly(issues))
	}
	// the gateway's own resources go through the release too: a class the
	// recipient's Consent leaves out stays out of the package, the
	// narrative keeps the computed content
	noIssues := func(r *fhir.Resource) bool { return r.Type != "DetectedIssue" && r.Type != "RiskAssessment" }
	doc, err = referral.Summary(rec.patient, rec.resources, referral.Options{BaseURL: "https://gw.test", Release: noIssues, Now: time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	raw := string(doc.Bundle.Raw)
	if strings.Contains(raw, `"resourceType":"DetectedIssue"`) || strings.Contains(raw, `"resourceType":"RiskAssessment"`) {
		t.Error("a withheld type of the gateway's own is in the package")
	}
	if len(doc.Summary.Flags) == 0 || !strings.Contains(raw, "Abnormal results") || !strings.Contains(raw, "CKD-EPI 2021") {
		t.Error("the computed narrative is gone with the withheld resources")
	}
	if issues := validate.Default().Validate(doc.Bundle); validate.HasErrors(issues) {
		t.Fatal(errorsOnly(issues))
	}
	_, err = referral.Summary(rec.patient, rec.resources, referral.Options{BaseURL: "https://gw.test", Release: func(*fhir.Resource) bool { return false }})
	if !errors.Is(err, referral.ErrPatientWithheld) {
		t.Errorf("Patient withheld: %v", err)
	}
	if _, err := referral.Summary(rec.resources[1], nil, referral.Options{BaseURL: "x"}); err == nil {
		t.Error("a non-Patient subject was accepted")
	}
}

// TestAbnormalRules: hand-written edge cases of the abnormal-result rule.
func TestAbnormalRules(t *testing.T) {
	obs := func(extra string) *fhir.Resource {
		r, err := fhir.Parse([]byte(`{"resourceType":"Observation","id":"o","status":"final","code":{"text":"x"}` + extra + `}`))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	rr := `,"referenceRange":[{"low":{"value":3.5,"code":"mmol/L"},"high":{"value":5.0,"code":"mmol/L"}}]`
	for _, c := range []struct {
		name string
		body string
		want bool
	}{
		{"inside", `,"valueQuantity":{"value":4.2,"code":"mmol/L"}` + rr, false},
		{"above", `,"valueQuantity":{"value":5.01,"code":"mmol/L"}` + rr, true},
		{"below", `,"valueQuantity":{"value":3.4,"code":"mmol/L"}` + rr, true},
		{"at the limit", `,"valueQuantity":{"value":5.0,"code":"mmol/L"}` + rr, false},
		{"other unit", `,"valueQuantity":{"value":90,"code":"mg/dL"}` + rr, false},
		{"only high", `,"valueQuantity":{"value":9,"code":"mmol/L"},"referenceRange":[{"high":{"value":5}}]`, true},
		{"text only range", `,"valueQuantity":{"value":9},"referenceRange":[{"text":"normal"}]`, false},
		{"population range", `,"valueQuantity":{"value":9},"referenceRange":[{"high":{"value":5},"appliesTo":[{"text":"women"}]}]`, false},
		{"string value", `,"valueQuantity":{"value":"9"}` + rr, false},
		{"flag H", `,"interpretation":[{"coding":[{"code":"H"}]}]`, true},
		{"flag N", `,"interpretation":[{"coding":[{"code":"N"}]}]`, false},
		{"component LL", `,"component":[{"code":{"text":"c"},"interpretation":[{"coding":[{"code":"LL"}]}]}]`, true},
		{"component out of range", `,"component":[{"code":{"text":"c"},"valueQuantity":{"value":200},"referenceRange":[{"high":{"value":140}}]}]`, true},
		{"entered in error", `,"interpretation":[{"coding":[{"code":"HH"}]}],"status":"entered-in-error"`, false},
		{"interpretation not an array", `,"interpretation":{"coding":[{"code":"H"}]}`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := c.body
			if strings.Contains(body, `"status":"entered-in-error"`) {
				r, _ := fhir.Parse([]byte(`{"resourceType":"Observation","id":"o","status":"entered-in-error","code":{"text":"x"},"interpretation":[{"coding":[{"code":"HH"}]}]}`))
				if got := len(referral.Analyze([]*fhir.Resource{r}, referral.AnalyzeOptions{}).Flags) > 0; got != c.want {
					t.Errorf("abnormal = %v", got)
				}
				return
			}
			if got := len(referral.Analyze([]*fhir.Resource{obs(body)}, referral.AnalyzeOptions{}).Flags) > 0; got != c.want {
				t.Errorf("abnormal = %v, want %v", got, c.want)
			}
		})
	}
}

func TestSpecialties(t *testing.T) {
	want := []string{"cardiology", "endocrinology", "nephrology", "neurology", "oncology", "orthopaedics"}
	var got []string
	for _, sp := range referral.Specialties() {
		got = append(got, sp.Code)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("specialties %v", got)
	}
	for _, c := range []struct{ system, code, want string }{
		{"http://snomed.info/sct", "394579002", "cardiology"},
		{"", "Oncology", "oncology"},
		{referral.SpecialtySystem, "nephrology", "nephrology"},
		{"http://snomed.info/sct", "nephrology", ""},
		{"http://snomed.info/sct", "0000", ""},
	} {
		sp, ok := referral.LookupSpecialty(c.system, c.code)
		if ok != (c.want != "") || ok && sp.Code != c.want {
			t.Errorf("lookup %s|%s = %v %v", c.system, c.code, sp, ok)
		}
	}
	bad := map[string]string{
		"unknown key":      `{"code":"x","display":"X","investigations":[{"name":"a","codes":[{"system":"s","code":"c"}]}],"extra":1}`,
		"no investigation": `{"code":"x","display":"X","investigations":[]}`,
		"empty code":       `{"code":"x","display":"X","investigations":[{"name":"a","codes":[{"system":"s"}]}]}`,
		"not json":         `{"code":`,
		"no citation":      `{"code":"x","display":"X","investigations":[{"name":"a","codes":[{"system":"s","code":"c"}]}]}`,
		"unknown source":   `{"code":"x","display":"X","investigations":[{"name":"a","codes":[{"system":"s","code":"c"}],"source":"nowhere","where":"p. 1"}]}`,
		"no where":         `{"code":"x","display":"X","investigations":[{"name":"a","codes":[{"system":"s","code":"c"}],"source":"kdigo-ckd-2024","where":" "}]}`,
	}
	good := `{"code":"x","display":"X","investigations":[{"name":"a","codes":[{"system":"s","code":"c"}],"source":"kdigo-ckd-2024","where":"Chapter 1"}]}`
	if _, err := referral.LoadSpecialties(fstest.MapFS{"d/x.json": {Data: []byte(good)}}, "d"); err != nil {
		t.Errorf("a cited investigation is refused: %v", err)
	}
	// every built-in investigation cites its guideline
	for _, sp := range referral.Specialties() {
		for _, inv := range sp.Investigations {
			if c, ok := inv.Cite(knowledge.Builtin()); !ok || c.Where == "" || c.Source.URL == "" {
				t.Errorf("%s: %s has no citation", sp.Code, inv.Name)
			}
		}
	}
	for name, body := range bad {
		_, err := referral.LoadSpecialties(fstest.MapFS{"d/x.json": {Data: []byte(body)}}, "d")
		if !errors.Is(err, referral.ErrBadSpecialty) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestTransitions(t *testing.T) {
	statuses := []string{"draft", "requested", "received", "accepted", "rejected", "ready", "cancelled", "in-progress", "on-hold", "failed", "completed", "entered-in-error"}
	legal := map[string]referral.Party{
		"requested>received": referral.Owner, "requested>accepted": referral.Owner, "requested>rejected": referral.Owner,
		"requested>failed": referral.Owner, "requested>cancelled": referral.Requester,
		"received>accepted": referral.Owner, "received>rejected": referral.Owner, "received>failed": referral.Owner, "received>cancelled": referral.Requester,
		"accepted>in-progress": referral.Owner, "accepted>on-hold": referral.Owner, "accepted>completed": referral.Owner, "accepted>failed": referral.Owner, "accepted>cancelled": referral.Requester,
		"in-progress>on-hold": referral.Owner, "in-progress>completed": referral.Owner, "in-progress>failed": referral.Owner, "in-progress>cancelled": referral.Requester,
		"on-hold>in-progress": referral.Owner, "on-hold>completed": referral.Owner, "on-hold>failed": referral.Owner, "on-hold>cancelled": referral.Requester,
	}
	for _, from := range statuses {
		for _, to := range statuses {
			for _, by := range []referral.Party{referral.Owner, referral.Requester, referral.Custodian} {
				err := referral.CheckTransition(from, to, by)
				who, ok := legal[from+">"+to]
				want := ok && who&by != 0 || from == to && !referral.Terminal(from)
				if (err == nil) != want {
					t.Errorf("%s → %s by %s: %v, want allowed=%v", from, to, by, err, want)
				}
				if err != nil && !errors.Is(err, referral.ErrIllegalTransition) {
					t.Errorf("error is not ErrIllegalTransition: %v", err)
				}
			}
		}
	}
	// a code the client left as it was (or sent none) is a status-only
	// change: the gateway sets the matching one; a changed code must fit
	for _, c := range []struct {
		status, code, prev string
		want               string // "" when refused
	}{
		{"accepted", "3.0", "2.0", "3.0"}, {"accepted", "", "2.0", "3.0"}, {"accepted", "2.0", "2.0", "3.0"}, {"accepted", "4.0", "2.0", ""},
		{"completed", "7.0", "3.0", "7.0"}, {"completed", "3.0", "3.0", "7.0"}, {"completed", "5.1.1", "3.0", ""},
		{"received", "2.0", "2.0", "2.0"}, {"received", "", "2.0", "2.0"}, {"received", "3.0", "2.0", ""},
		{"in-progress", "5.1.1", "3.0", "5.1.1"}, {"in-progress", "", "3.0", "3.0"}, {"in-progress", "9.9", "3.0", ""}, {"in-progress", "7.0", "3.0", ""},
		{"on-hold", "", "5.1.1", "5.1.1"}, {"on-hold", "3.0", "5.1.1", ""},
		{"failed", "", "3.0", "3.0"}, {"rejected", "4.0", "2.0", "4.0"}, {"rejected", "2.0", "2.0", "4.0"},
		{"cancelled", "6.0", "2.0", "6.0"}, {"cancelled", "5.2", "2.0", ""},
	} {
		got, err := referral.ResolveBusinessStatus(c.status, c.code, c.prev)
		if (err == nil) != (c.want != "") || got != c.want {
			t.Errorf("%+v: %q %v", c, got, err)
		}
		if err != nil && !errors.Is(err, referral.ErrIllegalTransition) {
			t.Errorf("error is not ErrIllegalTransition: %v", err)
		}
	}
}

// TestRequestResources: the ServiceRequest and Task validate and carry
// the requisition.
func TestRequestResources(t *testing.T) {
	req := referral.Request{Requisition: "r1", Patient: "Patient/p", Requester: "Patient/p", Question: "why?",
		Reasons: []string{"Condition/c"}, Due: time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC), Now: time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC),
		Specialty: json.RawMessage(`{"coding":[{"system":"http://snomed.info/sct","code":"394579002"}]}`)}
	rc := referral.Recipient{Reference: "Organization/o", Package: "Bundle/b", Consent: "Consent/c"}
	sr := referral.ServiceRequest("sr1", req, []referral.Recipient{rc})
	tk := referral.Task("t1", "ServiceRequest/sr1", req, rc)
	for _, r := range []*fhir.Resource{sr, tk} {
		if issues := validate.Default().Validate(r); validate.HasErrors(issues) {
			t.Errorf("%s: %v", r.Type, errorsOnly(issues))
		}
		if !strings.Contains(string(r.Raw), referral.RequisitionSystem) {
			t.Errorf("%s has no requisition", r.Type)
		}
	}
	for _, want := range []string{`"status":"requested"`, `"intent":"order"`, `"code":"fulfill"`, `"code":"2.0"`, `"end":"2025-04-01"`, `"reference":"Bundle/b"`} {
		if !strings.Contains(string(tk.Raw), want) {
			t.Errorf("Task lacks %s", want)
		}
	}
}
