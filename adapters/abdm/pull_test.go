package abdm_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/abdm"
	"github.com/fhirgate/fhirgate/jobs"
)

// TestPullDrivesABDM runs the ABDM flow the way a user sees it: a $pull
// with the abdm source reports that it is waiting for the patient's grant
// (without using up its attempts), then completes once the HIP has pushed.
func TestPullDrivesABDM(t *testing.T) {
	for _, kind := range stores {
		t.Run(kind.name, func(t *testing.T) {
			e := setup(t, kind, abdm.V05, samples(t, defaultSamples...))
			e.cfg.PollInterval = 100 * time.Millisecond
			e.open()
			ctx := context.Background()
			svc, err := jobs.New(ctx, jobs.Config{Store: e.st, Sources: []adapters.Source{e.hiu}, PollInterval: 20 * time.Millisecond, MaxAttempts: 2})
			if err != nil {
				t.Fatal(err)
			}
			if err := svc.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer svc.Stop(ctx)
			pull, err := svc.Enqueue(ctx, patientID, []string{"abdm"})
			if err != nil {
				t.Fatal(err)
			}
			// wait (bounded) for the pull to report it is waiting for the grant
			waitFor(t, func() bool {
				e.sim.Run()
				st, err := svc.Status(ctx, pull)
				if testing.Verbose() && st != nil && len(st.Sources) > 0 {
					t.Logf("%+v %v", st.Sources[0], err)
				}
				return err == nil && !st.Done && len(st.Sources) == 1 && st.Sources[0].State == "waiting"
			})
			cr := e.sim.LastRequest()
			if cr == "" {
				t.Fatal("no consent request reached the gateway")
			}
			// more polls than MaxAttempts while waiting: snoozes are not failures
			time.Sleep(400 * time.Millisecond)
			if st, _ := svc.Status(ctx, pull); st.Done {
				t.Fatalf("the pull gave up while waiting for the grant: %+v", st)
			}
			e.sim.Decide(cr, abdm.StatusGranted)
			waitFor(t, func() bool {
				e.sim.Run()
				st, err := svc.Status(ctx, pull)
				return err == nil && st.Done
			})
			st, _ := svc.Status(ctx, pull)
			if st.Sources[0].State != "completed" {
				t.Fatalf("pull ended %+v", st.Sources[0])
			}
			rec := e.record()
			if rec["MedicationRequest"] == 0 || rec["Consent"] != 1 || rec["Provenance"] == 0 {
				t.Fatalf("record after the pull: %v", rec)
			}
			if !strings.Contains(st.Progress, "1 of 1") && !st.Done {
				t.Errorf("progress %q", st.Progress)
			}
		})
	}
}

// waitFor polls cond until it holds; the bound only keeps a broken test
// from hanging (it is not a performance assertion).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 600; i++ {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("condition not reached")
}
