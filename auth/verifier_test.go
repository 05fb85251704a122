package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/auth/authtest"
	"github.com/fhirgate/fhirgate/config"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// setup starts a test issuer and a Verifier trusting it, on one clock.
func setup(t *testing.T, cfg config.Auth, opts Options) (*authtest.Issuer, *Verifier, *clock) {
	t.Helper()
	is := authtest.NewIssuer(t)
	clk := newClock()
	is.Now = clk.Now
	ic := is.Config("")
	ic.PatientMapping = map[string]string{"mapped-user": "Patient/m1"}
	cfg.Issuers = append([]config.Issuer{ic}, cfg.Issuers...)
	if cfg.Clients == nil {
		cfg.Clients = testClients
	}
	opts.Now = clk.Now
	v, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return is, v, clk
}

var testClients = []config.Client{
	{ClientID: "second-look-clinic", Role: "provider", Organization: "Organization/second-look", Practitioners: []string{"Practitioner/dr-rao"}},
	{ClientID: "city-hospital-ehr", Role: "system"},
}

func TestVerifyPrincipals(t *testing.T) {
	is, v, clk := setup(t, config.Auth{}, Options{})
	exp := clk.Now().Add(5 * time.Minute).Truncate(time.Second)
	for _, tc := range []struct {
		name   string
		claims authtest.Claims
		want   Principal // Issuer, Expiry and Scopes are checked separately
		scopes string
	}{
		{
			name:   "patient by fhirUser",
			claims: authtest.Claims{"sub": "u1", "fhirUser": "Patient/p1", "client_id": "patient-app", "scope": "openid patient/*.rs", "jti": "j1"},
			want:   Principal{Kind: KindPatient, Subject: "u1", ClientID: "patient-app", FHIRUser: "Patient/p1", Patient: "Patient/p1", TokenID: "j1"},
			scopes: "openid patient/*.rs",
		},
		{
			name:   "patient by absolute fhirUser",
			claims: authtest.Claims{"sub": "u1", "fhirUser": "https://fhir.example.org/Patient/p2", "azp": "patient-app", "jti": nil},
			want:   Principal{Kind: KindPatient, Subject: "u1", ClientID: "patient-app", FHIRUser: "Patient/p2", Patient: "Patient/p2"},
		},
		{
			name:   "patient by sub mapping",
			claims: authtest.Claims{"sub": "mapped-user", "jti": nil},
			want:   Principal{Kind: KindPatient, Subject: "mapped-user", ClientID: "mapped-user", FHIRUser: "Patient/m1", Patient: "Patient/m1"},
		},
		{
			name:   "practitioner at a provider client",
			claims: authtest.Claims{"sub": "doc", "fhirUser": "Practitioner/d1", "client_id": "second-look-clinic", "scope": "user/*.rs", "jti": nil},
			want:   Principal{Kind: KindProvider, Subject: "doc", ClientID: "second-look-clinic", FHIRUser: "Practitioner/d1", Organization: "Organization/second-look"},
			scopes: "user/*.rs",
		},
		{
			name:   "listed practitioner through any client",
			claims: authtest.Claims{"sub": "rao", "fhirUser": "Practitioner/dr-rao", "client_id": "specialist-app", "jti": nil},
			want:   Principal{Kind: KindProvider, Subject: "rao", ClientID: "specialist-app", FHIRUser: "Practitioner/dr-rao", Organization: "Organization/second-look"},
		},
		{
			name:   "provider client by client_id with scp",
			claims: authtest.Claims{"sub": "second-look-clinic", "client_id": "second-look-clinic", "scp": []string{"system/*.rs"}, "jti": nil},
			want:   Principal{Kind: KindProvider, Subject: "second-look-clinic", ClientID: "second-look-clinic", Organization: "Organization/second-look"},
			scopes: "system/*.rs",
		},
		{
			name:   "provider client by azp",
			claims: authtest.Claims{"sub": "service-account-42", "azp": "second-look-clinic", "jti": nil},
			want:   Principal{Kind: KindProvider, Subject: "service-account-42", ClientID: "second-look-clinic", Organization: "Organization/second-look"},
		},
		{
			name:   "system client by sub",
			claims: authtest.Claims{"sub": "city-hospital-ehr", "scope": "system/*.cruds", "jti": nil},
			want:   Principal{Kind: KindSystem, Subject: "city-hospital-ehr", ClientID: "city-hospital-ehr"},
			scopes: "system/*.cruds",
		},
		{
			name:   "purpose of use as a code",
			claims: authtest.Claims{"sub": "city-hospital-ehr", "purpose_of_use": "TREAT", "jti": nil},
			want: Principal{Kind: KindSystem, Subject: "city-hospital-ehr", ClientID: "city-hospital-ehr",
				PurposeOfUse: []Coding{{PurposeOfUseSystem, "TREAT"}}},
		},
		{
			name: "purpose of use as IUA codings",
			claims: authtest.Claims{"sub": "city-hospital-ehr", "jti": nil, "extensions": map[string]any{"ihe_iua": map[string]any{
				"purpose_of_use": []any{map[string]any{"system": "urn:x", "code": "A"}, map[string]any{"code": "ETREAT"}}}}},
			want: Principal{Kind: KindSystem, Subject: "city-hospital-ehr", ClientID: "city-hospital-ehr",
				PurposeOfUse: []Coding{{"urn:x", "A"}, {PurposeOfUseSystem, "ETREAT"}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := v.Verify(context.Background(), is.Token(t, tc.claims))
			if err != nil {
				t.Fatal(err)
			}
			got := *p
			if got.Issuer != is.URL || !got.Expiry.Equal(exp) {
				t.Errorf("issuer %q expiry %v; want %q %v", got.Issuer, got.Expiry, is.URL, exp)
			}
			if got.Scopes.String() != tc.scopes {
				t.Errorf("scopes %q, want %q", got.Scopes.String(), tc.scopes)
			}
			got.Issuer, got.Expiry, got.Scopes = "", time.Time{}, ScopeSet{}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("principal\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestVerifyForbidden(t *testing.T) {
	is, v, _ := setup(t, config.Auth{}, Options{})
	for name, c := range map[string]authtest.Claims{
		"unknown client":        {"sub": "stranger", "client_id": "stranger"},
		"related person":        {"sub": "u", "fhirUser": "RelatedPerson/r1"},
		"fhirUser not a ref":    {"sub": "u", "fhirUser": "not a reference"},
		"fhirUser empty":        {"sub": "u", "fhirUser": ""},
		"fhirUser not string":   {"sub": "u", "fhirUser": 42},
		"fhirUser unknown type": {"sub": "u", "fhirUser": "Widget/1"},
		// a practitioner login from a client nobody configured, or of a
		// practitioner no provider lists, gets nothing of any patient
		"practitioner role without a known client": {"sub": "doc", "fhirUser": "PractitionerRole/r1", "client_id": "some-app"},
		"practitioner through the system client":   {"sub": "doc", "fhirUser": "Practitioner/p9", "client_id": "city-hospital-ehr"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), is.Token(t, c))
			if !errors.Is(err, ErrForbidden) {
				t.Fatalf("err = %v, want ErrForbidden", err)
			}
			if st, _, _ := Response(err, ""); st != http.StatusForbidden {
				t.Errorf("status %d", st)
			}
		})
	}
}

func TestVerifyRejectsHostileTokens(t *testing.T) {
	is, v, clk := setup(t, config.Auth{}, Options{MaxTokenBytes: 8 << 10})
	other := authtest.NewIssuer(t)
	patient := authtest.Claims{"sub": "u1", "fhirUser": "Patient/p1", "scope": "patient/*.rs"}
	good := is.Token(t, patient)
	if _, err := v.Verify(context.Background(), good); err != nil {
		t.Fatalf("the good token is refused: %v", err)
	}
	ec := authtest.NewECKey()
	esForeign, err := authtest.Sign(map[string]any{"iss": is.URL, "aud": "fhirgate", "sub": "u1", "fhirUser": "Patient/p1", "exp": clk.Now().Add(time.Hour).Unix()}, jose.ES256, ec, "k1")
	if err != nil {
		t.Fatal(err)
	}
	// other signs a token that claims to come from is.
	impostor := other.Token(t, authtest.Claims{"iss": is.URL, "sub": "u1", "fhirUser": "Patient/p1"})
	noKid, err := authtest.Sign(map[string]any{"iss": is.URL, "aud": "fhirgate", "sub": "u1", "exp": clk.Now().Add(time.Hour).Unix()}, jose.RS256, authtest.NewRSAKey(), "")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	for _, tc := range []struct {
		name, token string
	}{
		{"garbage", "hello"},
		{"dots", ".."},
		{"three empty segments", "a.b.c"},
		{"not base64", "###.###.###"},
		{"payload not JSON", parts[0] + ".bm90IGpzb24." + parts[2]},
		{"no signature", parts[0] + "." + parts[1] + "."},
		{"signature of another token", parts[0] + "." + strings.Split(is.Token(t, nil), ".")[1] + "." + parts[2]},
		{"tampered claim", authtest.Tamper(good, "fhirUser", "Patient/p2")},
		{"tampered scope", authtest.Tamper(good, "scope", "system/*.cruds")},
		{"alg none", is.NoneToken(patient)},
		{"alg none with signature", is.NoneToken(patient) + "c2ln"},
		{"HS256 keyed with the public key", is.HS256PublicKeyToken(patient)},
		{"foreign RSA key, same kid", is.ForeignToken(t, patient)},
		{"foreign EC key, same kid", esForeign},
		{"no kid, foreign key", noKid},
		{"impostor issuer", impostor},
		{"unknown issuer", other.Token(t, patient)},
		{"no iss", is.Token(t, authtest.Claims{"iss": nil, "sub": "u1", "fhirUser": "Patient/p1"})},
		{"expired", is.ExpiredToken(t, patient)},
		{"wrong audience", is.WrongAudienceToken(t, patient)},
		{"audience list without us", is.Token(t, authtest.Claims{"aud": []string{"a", "b"}, "fhirUser": "Patient/p1"})},
		{"no exp", is.Token(t, authtest.Claims{"exp": nil, "fhirUser": "Patient/p1"})},
		{"exp not a number", is.Token(t, authtest.Claims{"exp": "tomorrow", "fhirUser": "Patient/p1"})},
		{"not yet valid", is.Token(t, authtest.Claims{"nbf": clk.Now().Add(10 * time.Minute).Unix(), "fhirUser": "Patient/p1"})},
		{"JWE shape", "a.b.c.d.e"},
		{"huge", parts[0] + "." + strings.Repeat("A", 9<<10) + "." + parts[2]},
		{"JSON serialization", `{"payload":"e30","signatures":[]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), tc.token)
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("err = %v, want ErrInvalidToken", err)
			}
			t.Log(err)
			st, www, oo := Response(err, "fhirgate")
			if st != http.StatusUnauthorized || !strings.Contains(www, `error="invalid_token"`) || oo.Status != 401 {
				t.Errorf("response %d %q %+v", st, www, oo)
			}
			// Nothing from the token may leak into messages or headers.
			for _, s := range []string{err.Error(), www, oo.Error()} {
				if strings.Contains(s, "Patient/p") || (len(tc.token) > 8 && strings.Contains(s, tc.token[:8])) || strings.Contains(s, "u1") {
					t.Errorf("message leaks token content: %q", s)
				}
			}
		})
	}
}

func TestVerifyClockSkew(t *testing.T) {
	is, v, clk := setup(t, config.Auth{}, Options{ClockSkew: 30 * time.Second, CacheSize: -1})
	c := authtest.Claims{"fhirUser": "Patient/p1"}
	tok := is.Token(t, c) // expires in 5 minutes
	clk.Add(5*time.Minute + 20*time.Second)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Errorf("20 s past exp, within 30 s skew: %v", err)
	}
	clk.Add(20 * time.Second)
	_, err := v.Verify(context.Background(), tok)
	var e *Error
	if !errors.As(err, &e) || !e.Expired || e.FHIR().Issues[0].Code != "expired" {
		t.Errorf("40 s past exp: %v, want expired", err)
	}
	nbf := is.Token(t, authtest.Claims{"fhirUser": "Patient/p1", "nbf": clk.Now().Add(20 * time.Second).Unix()})
	if _, err := v.Verify(context.Background(), nbf); err != nil {
		t.Errorf("nbf 20 s ahead, within skew: %v", err)
	}
}

func TestVerifyCacheHonoursExpiry(t *testing.T) {
	is, v, clk := setup(t, config.Auth{}, Options{ClockSkew: time.Second})
	tok := is.Token(t, authtest.Claims{"fhirUser": "Patient/p1"})
	p1, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := v.Verify(context.Background(), tok)
	if err != nil || p2 != p1 {
		t.Fatalf("second verification did not come from the cache: %v", err)
	}
	if v.cache.len() != 1 {
		t.Errorf("cache holds %d entries", v.cache.len())
	}
	clk.Add(5*time.Minute + 2*time.Second)
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("a cached token was accepted after its expiry: %v", err)
	}
}

func TestCacheBounded(t *testing.T) {
	c := newTTLCache[int](100)
	now := time.Unix(1000, 0)
	for i := range 1000 {
		c.put(keyOf(string(rune(i))+"x"), i, now.Add(time.Hour), now)
		if c.len() > 100 {
			t.Fatalf("cache grew to %d", c.len())
		}
	}
	c.put(keyOf("expired"), 1, now, now)
	if _, ok := c.get(keyOf("expired"), now); ok {
		t.Errorf("an already expired entry was stored")
	}
	k := keyOf("k")
	c.put(k, 7, now.Add(time.Minute), now)
	if v, ok := c.get(k, now.Add(59*time.Second)); !ok || v != 7 {
		t.Errorf("fresh entry missing")
	}
	if _, ok := c.get(k, now.Add(time.Minute)); ok {
		t.Errorf("entry served at its expiry")
	}
}

func TestJWKSFetchesAreBounded(t *testing.T) {
	is, v, clk := setup(t, config.Auth{}, Options{CacheSize: -1, JWKSRefreshInterval: 10 * time.Second})
	ctx := context.Background()
	if _, err := v.Verify(ctx, is.Token(t, authtest.Claims{"fhirUser": "Patient/p1"})); err != nil {
		t.Fatal(err)
	}
	base := is.JWKSFetches()
	if base != 1 {
		t.Errorf("first verification fetched the JWKS %d times", base)
	}
	// Tampered tokens with a known kid: no fetch at all.
	for range 50 {
		_, _ = v.Verify(ctx, is.ForeignToken(t, authtest.Claims{"fhirUser": "Patient/p1", "jti": time.Now().String()}))
	}
	if n := is.JWKSFetches() - base; n != 0 {
		t.Errorf("forged tokens with a known kid caused %d JWKS fetches", n)
	}
	// Unknown kids: at most one fetch per interval.
	stranger := authtest.NewRSAKey()
	for i := range 50 {
		tok, _ := authtest.Sign(map[string]any{"iss": is.URL, "aud": "fhirgate", "exp": clk.Now().Add(time.Hour).Unix(), "i": i}, jose.RS256, stranger, fmt.Sprintf("unknown-kid-%d", i))
		_, _ = v.Verify(ctx, tok)
	}
	if n := is.JWKSFetches() - base; n > 1 {
		t.Errorf("unknown kids caused %d JWKS fetches within one interval", n)
	}
	// Rotation: the new key is fetched once the interval has passed.
	is.RotateKey(t, false)
	clk.Add(11 * time.Second)
	if _, err := v.Verify(ctx, is.Token(t, authtest.Claims{"fhirUser": "Patient/p1"})); err != nil {
		t.Errorf("token signed with the rotated key: %v", err)
	}
	// Keys are refetched once older than JWKSMaxAge, so a withdrawn key stops working.
	old := is.Token(t, authtest.Claims{"fhirUser": "Patient/p1", "exp": clk.Now().Add(3 * time.Hour).Unix()})
	is.RotateKey(t, false)
	clk.Add(time.Hour + time.Minute)
	if _, err := v.Verify(ctx, old); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("token signed with a withdrawn key: %v", err)
	}
}

func TestIntrospection(t *testing.T) {
	is := authtest.NewIssuer(t)
	clk := newClock()
	is.Now = clk.Now
	is.RegisterClient("fhirgate-rs", "s3cret")
	env := map[string]string{"INTROSPECT_SECRET": "s3cret"}
	v, err := New(config.Auth{Issuers: []config.Issuer{is.IntrospectionConfig("", "fhirgate-rs", "INTROSPECT_SECRET")}, Clients: testClients},
		Options{Now: clk.Now, Getenv: func(k string) string { return env[k] }, IntrospectionTTL: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tok := is.OpaqueToken(authtest.Claims{"sub": "second-look-clinic", "scope": "system/*.rs"})
	p, err := v.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind != KindProvider || p.Organization != "Organization/second-look" || !p.Scopes.Allows(ContextSystem, "Patient", PermRead) {
		t.Errorf("principal %+v", p)
	}
	// Revocation is noticed once the cached answer is older than the TTL.
	is.RevokeOpaque(tok)
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Errorf("within the TTL the cached answer is used: %v", err)
	}
	clk.Add(31 * time.Second)
	if _, err := v.Verify(ctx, tok); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("revoked opaque token: %v", err)
	}
	for name, c := range map[string]authtest.Claims{
		"wrong audience": {"sub": "second-look-clinic", "aud": "other"},
		"wrong issuer":   {"sub": "second-look-clinic", "iss": "https://elsewhere"},
		"expired":        {"sub": "second-look-clinic", "exp": clk.Now().Add(-time.Hour).Unix()},
		"refresh token":  {"sub": "second-look-clinic", "token_use": "refresh_token"},
	} {
		if _, err := v.Verify(ctx, is.OpaqueToken(c)); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: %v, want ErrInvalidToken", name, err)
		}
	}
	if _, err := v.Verify(ctx, "never-issued"); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("unknown opaque token: %v", err)
	}

	// A wrong client secret is the gateway's problem, not the caller's: 503.
	env["INTROSPECT_SECRET"] = "wrong"
	v2, err := New(config.Auth{Issuers: []config.Issuer{is.IntrospectionConfig("", "fhirgate-rs", "INTROSPECT_SECRET")}, Clients: testClients},
		Options{Now: clk.Now, Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v2.Verify(ctx, is.OpaqueToken(authtest.Claims{"sub": "second-look-clinic"}))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("wrong secret: %v, want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("the secret leaks into the error: %v", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]config.Auth{
		"no audience":             {Issuers: []config.Issuer{{URL: "https://idp"}}},
		"no url":                  {Issuers: []config.Issuer{{Audience: "a"}}},
		"duplicate issuer":        {Issuers: []config.Issuer{{URL: "https://idp", Audience: "a"}, {URL: "https://idp", Audience: "b"}}},
		"mapping not a ref":       {Issuers: []config.Issuer{{URL: "https://idp", Audience: "a", PatientMapping: map[string]string{"u": "123"}}}},
		"mapping not a pat":       {Issuers: []config.Issuer{{URL: "https://idp", Audience: "a", PatientMapping: map[string]string{"u": "Practitioner/1"}}}},
		"introspection no secret": {Issuers: []config.Issuer{{URL: "https://idp", Audience: "a", IntrospectionURL: "https://idp/i", ClientID: "c", SecretEnv: "FHIRGATE_TEST_UNSET_SECRET"}}},
		"introspection no client": {Issuers: []config.Issuer{{URL: "https://idp", Audience: "a", IntrospectionURL: "https://idp/i"}}},
		"bad role":                {Clients: []config.Client{{ClientID: "c", Role: "admin"}}},
		"provider no org":         {Clients: []config.Client{{ClientID: "c", Role: "provider"}}},
		"duplicate client":        {Clients: []config.Client{{ClientID: "c", Role: "system"}, {ClientID: "c", Role: "system"}}},
	} {
		if _, err := New(cfg, Options{Getenv: func(string) string { return "" }}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestIssuerUnavailable(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	url := down.URL
	down.Close()
	clk := newClock()
	v, err := New(config.Auth{Issuers: []config.Issuer{{URL: url, Audience: "fhirgate"}}}, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	tok := authtest.Unsigned(map[string]any{"alg": "RS256", "kid": "k"}, map[string]any{"iss": url}, "c2ln")
	_, err = v.Verify(context.Background(), tok)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if st, www, _ := Response(err, ""); st != http.StatusServiceUnavailable || www != "" {
		t.Errorf("response %d %q", st, www)
	}
	// An outage is not remembered as a bad token.
	if _, ok := v.negative.get(keyOf(tok), clk.Now()); ok {
		t.Errorf("an unavailable issuer was cached as a token refusal")
	}
	if err := v.Discover(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Discover: %v", err)
	}
}

func TestBearerToken(t *testing.T) {
	for _, tc := range []struct {
		headers []string
		token   string
		err     error
	}{
		{nil, "", ErrNoToken},
		{[]string{"Bearer abc.def-_~+/="}, "abc.def-_~+/=", nil},
		{[]string{"bearer abc"}, "abc", nil},
		{[]string{"BEARER  abc"}, "abc", nil},
		{[]string{"Basic dXNlcjpwYXNz"}, "", ErrInvalidToken},
		{[]string{"Bearer"}, "", ErrInvalidToken},
		{[]string{"Bearer "}, "", ErrInvalidToken},
		{[]string{"Bearer a b"}, "", ErrInvalidToken},
		{[]string{"Bearer a\"b"}, "", ErrInvalidToken},
		{[]string{"Bearer a", "Bearer b"}, "", ErrInvalidToken},
		{[]string{"Bearer ünicode"}, "", ErrInvalidToken},
	} {
		r := httptest.NewRequest(http.MethodGet, "/Patient/1", nil)
		for _, h := range tc.headers {
			r.Header.Add("Authorization", h)
		}
		tok, err := BearerToken(r)
		if tok != tc.token || !errors.Is(err, tc.err) && (err != nil || tc.err != nil) {
			t.Errorf("%q: %q, %v; want %q, %v", tc.headers, tok, err, tc.token, tc.err)
		}
	}
}

func TestResponses(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		www    string
		code   string
	}{
		{newError(ErrNoToken, "", nil), 401, `Bearer realm="fhirgate"`, "login"},
		{invalid("the token has expired", nil), 401, `Bearer realm="fhirgate", error="invalid_token", error_description="the token has expired"`, "unknown"},
		{InsufficientScope("Observation", PermRead|PermSearch), 403, `Bearer realm="fhirgate", error="insufficient_scope", error_description="the token's scopes do not grant Observation.rs"`, "forbidden"},
		{newError(ErrForbidden, `bad "quote"`+"\n", nil), 403, `Bearer realm="fhirgate", error="insufficient_scope", error_description="bad 'quote''"`, "forbidden"},
		{errors.New("boom"), 503, "", "transient"},
	} {
		st, www, oo := Response(tc.err, "fhirgate")
		if st != tc.status || www != tc.www || oo.Issues[0].Code != tc.code || oo.Status != tc.status {
			t.Errorf("%v: %d %q %q", tc.err, st, www, oo.Issues[0].Code)
		}
	}
}

func TestPatientLoginFlow(t *testing.T) {
	is, v, _ := setup(t, config.Auth{}, Options{})
	is.RegisterClient("patient-app", "")
	tr := is.Login(t, "patient-app", "Patient/p7", "openid", "fhirUser", "launch/patient", "patient/*.rs")
	if tr.Patient != "p7" || tr.IDToken == "" || tr.TokenType != "Bearer" {
		t.Errorf("token response %+v", tr)
	}
	p, err := v.Verify(context.Background(), tr.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind != KindPatient || p.Patient != "Patient/p7" || p.ClientID != "patient-app" || !p.Check("Observation", PermRead|PermSearch).Allowed || p.Check("Observation", PermUpdate).Allowed {
		t.Errorf("principal %+v", p)
	}
	// The ID token is for the app, not for this server.
	if _, err := v.Verify(context.Background(), tr.IDToken); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("an ID token was accepted as an access token: %v", err)
	}
}

func TestSMARTConfiguration(t *testing.T) {
	_, v, _ := setup(t, config.Auth{}, Options{})
	c, err := v.SMARTConfiguration(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c.TokenEndpoint == "" || c.AuthorizationEndpoint == "" || c.JWKSURI == "" || c.Issuer == "" {
		t.Errorf("endpoints missing: %+v", c)
	}
	if !reflect.DeepEqual(c.CodeChallengeMethodsSupported, []string{"S256"}) {
		t.Errorf("code_challenge_methods_supported %v", c.CodeChallengeMethodsSupported)
	}
	for _, want := range []string{"permission-v1", "permission-v2", "launch-standalone", "client-public", "client-confidential-symmetric", "sso-openid-connect"} {
		if !contains(c.Capabilities, want) {
			t.Errorf("capability %s missing: %v", want, c.Capabilities)
		}
	}
	if !reflect.DeepEqual(c.GrantTypesSupported, []string{"authorization_code", "client_credentials"}) {
		t.Errorf("grants %v", c.GrantTypesSupported)
	}
	empty, _ := New(config.Auth{}, Options{})
	if _, err := empty.SMARTConfiguration(context.Background()); !errors.Is(err, ErrNoIssuer) {
		t.Errorf("no issuer: %v", err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestAuthenticateConcurrent(t *testing.T) {
	is, v, _ := setup(t, config.Auth{}, Options{})
	toks := make([]string, 8)
	for i := range toks {
		toks[i] = is.ClientToken(t, "city-hospital-ehr")
	}
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			r := httptest.NewRequest(http.MethodGet, "/Patient", nil)
			r.Header.Set("Authorization", "Bearer "+toks[i%len(toks)])
			if p, err := v.Authenticate(r); err != nil || p.Kind != KindSystem {
				t.Errorf("%v %v", p, err)
			}
		})
	}
	wg.Wait()
}

func BenchmarkVerify(b *testing.B) {
	for _, bc := range []struct {
		name  string
		cache int
	}{{"cached", 0}, {"uncached", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			is := authtest.NewIssuer(b)
			v, err := New(config.Auth{Issuers: []config.Issuer{is.Config("")}, Clients: testClients}, Options{CacheSize: bc.cache})
			if err != nil {
				b.Fatal(err)
			}
			tok := is.ClientToken(b, "second-look-clinic", "system/*.rs")
			ctx := context.Background()
			if _, err := v.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestNothingSecretIsLogged drives the failure paths that log (unreachable
// JWKS, failing introspection) and checks the log for the token and the
// client secret.
func TestNothingSecretIsLogged(t *testing.T) {
	var logs strings.Builder
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	is := authtest.NewIssuer(t)
	is.RegisterClient("fhirgate-rs", "the-client-secret")
	secrets := map[string]string{"S": "wrong-client-secret"}
	v, err := New(config.Auth{Issuers: []config.Issuer{is.IntrospectionConfig("", "fhirgate-rs", "S")}, Clients: testClients},
		Options{Logger: logger, Getenv: func(k string) string { return secrets[k] }, JWKSRefreshInterval: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	opaque := is.OpaqueToken(authtest.Claims{"sub": "second-look-clinic"})
	if _, err := v.Verify(context.Background(), opaque); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("wrong secret: %v", err)
	}
	jwt := is.ClientToken(t, "second-look-clinic")
	if _, err := v.Verify(context.Background(), jwt); err != nil {
		t.Fatal(err)
	}
	is.Server.Close() // the JWKS is now unreachable
	is.RotateKey(t, false)
	_, err = v.Verify(context.Background(), is.ClientToken(t, "second-look-clinic"))
	if err == nil {
		t.Fatalf("a token with an unknown key verified while the issuer is down")
	}
	out := logs.String()
	if !strings.Contains(out, "introspection") || !strings.Contains(out, "signing keys failed") {
		t.Errorf("the failures were not logged: %s", out)
	}
	for _, s := range []string{opaque, jwt, jwt[:20], "wrong-client-secret", "the-client-secret"} {
		if strings.Contains(out, s) || strings.Contains(err.Error(), s) {
			t.Errorf("log or error contains a secret or token: %s", out)
		}
	}
}
