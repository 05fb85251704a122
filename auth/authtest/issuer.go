// Package authtest is an in-process OpenID Connect issuer for tests: an
// httptest server with discovery, JWKS, an authorization endpoint (the
// code flow with PKCE, logging in whichever user the test names), a token
// endpoint (authorization_code and client_credentials) and RFC 7662
// introspection. It mints signed access tokens with any claims, and the
// broken tokens a verifier must refuse.
//
//	is := authtest.NewIssuer(t)
//	v, _ := auth.New(config.Auth{Issuers: []config.Issuer{is.Config("fhirgate")}}, auth.Options{})
//	tok := is.Token(t, authtest.Claims{"fhirUser": "Patient/p1", "scope": "patient/*.rs"})
//	req.Header.Set("Authorization", "Bearer "+tok)
package authtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/config"
)

// DefaultAudience is the audience Token puts in tokens unless told otherwise.
const DefaultAudience = "fhirgate"

// Claims are the claims of a token. Token fills iss, aud, sub, iat, exp and
// jti when absent; a claim set to nil is removed instead.
type Claims map[string]any

// Issuer is a running test OpenID provider.
type Issuer struct {
	// URL is the issuer identifier and base URL (the httptest server).
	URL    string
	Server *httptest.Server
	// Audience is the aud of minted tokens (DefaultAudience).
	Audience string
	// Now is the issuer's clock (default time.Now); set it to mint tokens
	// at another time.
	Now func() time.Time
	// TokenTTL is the lifetime of minted tokens (default 5 minutes).
	TokenTTL time.Duration

	mu          sync.Mutex
	key         *rsa.PrivateKey
	kid         string
	oldKeys     []jose.JSONWebKey // still published after RotateKey
	clients     map[string]string // client id -> secret ("" for public clients)
	codes       map[string]*authCode
	opaque      map[string]Claims
	users       map[string]Claims // login_hint -> claims of that user
	jwksFetches int
	rotations   int
	foreign     *rsa.PrivateKey
	redirects   map[string][]string // client id -> its registered redirect URIs (none: any absolute URI, as tests use)
	people      []Person            // the development issuer's login page
}

type authCode struct {
	clientID, redirectURI, challenge, scope string
	claims                                  Claims
}

// newIssuer makes an issuer signing with key and the handler of its
// endpoints; the callers start the server.
func newIssuer(key *rsa.PrivateKey) (*Issuer, *http.ServeMux) {
	is := &Issuer{
		Audience:  DefaultAudience,
		Now:       time.Now,
		TokenTTL:  5 * time.Minute,
		key:       key,
		kid:       "k1",
		clients:   map[string]string{},
		codes:     map[string]*authCode{},
		opaque:    map[string]Claims{},
		users:     map[string]Claims{},
		redirects: map[string][]string{},
	}
	mux := http.NewServeMux()
	// browser apps read discovery and keys and redeem codes from another
	// origin; tokens travel in the body, never in cookies
	cors := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Access-Control-Allow-Origin", "*")
			h(w, r)
		}
	}
	mux.HandleFunc("GET /.well-known/openid-configuration", cors(is.discovery))
	mux.HandleFunc("GET /jwks", cors(is.jwks))
	mux.HandleFunc("GET /authorize", is.authorize)
	mux.HandleFunc("POST /authorize", is.authorize)
	mux.HandleFunc("POST /token", cors(is.token))
	mux.HandleFunc("POST /introspect", is.introspect)
	return is, mux
}

// NewIssuer starts an issuer and stops it when the test ends.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("authtest: %v", err)
	}
	is, mux := newIssuer(key)
	is.Server = httptest.NewServer(mux)
	is.URL = is.Server.URL
	t.Cleanup(is.Server.Close)
	return is
}

// Config returns the gateway configuration that trusts this issuer with
// the given audience ("" for Audience). It has no introspection; see
// IntrospectionConfig.
func (is *Issuer) Config(audience string) config.Issuer {
	if audience == "" {
		audience = is.Audience
	}
	return config.Issuer{URL: is.URL, Audience: audience, FHIRUserClaim: "fhirUser"}
}

