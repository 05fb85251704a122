// Package adaptertest is the suite every source adapter passes, and the
// fake upstream it runs against: an httptest FHIR R4 server built from the
// shared Synthea bundles that answers reads, paged searches,
// Patient/$everything, Patient/$match and Bulk Data $export, issues SMART
// Backend Services tokens (checking the client assertion), and injects
// faults: 429 with Retry-After, 5xx, connection resets, hangs, bodies cut
// short, truncated and malformed JSON, HTML pages, looping next links,
// tokens expiring mid-pull and failing export jobs.
//
// An adapter package runs it in a few lines:
//
//	func TestSuite(t *testing.T) {
//		adaptertest.Run(t, func(t *testing.T, up *adaptertest.Upstream) adapters.Source {
//			src, err := mysource.New("test", mysource.Config{Config: up.Config}, up.Options)
//			if err != nil {
//				t.Fatal(err)
//			}
//			return src
//		})
//	}
//
// Time is faked (FakeClock): back-off and Retry-After cost nothing, and no
// test asserts on wall-clock time.
package adaptertest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/smart"
	"github.com/fhirgate/fhirgate/fhir"
)

// OpenFunc opens the adapter under test against up: it must use up.Config
// as its upstream.Config and up.Options as its adapters.Options.
type OpenFunc func(t *testing.T, up *Upstream) adapters.Source

// fullOptions offers everything a FHIR server can.
func fullOptions() ServerOptions {
	return ServerOptions{Everything: true, Match: true, Export: true}
}

