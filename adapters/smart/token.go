package smart

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// AssertionLifetime is how far in the future a client assertion expires.
// SMART allows at most five minutes; a minute less leaves room for clocks
// that disagree.
const AssertionLifetime = 4 * time.Minute

// ClientAssertionType is the client_assertion_type of private_key_jwt.
const ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// Assertion signs a client authentication JWT (SMART 2.2 "Authenticating
// with asymmetric keys"): header alg, kid and typ "JWT"; claims iss = sub =
// clientID, aud = tokenURL, exp = now + AssertionLifetime, a random jti,
// and iat.
func (k *Key) Assertion(clientID, tokenURL string, now time.Time) (string, error) {
	var method jwt.SigningMethod
	switch k.alg {
	case RS384:
		method = jwt.SigningMethodRS384
	case ES384:
		method = jwt.SigningMethodES384
	default:
		return "", fmt.Errorf("%w: algorithm %q", ErrKey, k.alg)
	}
	jti, err := randomID()
	if err != nil {
		return "", err
	}
	t := jwt.NewWithClaims(method, jwt.MapClaims{
		"iss": clientID,
		"sub": clientID,
		// A string, not an array: some servers compare aud as a string.
		"aud": tokenURL,
		"exp": now.Add(AssertionLifetime).Unix(),
		"iat": now.Unix(),
		"jti": jti,
	})
	t.Header["kid"] = k.kid
	t.Header["typ"] = "JWT"
	return t.SignedString(k.signer)
}

func randomID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Doer sends HTTP requests; *http.Client is one.
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// Configuration is the part of .well-known/smart-configuration a backend
// client reads.
type Configuration struct {
	TokenEndpoint                         string   `json:"token_endpoint"`
	GrantTypesSupported                   []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported     []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgsSupported []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	ScopesSupported                       []string `json:"scopes_supported"`
	Capabilities                          []string `json:"capabilities"`
	// The authorization code flow's endpoints (patient logins).
	AuthorizationEndpoint         string   `json:"authorization_endpoint"`
	RevocationEndpoint            string   `json:"revocation_endpoint"`
	CodeChallengeMethodsSupported []string `json:"code_challenge_methods_supported"`
}

// ErrDiscovery is wrapped by discovery failures.
var ErrDiscovery = errors.New("SMART discovery failed")

// Discover reads {fhirBase}/.well-known/smart-configuration (the suffix is
// appended even when the base has a path) and checks that token_endpoint is
// an absolute URL.
func Discover(ctx context.Context, hc Doer, fhirBase string) (*Configuration, error) {
	u := strings.TrimSuffix(fhirBase, "/") + "/.well-known/smart-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDiscovery, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, &TokenError{Op: "discovery", Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, &TokenError{Op: "discovery", Status: resp.StatusCode, Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &TokenError{Op: "discovery", Status: resp.StatusCode, Err: fmt.Errorf("%w: HTTP %d", ErrDiscovery, resp.StatusCode)}
	}
	var c Configuration
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, fmt.Errorf("%w: smart-configuration is not JSON: %w", ErrDiscovery, err)
	}
	if tu, err := url.Parse(c.TokenEndpoint); err != nil || !tu.IsAbs() || tu.Host == "" {
		return nil, fmt.Errorf("%w: token_endpoint %q is not an absolute URL", ErrDiscovery, c.TokenEndpoint)
	}
	return &c, nil
}

// TokenConfig configures a TokenSource. Exactly one of Key (private_key_jwt)
// and Secret (client_secret_basic) is set.
type TokenConfig struct {
	// FHIRBase is where discovery starts when TokenURL is empty.
	FHIRBase string
	// TokenURL skips discovery.
	TokenURL string
	ClientID string
	Key      *Key
	Secret   string
	// Scope is the space-separated scope to request, e.g. "system/*.rs".
	Scope string
	// HTTP sends the requests; Now is the clock (time.Now when nil).
	HTTP Doer
	Now  func() time.Time
	// RenewBefore is how long before expiry a cached token is replaced
	// (default: a fifth of its lifetime, at most one minute).
	RenewBefore time.Duration
}

// TokenSource obtains and caches access tokens. It is safe for concurrent
// use; concurrent callers share one token request.
type TokenSource struct {
	cfg TokenConfig

	mu       sync.Mutex
	tokenURL string
	token    string
	renewAt  time.Time
	fetches  int
}

// NewTokenSource returns a TokenSource; nothing is fetched until Token.
func NewTokenSource(cfg TokenConfig) *TokenSource {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTP == nil {
		cfg.HTTP = http.DefaultClient
	}
	return &TokenSource{cfg: cfg, tokenURL: cfg.TokenURL}
}