// IntrospectionConfig is Config plus introspection as the registered client
// clientID, whose secret the gateway reads from the environment variable
// secretEnv (set it with t.Setenv, or pass auth.Options.Getenv).
func (is *Issuer) IntrospectionConfig(audience, clientID, secretEnv string) config.Issuer {
	c := is.Config(audience)
	c.IntrospectionURL = is.URL + "/introspect"
	c.ClientID = clientID
	c.SecretEnv = secretEnv
	return c
}

// RegisterClient registers an OAuth client; an empty secret makes a public
// client (authorization code with PKCE only).
func (is *Issuer) RegisterClient(clientID, secret string) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.clients[clientID] = secret
}

// RegisterUser makes login_hint=name log in a user whose tokens carry
// claims (typically sub and fhirUser).
func (is *Issuer) RegisterUser(name string, claims Claims) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.users[name] = maps.Clone(claims)
}

// JWKSFetches counts the JWKS requests served, to test key caching.
func (is *Issuer) JWKSFetches() int {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.jwksFetches
}

// RotateKey starts signing with a new key (a new kid); the old public key
// stays published when keepOld is set.
func (is *Issuer) RotateKey(t testing.TB, keepOld bool) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("authtest: %v", err)
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	if keepOld {
		is.oldKeys = append(is.oldKeys, jose.JSONWebKey{Key: &is.key.PublicKey, KeyID: is.kid, Algorithm: "RS256", Use: "sig"})
	} else {
		is.oldKeys = nil
	}
	is.key = key
	is.rotations++
	is.kid = fmt.Sprintf("k%d", is.rotations+1)
}

// complete fills the standard claims.
func (is *Issuer) complete(c Claims) Claims {
	now := is.Now()
	out := Claims{
		"iss": is.URL,
		"aud": is.Audience,
		"sub": "user-1",
		"iat": now.Unix(),
		"exp": now.Add(is.TokenTTL).Unix(),
		"jti": randomString(12),
	}
	for k, v := range c {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

// Token mints an RS256 access token signed with the issuer's current key.
func (is *Issuer) Token(t testing.TB, c Claims) string {
	t.Helper()
	is.mu.Lock()
	key, kid := is.key, is.kid
	is.mu.Unlock()
	tok, err := Sign(is.complete(c), jose.RS256, key, kid)
	if err != nil {
		t.Fatalf("authtest: %v", err)
	}
	return tok
}

// PatientToken mints a patient token: fhirUser is the patient reference
// ("Patient/123") and the scopes default to patient/*.rs.
func (is *Issuer) PatientToken(t testing.TB, patient string, scopes ...string) string {
	t.Helper()
	if len(scopes) == 0 {
		scopes = []string{"openid", "fhirUser", "launch/patient", "patient/*.rs"}
	}
	_, id, _ := strings.Cut(patient, "/")
	return is.Token(t, Claims{"sub": "patient-" + id, "fhirUser": patient, "client_id": "patient-app", "scope": strings.Join(scopes, " ")})
}

// ClientToken mints a client-credentials token for clientID (sub and
// client_id), with the scopes in an scp array as Hydra does.
func (is *Issuer) ClientToken(t testing.TB, clientID string, scopes ...string) string {
	t.Helper()
	if len(scopes) == 0 {
		scopes = []string{"system/*.rs"}
	}
	return is.Token(t, Claims{"sub": clientID, "client_id": clientID, "scp": scopes})
}

// ExpiredToken mints a token that expired an hour ago (by the issuer's clock).
func (is *Issuer) ExpiredToken(t testing.TB, c Claims) string {
	t.Helper()
	c = maps.Clone(c)
	if c == nil {
		c = Claims{}
	}
	now := is.Now()
	c["iat"], c["exp"] = now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
	return is.Token(t, c)
}

// WrongAudienceToken mints a token for another resource server.
func (is *Issuer) WrongAudienceToken(t testing.TB, c Claims) string {
	t.Helper()
	c = maps.Clone(c)
	if c == nil {
		c = Claims{}
	}
	c["aud"] = "some-other-api"
	return is.Token(t, c)
}

// ForeignToken mints a token with the right claims signed by a key the
// issuer does not publish (same kid), as a forger would.
func (is *Issuer) ForeignToken(t testing.TB, c Claims) string {
	t.Helper()
	is.mu.Lock()
	if is.foreign == nil {
		is.foreign = NewRSAKey() // one per issuer: key generation is slow
	}
	key, kid := is.foreign, is.kid
	is.mu.Unlock()
	tok, err := Sign(is.complete(c), jose.RS256, key, kid)
	if err != nil {
		t.Fatalf("authtest: %v", err)
	}
	return tok
}

// NoneToken returns an unsigned token ("alg":"none") with the issuer's claims.
func (is *Issuer) NoneToken(c Claims) string {
	return Unsigned(map[string]any{"alg": "none", "typ": "JWT"}, is.complete(c), "")
}

// HS256PublicKeyToken returns a token whose HS256 MAC is keyed with the
// issuer's PEM-encoded public key: the classic algorithm-confusion forgery
// against verifiers that let the token choose the algorithm.
func (is *Issuer) HS256PublicKeyToken(c Claims) string {
	is.mu.Lock()
	kid := is.kid
	der, _ := x509.MarshalPKIXPublicKey(&is.key.PublicKey)
	is.mu.Unlock()
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	header := map[string]any{"alg": "HS256", "typ": "JWT", "kid": kid}
	signingInput := encodeSegment(header) + "." + encodeSegment(is.complete(c))
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(signingInput))
	return signingInput + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// Tamper changes one claim of a signed token without re-signing it, as an
// attacker raising their privileges would.
func Tamper(token string, claim string, value any) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return token + "x"
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return token + "x"
	}
	var c map[string]any
	if json.Unmarshal(payload, &c) != nil {
		return token + "x"
	}
	c[claim] = value
	return parts[0] + "." + encodeSegment(c) + "." + parts[2]
}

