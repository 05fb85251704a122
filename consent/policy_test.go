package consent

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
)

var now = time.Date(2025, 4, 1, 12, 0, 0, 0, time.UTC)

// consentWith returns a Consent of Patient/p1 (unless overridden) with the
// given root provision JSON.
func consentWith(t testing.TB, id, provision string, edits ...string) *fhir.Resource {
	t.Helper()
	fields := map[string]string{
		"status":  `"active"`,
		"scope":   `{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]}`,
		"patient": `{"reference":"Patient/p1"}`,
	}
	for i := 0; i+1 < len(edits); i += 2 {
		fields[edits[i]] = edits[i+1]
	}
	var b strings.Builder
	fmt.Fprintf(&b, `{"resourceType":"Consent","id":%q,"meta":{"versionId":"3"}`, id)
	for _, k := range []string{"status", "scope", "patient"} {
		if fields[k] != "" {
			fmt.Fprintf(&b, `,%q:%s`, k, fields[k])
		}
	}
	b.WriteString(`,"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}]`)
	b.WriteString(`,"policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTIN"}]}`)
	if provision != "" {
		b.WriteString(`,"provision":` + provision)
	}
	b.WriteString("}")
	res, err := fhir.Parse([]byte(b.String()))
	if err != nil {
		t.Fatalf("consent %s: %v\n%s", id, err, b.String())
	}
	return res
}

func resource(t testing.TB, js string) *fhir.Resource {
	t.Helper()
	res, err := fhir.Parse([]byte(js))
	if err != nil {
		t.Fatalf("%v\n%s", err, js)
	}
	return res
}

const (
	actorA    = `{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"IRCP"}]},"reference":{"reference":"Organization/a"}}`
	actorRole = `{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"IRCP"}]},"reference":{"reference":"PractitionerRole/r1"}}`
	psy       = `{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}`
	confR     = `{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}`
	confN     = `{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"N"}`
	treat     = `{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"TREAT"}`
	classObs  = `{"system":"http://hl7.org/fhir/resource-types","code":"Observation"}`
	classCond = `{"system":"http://hl7.org/fhir/resource-types","code":"Condition"}`
	access    = `{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentaction","code":"access"}]}`
)

func permitA(extra string) string {
	if extra != "" {
		extra = "," + extra
	}
	return `{"type":"permit","actor":[` + actorA + `]` + extra + `}`
}

type sample struct {
	obs, obsPsy, obsNoDate, obsOther, cond, condR, condPsy, enc, pat, sr, obsForSR *fhir.Resource
}

func samples(t testing.TB) sample {
	return sample{
		obs:       resource(t, `{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2021-05-01T10:00:00Z","performer":[{"reference":"Practitioner/d1"}]}`),
		obsPsy:    resource(t, `{"resourceType":"Observation","id":"o2","meta":{"security":[`+psy+`]},"status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2021-05-01"}`),
		obsNoDate: resource(t, `{"resourceType":"Observation","id":"o3","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1"}}`),
		obsOther:  resource(t, `{"resourceType":"Observation","id":"o4","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/p1"},"effectivePeriod":{"start":"2022-01-01","end":"2022-01-03"}}`),
		cond:      resource(t, `{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},"onsetDateTime":"2019-02-01"}`),
		condR:     resource(t, `{"resourceType":"Condition","id":"c2","meta":{"security":[`+confR+`]},"subject":{"reference":"Patient/p1"},"onsetDateTime":"2021-02-01"}`),
		condPsy:   resource(t, `{"resourceType":"Condition","id":"c3","meta":{"security":[`+psy+`]},"subject":{"reference":"Patient/p1"},"recordedDate":"2021-02-01"}`),
		enc:       resource(t, `{"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/p1"},"period":{"start":"2019-12-30","end":"2020-01-02"}}`),
		pat:       resource(t, `{"resourceType":"Patient","id":"p1"}`),
		sr:        resource(t, `{"resourceType":"ServiceRequest","id":"sr1","status":"active","intent":"order","subject":{"reference":"Patient/p1"},"supportingInfo":[{"reference":"Observation/o1"}]}`),
		obsForSR:  resource(t, `{"resourceType":"Observation","id":"o5","status":"final","code":{"text":"x"},"basedOn":[{"reference":"ServiceRequest/sr1"}],"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-01-01"}`),
	}
}