// Token returns a valid access token, fetching a new one when there is none
// or the cached one is about to expire.
func (ts *TokenSource) Token(ctx context.Context) (string, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.token != "" && ts.cfg.Now().Before(ts.renewAt) {
		return ts.token, nil
	}
	if ts.tokenURL == "" {
		c, err := Discover(ctx, ts.cfg.HTTP, ts.cfg.FHIRBase)
		if err != nil {
			return "", err
		}
		if len(c.GrantTypesSupported) > 0 && !slices.Contains(c.GrantTypesSupported, "client_credentials") {
			return "", fmt.Errorf("%w: the server does not offer the client_credentials grant", ErrDiscovery)
		}
		if ts.cfg.Key != nil && len(c.TokenEndpointAuthSigningAlgsSupported) > 0 &&
			!slices.Contains(c.TokenEndpointAuthSigningAlgsSupported, ts.cfg.Key.alg) {
			return "", fmt.Errorf("%w: the server accepts %s assertions, not %s", ErrDiscovery,
				strings.Join(c.TokenEndpointAuthSigningAlgsSupported, ", "), ts.cfg.Key.alg)
		}
		ts.tokenURL = c.TokenEndpoint
	}
	tok, lifetime, err := ts.fetch(ctx)
	if err != nil {
		return "", err
	}
	renew := ts.cfg.RenewBefore
	if renew <= 0 {
		renew = min(lifetime/5, time.Minute)
	}
	ts.token, ts.renewAt = tok, ts.cfg.Now().Add(lifetime-renew)
	ts.fetches++
	return tok, nil
}

// Invalidate drops token from the cache (after the resource server refused
// it) so that the next Token fetches a new one. A token that is no longer
// the cached one is ignored: another caller already renewed it.
func (ts *TokenSource) Invalidate(token string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.token == token {
		ts.token = ""
	}
}

// Fetches reports how many tokens were obtained.
func (ts *TokenSource) Fetches() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.fetches
}

// TokenError is a failed discovery or token request.
type TokenError struct {
	Op string // "discovery" or "token request"
	// Status is the HTTP status, 0 when no response arrived.
	Status int
	// Code and Description are the OAuth error response's error and
	// error_description.
	Code, Description string
	Err               error
}

func (e *TokenError) Error() string {
	msg := "SMART " + e.Op
	if e.Status != 0 {
		msg += fmt.Sprintf(": HTTP %d", e.Status)
	}
	if e.Code != "" {
		msg += ": " + e.Code
		if e.Description != "" {
			msg += " (" + e.Description + ")"
		}
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *TokenError) Unwrap() error { return e.Err }

// Temporary reports whether trying again later may succeed: no response,
// a 5xx or 429.
func (e *TokenError) Temporary() bool {
	return e.Status == 0 || e.Status >= 500 || e.Status == http.StatusTooManyRequests
}

func (ts *TokenSource) fetch(ctx context.Context) (string, time.Duration, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	if ts.cfg.Scope != "" {
		form.Set("scope", ts.cfg.Scope)
	}
	if ts.cfg.Key != nil {
		a, err := ts.cfg.Key.Assertion(ts.cfg.ClientID, ts.tokenURL, ts.cfg.Now())
		if err != nil {
			return "", 0, err
		}
		form.Set("client_assertion_type", ClientAssertionType)
		form.Set("client_assertion", a)
	}
	tr, err := requestToken(ctx, ts.cfg.HTTP, ts.tokenURL, form, ts.cfg.ClientID, ts.cfg.Secret, ts.cfg.Key == nil)
	if err != nil {
		return "", 0, err
	}
	return tr.AccessToken, tr.lifetime, nil
}

// tokenResponse is a token endpoint's answer.
type tokenResponse struct {
	AccessToken  string          `json:"access_token"`
	TokenType    string          `json:"token_type"`
	ExpiresIn    json.Number     `json:"expires_in"`
	RefreshToken string          `json:"refresh_token"`
	Patient      string          `json:"patient"`
	Error        string          `json:"error"`
	Description  string          `json:"error_description"`
	Scope        json.RawMessage `json:"scope"`

	lifetime time.Duration
}

// requestToken posts form to a token endpoint, authenticating the client
// with client_secret_basic when basic is set (a public client: client_id
// in the form when secret is empty), and checks the answer: a bearer
// access_token and a valid expires_in (300 s, the SMART recommendation,
// when missing).
func requestToken(ctx context.Context, hc Doer, tokenURL string, form url.Values, clientID, secret string, basic bool) (*tokenResponse, error) {
	if basic && secret == "" {
		form.Set("client_id", clientID)
		basic = false
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, &TokenError{Op: "token request", Err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if basic {
		// client_secret_basic: RFC 6749 §2.3.1 form-encodes both parts.
		req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, &TokenError{Op: "token request", Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, &TokenError{Op: "token request", Status: resp.StatusCode, Err: err}
	}
	var tr tokenResponse
	jsonErr := json.Unmarshal(body, &tr)
	if resp.StatusCode != http.StatusOK {
		return nil, &TokenError{Op: "token request", Status: resp.StatusCode, Code: tr.Error, Description: tr.Description}
	}
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); jsonErr != nil || (ct != "" && !strings.HasSuffix(ct, "json")) {
		return nil, &TokenError{Op: "token request", Status: resp.StatusCode, Err: errors.New("token response is not JSON")}
	}
	if tr.AccessToken == "" || !strings.EqualFold(tr.TokenType, "bearer") {
		return nil, &TokenError{Op: "token request", Status: resp.StatusCode, Err: errors.New("token response lacks a bearer access_token")}
	}
	tr.lifetime = 300 * time.Second
	if tr.ExpiresIn != "" {
		secs, err := tr.ExpiresIn.Float64()
		if err != nil || secs <= 0 {
			return nil, &TokenError{Op: "token request", Status: resp.StatusCode, Err: errors.New("token response has an invalid expires_in")}
		}
		tr.lifetime = time.Duration(secs * float64(time.Second))
	}
	return &tr, nil
}
