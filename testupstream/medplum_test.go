package testupstream

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/fhirrest"
	"github.com/fhirgate/fhirgate/adapters/upstream"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/internal/sharedtest"
)

// EnvVar makes the Medplum test required instead of skippable.
const EnvVar = "FHIRGATE_MEDPLUM_UPSTREAM"

// startMedplum starts medplum-upstream.mjs with the bundles and returns
// its base URL. The server stops when the test ends.
func startMedplum(t *testing.T, bundles ...string) string {
	t.Helper()
	required := os.Getenv(EnvVar) == "1"
	skip := func(why string) {
		if required {
			t.Fatalf("%s, and %s=1 requires this test: run `cd testupstream && npm ci --omit=optional`", why, EnvVar)
		}
		t.Skipf("%s: run `cd testupstream && npm ci --omit=optional` to test against Medplum (set %s=1 to require it)", why, EnvVar)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		skip("node is not installed")
	}
	if _, err := os.Stat(filepath.Join("node_modules", "@medplum", "fhir-router")); err != nil {
		skip("testupstream/node_modules is missing")
	}
	cmd := exec.Command(node, append([]string{"medplum-upstream.mjs"}, bundles...)...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe() // closing it stops the server
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	type ready struct {
		URL       string `json:"url"`
		Resources int    `json:"resources"`
	}
	lines := make(chan ready, 1)
	go func() {
		var r ready
		line, err := bufio.NewReader(stdout).ReadBytes('\n')
		if err == nil {
			json.Unmarshal(line, &r)
		}
		lines <- r
		io.Copy(io.Discard, stdout)
	}()
	select {
	case r := <-lines:
		if r.URL == "" {
			t.Fatal("medplum-upstream.mjs did not start (see its stderr above)")
		}
		return r.URL
	case <-time.After(2 * time.Minute):
		t.Fatal("medplum-upstream.mjs did not start within 2 minutes")
	}
	return ""
}

// TestPullFromMedplum finds a Synthea patient at Medplum by identifier and
// pulls the record with the fhir adapter (per-type searches, as Medplum's
// router offers no $everything, with paging), then checks it against the
// bundle type by type: every resource of the bundle comes back once.
func TestPullFromMedplum(t *testing.T) {
	bundle := filepath.Join(sharedtest.Dir(t), "synthea-r4", "Adan_Portillo_22bbe238-220e-495c-8abc-0ce3aa28a605.json")
	other := filepath.Join(sharedtest.Dir(t), "synthea-r4", "Renato_Dare_f07e9b1d-9cc7-465e-8abc-94e84793d1fb.json")
	base := startMedplum(t, bundle, other)

	want := map[string]int{}
	var identifier adapters.Identifier
	var family, birthDate string
	b, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	root, err := fjson.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range root.Get("entry").Items {
		r := e.Get("resource")
		typ := r.Get("resourceType").String()
		want[typ]++
		if typ == "Patient" {
			id := r.Get("identifier").Items[0]
			identifier = adapters.Identifier{System: id.Get("system").String(), Value: id.Get("value").String()}
			family = r.Get("name").Items[0].Get("family").String()
			birthDate = r.Get("birthDate").String()
		}
	}

	src, err := fhirrest.New("medplum", fhirrest.Config{Config: upstream.Config{BaseURL: base}, PageSize: 20}, adapters.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ms, err := src.FindPatient(ctx, adapters.PatientQuery{Identifiers: []adapters.Identifier{identifier}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Method != "identifier" {
		t.Fatalf("matches %+v, want one by identifier", ms)
	}
	// Demographics find the same patient (Medplum offers no $match).
	dm, err := src.FindPatient(ctx, adapters.PatientQuery{Family: family, BirthDate: birthDate})
	if err != nil || len(dm) != 1 || dm[0].ID != ms[0].ID || dm[0].Method != "demographics" {
		t.Fatalf("by demographics: %+v, %v", dm, err)
	}

	got := map[string]int{}
	seen := map[string]bool{}
	var last time.Time
	var anObservation *fhir.Resource
	res, err := src.Fetch(ctx, adapters.FetchRequest{PatientID: ms[0].ID}, func(r *fhir.Resource) error {
		k := r.Type + "/" + r.ID
		if seen[k] {
			t.Errorf("%s returned twice", k)
		}
		seen[k] = true
		got[r.Type]++
		if r.LastUpdated.After(last) {
			last = r.LastUpdated
		}
		if r.Type == "Observation" && anObservation == nil {
			anObservation = r
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for typ, n := range want {
		if got[typ] != n {
			t.Errorf("%s: pulled %d, the bundle has %d", typ, got[typ], n)
		}
	}
	for typ, n := range got {
		if want[typ] == 0 {
			t.Errorf("%s: pulled %d, the bundle has none (the other patient's data leaked in?)", typ, n)
		}
	}
	if res.Method != "search" || res.Resources != len(seen) {
		t.Errorf("result %+v", res)
	}
	t.Logf("pulled %d resources of %d types in %d requests from Medplum", res.Resources, len(got), res.Requests)

	// Incremental: after one Observation changes, a pull since the newest
	// lastUpdated seen returns it alone.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, base+"/Observation/"+anObservation.ID, bytes.NewReader(anObservation.Raw))
	req.Header.Set("Content-Type", "application/fhir+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("updating an Observation at Medplum: HTTP %d", resp.StatusCode)
	}
	var changed []string
	inc, err := src.FetchSince(ctx, adapters.FetchRequest{PatientID: ms[0].ID}, last, func(r *fhir.Resource) error {
		changed = append(changed, r.Type+"/"+r.ID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 1 || changed[0] != "Observation/"+anObservation.ID || inc.Resources != 1 {
		t.Errorf("incremental pull returned %v, want only the changed Observation", changed)
	}
	_, err = src.Fetch(ctx, adapters.FetchRequest{PatientID: "does-not-exist"}, func(*fhir.Resource) error { return nil })
	if !errors.Is(err, adapters.ErrPatientNotFound) {
		t.Errorf("unknown patient: %v", err)
	}
}
