package audit

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/storage"
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

// TestEventsValidate checks that what the gateway serves is valid R4:
// events rendered from the log's records, chain extension included.
func TestEventsValidate(t *testing.T) {
	keys := testKeyring()
	prev := []byte(nil)
	for i, e := range []Event{
		readEvent(1),
		{Interaction: "search-system", Query: "_lastUpdated=gt2025", Recorded: t0, Outcome: SeriousFailure, ClientID: "x", Server: "https://gw.example/fhir"},
		{Interaction: "operation", Operation: "$everything", Recorded: t0, Who: "Patient/p1", Patient: "Patient/p1", Resource: "Patient/p1"},
		{Interaction: "delete", Recorded: t0, Outcome: MinorFailure, OutcomeDesc: "insufficient scope", Resource: "Consent/c1"},
		{Interaction: "create", Recorded: t0, ClientID: "city-hospital-ehr", Who: "Organization/city", OnBehalfOf: "Patient/p1", Patient: "Patient/p1", Resources: []string{"Consent/c9/_history/1"}},
		{Interaction: "operation", Operation: "pull", Recorded: t0, Origin: "city-hospital", Patient: "Patient/p1", Resources: []string{"Observation/o1/_history/1", "Provenance/v1/_history/1"}},
	} {
		rec, err := NewRecord(&e)
		if err != nil {
			t.Fatal(err)
		}
		rec.Seq = int64(i + 1)
		keys.Seal(prev, rec)
		prev = rec.Hash
		r, err := Render(rec)
		if err != nil {
			t.Fatal(err)
		}
		if r.ID != ID(rec.Seq) || !strings.Contains(string(r.Raw), ChainExtensionURL) {
			t.Errorf("rendered %s: %.300s", r.ID, r.Raw)
		}
		for _, is := range validate.Validate(r) {
			if is.Severity == fhir.SeverityError || is.Severity == fhir.SeverityFatal {
				t.Errorf("%s event: %s at %v (%s)", e.Interaction, is.Details.Text, is.Expression, is.Diagnostics)
			}
		}
	}
}