// Run runs the suite. Parts that need a capability (Incremental,
// PatientFinder, BulkExporter) run only when the source has it; a fault the
// adapter never meets (a looping next link for a bulk adapter) is skipped.
func Run(t *testing.T, open OpenFunc) {
	t.Run("Fetch", func(t *testing.T) {
		t.Parallel()
		up := NewUpstream(t, fullOptions())
		fetchAndCheck(t, up, open(t, up), up.Patients()[0], nil)
	})
	t.Run("FetchWithoutEverything", func(t *testing.T) {
		t.Parallel()
		up := NewUpstream(t, ServerOptions{Export: true})
		fetchAndCheck(t, up, open(t, up), up.Patients()[0], nil)
	})
	t.Run("FetchOnePageAtATime", func(t *testing.T) {
		t.Parallel()
		up := NewUpstream(t, ServerOptions{Everything: true, Export: true, MaxPageSize: 1})
		fetchAndCheck(t, up, open(t, up), up.Patients()[0], nil)
	})
	t.Run("FetchTypes", func(t *testing.T) {
		t.Parallel()
		up := NewUpstream(t, fullOptions())
		fetchAndCheck(t, up, open(t, up), up.Patients()[0], []string{"Observation", "Condition"})
	})
	t.Run("FetchLargeResource", func(t *testing.T) {
		t.Parallel()
		opts := fullOptions()
		opts.LargeResource = true
		up := NewUpstream(t, opts)
		got := fetchAndCheck(t, up, open(t, up), up.Patients()[0], nil)
		if !slices.ContainsFunc(got, func(r *fhir.Resource) bool { return r.ID == "large-document" && len(r.Raw) > 64<<10 }) {
			t.Error("the resource larger than 64 KiB is missing")
		}
	})
	t.Run("FetchES384", func(t *testing.T) {
		t.Parallel()
		opts := fullOptions()
		opts.SigningAlg = smart.ES384
		up := NewUpstream(t, opts)
		fetchAndCheck(t, up, open(t, up), up.Patients()[0], nil)
	})
	t.Run("FetchBearer", func(t *testing.T) {
		t.Parallel()
		opts := fullOptions()
		opts.Auth = AuthBearer
		up := NewUpstream(t, opts)
		fetchAndCheck(t, up, open(t, up), up.Patients()[0], nil)
	})
	t.Run("WrongBearer", func(t *testing.T) {
		t.Parallel()
		opts := fullOptions()
		opts.Auth = AuthBearer
		up := NewUpstream(t, opts)
		up.Env[BearerEnv] = "not-the-token"
		_, _, err := collect(context.Background(), open(t, up), adapters.FetchRequest{PatientID: up.Patients()[0]})
		expectErr(t, err, adapters.ErrUnauthorized)
	})
	t.Run("SecondFetchReusesToken", func(t *testing.T) {
		t.Parallel()
		up := NewUpstream(t, fullOptions())
		src := open(t, up)
		for range 2 {
			if _, _, err := collect(context.Background(), src, adapters.FetchRequest{PatientID: up.Patients()[0]}); err != nil {
				t.Fatal(err)
			}
		}
		if n := up.TokensIssued(); n != 1 {
			t.Errorf("%d tokens issued for two fetches within the token's lifetime, want 1", n)
		}
		// After the lifetime, the adapter must renew before the token
		// expires, without a 401 first.
		up.Clock.Advance(5 * time.Minute)
		if _, _, err := collect(context.Background(), src, adapters.FetchRequest{PatientID: up.Patients()[0]}); err != nil {
			t.Fatal(err)
		}
		if n := up.TokensIssued(); n != 2 {
			t.Errorf("%d tokens issued, want 2 after the first expired", n)
		}
	})
	t.Run("UnknownPatient", func(t *testing.T) {
		t.Parallel()
		up := NewUpstream(t, fullOptions())
		_, _, err := collect(context.Background(), open(t, up), adapters.FetchRequest{PatientID: "no-such-patient"})
		expectErr(t, err, adapters.ErrPatientNotFound)
	})
	t.Run("SinkError", func(t *testing.T) {
		t.Parallel()
		up := NewUpstream(t, fullOptions())
		stop := errors.New("sink refuses")
		calls := 0
		_, err := open(t, up).Fetch(context.Background(), adapters.FetchRequest{PatientID: up.Patients()[0]}, func(*fhir.Resource) error {
			calls++
			return stop
		})
		if !errors.Is(err, stop) {
			t.Fatalf("err = %v, want the sink's error", err)
		}
		if calls != 1 {
			t.Errorf("sink called %d times after it failed, want 1", calls)
		}
	})
	t.Run("Canceled", func(t *testing.T) {
		t.Parallel()
		up := NewUpstream(t, fullOptions())
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, _, err := collect(ctx, open(t, up), adapters.FetchRequest{PatientID: up.Patients()[0]})
		expectErr(t, err, context.Canceled)
	})
	t.Run("FetchSince", func(t *testing.T) {
		t.Parallel()
		up := NewUpstream(t, fullOptions())
		src := open(t, up)
		inc, ok := src.(adapters.Incremental)
		if !ok {
			t.Skip("not Incremental")
		}
		pid := up.Patients()[0]
		rec := up.Record(pid)
		since := rec[len(rec)/2].LastUpdated
		var want []*fhir.Resource
		for _, r := range rec {
			if r.LastUpdated.After(since) {
				want = append(want, r)
			}
		}
		var got []*fhir.Resource
		res, err := inc.FetchSince(context.Background(), adapters.FetchRequest{PatientID: pid}, since, func(r *fhir.Resource) error {
			got = append(got, r)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		compare(t, got, want)
		checkResult(t, res, got)
	})
	t.Run("FindPatient", func(t *testing.T) { findPatient(t, open) })
	t.Run("Export", func(t *testing.T) { export(t, open) })
	t.Run("Faults", func(t *testing.T) { faults(t, open) })
}

func collect(ctx context.Context, src adapters.Source, req adapters.FetchRequest) ([]*fhir.Resource, adapters.Result, error) {
	var got []*fhir.Resource
	res, err := src.Fetch(ctx, req, func(r *fhir.Resource) error {
		got = append(got, r)
		return nil
	})
	return got, res, err
}

// fetchAndCheck fetches the patient's record and checks it is the
// upstream's, exactly, restricted to types when given.
func fetchAndCheck(t *testing.T, up *Upstream, src adapters.Source, pid string, types []string) []*fhir.Resource {
	t.Helper()
	got, res, err := collect(context.Background(), src, adapters.FetchRequest{PatientID: pid, Types: types})
	if err != nil {
		t.Fatalf("fetch: %v (token endpoint: %v)", err, up.AuthErrors())
	}
	var want []*fhir.Resource
	for _, r := range up.Record(pid) {
		if types == nil || slices.Contains(types, r.Type) {
			want = append(want, r)
		}
	}
	compare(t, got, want)
	checkResult(t, res, got)
	if res.Watermark.IsZero() || res.Watermark.After(up.Clock.Now()) {
		t.Errorf("watermark %v, want a time at the upstream no later than %v", res.Watermark, up.Clock.Now())
	}
	return got
}

// compare checks that got holds every resource of want exactly once, byte
// for byte as the upstream holds it, and nothing else.
func compare(t *testing.T, got, want []*fhir.Resource) {
	t.Helper()
	wantBy := map[string]*fhir.Resource{}
	for _, r := range want {
		wantBy[r.Type+"/"+r.ID] = r
	}
	seen := map[string]bool{}
	for _, r := range got {
		k := r.Type + "/" + r.ID
		if seen[k] {
			t.Errorf("%s returned twice", k)
			continue
		}
		seen[k] = true
		w, ok := wantBy[k]
		if !ok {
			t.Errorf("%s returned but not expected", k)
			continue
		}
		if string(w.Raw) != string(r.Raw) {
			t.Errorf("%s differs from the upstream's copy:\n got %.300s\nwant %.300s", k, r.Raw, w.Raw)
		}
	}
	var missing []string
	for k := range wantBy {
		if !seen[k] {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		t.Errorf("%d of %d resources missing, e.g. %v", len(missing), len(want), missing[:min(5, len(missing))])
	}
}

func checkResult(t *testing.T, res adapters.Result, got []*fhir.Resource) {
	t.Helper()
	if res.Resources != len(got) {
		t.Errorf("Result.Resources = %d, the sink got %d", res.Resources, len(got))
	}
	by := map[string]int{}
	for _, r := range got {
		by[r.Type]++
	}
	for typ, n := range by {
		if res.ByType[typ] != n {
			t.Errorf("Result.ByType[%s] = %d, want %d", typ, res.ByType[typ], n)
		}
	}
	if res.Method == "" {
		t.Error("Result.Method is empty")
	}
	if res.Requests == 0 {
		t.Error("Result.Requests is 0")
	}
}

func expectErr(t *testing.T, err, want error) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want errors.Is %v", err, want)
	}
	var ae *adapters.Error
	if errors.Is(want, context.Canceled) {
		return
	}
	if !errors.As(err, &ae) || ae.Source == "" {
		t.Errorf("err = %v: not an *adapters.Error naming the source", err)
	}
	if strings.Contains(err.Error(), "?") {
		t.Errorf("err = %v: contains a query string (identifiers must not reach logs)", err)
	}
}

func findPatient(t *testing.T, open OpenFunc) {
	for _, tc := range []struct {
		name   string
		opts   ServerOptions
		query  func(p *fhir.Resource) adapters.PatientQuery
		method string
		want   error
	}{
		{"Identifier", fullOptions(), func(p *fhir.Resource) adapters.PatientQuery {
			id := items(p.Root().Get("identifier"))[0]
			return adapters.PatientQuery{Identifiers: []adapters.Identifier{
				{System: "urn:example:unknown", Value: "x"},
				{System: id.Get("system").String(), Value: id.Get("value").String()},
			}}
		}, "identifier", nil},
		{"Match", fullOptions(), demographics, "match", nil},
		{"Demographics", ServerOptions{}, demographics, "demographics", nil},
		{"Unknown", fullOptions(), func(*fhir.Resource) adapters.PatientQuery {
			return adapters.PatientQuery{Identifiers: []adapters.Identifier{{System: "urn:x", Value: "nobody"}},
				Family: "Nobody", BirthDate: "1900-01-01"}
		}, "", adapters.ErrPatientNotFound},
		{"NameAloneIsNotEnough", ServerOptions{}, func(p *fhir.Resource) adapters.PatientQuery {
			q := demographics(p)
			q.BirthDate = ""
			return q
		}, "", adapters.ErrPatientNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := NewUpstream(t, tc.opts)
			pf, ok := open(t, up).(adapters.PatientFinder)
			if !ok {
				t.Skip("not a PatientFinder")
			}
			pid := up.Patients()[0]
			ms, err := pf.FindPatient(context.Background(), tc.query(up.Patient(pid)))
			if tc.want != nil {
				expectErr(t, err, tc.want)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) != 1 || ms[0].ID != pid || ms[0].Method != tc.method || ms[0].Resource == nil {
				t.Fatalf("matches = %+v, want one %s match of %s", ms, tc.method, pid)
			}
			if tc.method != "demographics" && !ms[0].Certain {
				t.Errorf("%s match not certain", tc.method)
			}
		})
	}
}

