package upstream_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/adaptertest"
	"github.com/fhirgate/fhirgate/adapters/upstream"
)

func newClient(t *testing.T, cfg upstream.Config, clock adapters.Clock, env map[string]string) *upstream.Client {
	t.Helper()
	c, err := upstream.New("test-source", cfg, adapters.Options{Clock: clock, LookupEnv: func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func intp(n int) *int { return &n }

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"7", 7 * time.Second, true},
		{" 0 ", 0, true},
		{"120", 2 * time.Minute, true},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
		{"", 0, false},
		{"999999999999", 0, false},
		{"Sun, 01 Jun 2025 12:00:05 GMT", 5 * time.Second, true},
		{"Sunday, 01-Jun-25 12:00:30 GMT", 30 * time.Second, true},
		{"Sun, 01 Jun 2025 11:00:00 GMT", 0, true}, // in the past: now
	} {
		got, ok := upstream.ParseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestBackoff: waits grow exponentially with jitter, within [d/2, d] and
// never above maxRetryDelay.
func TestBackoff(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	clock := adaptertest.NewFakeClock()
	c := newClient(t, upstream.Config{BaseURL: srv.URL, MaxRetries: intp(8), RetryDelay: 100 * time.Millisecond, MaxRetryDelay: 3 * time.Second}, clock, nil)
	_, err := c.Do(context.Background(), &upstream.Request{Op: "probe", URL: "x"})
	if !errors.Is(err, adapters.ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	sleeps := clock.Sleeps()
	if len(sleeps) != 8 || hits.Load() != 9 {
		t.Fatalf("%d sleeps, %d requests; want 8 and 9", len(sleeps), hits.Load())
	}
	for i, d := range sleeps {
		full := min(100*time.Millisecond<<i, 3*time.Second)
		if d < full/2 || d > full {
			t.Errorf("retry %d waited %s, want within [%s, %s]", i+1, d, full/2, full)
		}
	}
	var ae *adapters.Error
	if !errors.As(err, &ae) || ae.Attempts != 9 || ae.Status != 503 || ae.Source != "test-source" || ae.Op != "probe" {
		t.Errorf("err = %#v", err)
	}
}

func TestRetryAfterTooLong(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "600")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	clock := adaptertest.NewFakeClock()
	c := newClient(t, upstream.Config{BaseURL: srv.URL, MaxRetryDelay: time.Minute}, clock, nil)
	_, err := c.Do(context.Background(), &upstream.Request{URL: "x"})
	var ae *adapters.Error
	if !errors.Is(err, adapters.ErrRateLimited) || !errors.As(err, &ae) || ae.RetryAfter != 10*time.Minute || ae.Attempts != 1 {
		t.Fatalf("err = %v", err)
	}
	if len(clock.Sleeps()) != 0 {
		t.Errorf("slept %v although the wait was refused", clock.Sleeps())
	}
}

func TestRateLimit(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	clock := adaptertest.NewFakeClock()
	c := newClient(t, upstream.Config{BaseURL: srv.URL, RateLimit: 10, RateBurst: 2}, clock, nil)
	for range 7 {
		if _, err := c.Do(context.Background(), &upstream.Request{URL: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	var total time.Duration
	for _, d := range clock.Sleeps() {
		total += d
	}
	// Two go at once (burst), the other five at 10 per second.
	if total < 490*time.Millisecond || total > 510*time.Millisecond {
		t.Errorf("slept %s in all (%v), want 500ms", total, clock.Sleeps())
	}
}

func TestConcurrencyLimit(t *testing.T) {
	var inFlight, peak atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(10 * time.Millisecond) // let requests overlap
		inFlight.Add(-1)
	}))
	defer srv.Close()
	c := newClient(t, upstream.Config{BaseURL: srv.URL, Concurrency: 2}, nil, nil)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := c.Do(context.Background(), &upstream.Request{URL: "x"}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > 2 {
		t.Errorf("%d requests in flight at once, limit 2", p)
	}
}

// TestCredentialsStayHome: the token goes only to the source's origin unless
// the request says otherwise (Bulk Data files with requiresAccessToken).
func TestCredentialsStayHome(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]string{}
	h := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen[name+r.URL.Path] = r.Header.Get("Authorization")
			mu.Unlock()
		}
	}
	home := httptest.NewServer(h("home"))
	defer home.Close()
	other := httptest.NewServer(h("other"))
	defer other.Close()
	c := newClient(t, upstream.Config{BaseURL: home.URL + "/fhir", Auth: upstream.Auth{Type: upstream.AuthBearer, TokenEnv: "T"}},
		nil, map[string]string{"T": "secret-token"})
	ctx := context.Background()
	for _, r := range []*upstream.Request{
		{URL: "Patient/1"},
		{URL: other.URL + "/default"},
		{URL: other.URL + "/always", Auth: upstream.AuthAlways},
		{URL: home.URL + "/omit", Auth: upstream.AuthOmit},
	} {
		if _, err := c.Do(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{
		"home/fhir/Patient/1": "Bearer secret-token",
		"other/default":       "",
		"other/always":        "Bearer secret-token",
		"home/omit":           "",
	}
	for k, v := range want {
		if seen[k] != v {
			t.Errorf("%s got Authorization %q, want %q", k, seen[k], v)
		}
	}
}

func TestBodies(t *testing.T) {
	gz := func(s string) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(s))
		zw.Close()
		return b.Bytes()
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept-Encoding") != "gzip" {
			t.Errorf("Accept-Encoding = %q", r.Header.Get("Accept-Encoding"))
		}
		switch r.URL.Path {
		case "/encoded":
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(gz(`{"resourceType":"Patient"}`))
		case "/raw-gzip":
			w.Write(gz(`{"resourceType":"Basic"}`))
		case "/big":
			w.Write(bytes.Repeat([]byte("x"), 2048))
		case "/empty-gzip":
			w.Header().Set("Content-Encoding", "gzip")
		}
	}))
	defer srv.Close()
	c := newClient(t, upstream.Config{BaseURL: srv.URL, MaxResponseBytes: 1024}, adaptertest.NewFakeClock(), nil)
	ctx := context.Background()
	for path, want := range map[string]string{"encoded": `{"resourceType":"Patient"}`, "raw-gzip": `{"resourceType":"Basic"}`, "empty-gzip": ""} {
		resp, err := c.Do(ctx, &upstream.Request{URL: path})
		if err != nil || string(resp.Body) != want {
			t.Errorf("%s: %q, %v", path, resp.Body, err)
		}
	}
	_, err := c.Do(ctx, &upstream.Request{URL: "big"})
	var ae *adapters.Error
	if !errors.Is(err, adapters.ErrMalformed) || !errors.As(err, &ae) || ae.Attempts != 1 {
		t.Errorf("oversized body: %v", err)
	}
	st, err := c.Open(ctx, &upstream.Request{URL: "encoded"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(st.Body)
	st.Body.Close()
	if string(b) != `{"resourceType":"Patient"}` {
		t.Errorf("stream = %q", b)
	}
}

// TestErrorsAreSafeToLog: no query string (identifiers), no token.
func TestErrorsAreSafeToLog(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found","diagnostics":"no patient with SSN 123-45-6789"}]}`))
	}))
	defer srv.Close()
	c := newClient(t, upstream.Config{BaseURL: srv.URL, Auth: upstream.Auth{Type: upstream.AuthBearer, TokenEnv: "T"}},
		adaptertest.NewFakeClock(), map[string]string{"T": "tok-secret"})
	_, err := c.Do(context.Background(), &upstream.Request{Op: "find", URL: "Patient?identifier=ssn|123-45-6789"})
	var ae *adapters.Error
	if !errors.Is(err, adapters.ErrNotFound) || !errors.As(err, &ae) {
		t.Fatalf("err = %v", err)
	}
	msg := err.Error()
	for _, bad := range []string{"123-45-6789", "identifier", "tok-secret"} {
		if strings.Contains(msg, bad) {
			t.Errorf("error %q contains %q", msg, bad)
		}
	}
	if !strings.Contains(msg, "GET /Patient") || !strings.Contains(msg, "not-found") {
		t.Errorf("error %q lacks the path or the issue code", msg)
	}
	if ae.Outcome == nil || ae.Outcome.Issue[0].Diagnostics == "" {
		t.Error("the OperationOutcome is not kept for the caller")
	}
}

func TestStreamIdleTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("first line\n"))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c := newClient(t, upstream.Config{BaseURL: srv.URL, Timeout: 100 * time.Millisecond}, nil, nil)
	st, err := c.Open(context.Background(), &upstream.Request{URL: "file"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Body.Close()
	b, err := io.ReadAll(st.Body)
	if !errors.Is(err, adapters.ErrTimeout) || string(b) != "first line\n" {
		t.Fatalf("read %q, %v; want the first line then a time-out", b, err)
	}
}

func TestCanceledDuringBackoff(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	clock := cancelingClock{cancel: cancel, FakeClock: adaptertest.NewFakeClock()}
	c := newClient(t, upstream.Config{BaseURL: srv.URL}, clock, nil)
	_, err := c.Do(ctx, &upstream.Request{URL: "x"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

// cancelingClock cancels the request's context when it is asked to sleep.
type cancelingClock struct {
	*adaptertest.FakeClock
	cancel context.CancelFunc
}

func (c cancelingClock) Sleep(ctx context.Context, d time.Duration) error {
	c.cancel()
	return c.FakeClock.Sleep(ctx, d)
}

func TestConfigValidate(t *testing.T) {
	env := func(k string) (string, bool) {
		return map[string]string{"SET": "x", "EMPTY": ""}[k], k == "SET" || k == "EMPTY"
	}
	for _, tc := range []struct {
		name string
		cfg  upstream.Config
		want []string
	}{
		{"ok loopback http", upstream.Config{BaseURL: "http://127.0.0.1:8080/fhir"}, nil},
		{"ok localhost", upstream.Config{BaseURL: "http://localhost/fhir"}, nil},
		{"ok bearer", upstream.Config{BaseURL: "https://x/fhir", Auth: upstream.Auth{Type: "bearer", TokenEnv: "SET"}}, nil},
		{"missing base", upstream.Config{}, []string{"baseURL: is required"}},
		{"relative base", upstream.Config{BaseURL: "/fhir"}, []string{"not an absolute URL"}},
		{"plain http", upstream.Config{BaseURL: "http://ehr.example.org"}, []string{"must use https"}},
		{"ftp", upstream.Config{BaseURL: "ftp://ehr.example.org"}, []string{"must be an https URL"}},
		{"negatives", upstream.Config{BaseURL: "https://x", Timeout: -1, Concurrency: -1, RateLimit: -1, MaxRetries: intp(-1)},
			[]string{"timeout: must not be negative", "concurrency: must not be negative", "rateLimit: must not be negative", "maxRetries: must not be negative"}},
		{"unknown auth", upstream.Config{BaseURL: "https://x", Auth: upstream.Auth{Type: "kerberos"}}, []string{"auth.type: must be one of"}},
		{"bearer without env", upstream.Config{BaseURL: "https://x", Auth: upstream.Auth{Type: "bearer"}}, []string{"auth.tokenEnv: is required"}},
		{"bearer empty env", upstream.Config{BaseURL: "https://x", Auth: upstream.Auth{Type: "bearer", TokenEnv: "EMPTY"}}, []string{"EMPTY is not set"}},
		{"client-secret", upstream.Config{BaseURL: "https://x", Auth: upstream.Auth{Type: "client-secret", SecretEnv: "SET", PrivateKeyFile: "k.pem"}},
			[]string{"auth.clientID: is required", "auth.privateKeyFile: is not used by auth type client-secret"}},
		{"smart bad alg", upstream.Config{BaseURL: "https://x", Auth: upstream.Auth{Type: "smart-backend", ClientID: "c", PrivateKeyFile: "/none.pem", SigningAlg: "HS256", TokenURL: "http://idp.example.org/token"}},
			[]string{"auth.signingAlg: must be RS384 or ES384", "auth.privateKeyFile:", "auth.tokenURL:"}},
		{"ok smart-patient public", upstream.Config{BaseURL: "https://x", Auth: upstream.Auth{Type: "smart-patient", ClientID: "c"}}, nil},
		{"ok smart-patient confidential", upstream.Config{BaseURL: "https://x", Auth: upstream.Auth{Type: "smart-patient", ClientID: "c", SecretEnv: "SET", Scopes: []string{"launch/patient", "patient/*.rs", "offline_access"}}}, nil},
		{"smart-patient bad", upstream.Config{BaseURL: "https://x", Auth: upstream.Auth{Type: "smart-patient", SecretEnv: "EMPTY", TokenURL: "https://x/token", Scopes: []string{"system/*.rs"}}},
			[]string{"auth.clientID: is required", "EMPTY is not set", "must include launch/patient", "must include a patient/ scope", "must not ask for system/ or user/", "auth.tokenURL: is not used by auth type smart-patient"}},
		{"none with extras", upstream.Config{BaseURL: "https://x", Auth: upstream.Auth{TokenEnv: "SET"}}, []string{"auth.tokenEnv: is not used by auth type none"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &adapters.Problems{}
			tc.cfg.Validate(p, adapters.Options{LookupEnv: env})
			var got []string
			for _, it := range p.Items {
				got = append(got, it.String())
			}
			if len(got) != len(tc.want) {
				t.Fatalf("problems %q, want %q", got, tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %q, want %q", got[i], w)
				}
			}
		})
	}
}
