package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/adaptertest"
	"github.com/fhirgate/fhirgate/adapters/fhirrest"
	"github.com/fhirgate/fhirgate/consolidate"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/jobs"
	"github.com/fhirgate/fhirgate/server"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/postgres"
	"github.com/fhirgate/fhirgate/storage/postgres/pgtest"
	"github.com/fhirgate/fhirgate/storage/sqlite"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

// TestPullOperation drives $pull over HTTP: three sources holding
// overlapping parts of one Synthea patient, then $everything must hold
// every distinct resource once, with a Provenance for each source.
func TestPullOperation(t *testing.T) {
	opens := map[string]func(t *testing.T) storage.Store{
		"sqlite": func(t *testing.T) storage.Store {
			s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "p.db"), sqlstore.Options{Registry: testRegistry})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"postgres": func(t *testing.T) storage.Store {
			s, err := postgres.Open(context.Background(), pgtest.Config(t), sqlstore.Options{Registry: testRegistry})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
	for name, open := range opens {
		t.Run(name, func(t *testing.T) {
			full := adaptertest.NewUpstream(t, adaptertest.ServerOptions{})
			var sources []adapters.Source
			for i := range 3 {
				up := adaptertest.NewUpstream(t, adaptertest.ServerOptions{Keep: adaptertest.Overlap(i, 3), Everything: i == 0})
				src, err := fhirrest.New(fmt.Sprintf("src-%d", i), fhirrest.Config{Config: up.Config}, up.Options)
				if err != nil {
					t.Fatal(err)
				}
				sources = append(sources, src)
			}
			st := open(t)
			defer st.Close()
			p := full.Patient(full.Patients()[0])
			if _, err := st.Create(context.Background(), p.WithMeta("local", "", time.Time{})); err != nil {
				t.Fatal(err)
			}
			svc, err := jobs.New(context.Background(), jobs.Config{Store: st, Sources: sources, PollInterval: 20 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if err := svc.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer svc.Stop(context.Background())
			srv := server.New(server.Config{Store: consolidate.View(st), Search: testRegistry, Pull: svc, BaseURL: "http://fhir.test"})
			do := func(method, path, body string) *httptest.ResponseRecorder {
				req := httptest.NewRequest(method, path, strings.NewReader(body))
				if body != "" {
					req.Header.Set("Content-Type", "application/fhir+json")
				}
				w := httptest.NewRecorder()
				srv.ServeHTTP(w, req)
				return w
			}

			routes := map[string]bool{}
			for _, r := range srv.Routes() {
				routes[r.Method+" "+r.Path] = true
			}
			if !routes["POST /Patient/:id/$pull"] || !routes["GET /_pull/:pull"] {
				t.Errorf("route table lacks $pull or its status: %v", routes)
			}
			for _, tc := range []struct {
				name, method, path, body string
				want                     int
			}{
				{"unknown patient", "POST", "/Patient/nobody/$pull", "", http.StatusNotFound},
				{"unknown source", "POST", "/Patient/local/$pull?source=nope", "", http.StatusBadRequest},
				{"unknown source in Parameters", "POST", "/Patient/local/$pull", `{"resourceType":"Parameters","parameter":[{"name":"source","valueString":"nope"}]}`, http.StatusBadRequest},
				{"not Parameters", "POST", "/Patient/local/$pull", `{"resourceType":"Patient"}`, http.StatusBadRequest},
				{"GET not allowed", "GET", "/Patient/local/$pull", "", http.StatusMethodNotAllowed},
				{"unknown pull", "GET", "/_pull/12345", "", http.StatusNotFound},
				{"garbage pull id", "GET", "/_pull/x';--", "", http.StatusNotFound},
			} {
				if w := do(tc.method, tc.path, tc.body); w.Code != tc.want {
					t.Errorf("%s: %d %s, want %d", tc.name, w.Code, w.Body, tc.want)
				}
			}

			w := do("POST", "/Patient/local/$pull", `{"resourceType":"Parameters","parameter":[{"name":"source","valueString":"src-0"},{"name":"source","valueString":"src-1"},{"name":"source","valueString":"src-2"}]}`)
			if w.Code != http.StatusAccepted {
				t.Fatalf("$pull: %d %s", w.Code, w.Body)
			}
			loc := w.Header().Get("Content-Location")
			if !strings.HasPrefix(loc, "http://fhir.test/_pull/") {
				t.Fatalf("Content-Location %q", loc)
			}
			var report jobs.Status
			deadline := time.Now().Add(50 * time.Second)
			for {
				w := do("GET", strings.TrimPrefix(loc, "http://fhir.test"), "")
				if w.Code == http.StatusOK {
					if err := json.Unmarshal(w.Body.Bytes(), &report); err != nil {
						t.Fatal(err)
					}
					break
				}
				if w.Code != http.StatusAccepted || w.Header().Get("X-Progress") == "" {
					t.Fatalf("poll: %d %q %s", w.Code, w.Header().Get("X-Progress"), w.Body)
				}
				if time.Now().After(deadline) {
					t.Fatal("pull did not finish")
				}
				time.Sleep(20 * time.Millisecond)
			}
			if len(report.Sources) != 3 {
				t.Fatalf("report: %+v", report)
			}
			for _, s := range report.Sources {
				if s.State != "completed" || s.Written == nil || s.Written.Received == 0 {
					t.Errorf("%s: %+v", s.Source, s)
				}
			}

			w = do("GET", "/Patient/local/$everything", "")
			if w.Code != http.StatusOK {
				t.Fatalf("$everything: %d %s", w.Code, w.Body)
			}
			root, err := fjson.Parse(w.Body.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]int{}
			provs := map[string]bool{}
			for _, e := range root.Get("entry").Items {
				r := e.Get("resource")
				var tags []*fjson.Value
				if m := r.Get("meta"); m != nil && m.Get("tag") != nil {
					tags = m.Get("tag").Items
				}
				for _, tg := range tags {
					switch tg.Get("system").String() {
					case consolidate.TagSourceID:
						got[tg.Get("code").String()]++
					case consolidate.TagDuplicateOf:
						t.Errorf("duplicate %s in $everything", r.Get("id").String())
					case consolidate.TagGenerated:
						for _, a := range r.Get("agent").Items {
							provs[a.Get("who").Get("identifier").Get("value").String()] = true
						}
					}
				}
			}
			for _, r := range full.Record(full.Patients()[0]) {
				if k := r.Type + "/" + r.ID; r.Type != "Patient" && got[k] != 1 {
					t.Errorf("%s appears %d times in $everything, want 1", k, got[k])
				}
			}
			for i := range 3 {
				if !provs[fmt.Sprintf("src-%d", i)] {
					t.Errorf("no Provenance for src-%d in $everything", i)
				}
			}
		})
	}
}
