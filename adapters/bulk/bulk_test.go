package bulk_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/adaptertest"
	"github.com/fhirgate/fhirgate/adapters/bulk"
	"github.com/fhirgate/fhirgate/adapters/upstream"
	"github.com/fhirgate/fhirgate/fhir"
)

// script is a scripted Bulk Data server: the kick-off answers 202, the
// status URL answers what status returns, files are fixed.
type script struct {
	*httptest.Server
	mu      sync.Mutex
	kickoff func(w http.ResponseWriter, r *http.Request)
	status  func(w http.ResponseWriter, polls int)
	files   map[string]string
	polls   int
	queries []string
}

func newScript(t *testing.T) *script {
	s := &script{files: map[string]string{}}
	s.kickoff = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Location", s.URL+"/status")
		w.WriteHeader(http.StatusAccepted)
	}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		switch {
		case strings.HasSuffix(r.URL.Path, "/$export"):
			s.queries = append(s.queries, r.URL.RawQuery)
			s.kickoff(w, r)
		case r.URL.Path == "/status" && r.Method == http.MethodDelete:
			w.WriteHeader(http.StatusAccepted)
		case r.URL.Path == "/status":
			s.polls++
			s.status(w, s.polls)
		default:
			body, ok := s.files[r.URL.Path]
			if !ok {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "application/fhir+ndjson")
			w.Write([]byte(body))
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func manifest(s *script, extra string) func(http.ResponseWriter, int) {
	return func(w http.ResponseWriter, _ int) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(strings.ReplaceAll(`{"transactionTime":"2025-05-01T00:00:00Z","request":"x","requiresAccessToken":true,`+extra+`}`, "BASE", s.URL)))
	}
}

func openScript(t *testing.T, s *script, mod func(*bulk.Config)) (*bulk.Source, *adaptertest.FakeClock) {
	t.Helper()
	clock := adaptertest.NewFakeClock()
	retries := 1
	cfg := bulk.Config{Config: upstream.Config{BaseURL: s.URL, MaxRetries: &retries}}
	if mod != nil {
		mod(&cfg)
	}
	src, err := bulk.New("b", cfg, adapters.Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	return src, clock
}

func TestManifestAndFiles(t *testing.T) {
	long := `{"resourceType":"Observation","id":"long","note":[{"text":"` + strings.Repeat("a", 200<<10) + `"}]}`
	for _, tc := range []struct {
		name  string
		extra string
		files map[string]string
		mod   func(*bulk.Config)
		want  error
		msg   string
		check func(t *testing.T, got []*fhir.Resource, res adapters.Result)
	}{
		{name: "ok with blank lines, CRLF and a 200 KiB line",
			extra: `"output":[{"type":"Observation","url":"BASE/o.ndjson","count":3}],"error":[]`,
			files: map[string]string{"/o.ndjson": "\n" + `{"resourceType":"Observation","id":"a"}` + "\r\n\n" + long + "\n" + `{"resourceType":"Observation","id":"b"}`},
			check: func(t *testing.T, got []*fhir.Resource, res adapters.Result) {
				if len(got) != 3 || got[1].ID != "long" || res.ByType["Observation"] != 3 {
					t.Errorf("got %d resources, %+v", len(got), res)
				}
			}},
		{name: "deleted file",
			extra: `"output":[],"error":[],"deleted":[{"type":"Bundle","url":"BASE/d.ndjson"}]`,
			files: map[string]string{"/d.ndjson": `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Observation/x"}},{"request":{"method":"DELETE","url":"Condition/y"}}]}`},
			check: func(t *testing.T, _ []*fhir.Resource, res adapters.Result) {
				if strings.Join(res.Deleted, ",") != "Observation/x,Condition/y" {
					t.Errorf("deleted %v", res.Deleted)
				}
			}},
		{name: "error file that is not an OperationOutcome",
			extra: `"output":[],"error":[{"type":"OperationOutcome","url":"BASE/e.ndjson"}]`,
			files: map[string]string{"/e.ndjson": `{"resourceType":"Basic"}`},
			check: func(t *testing.T, _ []*fhir.Resource, res adapters.Result) {
				if len(res.Issues) != 1 || res.Issues[0].Code != "structure" {
					t.Errorf("issues %+v", res.Issues)
				}
			}},
		{name: "count mismatch", extra: `"output":[{"type":"Observation","url":"BASE/o.ndjson","count":5}],"error":[]`,
			files: map[string]string{"/o.ndjson": `{"resourceType":"Observation","id":"a"}`},
			want:  adapters.ErrMalformed, msg: "holds 1 resources, the manifest says 5"},
		{name: "line too long", extra: `"output":[{"type":"Observation","url":"BASE/o.ndjson"}],"error":[]`,
			files: map[string]string{"/o.ndjson": long}, mod: func(c *bulk.Config) { c.MaxLineBytes = 100 << 10 },
			want: adapters.ErrMalformed, msg: "longer than maxLineBytes"},
		{name: "bad line", extra: `"output":[{"type":"Observation","url":"BASE/o.ndjson"}],"error":[]`,
			files: map[string]string{"/o.ndjson": `{"resourceType":"Observation","id":"a"}` + "\n" + `{"resourceType":"Observation","id":"a",}`},
			want:  adapters.ErrMalformed, msg: "line 2"},
		{name: "missing file", extra: `"output":[{"type":"Observation","url":"BASE/gone.ndjson"}],"error":[]`,
			want: adapters.ErrNotFound, msg: "download Observation file"},
		{name: "manifest with unknown members", extra: `"output":[],"error":[],"extension":{"x":1}`},
		{name: "relative file url", extra: `"output":[{"type":"Observation","url":"/o.ndjson"}],"error":[]`,
			want: adapters.ErrMalformed, msg: "not absolute"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScript(t)
			s.status = manifest(s, tc.extra)
			for k, v := range tc.files {
				s.files[k] = v
			}
			src, _ := openScript(t, s, tc.mod)
			got, res, err := adapters.Collect(context.Background(), src, adapters.FetchRequest{PatientID: "p1"})
			if tc.want != nil {
				if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("err = %v, want %v with %q", err, tc.want, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !res.Watermark.Equal(time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC)) {
				t.Errorf("watermark %v", res.Watermark)
			}
			if tc.check != nil {
				tc.check(t, got, res)
			}
		})
	}
}

func TestManifestProblems(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		msg        string
	}{
		{"not json", `{"transactionTime":`, "not valid JSON"},
		{"no requiresAccessToken", `{"transactionTime":"2025-05-01T00:00:00Z","output":[]}`, "lacks requiresAccessToken"},
		{"bad transactionTime", `{"transactionTime":"yesterday","requiresAccessToken":false,"output":[]}`, "not an instant"},
		{"html", `<html></html>`, "markup"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScript(t)
			s.status = func(w http.ResponseWriter, _ int) { w.Write([]byte(tc.body)) }
			src, _ := openScript(t, s, nil)
			_, _, err := adapters.Collect(context.Background(), src, adapters.FetchRequest{PatientID: "p1"})
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want %q", err, tc.msg)
			}
		})
	}
}