// Sign signs claims as a compact JWS with the given algorithm and key.
func Sign(claims any, alg jose.SignatureAlgorithm, key any, kid string) (string, error) {
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// Unsigned assembles header.payload.signature from JSON values and a raw
// signature segment, for hand-made hostile tokens.
func Unsigned(header, claims any, signature string) string {
	return encodeSegment(header) + "." + encodeSegment(claims) + "." + signature
}

// NewECKey returns a P-256 key, for tests that sign with ES256.
func NewECKey() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func encodeSegment(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// OpaqueToken registers an opaque token that introspection reports active
// with the given claims (plus iss, aud, exp, client_id defaults).
func (is *Issuer) OpaqueToken(c Claims) string {
	tok := randomString(24)
	full := is.complete(c)
	full["active"] = true
	if _, ok := full["client_id"]; !ok {
		full["client_id"] = full["sub"]
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	is.opaque[tok] = full
	return tok
}

// RevokeOpaque makes introspection report the token inactive.
func (is *Issuer) RevokeOpaque(token string) {
	is.mu.Lock()
	defer is.mu.Unlock()
	delete(is.opaque, token)
}

func (is *Issuer) discovery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                is.URL,
		"authorization_endpoint":                is.URL + "/authorize",
		"token_endpoint":                        is.URL + "/token",
		"jwks_uri":                              is.URL + "/jwks",
		"introspection_endpoint":                is.URL + "/introspect",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"grant_types_supported":                 []string{"authorization_code", "client_credentials"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "none"},
		"code_challenge_methods_supported":      []string{"S256"},
		"scopes_supported":                      []string{"openid", "fhirUser", "launch/patient", "offline_access", "patient/*.rs", "system/*.rs"},
	})
}

func (is *Issuer) jwks(w http.ResponseWriter, _ *http.Request) {
	is.mu.Lock()
	is.jwksFetches++
	keys := append([]jose.JSONWebKey{{Key: &is.key.PublicKey, KeyID: is.kid, Algorithm: "RS256", Use: "sig"}}, is.oldKeys...)
	is.mu.Unlock()
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: keys})
}