func TestDecide(t *testing.T) {
	s := samples(t)
	reqA := Request{Actors: []string{"Organization/a"}, Purpose: []Coding{Treatment}, Time: now}
	reqB := Request{Actors: []string{"Organization/b"}, Purpose: []Coding{Treatment}, Time: now}
	with := func(r Request, f func(*Request)) Request { f(&r); return r }
	c1 := Ref{"Consent/c1", "3"}
	c2 := Ref{"Consent/c2", "3"}
	permit1 := Decision{Effect: Permit, Consents: []Ref{c1}}
	deny1 := Decision{Effect: Deny, Consents: []Ref{c1}}
	none := Decision{Effect: NoConsent}
	resolve := func(ref string) (*fhir.Resource, error) {
		if ref == "ServiceRequest/sr1" {
			return s.sr, nil
		}
		return nil, errors.New("not found")
	}

	type check struct {
		req  Request
		res  *fhir.Resource
		want Decision
	}
	for _, tc := range []struct {
		name     string
		consents []*fhir.Resource
		opts     Options
		checks   []check
	}{
		{"no consent at all", nil, Options{}, []check{{reqA, s.obs, none}, {reqA, s.pat, none}}},
		{"permit names the actor", []*fhir.Resource{consentWith(t, "c1", permitA(""))}, Options{},
			[]check{{reqA, s.obs, permit1}, {reqA, s.pat, permit1}, {reqB, s.obs, none}}},
		{"actor as PractitionerRole", []*fhir.Resource{consentWith(t, "c1", `{"type":"permit","actor":[`+actorRole+`]}`)}, Options{},
			[]check{
				{Request{Actors: []string{"Organization/x", "PractitionerRole/r1"}, Time: now}, s.obs, permit1},
				{Request{Actors: []string{"Organization/x"}, Time: now}, s.obs, none},
			}},
		{"absolute actor reference never matches", []*fhir.Resource{consentWith(t, "c1", `{"type":"permit","actor":[{"role":{"text":"r"},"reference":{"reference":"https://other.example/Organization/a"}}]}`)}, Options{},
			[]check{{reqA, s.obs, none}}},
		{"permit without any actor grants nobody", []*fhir.Resource{consentWith(t, "c1", `{"type":"permit"}`)}, Options{},
			[]check{{reqA, s.obs, none}}},
		{"actor named in a nested permit", []*fhir.Resource{consentWith(t, "c1", `{"type":"permit","provision":[`+permitA(`"class":[`+classObs+`]`)+`]}`)}, Options{},
			[]check{{reqA, s.obs, permit1}, {reqA, s.cond, none}, {reqB, s.obs, none}}},
		{"revoked (inactive)", []*fhir.Resource{consentWith(t, "c1", permitA(""), "status", `"inactive"`)}, Options{}, []check{{reqA, s.obs, none}}},
		{"draft", []*fhir.Resource{consentWith(t, "c1", permitA(""), "status", `"draft"`)}, Options{}, []check{{reqA, s.obs, none}}},
		{"entered in error", []*fhir.Resource{consentWith(t, "c1", permitA(""), "status", `"entered-in-error"`)}, Options{}, []check{{reqA, s.obs, none}}},
		{"expired", []*fhir.Resource{consentWith(t, "c1", permitA(`"period":{"start":"2025-01-01","end":"2025-03-31"}`))}, Options{},
			[]check{{reqA, s.obs, none}, {with(reqA, func(r *Request) { r.Time = now.AddDate(0, -1, 0) }), s.obs, permit1}}},
		{"end date is inclusive", []*fhir.Resource{consentWith(t, "c1", permitA(`"period":{"end":"2025-04-01"}`))}, Options{},
			[]check{{reqA, s.obs, permit1}, {with(reqA, func(r *Request) { r.Time = now.Add(12 * time.Hour) }), s.obs, none}}},
		{"not yet valid", []*fhir.Resource{consentWith(t, "c1", permitA(`"period":{"start":"2025-04-02"}`))}, Options{}, []check{{reqA, s.obs, none}}},
		{"other patient", []*fhir.Resource{consentWith(t, "c1", permitA(""), "patient", `{"reference":"Patient/p2"}`)}, Options{}, []check{{reqA, s.obs, none}}},
		{"no patient", []*fhir.Resource{consentWith(t, "c1", permitA(""), "patient", "")}, Options{}, []check{{reqA, s.obs, none}}},
		{"research scope", []*fhir.Resource{consentWith(t, "c1", permitA(""), "scope", `{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"research"}]}`)}, Options{}, []check{{reqA, s.obs, none}}},
		{"action access only", []*fhir.Resource{consentWith(t, "c1", permitA(`"action":[`+access+`]`))}, Options{},
			[]check{
				{reqA, s.obs, permit1},
				{with(reqA, func(r *Request) { r.Action = ActionAccess }), s.obs, permit1},
				{with(reqA, func(r *Request) { r.Action = ActionDisclose }), s.obs, none},
			}},
		{"purpose TREAT", []*fhir.Resource{consentWith(t, "c1", permitA(`"purpose":[`+treat+`]`))}, Options{},
			[]check{
				{reqA, s.obs, permit1},
				{with(reqA, func(r *Request) { r.Purpose = []Coding{{PurposeOfUseSystem, "HRESCH"}} }), s.obs, none},
				{with(reqA, func(r *Request) { r.Purpose = nil }), s.obs, none},
				{with(reqA, func(r *Request) { r.Purpose = []Coding{{PurposeOfUseSystem, "HRESCH"}, Treatment} }), s.obs, permit1},
			}},
		{"class Observation", []*fhir.Resource{consentWith(t, "c1", permitA(`"class":[`+classObs+`]`))}, Options{},
			[]check{{reqA, s.obs, permit1}, {reqA, s.cond, none}, {reqA, s.pat, none}}},
		{"class of an unknown system does not grant", []*fhir.Resource{consentWith(t, "c1", permitA(`"class":[{"system":"urn:ietf:bcp:13","code":"application/pdf"}]`))}, Options{},
			[]check{{reqA, s.obs, none}}},
		{"known and unknown class", []*fhir.Resource{consentWith(t, "c1", permitA(`"class":[{"system":"urn:ietf:bcp:13","code":"application/pdf"},`+classObs+`]`))}, Options{},
			[]check{{reqA, s.obs, permit1}, {reqA, s.cond, none}}},
		{"data period", []*fhir.Resource{consentWith(t, "c1", permitA(`"dataPeriod":{"start":"2020-01-01"}`))}, Options{},
			[]check{
				{reqA, s.obs, permit1},
				{reqA, s.obsOther, permit1},
				{reqA, s.cond, none},      // 2019
				{reqA, s.enc, none},       // straddles the start: not entirely inside
				{reqA, s.pat, permit1},    // no clinical date: not restricted
				{reqA, s.obsNoDate, none}, // could have one, has not: unknown
			}},
		{"nested deny by label", []*fhir.Resource{consentWith(t, "c1", permitA(`"provision":[{"type":"deny","securityLabel":[`+psy+`]}]`))}, Options{},
			[]check{{reqA, s.obs, permit1}, {reqA, s.obsPsy, deny1}, {reqB, s.obsPsy, none}}},
		{"confidentiality is a high-water mark for deny", []*fhir.Resource{consentWith(t, "c1", permitA(`"provision":[{"type":"deny","securityLabel":[`+confR+`]}]`))}, Options{},
			[]check{{reqA, s.condR, deny1}, {reqA, s.obs, permit1}}},
		{"confidentiality is a high-water mark for permit", []*fhir.Resource{consentWith(t, "c1", permitA(`"securityLabel":[`+confN+`]`))}, Options{},
			[]check{{reqA, s.obs, permit1}, {reqA, s.condR, none}}},
		{"permit inside deny inside permit", []*fhir.Resource{consentWith(t, "c1", permitA(`"provision":[{"type":"deny","securityLabel":[`+psy+`],"provision":[{"type":"permit","class":[`+classObs+`]}]}]`))}, Options{},
			[]check{{reqA, s.obsPsy, permit1}, {reqA, s.condPsy, deny1}, {reqA, s.cond, permit1}, {reqB, s.obsPsy, none}}},
		{"deny carve-out by class and data period", []*fhir.Resource{consentWith(t, "c1", permitA(`"provision":[{"type":"deny","class":[`+classCond+`],"dataPeriod":{"end":"2019-12-31"}}]`))}, Options{},
			[]check{{reqA, s.cond, deny1}, {reqA, s.condR, permit1}, {reqA, s.obs, permit1}}},
		{"deny overlaps its window", []*fhir.Resource{consentWith(t, "c1", permitA(`"provision":[{"type":"deny","dataPeriod":{"end":"2019-12-31"}}]`))}, Options{},
			[]check{{reqA, s.enc, deny1}, {reqA, s.obs, permit1}, {reqA, s.obsNoDate, deny1}, {reqA, s.pat, permit1}}},
		{"uncertain deny applies", []*fhir.Resource{consentWith(t, "c1", permitA(`"provision":[{"type":"deny","class":[{"system":"http://snomed.info/sct","code":"123"}]}]`))}, Options{},
			[]check{{reqA, s.obs, deny1}}},
		{"nested provision without type is a deny", []*fhir.Resource{consentWith(t, "c1", permitA(`"provision":[{"class":[`+classCond+`]}]`))}, Options{},
			[]check{{reqA, s.cond, deny1}, {reqA, s.obs, permit1}}},
		{"siblings disagree: deny wins", []*fhir.Resource{consentWith(t, "c1", permitA(`"provision":[{"type":"permit","class":[`+classObs+`]},{"type":"deny","securityLabel":[`+psy+`]}]`))}, Options{},
			[]check{{reqA, s.obsPsy, deny1}, {reqA, s.obs, permit1}}},
		{"an opt-out deny in another Consent wins", []*fhir.Resource{
			consentWith(t, "c1", permitA("")),
			consentWith(t, "c2", `{"type":"deny","securityLabel":[`+psy+`]}`),
		}, Options{}, []check{
			{reqA, s.obs, permit1},
			{reqA, s.obsPsy, Decision{Effect: Deny, Consents: []Ref{c2}}},
			{reqB, s.obsPsy, Decision{Effect: Deny, Consents: []Ref{c2}}},
			{reqB, s.obs, none},
		}},
		{"two permits", []*fhir.Resource{consentWith(t, "c1", permitA("")), consentWith(t, "c2", permitA(`"class":[`+classObs+`]`))}, Options{},
			[]check{{reqA, s.obs, Decision{Effect: Permit, Consents: []Ref{c1, c2}}}, {reqA, s.cond, permit1}}},
		{"revoked one of two", []*fhir.Resource{consentWith(t, "c1", permitA(""), "status", `"inactive"`), consentWith(t, "c2", permitA(""))}, Options{},
			[]check{{reqA, s.obs, Decision{Effect: Permit, Consents: []Ref{c2}}}}},
		{"code", []*fhir.Resource{consentWith(t, "c1", permitA(`"code":[{"coding":[{"system":"http://loinc.org","code":"2345-7"}]}]`))}, Options{},
			[]check{{reqA, s.obs, permit1}, {reqA, s.obsOther, none}, {reqA, s.pat, none}}},
		{"data instance", []*fhir.Resource{consentWith(t, "c1", permitA(`"data":[{"meaning":"instance","reference":{"reference":"Observation/o1"}}]`))}, Options{},
			[]check{{reqA, s.obs, permit1}, {reqA, s.obsOther, none}}},
		{"data related, resolved", []*fhir.Resource{consentWith(t, "c1", permitA(`"data":[{"meaning":"related","reference":{"reference":"ServiceRequest/sr1"}}]`))}, Options{Resolve: resolve},
			[]check{{reqA, s.sr, permit1}, {reqA, s.obs, permit1}, {reqA, s.pat, permit1}, {reqA, s.obsOther, none}}},
		{"data related, unresolved", []*fhir.Resource{consentWith(t, "c1", permitA(`"data":[{"meaning":"related","reference":{"reference":"ServiceRequest/sr1"}}]`))}, Options{},
			[]check{{reqA, s.sr, permit1}, {reqA, s.obs, none}}},
		{"data dependents", []*fhir.Resource{consentWith(t, "c1", permitA(`"data":[{"meaning":"dependents","reference":{"reference":"ServiceRequest/sr1"}}]`))}, Options{},
			[]check{{reqA, s.obsForSR, permit1}, {reqA, s.sr, permit1}, {reqA, s.obs, none}}},
		{"data authoredby", []*fhir.Resource{consentWith(t, "c1", permitA(`"data":[{"meaning":"authoredby","reference":{"reference":"Practitioner/d1"}}]`))}, Options{},
			[]check{{reqA, s.obs, permit1}, {reqA, s.obsOther, none}}},
		{"root without type is skipped", []*fhir.Resource{consentWith(t, "c1", `{"actor":[`+actorA+`]}`)}, Options{}, []check{{reqA, s.obs, none}}},
		{"malformed period is skipped", []*fhir.Resource{consentWith(t, "c1", permitA(`"period":{"start":"2025-13-01"}`))}, Options{}, []check{{reqA, s.obs, none}}},
		{"inverted period is skipped", []*fhir.Resource{consentWith(t, "c1", permitA(`"period":{"start":"2025-05-01","end":"2025-01-01"}`))}, Options{}, []check{{reqA, s.obs, none}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Compile("Patient/p1", tc.consents, tc.opts)
			for i, c := range tc.checks {
				got := p.DecideResource(c.req, c.res)
				if !reflect.DeepEqual(got, c.want) {
					t.Errorf("check %d (%v on %s/%s): %v, want %v", i, c.req.Actors, c.res.Type, c.res.ID, got, c.want)
				}
				// DecideResource extracts lazily; the full extraction must agree.
				if full := p.Decide(c.req, DataOf(c.res)); !reflect.DeepEqual(full, got) {
					t.Errorf("check %d: Decide(DataOf) = %v, DecideResource = %v", i, full, got)
				}
			}
		})
	}
}

