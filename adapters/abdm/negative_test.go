package abdm_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/abdm"
	"github.com/fhirgate/fhirgate/adapters/abdm/abdmsim"
	"github.com/fhirgate/fhirgate/consolidate"
	"github.com/fhirgate/fhirgate/storage"
)

func (e *env) responses(suffix string) []string {
	var out []string
	for _, r := range e.sim.Responses {
		if strings.Contains(r, suffix) {
			out = append(out, r)
		}
	}
	return out
}

// rxID is the local id of the Prescription sample's MedicationRequest.
func rxID() string {
	return consolidate.LocalID("abdm.SIM-HIP-1", "MedicationRequest", "3b0af5e1-edc1-45f4-af6d-f6510865d18b")
}

func TestDenied(t *testing.T) {
	e := setup(t, stores[0], abdm.V05, samples(t, defaultSamples...))
	cr := e.request()
	e.sim.Decide(cr, abdm.StatusDenied)
	e.sim.Run()
	if _, err := e.fetch(); !errors.Is(err, abdm.ErrDenied) {
		t.Fatalf("fetch after a denial: %v", err)
	}
	if got := e.record(); got["Consent"] != 0 || got["MedicationRequest"] != 0 {
		t.Fatalf("a denied request stored %v", got)
	}
	// the next pull asks again
	if _, err := e.fetch(); !errors.Is(err, abdm.ErrWaiting) {
		t.Fatalf("fetch after the denial was reported: %v", err)
	}
	if e.sim.Requests() != 2 {
		t.Fatalf("%d consent requests, want 2", e.sim.Requests())
	}
}

func TestRevokedAndExpired(t *testing.T) {
	for _, status := range []string{abdm.StatusRevoked, abdm.StatusExpired} {
		t.Run(status, func(t *testing.T) {
			e := setup(t, stores[0], abdm.V05, samples(t, defaultSamples...))
			cr := e.request()
			e.sim.Decide(cr, abdm.StatusGranted)
			e.sim.Run()
			if _, err := e.fetch(); err != nil {
				t.Fatal(err)
			}
			if _, err := e.st.Read(context.Background(), "MedicationRequest", rxID()); err != nil {
				t.Fatalf("data not filed: %v", err)
			}
			e.sim.Decide(cr, status)
			e.sim.Run()
			if c := e.consent(); c.Root().Get("status").String() != "inactive" {
				t.Errorf("Consent status %s after %s", c.Root().Get("status").String(), status)
			}
			if _, err := e.st.Read(context.Background(), "MedicationRequest", rxID()); !errors.Is(err, storage.ErrGone) {
				t.Errorf("data still readable after %s: %v", status, err)
			}
			if len(e.received("consents/hiu/on-notify")) != 1 {
				t.Error("the notification was not acknowledged (on-notify)")
			}
			if _, err := e.fetch(); !errors.Is(err, abdm.ErrDenied) {
				t.Errorf("fetch after %s: %v", status, err)
			}
		})
	}
}

func TestRefusedPushes(t *testing.T) {
	cases := []struct {
		name   string
		fault  abdmsim.Fault
		status string // the HIU's answer to the bad page
	}{
		{"bad checksum", abdmsim.BadChecksum, " 400"},
		{"wrong key", abdmsim.WrongKey, " 400"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := setup(t, stores[0], abdm.V05, samples(t, defaultSamples...))
			e.sim.PushFault(c.fault)
			cr := e.request()
			e.sim.Decide(cr, abdm.StatusGranted)
			e.sim.Run()
			rs := e.responses("health-information/transfer")
			if len(rs) == 0 || !strings.HasSuffix(rs[0], c.status) {
				t.Fatalf("push answers %v, want the first%s", rs, c.status)
			}
			if got := e.record(); got["MedicationRequest"]+got["Condition"]+got["Composition"] != 0 {
				t.Fatalf("a refused push stored %v", got)
			}
			if got := lastSessionStatus(t, e.received("health-information/notify")); got != "FAILED" {
				t.Errorf("transfer notification %s, want FAILED", got)
			}
			if _, err := e.fetch(); !errors.Is(err, abdm.ErrTransfer) {
				t.Errorf("fetch after a refused push: %v", err)
			}
			// the next fetch asks again, and a good push then succeeds
			e.sim.PushFault(abdmsim.NoFault)
			if _, err := e.fetch(); !errors.Is(err, abdm.ErrWaiting) {
				t.Fatalf("retry: %v", err)
			}
			e.sim.Run()
			if _, err := e.fetch(); err != nil {
				t.Fatalf("after the retry: %v", err)
			}
		})
	}
}

