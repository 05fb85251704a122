package audit

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/validate"
)

var t0 = time.Date(2025, 4, 1, 12, 0, 0, 0, time.UTC)

func readEvent(i int) Event {
	return Event{
		Interaction: "read", Recorded: t0.Add(time.Duration(i) * time.Second), Outcome: Success,
		Who: "Organization/second-look", ClientID: "second-look-clinic", Issuer: "https://idp.example.org", TokenID: "jti-1",
		ClientAddress: "192.0.2.7", Server: "https://fhirgate.example.org",
		Resource: fmt.Sprintf("Observation/o%d", i), Patient: "Patient/p1", Consents: []string{"Consent/c1"},
		Purpose: []Coding{{System: "http://terminology.hl7.org/CodeSystem/v3-ActReason", Code: "TREAT"}},
	}
}

// decode returns the event as generic JSON for assertions.
func decode(t *testing.T, r *fhir.Resource) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestBuild(t *testing.T) {
	r, err := Build(readEvent(1))
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, r)
	if m["action"] != "R" || m["outcome"] != "0" || m["recorded"] != "2025-04-01T12:00:01.000Z" {
		t.Errorf("header %v %v %v", m["action"], m["outcome"], m["recorded"])
	}
	if st := m["subtype"].([]any)[0].(map[string]any); st["code"] != "read" || st["system"] != "http://hl7.org/fhir/restful-interaction" {
		t.Errorf("subtype %v", st)
	}
	agents := m["agent"].([]any)
	var types []string
	for _, a := range agents {
		a := a.(map[string]any)
		types = append(types, a["type"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"].(string)+fmt.Sprint(a["requestor"]))
	}
	if !reflect.DeepEqual(types, []string{"110153false", "110152false", "IRCPtrue"}) {
		t.Errorf("agents %v", types)
	}
	user := agents[2].(map[string]any)
	if user["who"].(map[string]any)["reference"] != "Organization/second-look" || !reflect.DeepEqual(user["policy"], []any{"jti-1"}) {
		t.Errorf("user agent %v", user)
	}
	if c := agents[0].(map[string]any); c["altId"] != "second-look-clinic" || c["network"].(map[string]any)["type"] != "2" {
		t.Errorf("client agent %v", c)
	}
	var what []string
	for _, e := range m["entity"].([]any) {
		e := e.(map[string]any)
		what = append(what, e["what"].(map[string]any)["reference"].(string))
	}
	if !reflect.DeepEqual(what, []string{"Observation/o1", "Patient/p1", "Consent/c1"}) {
		t.Errorf("entities %v", what)
	}
	if len(m["purposeOfEvent"].([]any)) != 1 {
		t.Errorf("purposeOfEvent %v", m["purposeOfEvent"])
	}

	// A search records its query; a refusal its outcome; a client without
	// a user is itself the requestor.
	r, err = Build(Event{Interaction: "search-type", ResourceType: "Observation", Query: "code=http://loinc.org|2345-7&patient=p1",
		Recorded: t0, Outcome: OutcomeForStatus(403), OutcomeDesc: "no consent", ClientID: "city-hospital-ehr"})
	if err != nil {
		t.Fatal(err)
	}
	m = decode(t, r)
	q := m["entity"].([]any)[0].(map[string]any)
	raw, _ := base64.StdEncoding.DecodeString(q["query"].(string))
	if string(raw) != "Observation?code=http://loinc.org|2345-7&patient=p1" || m["action"] != "E" || m["outcome"] != "4" || m["outcomeDesc"] != "no consent" {
		t.Errorf("search event %v, query %q", m, raw)
	}
	if a := m["agent"].([]any); len(a) != 2 || a[0].(map[string]any)["requestor"] != true {
		t.Errorf("client-only agents %v", a)
	}

	op, err := Build(Event{Interaction: "operation", Operation: "everything", Recorded: t0, Patient: "Patient/p1", Resource: "Patient/p1"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(op.Raw), `"code":"$everything"`) {
		t.Errorf("operation subtype missing: %s", op.Raw)
	}

	for name, e := range map[string]Event{
		"unknown interaction": {Interaction: "peek", Recorded: t0},
		"no time":             {Interaction: "read"},
	} {
		if _, err := Build(e); err == nil {
			t.Errorf("%s: built", name)
		}
	}
}

func TestOutcomeForStatus(t *testing.T) {
	for st, want := range map[int]Outcome{200: Success, 201: Success, 304: Success, 401: MinorFailure, 403: MinorFailure, 404: MinorFailure, 500: SeriousFailure, 503: SeriousFailure} {
		if got := OutcomeForStatus(st); got != want {
			t.Errorf("%d: %s, want %s", st, got, want)
		}
	}
}

// TestEventsValidate checks that what the gateway authors is valid R4.
func TestEventsValidate(t *testing.T) {
	chain := NewChain(Link{})
	for _, e := range []Event{
		readEvent(1),
		{Interaction: "search-system", Query: "_lastUpdated=gt2025", Recorded: t0, Outcome: SeriousFailure, ClientID: "x", Server: "https://gw.example/fhir"},
		{Interaction: "operation", Operation: "$everything", Recorded: t0, Who: "Patient/p1", Patient: "Patient/p1", Resource: "Patient/p1"},
		{Interaction: "delete", Recorded: t0, Outcome: MinorFailure, OutcomeDesc: "insufficient scope", Resource: "Consent/c1"},
	} {
		r, err := Build(e)
		if err != nil {
			t.Fatal(err)
		}
		sealed, err := chain.Append(r, func(*fhir.Resource) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		for _, is := range validate.Validate(sealed) {
			if is.Severity == fhir.SeverityError || is.Severity == fhir.SeverityFatal {
				t.Errorf("%s event: %s at %v (%s)", e.Interaction, is.Details.Text, is.Expression, is.Diagnostics)
			}
		}
	}
}

// trail builds a sealed trail of n events, as a store would hold them
// (ids from ID, meta set by the store).
func trail(t testing.TB, n int) ([]*fhir.Resource, Link) {
	t.Helper()
	chain := NewChain(Link{})
	var out []*fhir.Resource
	for i := 1; i <= n; i++ {
		ev, err := Build(readEvent(i))
		if err != nil {
			t.Fatal(err)
		}
		_, err = chain.Append(ev, func(sealed *fhir.Resource) error {
			out = append(out, sealed.WithMeta(sealed.ID, "1", t0.Add(time.Duration(i)*time.Second)))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out, chain.Head()
}

func all(events []*fhir.Resource) iter.Seq2[*fhir.Resource, error] {
	return func(yield func(*fhir.Resource, error) bool) {
		for _, e := range events {
			if !yield(e, nil) {
				return
			}
		}
	}
}

// mutate rewrites an event's JSON with f (keeping everything else).
func mutate(t testing.TB, r *fhir.Resource, f func(m map[string]any)) *fhir.Resource {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Raw, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	out, err := fhir.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func chainExt(m map[string]any) []any {
	for _, e := range m["extension"].([]any) {
		e := e.(map[string]any)
		if e["url"] == ChainExtensionURL {
			return e["extension"].([]any)
		}
	}
	return nil
}

func TestVerify(t *testing.T) {
	events, head := trail(t, 10)
	rep, err := Verify(all(events))
	if err != nil || !rep.OK() || rep.Events != 10 || rep.Head != head {
		t.Fatalf("intact trail: %+v %v (head %v)", rep, err, head)
	}
	if l, err := LinkOf(events[9]); err != nil || l != head {
		t.Errorf("LinkOf(last) = %v, %v; want %v", l, err, head)
	}

	without := func(i ...int) []*fhir.Resource {
		var out []*fhir.Resource
		for j, e := range events {
			if !slices.Contains(i, j+1) {
				out = append(out, e)
			}
		}
		return out
	}
	replace := func(seq int, r *fhir.Resource) []*fhir.Resource {
		out := slices.Clone(events)
		out[seq-1] = r
		return out
	}
	// resealed edits event 4 and seals it again in place (same sequence and
	// previous), as an attacker who knows the scheme would.
	resealed := func() *fhir.Resource {
		edited := mutate(t, events[3], func(m map[string]any) { m["outcome"] = "4" })
		prev, _ := LinkOf(events[2])
		var m map[string]any
		_ = json.Unmarshal(edited.Raw, &m)
		var exts []any
		for _, e := range m["extension"].([]any) {
			if e.(map[string]any)["url"] != ChainExtensionURL {
				exts = append(exts, e)
			}
		}
		if exts == nil {
			delete(m, "extension")
		} else {
			m["extension"] = exts
		}
		b, _ := json.Marshal(m)
		r, _ := fhir.Parse(b)
		s, _, err := Seal(prev, r)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}()
	unchained, _ := Build(readEvent(99))

	type want struct {
		kind ProblemKind
		seq  uint64
	}
	for _, tc := range []struct {
		name   string
		events []*fhir.Resource
		wants  []want
	}{
		{"edited outcome", replace(4, mutate(t, events[3], func(m map[string]any) { m["outcome"] = "4" })), []want{{Edited, 4}}},
		{"edited who", replace(4, mutate(t, events[3], func(m map[string]any) {
			m["agent"].([]any)[2].(map[string]any)["who"] = map[string]any{"reference": "Organization/someone-else"}
		})), []want{{Edited, 4}}},
		{"edited consent entity", replace(7, mutate(t, events[6], func(m map[string]any) {
			ents := m["entity"].([]any)
			m["entity"] = ents[:len(ents)-1]
		})), []want{{Edited, 7}}},
		{"edited security label", replace(2, mutate(t, events[1], func(m map[string]any) {
			m["meta"].(map[string]any)["security"] = []any{map[string]any{"code": "x"}}
		})), []want{{Edited, 2}}},
		{"edited sequence", replace(4, mutate(t, events[3], func(m map[string]any) {
			chainExt(m)[0].(map[string]any)["valueString"] = "5"
		})), []want{{Missing, 4}, {Edited, 5}, {Duplicate, 5}, {BrokenLink, 6}}},
		{"resealed after an edit", replace(4, resealed), []want{{BrokenLink, 5}}},
		{"deleted one", without(4), []want{{Missing, 4}}},
		{"deleted three", without(4, 5, 6), []want{{Missing, 4}}},
		{"deleted the first", without(1), []want{{Missing, 1}}},
		{"swapped", func() []*fhir.Resource {
			out := slices.Clone(events)
			out[3], out[4] = out[4], out[3]
			return out
		}(), []want{{Reordered, 4}}},
		{"moved to the end", append(without(2), events[1]), []want{{Reordered, 2}}},
		{"duplicated", slices.Insert(slices.Clone(events), 3, events[2]), []want{{Duplicate, 3}}},
		{"inserted unchained", slices.Insert(slices.Clone(events), 5, unchained), []want{{Unchained, 0}}},
		{"chain extension removed", replace(6, mutate(t, events[5], func(m map[string]any) { delete(m, "extension") })), []want{{Unchained, 0}, {Missing, 6}}},
		{"hash removed", replace(6, mutate(t, events[5], func(m map[string]any) {
			ext := m["extension"].([]any)[0].(map[string]any)
			ext["extension"] = ext["extension"].([]any)[:2]
		})), []want{{Unchained, 0}, {Missing, 6}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Verify(all(tc.events))
			if err != nil {
				t.Fatal(err)
			}
			var got []want
			for _, p := range rep.Problems {
				got = append(got, want{p.Kind, p.Seq})
				if p.String() == "" || strings.Contains(p.String(), "Observation/") {
					t.Errorf("problem text %q", p.String())
				}
			}
			if !reflect.DeepEqual(got, tc.wants) {
				t.Errorf("problems %v\nwant %v", rep.Problems, tc.wants)
			}
		})
	}

	// Missing ranges are reported whole.
	rep, _ = Verify(all(without(4, 5, 6)))
	if p := rep.Problems[0]; p.Until != 6 || !strings.Contains(p.String(), "events 4 to 6") {
		t.Errorf("range %+v %q", p, p.String())
	}
}

func TestVerifyIgnoresStorageDetails(t *testing.T) {
	events, _ := trail(t, 3)
	// A store may reorder keys, re-indent, re-escape strings and set its
	// own id, versionId and lastUpdated.
	var restored []*fhir.Resource
	for _, e := range events {
		var m map[string]any
		if err := json.Unmarshal(e.Raw, &m); err != nil {
			t.Fatal(err)
		}
		m["id"] = "renamed-" + e.ID
		m["meta"] = map[string]any{"versionId": "7", "lastUpdated": "2030-01-01T00:00:00Z"}
		b, _ := json.MarshalIndent(m, "", "   ") // Go sorts keys
		b = []byte(strings.ReplaceAll(string(b), "/", `\/`))
		r, err := fhir.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		restored = append(restored, r)
	}
	if rep, _ := Verify(all(restored)); !rep.OK() {
		t.Errorf("storage details flagged: %v", rep.Problems)
	}
}

func TestVerifyCheckpointAndTruncation(t *testing.T) {
	events, head := trail(t, 6)
	from, _ := LinkOf(events[2])
	v := NewVerifier(from)
	for _, e := range events[3:] {
		v.Add(e)
	}
	if rep := v.Report(); !rep.OK() || rep.Events != 3 || rep.Head != head {
		t.Errorf("from a checkpoint: %+v", rep)
	}
	// A wrong checkpoint is a broken link.
	v = NewVerifier(Link{Seq: 3, Hash: "sha256:00"})
	v.Add(events[3])
	if rep := v.Report(); len(rep.Problems) != 1 || rep.Problems[0].Kind != BrokenLink {
		t.Errorf("wrong checkpoint: %+v", rep)
	}
	// Cutting the end off leaves a consistent chain: only the head tells.
	rep, _ := Verify(all(events[:4]))
	if !rep.OK() || rep.Head == head {
		t.Errorf("truncated trail: %+v", rep)
	}
}

func TestVerifyIteratorError(t *testing.T) {
	events, _ := trail(t, 3)
	boom := errors.New("store down")
	seq := func(yield func(*fhir.Resource, error) bool) {
		if yield(events[0], nil) {
			yield(nil, boom)
		}
	}
	rep, err := Verify(seq)
	if !errors.Is(err, boom) || rep.Events != 1 {
		t.Errorf("%v %+v", err, rep)
	}
}

func TestSealRefuses(t *testing.T) {
	events, head := trail(t, 1)
	if _, _, err := Seal(head, events[0]); err == nil {
		t.Errorf("sealed an event twice")
	}
	p, _ := fhir.Parse([]byte(`{"resourceType":"Patient","id":"x"}`))
	if _, _, err := Seal(Link{}, p); err == nil {
		t.Errorf("sealed a Patient")
	}
	if _, err := LinkOf(p); !errors.Is(err, ErrNotChained) {
		t.Errorf("LinkOf(Patient): %v", err)
	}
	ev, _ := Build(readEvent(1))
	c := NewChain(head)
	if _, err := c.Append(ev, func(*fhir.Resource) error { return errors.New("disk full") }); err == nil || c.Head() != head {
		t.Errorf("a failed store advanced the head")
	}
	sealed, err := c.Append(ev, func(*fhir.Resource) error { return nil })
	if err != nil || sealed.ID != ID(2) || c.Head().Seq != 2 {
		t.Errorf("append after failure: %v %s %v", err, sealed.ID, c.Head())
	}
	// An event with its own extensions keeps them, and the chain goes last.
	withExt, _ := fhir.Parse([]byte(`{"resourceType":"AuditEvent","extension":[{"url":"urn:x","valueString":"y"}],"type":{"code":"rest"},"recorded":"2025-01-01T00:00:00Z","agent":[{"requestor":true}],"source":{"observer":{"display":"gw"}}}`))
	s, l, err := Seal(Link{}, withExt)
	if err != nil || !strings.Contains(string(s.Raw), `"urn:x"`) || l.Seq != 1 {
		t.Fatalf("%v %s", err, s.Raw)
	}
	if rep, _ := Verify(all([]*fhir.Resource{s})); !rep.OK() {
		t.Errorf("%v", rep.Problems)
	}
}

func TestSortBySequence(t *testing.T) {
	events, _ := trail(t, 5)
	shuffled := []*fhir.Resource{events[3], events[0], events[4], events[2], events[1]}
	SortBySequence(shuffled)
	if !slices.Equal(shuffled, events) {
		t.Errorf("not sorted")
	}
	if ID(42) != "audit-0000000000000042" || !fhir.ValidID(ID(1<<63)) {
		t.Errorf("ids %s %s", ID(42), ID(1<<63))
	}
}

func BenchmarkSeal(b *testing.B) {
	ev, err := Build(readEvent(1))
	if err != nil {
		b.Fatal(err)
	}
	head := Link{Seq: 41, Hash: "sha256:abc"}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Seal(head, ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBuildAndSeal(b *testing.B) {
	chain := NewChain(Link{})
	e := readEvent(1)
	b.ReportAllocs()
	for b.Loop() {
		ev, err := Build(e)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := chain.Append(ev, func(*fhir.Resource) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	events, _ := trail(b, 1000)
	b.ReportAllocs()
	for b.Loop() {
		if rep, _ := Verify(all(events)); !rep.OK() {
			b.Fatal(rep.Problems)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
}