// authorize implements the authorization endpoint of the code flow. There
// is no login page: login_hint names a user registered with RegisterUser
// (or, for "Patient/<id>", a patient with that fhirUser), as if they had
// logged in and approved every requested scope.
func (is *Issuer) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if r.Method == http.MethodPost {
		// the login page's form: the same parameters, and the person chosen
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		q = r.PostForm
	}
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || !redirect.IsAbs() {
		http.Error(w, "redirect_uri must be absolute", http.StatusBadRequest)
		return
	}
	is.mu.Lock()
	registered := is.redirects[q.Get("client_id")]
	is.mu.Unlock()
	if len(registered) > 0 && !slices.Contains(registered, q.Get("redirect_uri")) {
		// never send a code to an address the client did not register
		http.Error(w, "redirect_uri is not registered for this client", http.StatusBadRequest)
		return
	}
	fail := func(code string) {
		v := redirect.Query()
		v.Set("error", code)
		v.Set("state", q.Get("state"))
		redirect.RawQuery = v.Encode()
		http.Redirect(w, r, redirect.String(), http.StatusFound)
	}
	is.mu.Lock()
	_, known := is.clients[q.Get("client_id")]
	user, hasUser := is.users[q.Get("login_hint")]
	is.mu.Unlock()
	switch {
	case !known:
		http.Error(w, "unknown client_id", http.StatusBadRequest)
		return
	case q.Get("response_type") != "code":
		fail("unsupported_response_type")
		return
	case q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "":
		fail("invalid_request") // PKCE S256 is mandatory, plain is refused
		return
	}
	if !hasUser && q.Get("login_hint") == "" && r.Method == http.MethodGet && is.hasPeople() {
		is.loginPage(w, q)
		return
	}
	if !hasUser {
		hint := q.Get("login_hint")
		if !strings.HasPrefix(hint, "Patient/") {
			fail("access_denied")
			return
		}
		user = Claims{"sub": "patient-" + strings.TrimPrefix(hint, "Patient/"), "fhirUser": hint}
	}
	code := randomString(16)
	is.mu.Lock()
	is.codes[code] = &authCode{clientID: q.Get("client_id"), redirectURI: q.Get("redirect_uri"), challenge: q.Get("code_challenge"), scope: q.Get("scope"), claims: user}
	is.mu.Unlock()
	v := redirect.Query()
	v.Set("code", code)
	v.Set("state", q.Get("state"))
	redirect.RawQuery = v.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

func (is *Issuer) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, "invalid_request")
		return
	}
	clientID, secret, hasBasic := r.BasicAuth()
	if !hasBasic {
		clientID, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	is.mu.Lock()
	want, known := is.clients[clientID]
	is.mu.Unlock()
	if !known || (want != "" && secret != want) {
		oauthError(w, "invalid_client")
		return
	}
	switch r.PostForm.Get("grant_type") {
	case "client_credentials":
		if want == "" {
			oauthError(w, "unauthorized_client")
			return
		}
		scope := r.PostForm.Get("scope")
		tok := is.mint(Claims{"sub": clientID, "client_id": clientID, "scope": scope})
		writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": int(is.TokenTTL.Seconds()), "scope": scope})
	case "authorization_code":
		is.mu.Lock()
		ac := is.codes[r.PostForm.Get("code")]
		delete(is.codes, r.PostForm.Get("code")) // one use only
		is.mu.Unlock()
		if ac == nil || ac.clientID != clientID || ac.redirectURI != r.PostForm.Get("redirect_uri") {
			oauthError(w, "invalid_grant")
			return
		}
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if base64.RawURLEncoding.EncodeToString(sum[:]) != ac.challenge {
			oauthError(w, "invalid_grant")
			return
		}
		claims := maps.Clone(ac.claims)
		claims["client_id"] = clientID
		claims["scope"] = ac.scope
		access := is.mint(claims)
		resp := map[string]any{"access_token": access, "token_type": "Bearer", "expires_in": int(is.TokenTTL.Seconds()), "scope": ac.scope}
		if fu, _ := claims["fhirUser"].(string); strings.HasPrefix(fu, "Patient/") {
			resp["patient"] = strings.TrimPrefix(fu, "Patient/")
		}
		if strings.Contains(" "+ac.scope+" ", " openid ") {
			resp["id_token"] = is.mint(Claims{"sub": claims["sub"], "aud": clientID, "fhirUser": claims["fhirUser"], "name": claims["name"]})
		}
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Pragma", "no-cache")
		writeJSON(w, http.StatusOK, resp)
	default:
		oauthError(w, "unsupported_grant_type")
	}
}