func TestReplayedTransaction(t *testing.T) {
	e := setup(t, stores[0], abdm.V05, samples(t, defaultSamples...))
	e.sim.PushFault(abdmsim.Replay)
	cr := e.request()
	e.sim.Decide(cr, abdm.StatusGranted)
	e.sim.Run()
	rs := e.responses("health-information/transfer")
	if len(rs) != 3 || !strings.HasSuffix(rs[0], " 202") || !strings.HasSuffix(rs[1], " 202") || !strings.HasSuffix(rs[2], " 409") {
		t.Fatalf("push answers %v, want 202, 202, 409", rs)
	}
	if _, err := e.fetch(); err != nil {
		t.Fatalf("the complete transfer before the replay was lost: %v", err)
	}
}

func TestMissingPage(t *testing.T) {
	e := setup(t, stores[0], abdm.V05, samples(t, defaultSamples...))
	e.sim.PushFault(abdmsim.DropPage)
	cr := e.request()
	e.sim.Decide(cr, abdm.StatusGranted)
	e.sim.Run()
	if got := e.record(); got["MedicationRequest"] != 0 {
		t.Fatalf("an incomplete transfer stored %v", got)
	}
	if _, err := e.fetch(); !errors.Is(err, abdm.ErrWaiting) {
		t.Fatalf("fetch inside the push window: %v", err)
	}
	e.clock.Advance(21 * time.Minute)
	if _, err := e.fetch(); !errors.Is(err, abdm.ErrTransfer) || !strings.Contains(err.Error(), "1 of 2 pages") {
		t.Fatalf("fetch after the window: %v", err)
	}
	if got := e.record(); got["MedicationRequest"]+got["Composition"] != 0 {
		t.Fatalf("an incomplete transfer stored %v", got)
	}
	if got := lastSessionStatus(t, e.received("health-information/notify")); got != "FAILED" {
		t.Errorf("transfer notification %s, want FAILED", got)
	}
}

func TestCallbackAuthentication(t *testing.T) {
	e := setup(t, stores[0], abdm.V05, samples(t, defaultSamples...))
	cr := e.request()
	notify := map[string]any{"notification": map[string]any{"consentRequestId": cr, "status": "GRANTED", "consentArtefacts": []any{map[string]string{"id": "forged-artefact"}}}}
	for name, tok := range map[string]string{
		"forged":  e.sim.Token(e.clock.Now().Add(5*time.Minute), true),
		"expired": e.sim.Token(e.clock.Now().Add(-5*time.Minute), false),
		"none":    "",
		"garbage": "not.a.jwt",
	} {
		if got := e.sim.Deliver("notify", notify, "", tok); got != 401 {
			t.Errorf("%s token: HIU answered %d, want 401", name, got)
		}
	}
	if len(e.received("consents/fetch")) != 0 {
		t.Fatal("an unauthenticated notify made the HIU fetch an artefact")
	}
	// idempotency: the same valid notify twice fetches once
	good := e.sim.Token(e.clock.Now().Add(5*time.Minute), false)
	for i := 0; i < 2; i++ {
		if got := e.sim.DeliverWithID("notify", notify, "", "notify-1", good); got != 202 {
			t.Fatalf("valid notify %d: %d", i, got)
		}
	}
	if n := len(e.received("consents/fetch")); n != 1 {
		t.Fatalf("%d artefact fetches for one notify delivered twice, want 1", n)
	}
	// a push for a transaction the HIU never opened
	if got := e.sim.Deliver("transfer", map[string]any{"transactionId": "nope", "pageNumber": 1, "pageCount": 1}, "", good); got != 404 {
		t.Errorf("unknown transaction: %d, want 404", got)
	}
}

