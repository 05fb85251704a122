package smart

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

func testRSA(t *testing.T) *rsa.PrivateKey {
	rsaOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return rsaKey
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestParseKeyPEM(t *testing.T) {
	rk := testRSA(t)
	ek, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	ek256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	_, edk, _ := ed25519.GenerateKey(rand.Reader)
	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	sec1, _ := x509.MarshalECPrivateKey(ek)
	for _, tc := range []struct {
		name    string
		pem     []byte
		wantAlg string
		wantErr string
	}{
		{"pkcs8 rsa", pemOf("PRIVATE KEY", pkcs8(rk)), RS384, ""},
		{"pkcs1 rsa", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk)), RS384, ""},
		{"pkcs8 ec", pemOf("PRIVATE KEY", pkcs8(ek)), ES384, ""},
		{"sec1 ec", pemOf("EC PRIVATE KEY", sec1), ES384, ""},
		{"rsa too small", pemOf("PRIVATE KEY", pkcs8(small)), "", "1024 bits"},
		{"ec p-256", pemOf("PRIVATE KEY", pkcs8(ek256)), "", "P-384"},
		{"ed25519", pemOf("PRIVATE KEY", pkcs8(edk)), "", "unsupported key type"},
		{"public key", pemOf("PUBLIC KEY", []byte{1, 2, 3}), "", "not a private key"},
		{"not pem", []byte("-----BEGIN nothing"), "", "no PEM block"},
		{"bad der", pemOf("PRIVATE KEY", []byte("garbage-that-is-secret")), "", "invalid signing key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseKeyPEM(tc.pem, "")
			if tc.wantErr != "" {
				if err == nil || !errors.Is(err, ErrKey) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want ErrKey with %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "garbage-that-is-secret") {
					t.Error("the error shows the key file's content")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.Alg() != tc.wantAlg || len(k.KeyID()) != 43 {
				t.Errorf("alg %s kid %q", k.Alg(), k.KeyID())
			}
		})
	}
	k, err := ParseKeyPEM(pemOf("PRIVATE KEY", pkcs8(ek)), "my-kid")
	if err != nil || k.KeyID() != "my-kid" {
		t.Errorf("configured kid: %v %v", k, err)
	}
	if _, err := LoadKeyFile("/nonexistent.pem", ""); !errors.Is(err, ErrKey) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := GenerateKey("HS256"); !errors.Is(err, ErrKey) {
		t.Errorf("GenerateKey(HS256): %v", err)
	}
}

// TestThumbprintRFC7638 checks the kid against the RFC's own example.
func TestThumbprintRFC7638(t *testing.T) {
	pub, err := PublicKeyFromJWK(JWK{Kty: "RSA", E: "AQAB",
		N: "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"})
	if err != nil {
		t.Fatal(err)
	}
	if got := thumbprint(pub); got != "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" {
		t.Errorf("thumbprint = %s", got)
	}
}

func TestJWKSRoundTrip(t *testing.T) {
	rk, err := NewKey(testRSA(t), "")
	if err != nil {
		t.Fatal(err)
	}
	ek, err := GenerateKey(ES384)
	if err != nil {
		t.Fatal(err)
	}
	var set struct{ Keys []JWK }
	if err := json.Unmarshal(JWKS(rk, ek), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 2 {
		t.Fatalf("keys = %+v", set.Keys)
	}
	for i, k := range []*Key{rk, ek} {
		j := set.Keys[i]
		if j.Kid != k.KeyID() || j.Alg != k.Alg() || j.Use != "sig" {
			t.Errorf("jwk %d = %+v", i, j)
		}
		pub, err := PublicKeyFromJWK(j)
		if err != nil {
			t.Fatal(err)
		}
		if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public()) {
			t.Errorf("jwk %d does not round-trip to the public key", i)
		}
	}
	if b := JWKS(); string(b) != `{"keys":[]}` {
		t.Errorf("empty JWKS = %s", b)
	}
	// Private parts never appear.
	if strings.Contains(string(JWKS(rk, ek)), `"d"`) {
		t.Error("JWKS holds a private member")
	}
	for _, bad := range []JWK{{Kty: "oct"}, {Kty: "EC", Crv: "P-256"}, {Kty: "EC", Crv: "P-384", X: "AA", Y: "AA"}, {Kty: "RSA", N: "!!"}} {
		if _, err := PublicKeyFromJWK(bad); err == nil {
			t.Errorf("PublicKeyFromJWK(%+v) accepted", bad)
		}
	}
}