func (is *Issuer) mint(c Claims) string {
	is.mu.Lock()
	key, kid := is.key, is.kid
	is.mu.Unlock()
	tok, err := Sign(is.complete(c), jose.RS256, key, kid)
	if err != nil {
		panic(err)
	}
	return tok
}

// introspect implements RFC 7662 for opaque tokens (registered with
// OpaqueToken) and for the issuer's own JWTs. The caller authenticates as a
// registered confidential client with HTTP Basic.
func (is *Issuer) introspect(w http.ResponseWriter, r *http.Request) {
	id, secret, ok := r.BasicAuth()
	if ok {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	}
	is.mu.Lock()
	want, known := is.clients[id]
	is.mu.Unlock()
	if !ok || !known || want == "" || secret != want {
		w.Header().Set("WWW-Authenticate", `Basic realm="introspect"`)
		oauthErrorStatus(w, "invalid_client", http.StatusUnauthorized)
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(w, "invalid_request")
		return
	}
	is.mu.Lock()
	c, found := is.opaque[r.PostForm.Get("token")]
	is.mu.Unlock()
	if !found {
		writeJSON(w, http.StatusOK, map[string]any{"active": false})
		return
	}
	if exp, ok := c["exp"].(int64); ok && is.Now().Unix() > exp {
		writeJSON(w, http.StatusOK, map[string]any{"active": false})
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func oauthError(w http.ResponseWriter, code string) { oauthErrorStatus(w, code, http.StatusBadRequest) }

func oauthErrorStatus(w http.ResponseWriter, code string, status int) {
	writeJSON(w, status, map[string]string{"error": code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// TokenResponse is the token endpoint's answer to a login.
type TokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	Scope       string `json:"scope"`
	IDToken     string `json:"id_token"`
	// Patient is the SMART launch context (the patient id).
	Patient string `json:"patient"`
}

// Login runs the authorization-code flow with PKCE (S256) over HTTP the way
// a patient app does: it sends the user to the authorization endpoint (the
// user given by login_hint: a name from RegisterUser or "Patient/<id>"),
// checks state on the redirect, and exchanges the code with its verifier.
// clientID must be registered (public clients have an empty secret).
func (is *Issuer) Login(t testing.TB, clientID, user string, scopes ...string) TokenResponse {
	t.Helper()
	tr, err := is.login(clientID, user, scopes)
	if err != nil {
		t.Fatalf("authtest: login: %v", err)
	}
	return tr
}

func (is *Issuer) login(clientID, user string, scopes []string) (TokenResponse, error) {
	var tr TokenResponse
	verifier := randomString(48) // 64 characters, within RFC 7636's 43..128
	sum := sha256.Sum256([]byte(verifier))
	state := randomString(16)
	const redirectURI = "http://127.0.0.1/callback"
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {clientID},
		"redirect_uri":          {redirectURI},
		"scope":                 {strings.Join(scopes, " ")},
		"state":                 {state},
		"aud":                   {is.Audience},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"},
		"login_hint":            {user},
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(is.URL + "/authorize?" + q.Encode())
	if err != nil {
		return tr, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return tr, fmt.Errorf("authorize answered %s", resp.Status)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		return tr, err
	}
	back := loc.Query()
	if back.Get("state") != state {
		return tr, fmt.Errorf("state mismatch")
	}
	if e := back.Get("error"); e != "" {
		return tr, fmt.Errorf("authorize: %s", e)
	}
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {back.Get("code")},
		"redirect_uri":  {redirectURI},
		"code_verifier": {verifier},
		"client_id":     {clientID},
	}
	resp, err = http.PostForm(is.URL+"/token", form)
	if err != nil {
		return tr, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return tr, fmt.Errorf("token endpoint: %s %s", resp.Status, e.Error)
	}
	return tr, json.NewDecoder(resp.Body).Decode(&tr)
}

// NewRSAKey returns a fresh 2048-bit RSA key, for tests that sign tokens
// with a key the issuer does not publish.
func NewRSAKey() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}