func TestRestartKeepsState(t *testing.T) {
	e := setup(t, stores[0], abdm.V05, samples(t, defaultSamples...))
	cr := e.request()
	e.open() // restart: state comes from the store
	e.sim.Decide(cr, abdm.StatusGranted)
	e.sim.Run()
	if _, err := e.fetch(); err != nil {
		t.Fatalf("after a restart between request and grant: %v", err)
	}
	// a restart between HI request and push keeps the transfer's key (sealed
	// in the database): the push is filed
	if _, err := e.fetch(); !errors.Is(err, abdm.ErrWaiting) {
		t.Fatal(err)
	}
	e.open()
	e.sim.Run()
	if _, err := e.fetch(); err != nil {
		t.Fatalf("push after a restart: %v, want it filed", err)
	}
	// with another state key, a pending transfer cannot be opened: the push
	// is refused, and the next fetch asks again
	if _, err := e.fetch(); !errors.Is(err, abdm.ErrWaiting) {
		t.Fatal(err)
	}
	e.stateKey = "b3RoZXIta2V5LW9mLXRoZS10ZXN0cy0zMi1ieXRlcyE="
	e.open()
	e.sim.Run()
	if _, err := e.fetch(); !errors.Is(err, abdm.ErrTransfer) {
		t.Fatalf("push under another state key: %v, want a failed transfer", err)
	}
	if _, err := e.fetch(); !errors.Is(err, abdm.ErrWaiting) {
		t.Fatal(err)
	}
	e.sim.Run()
	if _, err := e.fetch(); err != nil {
		t.Fatalf("after the new request: %v", err)
	}
}

// TestReplicas: two HIUs on one database (on PostgreSQL each with its own
// connection pool), as two gateway replicas: the consent request goes out
// from one, and every callback and push reaches the other, page by page
// alternately; the record is filed once, and a revocation received by
// either withdraws it.
func TestReplicas(t *testing.T) {
	for _, kind := range stores {
		t.Run(kind.name, func(t *testing.T) {
			e := setup(t, kind, abdm.V05, samples(t, defaultSamples...))
			a := e.hiu
			bStore := e.st
			if kind.name == "postgres" {
				bStore = reopen(t, e.st)
			}
			b, srvB := e.replica(bStore)
			e.sim.HIU = srvB // the gateway calls back the other replica
			e.sim.PageSize = 1
			cr := e.request() // through a
			e.sim.Decide(cr, abdm.StatusGranted)
			e.sim.Run() // grant, artefact, HI request and pages: all to b
			res, err := a.Fetch(context.Background(), adapters.FetchRequest{PatientID: patientID}, nil)
			if err != nil || res.Resources == 0 {
				t.Fatalf("fetch through a after pushes to b: %+v %v", res, err)
			}
			// the next pull goes out from b and its pushes reach a
			e.sim.HIU = e.srv
			if _, err := b.Fetch(context.Background(), adapters.FetchRequest{PatientID: patientID}, nil); !errors.Is(err, abdm.ErrWaiting) {
				t.Fatalf("second pull through b: %v", err)
			}
			e.sim.Run()
			if res, err := b.Fetch(context.Background(), adapters.FetchRequest{PatientID: patientID}, nil); err != nil || res.Resources == 0 {
				t.Fatalf("second pull: %+v %v", res, err)
			}
			rec := e.record()
			if rec["Consent"] != 1 || rec["Provenance"] == 0 || rec["Immunization"] == 0 {
				t.Fatalf("record: %v", rec)
			}
			e.sim.Decide(cr, abdm.StatusRevoked)
			e.sim.Run()
			if rec := e.record(); rec["Immunization"] != 0 {
				t.Fatalf("after revocation: %v", rec)
			}
		})
	}
}