func TestAssertion(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, alg := range []string{RS384, ES384} {
		t.Run(alg, func(t *testing.T) {
			var k *Key
			var err error
			if alg == RS384 {
				k, err = NewKey(testRSA(t), "")
			} else {
				k, err = GenerateKey(alg)
			}
			if err != nil {
				t.Fatal(err)
			}
			const tokenURL = "https://ehr.example.org/oauth2/token"
			jtis := map[string]bool{}
			for range 2 {
				s, err := k.Assertion("fhirgate", tokenURL, now)
				if err != nil {
					t.Fatal(err)
				}
				tok, err := jwt.Parse(s, func(*jwt.Token) (any, error) { return k.Public(), nil },
					jwt.WithValidMethods([]string{alg}), jwt.WithTimeFunc(func() time.Time { return now }))
				if err != nil {
					t.Fatal(err)
				}
				if tok.Header["kid"] != k.KeyID() || tok.Header["typ"] != "JWT" || tok.Header["alg"] != alg {
					t.Errorf("header %v", tok.Header)
				}
				c := tok.Claims.(jwt.MapClaims)
				if c["iss"] != "fhirgate" || c["sub"] != "fhirgate" || c["aud"] != tokenURL {
					t.Errorf("claims %v (aud must be the token URL as a string)", c)
				}
				exp, _ := c.GetExpirationTime()
				if d := exp.Sub(now); d <= 0 || d > 5*time.Minute {
					t.Errorf("exp is %s ahead, want (0, 5m]", d)
				}
				jti, _ := c["jti"].(string)
				if len(jti) < 16 || jtis[jti] {
					t.Errorf("jti %q not unique", jti)
				}
				jtis[jti] = true
			}
		})
	}
}

// authServer is a minimal SMART authorization server.
type authServer struct {
	*httptest.Server
	mu       sync.Mutex
	config   map[string]any
	status   int
	body     string
	requests []url.Values
	basic    [2]string
	n        int
}

func newAuthServer(t *testing.T) *authServer {
	a := &authServer{status: http.StatusOK}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		switch r.URL.Path {
		case "/fhir/.well-known/smart-configuration":
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(a.config)
		case "/token":
			r.ParseForm()
			a.requests = append(a.requests, r.PostForm)
			a.basic[0], a.basic[1], _ = r.BasicAuth()
			a.n++
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(a.status)
			body := a.body
			if body == "" {
				body = `{"access_token":"tok-` + string(rune('0'+a.n)) + `","token_type":"Bearer","expires_in":300,"scope":"system/*.rs"}`
			}
			w.Write([]byte(body))
		default:
			http.NotFound(w, r)
		}
	}))
	a.config = map[string]any{
		"token_endpoint":        a.URL + "/token",
		"grant_types_supported": []string{"client_credentials"},
		"token_endpoint_auth_signing_alg_values_supported": []string{"RS384", "ES384"},
	}
	t.Cleanup(a.Close)
	return a
}