func testKeyring() *Keyring {
	return NewKeyring(Key{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef")})
}

func TestCodec(t *testing.T) {
	e := readEvent(3)
	e.Resources = []string{"Observation/o2/_history/4", "Provenance/v/_history/1"}
	e.OnBehalfOf, e.Origin, e.Operation = "Organization/x", "src", "op"
	e.Purpose = append(e.Purpose, Coding{Code: "ETREAT", Display: "emergency"})
	e.Outcome = Success
	b := Encode(&e)
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, e) {
		t.Errorf("round trip\n got %+v\nwant %+v", *got, e)
	}
	// every truncation, and trailing bytes, are refused
	for i := range b {
		if _, err := Decode(b[:i]); err == nil {
			t.Fatalf("decoded %d of %d bytes", i, len(b))
		}
	}
	if _, err := Decode(append(slices.Clone(b), 0)); err == nil {
		t.Error("decoded trailing bytes")
	}
	// a length beyond the body does not allocate it
	if _, err := Decode([]byte{codecV1, 2, 0xff, 0xff, 0xff, 0xff, 0x0f}); err == nil {
		t.Error("decoded a huge length")
	}
}

func TestRefs(t *testing.T) {
	e := readEvent(1)
	e.Resources = []string{"Observation/o1/_history/2", "Patient/p1"}
	e.OnBehalfOf = "Organization/clinic"
	rec, err := NewRecord(&e)
	if err != nil {
		t.Fatal(err)
	}
	want := []storage.AuditRef{
		{Ref: "Organization/second-look", Role: storage.AuditAgent},
		{Ref: "@second-look-clinic", Role: storage.AuditClient},
		{Ref: "Observation/o1", Role: storage.AuditEntity},
		{Ref: "Patient/p1", Role: storage.AuditEntity | storage.AuditPatientRole},
		{Ref: "Consent/c1", Role: storage.AuditEntity},
	}
	if !reflect.DeepEqual(rec.Refs, want) {
		t.Errorf("refs %v\nwant %v", rec.Refs, want)
	}
	if rec.Action != "R" || rec.Outcome != "0" || rec.Type != "rest" || rec.Subtype != "read" {
		t.Errorf("columns %+v", rec)
	}
	// the same from the rendered JSON, as an event moved from the store is indexed
	rec.Seq = 1
	testKeyring().Seal(nil, rec)
	r, _ := Render(rec)
	j, err := jsonRecord(r.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if !sameRefs(j.Refs, rec.Refs) || j.Action != rec.Action || j.Subtype != rec.Subtype || !j.Recorded.Equal(rec.Recorded) {
		t.Errorf("from JSON %+v %v\nwant %+v", j, j.Refs, rec.Refs)
	}
}

func TestKeysAndCheckpoints(t *testing.T) {
	k1, k2 := GenerateKey("k1"), GenerateKey("k2")
	ring, err := ParseKeys("# comment\n" + k2 + "\n" + k1)
	if err != nil || ring.SealingKeyID() != "k2" || !reflect.DeepEqual(ring.IDs(), []string{"k2", "k1"}) {
		t.Fatalf("%v %v", ring, err)
	}
	for _, bad := range []string{"", "k1", "k1:", "k1:c2hvcnQ=", "bad id:" + strings.SplitN(k1, ":", 2)[1], k1 + "," + k1} {
		if _, err := ParseKeys(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	c := ring.Checkpoint(storage.AuditHead{Seq: 42, Hash: []byte{1, 2, 3}}, t0)
	if err := ring.CheckCheckpoint(c); err != nil {
		t.Fatal(err)
	}
	back, err := ParseCheckpoint("noise\n" + c.String() + "\n")
	if err != nil || back != c {
		t.Fatalf("%v %v", back, err)
	}
	logLine := `{"time":"x","level":"INFO","msg":"audit checkpoint","seq":42,"checkpoint":` + strconv.Quote(c.String()) + `}`
	if back, err := ParseCheckpoint(logLine); err != nil || back != c {
		t.Errorf("from a log line: %v %v", back, err)
	}
	forged := c
	forged.Seq = 43
	if err := ring.CheckCheckpoint(forged); !errors.Is(err, ErrCheckpointForged) {
		t.Errorf("forged checkpoint: %v", err)
	}
	other, _ := ParseKeys(GenerateKey("k2"))
	if err := other.CheckCheckpoint(c); err == nil {
		t.Error("a checkpoint verified under another key")
	}
	path := filepath.Join(t.TempDir(), "d", "audit.key")
	kr, created, err := KeyFile(path, true)
	if err != nil || !created {
		t.Fatal(err)
	}
	again, created, err := KeyFile(path, true)
	if err != nil || created || again.SealingKeyID() != kr.SealingKeyID() {
		t.Fatalf("second open: %v %v", created, err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v", st.Mode())
	}
}

// legacyTrail builds a trail as the resource store held it before the log.
func legacyTrail(t testing.TB, n int) ([]*fhir.Resource, Link) {
	t.Helper()
	var out []*fhir.Resource
	var head Link
	for i := 1; i <= n; i++ {
		ev, err := Build(readEvent(i))
		if err != nil {
			t.Fatal(err)
		}
		sealed, next, err := legacySeal(head, ev)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, sealed.Rewrite(ID(int64(next.Seq)), nil, "1", t0.Add(time.Duration(i)*time.Second)))
		head = next
	}
	return out, head
}

func TestLegacyVerifier(t *testing.T) {
	events, head := legacyTrail(t, 6)
	check := func(evs []*fhir.Resource) (Link, []Problem) {
		v := &legacyVerifier{}
		for _, e := range evs {
			v.add(e)
		}
		return v.result()
	}
	if got, ps := check(events); got != head || len(ps) != 0 {
		t.Fatalf("intact: %v %v", got, ps)
	}
	edited, _ := fhir.Parse([]byte(strings.Replace(string(events[2].Raw), `"outcome":"0"`, `"outcome":"4"`, 1)))
	_, ps := check([]*fhir.Resource{events[0], events[1], edited, events[3], events[5]})
	if len(ps) != 2 || ps[0].Kind != Edited || ps[0].Seq != 3 || ps[1].Kind != Missing || ps[1].Seq != 5 {
		t.Errorf("problems %v", ps)
	}
}

func BenchmarkRecord(b *testing.B) {
	keys := testKeyring()
	e := readEvent(1)
	var prev []byte
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		rec, err := NewRecord(&e)
		if err != nil {
			b.Fatal(err)
		}
		rec.Seq = int64(i + 1)
		keys.Seal(prev, rec)
		prev = rec.Hash
	}
}

func BenchmarkRender(b *testing.B) {
	e := readEvent(1)
	rec, _ := NewRecord(&e)
	rec.Seq = 1
	testKeyring().Seal(nil, rec)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Render(rec); err != nil {
			b.Fatal(err)
		}
	}
}
