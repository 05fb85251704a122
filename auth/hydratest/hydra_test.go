package hydratest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/auth/authtest"
	"github.com/fhirgate/fhirgate/config"
)

// hydra is a running Hydra server.
type hydra struct {
	public, admin string // base URLs
	logs          *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func binary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("FHIRGATE_HYDRA")
	if bin == "" {
		t.Skip("FHIRGATE_HYDRA is not set: build Ory Hydra v2.3.0 with auth/hydratest/build-hydra.sh and export FHIRGATE_HYDRA=<its output> to run the end-to-end test")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("FHIRGATE_HYDRA: %v", err)
	}
	return bin
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// start runs "hydra serve all --dev" on free loopback ports with an
// in-memory database and the given access-token strategy (jwt or opaque),
// and stops it when the test ends.
func start(t *testing.T, strategy string) *hydra {
	t.Helper()
	bin := binary(t)
	pub, adm := freePort(t), freePort(t)
	secret := make([]byte, 24)
	_, _ = rand.Read(secret)
	h := &hydra{public: "http://127.0.0.1:" + pub, admin: "http://127.0.0.1:" + adm, logs: &syncBuffer{}}
	cmd := exec.Command(bin, "serve", "all", "--dev")
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(),
		"DSN=memory",
		"STRATEGIES_ACCESS_TOKEN=" + strategy,
		"URLS_SELF_ISSUER=" + h.public,
		"SERVE_PUBLIC_HOST=127.0.0.1", "SERVE_PUBLIC_PORT=" + pub,
		"SERVE_ADMIN_HOST=127.0.0.1", "SERVE_ADMIN_PORT=" + adm,
		"SECRETS_SYSTEM=" + hex.EncodeToString(secret),
		"LOG_LEVEL=warn",
	}
	cmd.Stdout, cmd.Stderr = h.logs, h.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start hydra: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("hydra output:\n%s", h.logs.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(h.public + "/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				h.warm(t, done)
				return h
			}
		}
		select {
		case <-done:
			t.Fatalf("hydra exited:\n%s", h.logs.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("hydra not ready after 30 s:\n%s", h.logs.String())
		}
	}
}

// warm waits until Hydra serves its discovery document and its signing
// keys: it makes its key pair on the first request for them, which on a
// loaded machine takes longer than a verifier's discovery may wait.
func (h *hydra) warm(t *testing.T, done <-chan struct{}) {
	t.Helper()
	client := &http.Client{Timeout: 60 * time.Second}
	deadline := time.Now().Add(2 * time.Minute)
	for _, path := range []string{"/.well-known/openid-configuration", "/.well-known/jwks.json"} {
		for {
			resp, err := client.Get(h.public + path)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case <-done:
				t.Fatalf("hydra exited:\n%s", h.logs.String())
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("hydra does not serve %s after 2 minutes:\n%s", path, h.logs.String())
			}
		}
	}
}

// createClient registers a client_credentials client through the admin API.
func (h *hydra) createClient(t *testing.T, id, secret, scope string, audience []string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"client_id": id, "client_secret": secret,
		"grant_types": []string{"client_credentials"}, "scope": scope, "audience": audience,
		"token_endpoint_auth_method": "client_secret_basic",
	})
	resp, err := http.Post(h.admin+"/admin/clients", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create client: %s", resp.Status)
	}
}

// token runs the client_credentials grant.
func (h *hydra) token(t *testing.T, id, secret, scope, audience string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}
	if audience != "" {
		form.Set("audience", audience)
	}
	req, _ := http.NewRequest(http.MethodPost, h.public+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("token: %s %s %v", resp.Status, tr.Error, err)
	}
	return tr.AccessToken
}

func (h *hydra) revoke(t *testing.T, id, secret, token string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, h.public+"/oauth2/revoke", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %s", resp.Status)
	}
}

var clients = []config.Client{
	{ClientID: "second-look-clinic", Role: "provider", Organization: "Organization/second-look"},
	{ClientID: "city-hospital-ehr", Role: "system"},
}