func TestTokenSource(t *testing.T) {
	a := newAuthServer(t)
	k, _ := GenerateKey(ES384)
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	ts := NewTokenSource(TokenConfig{FHIRBase: a.URL + "/fhir/", ClientID: "fhirgate", Key: k,
		Scope: "system/*.rs", HTTP: a.Client(), Now: func() time.Time { return now }})
	ctx := context.Background()
	tok, err := ts.Token(ctx)
	if err != nil || tok != "tok-1" {
		t.Fatalf("Token = %q, %v", tok, err)
	}
	f := a.requests[0]
	if f.Get("grant_type") != "client_credentials" || f.Get("scope") != "system/*.rs" ||
		f.Get("client_assertion_type") != ClientAssertionType || f.Get("client_assertion") == "" {
		t.Errorf("token request form %v", f)
	}
	// Cached within its lifetime, renewed before it ends.
	now = now.Add(3 * time.Minute)
	if tok, _ := ts.Token(ctx); tok != "tok-1" {
		t.Errorf("second Token = %q, want the cached one", tok)
	}
	now = now.Add(90 * time.Second) // 4m30s: inside the last fifth
	if tok, _ := ts.Token(ctx); tok != "tok-2" {
		t.Errorf("Token near expiry = %q, want a renewed one", tok)
	}
	// Invalidate ignores a token that is no longer current.
	ts.Invalidate("tok-1")
	if tok, _ := ts.Token(ctx); tok != "tok-2" {
		t.Errorf("after invalidating an old token: %q", tok)
	}
	ts.Invalidate("tok-2")
	if tok, _ := ts.Token(ctx); tok != "tok-3" || ts.Fetches() != 3 {
		t.Errorf("after invalidating the current token: %q, %d fetches", tok, ts.Fetches())
	}
	if a.n != 3 {
		t.Errorf("%d token requests", a.n)
	}
}

func TestTokenSourceClientSecret(t *testing.T) {
	a := newAuthServer(t)
	a.body = `{"access_token":"abc","token_type":"bearer"}`
	ts := NewTokenSource(TokenConfig{TokenURL: a.URL + "/token", ClientID: "gate way", Secret: "p@ss:word", HTTP: a.Client()})
	if tok, err := ts.Token(context.Background()); err != nil || tok != "abc" {
		t.Fatalf("Token = %q, %v", tok, err)
	}
	if a.basic != [2]string{"gate+way", "p%40ss%3Aword"} {
		t.Errorf("basic auth = %q, want form-encoded client id and secret", a.basic)
	}
	if a.requests[0].Get("client_assertion") != "" {
		t.Error("client-secret sent an assertion")
	}
}

func TestTokenSourceErrors(t *testing.T) {
	k, _ := GenerateKey(ES384)
	for _, tc := range []struct {
		name      string
		setup     func(a *authServer)
		want      string
		temporary bool
	}{
		{"relative token endpoint", func(a *authServer) { a.config["token_endpoint"] = "/token" }, "not an absolute URL", false},
		{"no client_credentials", func(a *authServer) { a.config["grant_types_supported"] = []string{"authorization_code"} }, "client_credentials", false},
		{"alg not accepted", func(a *authServer) {
			a.config["token_endpoint_auth_signing_alg_values_supported"] = []string{"RS384"}
		}, "not ES384", false},
		{"invalid_client", func(a *authServer) {
			a.status, a.body = http.StatusUnauthorized, `{"error":"invalid_client","error_description":"unknown kid"}`
		}, "invalid_client (unknown kid)", false},
		{"server error", func(a *authServer) { a.status, a.body = http.StatusServiceUnavailable, "down" }, "HTTP 503", true},
		{"no access_token", func(a *authServer) { a.body = `{"token_type":"bearer"}` }, "lacks a bearer access_token", false},
		{"wrong token type", func(a *authServer) { a.body = `{"access_token":"x","token_type":"mac"}` }, "lacks a bearer access_token", false},
		{"bad expires_in", func(a *authServer) { a.body = `{"access_token":"x","token_type":"bearer","expires_in":-5}` }, "expires_in", false},
		{"not json", func(a *authServer) { a.body = `<html>` }, "not JSON", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAuthServer(t)
			tc.setup(a)
			ts := NewTokenSource(TokenConfig{FHIRBase: a.URL + "/fhir", ClientID: "c", Key: k, HTTP: a.Client()})
			_, err := ts.Token(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			var te *TokenError
			if errors.As(err, &te) && te.Temporary() != tc.temporary {
				t.Errorf("Temporary() = %v", te.Temporary())
			}
			if !errors.As(err, &te) && tc.temporary {
				t.Error("not a TokenError")
			}
		})
	}
	// Discovery on a server without it.
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	_, err := NewTokenSource(TokenConfig{FHIRBase: srv.URL, ClientID: "c", Key: k}).Token(context.Background())
	var te *TokenError
	if !errors.As(err, &te) || te.Status != 404 || te.Temporary() || !errors.Is(err, ErrDiscovery) {
		t.Errorf("discovery 404: %v", err)
	}
}