func TestCompileSkips(t *testing.T) {
	deep := permitA("")
	for range 10 {
		deep = `{"type":"permit","provision":[` + deep + `]}`
	}
	wide := make([]string, 300)
	for i := range wide {
		wide[i] = `{"type":"deny"}`
	}
	obs := resource(t, `{"resourceType":"Observation","id":"o","status":"final","code":{"text":"x"}}`)
	p := Compile("Patient/p1", []*fhir.Resource{
		consentWith(t, "active", permitA("")),
		consentWith(t, "inactive", permitA(""), "status", `"inactive"`),
		consentWith(t, "deep", deep),
		consentWith(t, "wide", permitA(`"provision":[`+strings.Join(wide, ",")+`]`)),
		consentWith(t, "noprov", ""),
		obs,
	}, Options{})
	if p.Len() != 1 {
		t.Errorf("Len = %d, want 1", p.Len())
	}
	var got []string
	for _, s := range p.Skipped() {
		got = append(got, s.Ref.Reference+": "+s.Reason)
		if strings.Contains(s.Reason, "Organization/a") {
			t.Errorf("a skip reason quotes the Consent: %q", s.Reason)
		}
	}
	want := []string{
		"Consent/inactive: status is inactive",
		"Consent/deep: provisions nested deeper than 8 or more than 200",
		"Consent/wide: provisions nested deeper than 8 or more than 200",
		"Consent/noprov: no provision",
		"Consent/o: not a Consent",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("skipped\n%q\nwant\n%q", got, want)
	}
}