func demographics(p *fhir.Resource) adapters.PatientQuery {
	n := items(p.Root().Get("name"))[0]
	return adapters.PatientQuery{
		Family:    n.Get("family").String(),
		Given:     []string{items(n.Get("given"))[0].String()},
		BirthDate: p.Root().Get("birthDate").String(),
		Gender:    p.Root().Get("gender").String(),
	}
}

func export(t *testing.T, open OpenFunc) {
	for _, tc := range []struct {
		name string
		opts ServerOptions
		req  adapters.ExportRequest
	}{
		{"Group", ServerOptions{Export: true}, adapters.ExportRequest{Level: "group", GroupID: GroupID}},
		{"Patient", ServerOptions{Export: true}, adapters.ExportRequest{Level: "patient"}},
		{"Gzip", ServerOptions{Export: true, GzipFiles: true}, adapters.ExportRequest{Level: "group", GroupID: GroupID}},
		{"OpenFiles", ServerOptions{Export: true, OpenFiles: true}, adapters.ExportRequest{Level: "group", GroupID: GroupID}},
		{"ErrorFile", ServerOptions{Export: true, ErrorFile: true}, adapters.ExportRequest{Level: "group", GroupID: GroupID}},
		{"Types", ServerOptions{Export: true}, adapters.ExportRequest{Level: "group", GroupID: GroupID, Types: []string{"Patient", "Encounter"}}},
		{"Since", ServerOptions{Export: true}, adapters.ExportRequest{Level: "group", GroupID: GroupID, Since: DataEpoch.Add(200 * time.Second)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.opts.Bundles = SyntheaBundles(t)[:2]
			up := NewUpstream(t, tc.opts)
			be, ok := open(t, up).(adapters.BulkExporter)
			if !ok {
				t.Skip("not a BulkExporter")
			}
			ctx := context.Background()
			job, err := be.StartExport(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			var progress []string
			m, err := be.WaitExport(ctx, job, func(p string) { progress = append(progress, p) })
			if err != nil {
				t.Fatal(err)
			}
			if len(progress) != 2 || !strings.HasSuffix(progress[0], "% complete") {
				t.Errorf("progress = %q, want the two X-Progress values", progress)
			}
			if sl := up.Clock.Sleeps(); !slices.Contains(sl, 3*time.Second) {
				t.Errorf("sleeps %v: the status Retry-After of 3s was not honoured", sl)
			}
			var got []*fhir.Resource
			res, err := be.ReadExport(ctx, m, func(r *fhir.Resource) error {
				got = append(got, r)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			var want []*fhir.Resource
			seen := map[string]bool{}
			for _, pid := range up.Patients() {
				for _, r := range up.Record(pid) {
					k := r.Type + "/" + r.ID
					if seen[k] || len(tc.req.Types) > 0 && !slices.Contains(tc.req.Types, r.Type) ||
						!tc.req.Since.IsZero() && !r.LastUpdated.After(tc.req.Since) {
						continue
					}
					seen[k] = true
					want = append(want, r)
				}
			}
			compare(t, got, want)
			checkResult(t, res, got)
			if !res.Watermark.Equal(job.Started) && !res.Watermark.Equal(m.TransactionTime) {
				t.Errorf("watermark %v, want the manifest's transactionTime %v", res.Watermark, m.TransactionTime)
			}
			if tc.opts.ErrorFile {
				if len(res.Issues) != 1 || res.Issues[0].Code != "processing" {
					t.Errorf("issues = %+v, want the error file's one issue", res.Issues)
				}
			} else if len(res.Issues) != 0 {
				t.Errorf("unexpected issues %+v", res.Issues)
			}
		})
	}
	t.Run("Cancel", func(t *testing.T) {
		t.Parallel()
		up := NewUpstream(t, ServerOptions{Export: true})
		be, ok := open(t, up).(adapters.BulkExporter)
		if !ok {
			t.Skip("not a BulkExporter")
		}
		ctx := context.Background()
		job, err := be.StartExport(ctx, adapters.ExportRequest{Level: "group", GroupID: GroupID})
		if err != nil {
			t.Fatal(err)
		}
		if err := be.CancelExport(ctx, job); err != nil {
			t.Fatal(err)
		}
		if up.Canceled() != 1 {
			t.Errorf("%d jobs deleted at the upstream, want 1", up.Canceled())
		}
		_, err = be.WaitExport(ctx, job, nil)
		expectErr(t, err, adapters.ErrExportFailed)
	})
	t.Run("FetchDeletesJob", func(t *testing.T) {
		t.Parallel()
		up := NewUpstream(t, ServerOptions{Export: true})
		src := open(t, up)
		if _, ok := src.(adapters.BulkExporter); !ok {
			t.Skip("not a BulkExporter")
		}
		if _, _, err := collect(context.Background(), src, adapters.FetchRequest{PatientID: up.Patients()[0]}); err != nil {
			t.Fatal(err)
		}
		if up.Canceled() != 1 {
			t.Errorf("%d jobs deleted after a fetch, want 1 (the source may clean up)", up.Canceled())
		}
	})
}

// faultCase is one injected failure and what it must end in.
type faultCase struct {
	name  string
	fault *Fault
	opts  func(*ServerOptions)
	// timeout, when set, replaces the per-request time-out.
	timeout time.Duration
	// want is the error the fetch must end in; nil means it must succeed
	// with the complete record.
	want  error
	check func(t *testing.T, up *Upstream, res adapters.Result, err error)
}

func faultCases() []faultCase {
	sleptAbout := func(lo, hi time.Duration) func(*testing.T, *Upstream, adapters.Result, error) {
		return func(t *testing.T, up *Upstream, _ adapters.Result, _ error) {
			if !slices.ContainsFunc(up.Clock.Sleeps(), func(d time.Duration) bool { return d >= lo && d <= hi }) {
				t.Errorf("sleeps %v: none in [%s, %s] as Retry-After asked", up.Clock.Sleeps(), lo, hi)
			}
		}
	}
	retried := func(t *testing.T, _ *Upstream, res adapters.Result, _ error) {
		if res.Retries == 0 {
			t.Error("Result.Retries = 0 after a retried failure")
		}
	}
	onStatus := []Kind{KindStatus}
	return []faultCase{
		{name: "429-retry-after-seconds", fault: &Fault{Do: Status, Status: http.StatusTooManyRequests, RetryAfter: "7", Nth: 2},
			check: sleptAbout(7*time.Second, 7*time.Second)},
		{name: "429-retry-after-date", fault: &Fault{Do: Status, Status: http.StatusTooManyRequests, RetryAfterDate: 5 * time.Second, Nth: 2},
			check: sleptAbout(4*time.Second, 5*time.Second)},
		{name: "429-retry-after-too-long", fault: &Fault{Do: Status, Status: http.StatusTooManyRequests, RetryAfter: "3600", Times: Forever},
			want: adapters.ErrRateLimited, check: func(t *testing.T, _ *Upstream, _ adapters.Result, err error) {
				var ae *adapters.Error
				if !errors.As(err, &ae) || ae.RetryAfter != time.Hour {
					t.Errorf("err = %#v, want RetryAfter 1h for the job runner", err)
				}
			}},
		{name: "500-once", fault: &Fault{Do: Status, Status: http.StatusInternalServerError, Nth: 2}, check: retried},
		{name: "503-twice", fault: &Fault{Do: Status, Status: http.StatusServiceUnavailable, Nth: 3, Times: 2}, check: retried},
		{name: "503-forever", fault: &Fault{Do: Status, Status: http.StatusServiceUnavailable, Times: Forever}, want: adapters.ErrUnavailable},
		// Go's transport itself retries a GET whose reused connection
		// resets, so the adapter may not see this one.
		{name: "connection-reset-once", fault: &Fault{Do: Reset, Nth: 2}},
		{name: "connection-reset-forever", fault: &Fault{Do: Reset, Times: Forever}, want: adapters.ErrUnavailable},
		{name: "timeout-once", fault: &Fault{Do: Hang, Nth: 2}, timeout: 300 * time.Millisecond, check: retried},
		{name: "timeout-forever", fault: &Fault{Do: Hang, Times: Forever}, timeout: 200 * time.Millisecond, want: adapters.ErrTimeout},
		{name: "body-cut-short-once", fault: &Fault{Do: CutBody, Nth: 2}, check: retried},
		{name: "stalled-mid-body-once", fault: &Fault{Do: Stall, Nth: 2}, timeout: 300 * time.Millisecond, check: retried},
		{name: "stalled-mid-body-forever", fault: &Fault{Do: Stall, Times: Forever}, timeout: 200 * time.Millisecond, want: adapters.ErrTimeout},
		{name: "truncated-json", fault: &Fault{Do: TruncateJSON, Nth: 2, Times: Forever}, want: adapters.ErrMalformed},
		{name: "malformed-json", fault: &Fault{Do: MalformedJSON, Nth: 2, Times: Forever}, want: adapters.ErrMalformed},
		{name: "html-page", fault: &Fault{Do: HTML, Times: Forever}, want: adapters.ErrNotFHIR},
		{name: "next-link-loops", fault: &Fault{Do: LoopNext, On: []Kind{KindSearch, KindEverything}, Times: Forever}, want: adapters.ErrPageLoop},
		{name: "token-expired-mid-pull", fault: &Fault{Do: ExpireToken, Nth: 3},
			check: func(t *testing.T, up *Upstream, _ adapters.Result, _ error) {
				if n := up.TokensIssued(); n != 2 {
					t.Errorf("%d tokens issued, want 2 (one renewal after the 401)", n)
				}
			}},
		{name: "unauthorized", fault: &Fault{Do: Status, Status: http.StatusUnauthorized, Times: Forever}, want: adapters.ErrUnauthorized},
		{name: "forbidden", fault: &Fault{Do: Status, Status: http.StatusForbidden, Times: Forever}, want: adapters.ErrUnauthorized},
		{name: "metadata-503-once", fault: &Fault{Do: Status, Status: http.StatusServiceUnavailable, On: []Kind{KindMetadata}}, check: retried},
		{name: "token-endpoint-503-once", fault: &Fault{Do: Status, Status: http.StatusServiceUnavailable, On: []Kind{KindToken}}, check: retried},
		{name: "token-endpoint-refuses", fault: &Fault{Do: Status, Status: http.StatusUnauthorized, On: []Kind{KindToken}, Times: Forever},
			want: adapters.ErrUnauthorized},
		{name: "export-job-fails", fault: &Fault{Do: ExportFail, On: onStatus}, want: adapters.ErrExportFailed},
		{name: "export-poll-429", fault: &Fault{Do: Status, Status: http.StatusTooManyRequests, RetryAfter: "11", On: onStatus},
			check: sleptAbout(11*time.Second, 11*time.Second)},
		{name: "export-poll-503-once", fault: &Fault{Do: Status, Status: http.StatusServiceUnavailable, On: onStatus}},
		{name: "export-kickoff-429", fault: &Fault{Do: Status, Status: http.StatusTooManyRequests, RetryAfter: "13", On: []Kind{KindKickoff}},
			check: sleptAbout(13*time.Second, 13*time.Second)},
	}
}

func faults(t *testing.T, open OpenFunc) {
	for _, everything := range []bool{true, false} {
		for _, tc := range faultCases() {
			name := tc.name
			if !everything {
				name += "/without-everything"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				opts := fullOptions()
				opts.Everything = everything
				runFault(t, open, tc, opts)
			})
		}
	}
}

func runFault(t *testing.T, open OpenFunc, tc faultCase, opts ServerOptions) {
	opts.Faults = []*Fault{tc.fault}
	if tc.opts != nil {
		tc.opts(&opts)
	}
	up := NewUpstream(t, opts)
	if tc.timeout > 0 {
		up.Config.Timeout = tc.timeout
	}
	src := open(t, up)
	pid := up.Patients()[0]
	got, res, err := collect(context.Background(), src, adapters.FetchRequest{PatientID: pid})
	if tc.fault.Hits() == 0 {
		if err != nil {
			t.Fatalf("fetch failed although the fault was never met: %v", err)
		}
		t.Skipf("the adapter made no %v request", tc.fault.On)
	}
	if tc.want == nil {
		if err != nil {
			t.Fatalf("fetch did not recover from %v: %v", tc.fault, err)
		}
		compare(t, got, up.Record(pid))
		checkResult(t, res, got)
	} else {
		expectErr(t, err, tc.want)
		noDuplicates(t, got)
	}
	if tc.check != nil {
		tc.check(t, up, res, err)
	}
}

// noDuplicates checks the partial stream of a failed fetch.
func noDuplicates(t *testing.T, got []*fhir.Resource) {
	t.Helper()
	seen := map[string]bool{}
	for _, r := range got {
		k := fmt.Sprintf("%s/%s", r.Type, r.ID)
		if seen[k] {
			t.Errorf("%s passed to the sink twice before the failure", k)
		}
		seen[k] = true
	}
}