func TestHydraJWTAccessTokens(t *testing.T) {
	h := start(t, "jwt")
	h.createClient(t, "second-look-clinic", "second-look-secret-0123456789", "system/*.rs system/Observation.rs", []string{"fhirgate"})
	h.createClient(t, "city-hospital-ehr", "city-hospital-secret-0123456789", "system/*.cruds", []string{"fhirgate", "billing"})

	v, err := auth.New(config.Auth{Issuers: []config.Issuer{{URL: h.public, Audience: "fhirgate"}}, Clients: clients}, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := v.Discover(ctx); err != nil {
		t.Fatalf("discovery of Hydra: %v", err)
	}

	tok := h.token(t, "second-look-clinic", "second-look-secret-0123456789", "system/*.rs", "fhirgate")
	p, err := v.Verify(ctx, tok)
	if err != nil {
		t.Fatalf("a Hydra token was refused: %v", err)
	}
	if p.Kind != auth.KindProvider || p.Organization != "Organization/second-look" || p.ClientID != "second-look-clinic" || p.TokenID == "" {
		t.Errorf("principal %+v", p)
	}
	if !p.Check("Observation", auth.PermRead|auth.PermSearch).Allowed || p.Check("Observation", auth.PermUpdate).Allowed {
		t.Errorf("scopes (from scp) %q", p.Scopes.String())
	}

	sysTok := h.token(t, "city-hospital-ehr", "city-hospital-secret-0123456789", "system/*.cruds", "fhirgate")
	sys, err := v.Verify(ctx, sysTok)
	if err != nil || sys.Kind != auth.KindSystem || !sys.Check("Patient", auth.PermCreate).Allowed {
		t.Errorf("system client: %+v %v", sys, err)
	}

	for name, bad := range map[string]string{
		"tampered scopes":   authtest.Tamper(tok, "scp", []string{"system/*.cruds"}),
		"tampered client":   authtest.Tamper(tok, "client_id", "city-hospital-ehr"),
		"truncated":         tok[:len(tok)-4],
		"no audience":       h.token(t, "second-look-clinic", "second-look-secret-0123456789", "system/*.rs", ""),
		"other audience":    h.token(t, "city-hospital-ehr", "city-hospital-secret-0123456789", "system/*.cruds", "billing"),
		"signature swapped": tok[:strings.LastIndex(tok, ".")] + sys.TokenID,
	} {
		if _, err := v.Verify(ctx, bad); !errors.Is(err, auth.ErrInvalidToken) {
			t.Errorf("%s: %v, want ErrInvalidToken", name, err)
		}
	}

	c, err := v.SMARTConfiguration(ctx)
	if err != nil || c.TokenEndpoint != h.public+"/oauth2/token" || c.Issuer != h.public {
		t.Errorf("SMART configuration from Hydra: %+v %v", c, err)
	}
}

func TestHydraOpaqueTokensByIntrospection(t *testing.T) {
	h := start(t, "opaque")
	h.createClient(t, "second-look-clinic", "second-look-secret-0123456789", "system/*.rs", []string{"fhirgate"})
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	v, err := auth.New(config.Auth{
		Issuers: []config.Issuer{{URL: h.public, Audience: "fhirgate",
			// Hydra's admin API takes no client authentication; the
			// gateway sends its credentials all the same.
			IntrospectionURL: h.admin + "/admin/oauth2/introspect", ClientID: "fhirgate", SecretEnv: "HYDRA_INTROSPECT"}},
		Clients: clients,
	}, auth.Options{Now: clock, Getenv: func(string) string { return "unused-by-hydra" }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tok := h.token(t, "second-look-clinic", "second-look-secret-0123456789", "system/*.rs", "fhirgate")
	if strings.Count(tok, ".") == 2 && !strings.HasPrefix(tok, "ory_at_") {
		t.Fatalf("expected an opaque token, got a JWT-like one")
	}
	p, err := v.Verify(ctx, tok)
	if err != nil {
		t.Fatalf("introspected token refused: %v", err)
	}
	if p.Kind != auth.KindProvider || !p.Check("Patient", auth.PermRead).Allowed {
		t.Errorf("principal %+v", p)
	}
	h.revoke(t, "second-look-clinic", "second-look-secret-0123456789", tok)
	mu.Lock()
	now = now.Add(time.Minute) // past the introspection cache
	mu.Unlock()
	if _, err := v.Verify(ctx, tok); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("revoked token: %v, want ErrInvalidToken", err)
	}
	if _, err := v.Verify(ctx, "ory_at_"+fmt.Sprint(time.Now().UnixNano())); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("made-up opaque token: %v", err)
	}
}