func TestCandidates(t *testing.T) {
	p := Compile("Patient/p1", []*fhir.Resource{
		consentWith(t, "c1", permitA("")),
		consentWith(t, "c2", `{"type":"permit","provision":[`+permitA(`"class":[`+classObs+`]`)+`]}`),
		consentWith(t, "c3", permitA(`"period":{"end":"2024-01-01"}`)),
		consentWith(t, "c4", `{"type":"deny","actor":[`+actorA+`]}`),
	}, Options{})
	got := p.Candidates(Request{Actors: []string{"Organization/a"}, Time: now})
	want := []Ref{{"Consent/c1", "3"}, {"Consent/c2", "3"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("candidates %v, want %v", got, want)
	}
	if got := p.Candidates(Request{Actors: []string{"Organization/b"}, Time: now}); len(got) != 0 {
		t.Errorf("candidates for b: %v", got)
	}
}

func TestParseDateTime(t *testing.T) {
	d := func(s string) time.Time {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			panic(err)
		}
		return t
	}
	for _, tc := range []struct {
		in         string
		start, end string
		ok         bool
	}{
		{"2020", "2020-01-01T00:00:00Z", "2021-01-01T00:00:00Z", true},
		{"2020-02", "2020-02-01T00:00:00Z", "2020-03-01T00:00:00Z", true},
		{"2020-02-29", "2020-02-29T00:00:00Z", "2020-03-01T00:00:00Z", true},
		{"2020-02-29T10:00:00+02:00", "2020-02-29T08:00:00Z", "2020-02-29T08:00:00.000000001Z", true},
		{"2020-02-29T10:00:00.123Z", "2020-02-29T10:00:00.123Z", "2020-02-29T10:00:00.123000001Z", true},
		{"2021-02-29", "", "", false},
		{"2020-13", "", "", false},
		{"2020-02-29T10:00:00", "", "", false}, // a time needs a zone
		{"20", "", "", false},
		{"", "", "", false},
		{"2020-02-29 10:00:00Z", "", "", false},
		{"2020-01-01T24:00:00Z", "", "", false},
	} {
		iv, err := parseDateTime(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err %v", tc.in, err)
			continue
		}
		if tc.ok && (!iv.Start.Equal(d(tc.start)) || !iv.End.Equal(d(tc.end))) {
			t.Errorf("%q: %v .. %v", tc.in, iv.Start, iv.End)
		}
	}
	if _, err := parsePeriod("2020-02-01", "2020-01-31"); err == nil {
		t.Errorf("an inverted period was accepted")
	}
	if iv, err := parsePeriod("2020-02-01", "2020-02-01"); err != nil || !iv.End.Equal(d("2020-02-02T00:00:00Z")) {
		t.Errorf("a one-day period: %v %v", iv, err)
	}
}