// TestPollingBacksOff: without Retry-After the poll interval doubles up to
// its maximum; an export that never finishes ends in ErrTimeout at maxWait.
func TestPollingBacksOff(t *testing.T) {
	s := newScript(t)
	s.status = func(w http.ResponseWriter, _ int) { w.WriteHeader(http.StatusAccepted) }
	src, clock := openScript(t, s, func(c *bulk.Config) {
		c.PollInterval, c.MaxPollInterval, c.MaxWait = time.Second, 8*time.Second, time.Minute
	})
	_, _, err := adapters.Collect(context.Background(), src, adapters.FetchRequest{PatientID: "p1"})
	if !errors.Is(err, adapters.ErrTimeout) || !strings.Contains(err.Error(), "maxWait") {
		t.Fatalf("err = %v", err)
	}
	sl := clock.Sleeps()
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}
	for i, w := range want {
		if i >= len(sl) || sl[i] != w {
			t.Fatalf("sleeps %v, want to start %v", sl, want)
		}
	}
	var total time.Duration
	for _, d := range sl {
		total += d
	}
	if total > time.Minute {
		t.Errorf("waited %s in all, more than maxWait", total)
	}
}

func TestKickoff(t *testing.T) {
	t.Run("answers 200", func(t *testing.T) {
		s := newScript(t)
		s.kickoff = func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }
		src, _ := openScript(t, s, nil)
		_, err := src.StartExport(context.Background(), adapters.ExportRequest{Level: "group", GroupID: "g"})
		if !errors.Is(err, adapters.ErrMalformed) || !strings.Contains(err.Error(), "202 with Content-Location") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("query", func(t *testing.T) {
		s := newScript(t)
		src, _ := openScript(t, s, func(c *bulk.Config) { c.Types = []string{"Observation"} })
		since := time.Date(2025, 1, 2, 3, 4, 5, 0, time.FixedZone("", 2*3600))
		job, err := src.StartExport(context.Background(), adapters.ExportRequest{Level: "group", GroupID: "g", Types: []string{"Patient", "Observation"}, Since: since})
		if err != nil {
			t.Fatal(err)
		}
		want := "_outputFormat=application%2Ffhir%2Bndjson&_type=Observation,Patient&_since=2025-01-02T01:04:05.000Z"
		if s.queries[0] != want || job.StatusURL != s.URL+"/status" {
			t.Errorf("kick-off query %q, want %q; job %+v", s.queries[0], want, job)
		}
	})
	t.Run("bad requests", func(t *testing.T) {
		s := newScript(t)
		src, _ := openScript(t, s, nil)
		for _, er := range []adapters.ExportRequest{
			{Level: "system"},
			{Level: "group", GroupID: "a/b"},
			{Level: "group", GroupID: "g", Patients: []string{"p1"}},
		} {
			if _, err := src.StartExport(context.Background(), er); !errors.Is(err, adapters.ErrRejected) {
				t.Errorf("%+v: err = %v", er, err)
			}
		}
		if len(s.queries) != 0 {
			t.Errorf("%d kick-offs sent", len(s.queries))
		}
	})
}