func TestIntervals(t *testing.T) {
	y := func(a, b int) Interval {
		return Interval{time.Date(a, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(b, 1, 1, 0, 0, 0, 0, time.UTC)}
	}
	open := Interval{}
	for _, tc := range []struct {
		a, b             Interval
		within, overlaps bool
	}{
		{y(2020, 2021), y(2019, 2022), true, true},
		{y(2019, 2022), y(2020, 2021), false, true},
		{y(2018, 2019), y(2019, 2020), false, false}, // touching ends do not overlap
		{y(2020, 2021), open, true, true},
		{open, y(2020, 2021), false, true},
		{y(2020, 2021), Interval{Start: y(2020, 2021).Start}, true, true},
		{y(2020, 2021), Interval{End: y(2020, 2020).Start}, false, false},
	} {
		if got := tc.a.Within(tc.b); got != tc.within {
			t.Errorf("%v within %v = %v", tc.a, tc.b, got)
		}
		if got := tc.a.Overlaps(tc.b); got != tc.overlaps {
			t.Errorf("%v overlaps %v = %v", tc.a, tc.b, got)
		}
	}
}

func TestDataOf(t *testing.T) {
	s := samples(t)
	d := DataOf(s.obs)
	if d.Ref() != "Observation/o1" || !d.Dated || !d.HasPeriod || d.Period.Start.Format(time.RFC3339) != "2021-05-01T10:00:00Z" {
		t.Errorf("obs %+v", d)
	}
	if !reflect.DeepEqual(d.Codes, []Coding{{"http://loinc.org", "2345-7"}}) {
		t.Errorf("codes %v", d.Codes)
	}
	if !reflect.DeepEqual(d.References, []string{"Patient/p1", "Practitioner/d1"}) || !reflect.DeepEqual(d.Authors, []string{"Practitioner/d1"}) {
		t.Errorf("refs %v authors %v", d.References, d.Authors)
	}
	if d := DataOf(s.enc); !d.HasPeriod || d.Period.End.Format(time.DateOnly) != "2020-01-03" {
		t.Errorf("encounter period %+v", d.Period)
	}
	if d := DataOf(s.pat); d.Dated || d.HasPeriod {
		t.Errorf("a Patient has no clinical date: %+v", d)
	}
	if d := DataOf(s.condPsy); !d.HasPeriod || !reflect.DeepEqual(d.Security, []Coding{{"http://terminology.hl7.org/CodeSystem/v3-ActCode", "PSY"}}) {
		t.Errorf("condition via recordedDate: %+v", d)
	}
	spec := resource(t, `{"resourceType":"Specimen","id":"s","collection":{"collectedDateTime":"2022-03-04"}}`)
	if d := DataOf(spec); !d.HasPeriod || d.Period.Start.Format(time.DateOnly) != "2022-03-04" {
		t.Errorf("specimen collection date: %+v", d)
	}
	odd := resource(t, `{"resourceType":"Observation","id":"x","status":"final","code":{"text":"x"},"effectiveDateTime":"yesterday","issued":"2023-01-01T00:00:00Z","contained":[{"resourceType":"Patient","id":"c","link":[{"other":{"reference":"Patient/zz"},"type":"seealso"}]}],"subject":{"reference":"#c"},"focus":[{"reference":"http://x.org/fhir/Patient/9"}]}`)
	if d := DataOf(odd); !d.HasPeriod || d.Period.Start.Year() != 2023 || len(d.References) != 0 {
		t.Errorf("fallback date, no contained/absolute refs: %+v", d)
	}
}

func BenchmarkDecideResource(b *testing.B) {
	s := samples(b)
	p := Compile("Patient/p1", []*fhir.Resource{
		consentWith(b, "c1", permitA(`"action":[`+access+`],"purpose":[`+treat+`],"dataPeriod":{"start":"2020-01-01"},"provision":[{"type":"deny","securityLabel":[`+psy+`,`+confR+`]}]`)),
		consentWith(b, "c2", `{"type":"permit","actor":[`+actorRole+`]}`),
	}, Options{})
	req := Request{Actors: []string{"Organization/a"}, Purpose: []Coding{Treatment}, Time: now}
	s.obs.Root() // parsed once, as a stored resource read by the server is
	b.ReportAllocs()
	for b.Loop() {
		if !p.DecideResource(req, s.obs).Permitted() {
			b.Fatal("denied")
		}
	}
}

func BenchmarkCompile(b *testing.B) {
	cs := []*fhir.Resource{
		consentWith(b, "c1", permitA(`"action":[`+access+`],"purpose":[`+treat+`],"dataPeriod":{"start":"2020-01-01"},"provision":[{"type":"deny","securityLabel":[`+psy+`,`+confR+`]}]`)),
		consentWith(b, "c2", `{"type":"permit","actor":[`+actorRole+`]}`),
	}
	b.ReportAllocs()
	for b.Loop() {
		Compile("Patient/p1", cs, Options{})
	}
}

// TestDecideRelationship: the request conditions decide whether the
// requester is a party the patient shares with; data conditions of
// permits and deny carve-outs of data do not, denies of the requester or
// of a period do.
func TestDecideRelationship(t *testing.T) {
	reqA := Request{Actors: []string{"Organization/a"}, Purpose: []Coding{Treatment}, Time: now}
	reqB := Request{Actors: []string{"Organization/b"}, Purpose: []Coding{Treatment}, Time: now}
	with := func(r Request, f func(*Request)) Request { f(&r); return r }
	c1, c2 := Ref{"Consent/c1", "3"}, Ref{"Consent/c2", "3"}
	permit1 := Decision{Effect: Permit, Consents: []Ref{c1}}
	deny1 := Decision{Effect: Deny, Consents: []Ref{c1}}
	none := Decision{Effect: NoConsent}
	actorB := strings.Replace(actorA, "Organization/a", "Organization/b", 1)
	const thisMonth = `"period":{"start":"2025-04-01","end":"2025-04-30"}`
	const lastYear = `"period":{"start":"2024-01-01","end":"2024-12-31"}`
	type check struct {
		req  Request
		want Decision
	}
	for _, tc := range []struct {
		name     string
		consents []*fhir.Resource
		checks   []check
	}{
		{"no consent", nil, []check{{reqA, none}}},
		{"plain permit", []*fhir.Resource{consentWith(t, "c1", permitA(""))}, []check{{reqA, permit1}, {reqB, none}}},
		{"narrow data period is not looked at", []*fhir.Resource{consentWith(t, "c1", permitA(`"dataPeriod":{"start":"2015-01-01","end":"2016-12-31"}`))},
			[]check{{reqA, permit1}, {reqB, none}}},
		{"class, code and label of a permit are not looked at", []*fhir.Resource{consentWith(t, "c1", permitA(`"class":[`+classObs+`,`+classCond+`],"code":[{"coding":[{"system":"http://loinc.org","code":"2345-7"}]}],"securityLabel":[`+confN+`]`))},
			[]check{{reqA, permit1}}},
		{"data reference of a permit is not looked at", []*fhir.Resource{consentWith(t, "c1", permitA(`"data":[{"meaning":"instance","reference":{"reference":"Observation/o1"}}]`))},
			[]check{{reqA, permit1}}},
		{"actor in a nested class permit", []*fhir.Resource{consentWith(t, "c1", `{"type":"permit","provision":[`+permitA(`"class":[`+classObs+`]`)+`]}`)},
			[]check{{reqA, permit1}, {reqB, none}}},
		{"permit without actor grants nobody", []*fhir.Resource{consentWith(t, "c1", `{"type":"permit","class":[`+classObs+`]}`)}, []check{{reqA, none}}},
		{"revoked", []*fhir.Resource{consentWith(t, "c1", permitA(""), "status", `"inactive"`)}, []check{{reqA, none}}},
		{"expired", []*fhir.Resource{consentWith(t, "c1", permitA(lastYear))},
			[]check{{reqA, none}, {with(reqA, func(r *Request) { r.Time = time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC) }), permit1}}},
		{"action and purpose still apply", []*fhir.Resource{consentWith(t, "c1", permitA(`"action":[`+access+`],"purpose":[`+treat+`]`))},
			[]check{
				{reqA, permit1},
				{with(reqA, func(r *Request) { r.Action = ActionDisclose }), none},
				{with(reqA, func(r *Request) { r.Purpose = []Coding{{PurposeOfUseSystem, "HRESCH"}} }), none},
			}},
		{"deny of a label is a carve-out of data", []*fhir.Resource{consentWith(t, "c1", permitA(`"provision":[{"type":"deny","securityLabel":[`+psy+`]}]`))},
			[]check{{reqA, permit1}}},
		{"deny of a class and data period is a carve-out of data", []*fhir.Resource{consentWith(t, "c1", permitA(`"provision":[{"type":"deny","class":[`+classCond+`],"dataPeriod":{"end":"2019-12-31"}}]`))},
			[]check{{reqA, permit1}}},
		{"deny of a code or data reference is a carve-out of data", []*fhir.Resource{consentWith(t, "c1", permitA(`"provision":[{"type":"deny","code":[{"coding":[{"system":"http://loinc.org","code":"2345-7"}]}]},{"type":"deny","data":[{"meaning":"instance","reference":{"reference":"Observation/o1"}}]}]`))},
			[]check{{reqA, permit1}}},
		{"deny of data and an actor is still a carve-out", []*fhir.Resource{consentWith(t, "c1", permitA(`"provision":[{"type":"deny","actor":[`+actorA+`],"securityLabel":[`+psy+`]}]`))},
			[]check{{reqA, permit1}}},
		{"deny of the actor applies", []*fhir.Resource{consentWith(t, "c1", `{"type":"permit","actor":[`+actorA+`,`+actorB+`],"provision":[{"type":"deny","actor":[`+actorA+`]}]}`)},
			[]check{{reqA, deny1}, {reqB, permit1}}},
		{"deny during a period applies in it", []*fhir.Resource{consentWith(t, "c1", permitA(`"provision":[{"type":"deny",`+thisMonth+`}]`))},
			[]check{{reqA, deny1}, {with(reqA, func(r *Request) { r.Time = now.AddDate(0, 2, 0) }), permit1}}},
		{"deny outside its period does not apply", []*fhir.Resource{consentWith(t, "c1", permitA(`"provision":[{"type":"deny",`+lastYear+`}]`))},
			[]check{{reqA, permit1}}},
		{"deny for a purpose applies to that purpose", []*fhir.Resource{consentWith(t, "c1", permitA(`"provision":[{"type":"deny","purpose":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"HRESCH"}]}]`))},
			[]check{{reqA, permit1}, {with(reqA, func(r *Request) { r.Purpose = []Coding{{PurposeOfUseSystem, "HRESCH"}} }), deny1}}},
		{"nested deny without condition withdraws everything", []*fhir.Resource{consentWith(t, "c1", permitA(`"provision":[{"type":"deny"}]`))},
			[]check{{reqA, deny1}}},
		{"permit of data inside a deny of the period", []*fhir.Resource{consentWith(t, "c1", permitA(`"provision":[{"type":"deny",`+thisMonth+`,"provision":[{"type":"permit","class":[`+classObs+`]}]}]`))},
			[]check{{reqA, permit1}}},
		{"siblings: deny of the actor wins over a permit", []*fhir.Resource{consentWith(t, "c1", permitA(`"provision":[{"type":"permit","class":[`+classObs+`]},{"type":"deny","actor":[`+actorA+`]}]`))},
			[]check{{reqA, deny1}}},
		{"an opt-out of the actor in another Consent wins", []*fhir.Resource{consentWith(t, "c1", permitA("")), consentWith(t, "c2", `{"type":"deny","actor":[`+actorA+`]}`)},
			[]check{{reqA, Decision{Effect: Deny, Consents: []Ref{c2}}}, {reqB, none}}},
		{"an opt-out of data in another Consent does not apply", []*fhir.Resource{consentWith(t, "c1", permitA("")), consentWith(t, "c2", `{"type":"deny","securityLabel":[`+psy+`]}`)},
			[]check{{reqA, permit1}}},
		{"an opt-out of everything wins", []*fhir.Resource{consentWith(t, "c1", permitA("")), consentWith(t, "c2", `{"type":"deny"}`)},
			[]check{{reqA, Decision{Effect: Deny, Consents: []Ref{c2}}}}},
		{"two permits", []*fhir.Resource{consentWith(t, "c1", permitA(`"class":[`+classObs+`]`)), consentWith(t, "c2", permitA(`"dataPeriod":{"end":"2016-12-31"}`))},
			[]check{{reqA, Decision{Effect: Permit, Consents: []Ref{c1, c2}}}}},
		{"revoked one of two", []*fhir.Resource{consentWith(t, "c1", permitA(""), "status", `"inactive"`), consentWith(t, "c2", permitA(`"class":[`+classObs+`]`))},
			[]check{{reqA, Decision{Effect: Permit, Consents: []Ref{c2}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Compile("Patient/p1", tc.consents, Options{})
			for i, c := range tc.checks {
				if got := p.DecideRelationship(c.req); !reflect.DeepEqual(got, c.want) {
					t.Errorf("check %d (%v): %v, want %v", i, c.req.Actors, got, c.want)
				}
			}
		})
	}
}

func TestPolicyStable(t *testing.T) {
	c := resource(t, `{"resourceType":"Consent","id":"c1","status":"active",
	 "scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
	 "patient":{"reference":"Patient/p1"},
	 "provision":{"type":"permit","period":{"start":"2026-01-01","end":"2027-01-01"},"actor":[{"reference":{"reference":"Organization/o1"}}],
	  "provision":[{"type":"deny","period":{"start":"2026-06-01","end":"2026-07-01"}}]}}`)
	pol := Compile("Patient/p1", []*fhir.Resource{c}, Options{})
	for _, tc := range []struct{ at, want string }{
		{"2025-12-31T00:00:00Z", "2026-01-01T00:00:00Z"},
		{"2026-03-01T00:00:00Z", "2026-06-01T00:00:00Z"},
		{"2026-06-15T00:00:00Z", "2026-07-02T00:00:00Z"}, // a date end covers its whole day
		{"2026-08-01T00:00:00Z", "2027-01-02T00:00:00Z"},
		{"2027-02-01T00:00:00Z", ""},
	} {
		at, _ := time.Parse(time.RFC3339, tc.at)
		got := pol.Stable(at)
		if tc.want == "" {
			if !got.IsZero() {
				t.Errorf("at %s: %v, want never", tc.at, got)
			}
			continue
		}
		if want, _ := time.Parse(time.RFC3339, tc.want); !got.Equal(want) {
			t.Errorf("at %s: %v, want %v", tc.at, got, want)
		}
		// and decisions indeed hold until then
		req := Request{Actors: []string{"Organization/o1"}, Time: at}
		before := pol.DecideRelationship(req).Effect
		req.Time = got.Add(-time.Nanosecond)
		if pol.DecideRelationship(req).Effect != before {
			t.Errorf("at %s: the decision changed before %v", tc.at, got)
		}
	}
}
