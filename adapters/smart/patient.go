package smart

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// The SMART App Launch's authorization code flow (standalone launch), for
// the gateway acting as the patient's client at a source: the patient logs
// in at the source, which gives the gateway tokens for the patient's
// record there.

// PatientClient is the gateway's client registration at a source.
type PatientClient struct {
	// ClientID, and Secret for a confidential client ("" for a public
	// client: PKCE alone protects the code).
	ClientID, Secret string
	// RedirectURI is the gateway's callback, as registered at the source.
	RedirectURI string
	// HTTP sends the requests; Now is the clock (time.Now when nil).
	HTTP Doer
	Now  func() time.Time
}

// Tokens are what a patient login gave the gateway.
type Tokens struct {
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	Expiry       time.Time `json:"expiry"`
	Scope        string    `json:"scope,omitempty"`
	// Patient is the patient's id at the source (the launch context).
	Patient string `json:"patient,omitempty"`
}

// NewPKCE returns a random code verifier (256 bits) and its S256
// challenge (RFC 7636).
func NewPKCE() (verifier, challenge string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", err
	}
	verifier = base64.RawURLEncoding.EncodeToString(b[:])
	return verifier, S256(verifier), nil
}

// S256 is the PKCE S256 challenge of a verifier.
func S256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// CheckPatientLogin checks that a source's configuration offers what a
// patient login needs: an absolute authorization endpoint, and S256 when
// it lists its PKCE methods.
func CheckPatientLogin(c *Configuration) error {
	if u, err := url.Parse(c.AuthorizationEndpoint); err != nil || !u.IsAbs() || u.Host == "" {
		return fmt.Errorf("%w: authorization_endpoint %q is not an absolute URL", ErrDiscovery, c.AuthorizationEndpoint)
	}
	if len(c.CodeChallengeMethodsSupported) > 0 && !slices.Contains(c.CodeChallengeMethodsSupported, "S256") {
		return fmt.Errorf("%w: the server does not offer PKCE with S256", ErrDiscovery)
	}
	return nil
}

// AuthorizeURL is where the patient's browser goes to log in at the
// source: response_type code, the client, redirect URI, scope, state, the
// FHIR base as aud, and the PKCE challenge (S256).
func (pc PatientClient) AuthorizeURL(c *Configuration, fhirBase, scope, state, challenge string) (string, error) {
	u, err := url.Parse(c.AuthorizationEndpoint)
	if err != nil {
		return "", fmt.Errorf("%w: authorization_endpoint: %w", ErrDiscovery, err)
	}
	q := u.Query()
	q.Set("response_type", "code")
	q.Set("client_id", pc.ClientID)
	q.Set("redirect_uri", pc.RedirectURI)
	q.Set("scope", scope)
	q.Set("state", state)
	q.Set("aud", fhirBase)
	q.Set("code_challenge", challenge)
	q.Set("code_challenge_method", "S256")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func (pc PatientClient) now() time.Time {
	if pc.Now != nil {
		return pc.Now()
	}
	return time.Now()
}

func (pc PatientClient) doer() Doer {
	if pc.HTTP != nil {
		return pc.HTTP
	}
	return http.DefaultClient
}

// Exchange trades an authorization code for tokens (with the PKCE
// verifier). The answer must name the patient.
func (pc PatientClient) Exchange(ctx context.Context, tokenURL, code, verifier string) (*Tokens, error) {
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {pc.RedirectURI}, "code_verifier": {verifier}}
	tr, err := requestToken(ctx, pc.doer(), tokenURL, form, pc.ClientID, pc.Secret, true)
	if err != nil {
		return nil, err
	}
	if tr.Patient == "" {
		return nil, &TokenError{Op: "token request", Status: http.StatusOK, Err: errors.New("token response names no patient (was launch/patient granted?)")}
	}
	return pc.tokens(tr, ""), nil
}

// Refresh trades a refresh token for new tokens; the old refresh token is
// kept when the source does not rotate it.
func (pc PatientClient) Refresh(ctx context.Context, tokenURL, refreshToken string) (*Tokens, error) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}
	tr, err := requestToken(ctx, pc.doer(), tokenURL, form, pc.ClientID, pc.Secret, true)
	if err != nil {
		return nil, err
	}
	return pc.tokens(tr, refreshToken), nil
}

func (pc PatientClient) tokens(tr *tokenResponse, oldRefresh string) *Tokens {
	t := &Tokens{AccessToken: tr.AccessToken, RefreshToken: tr.RefreshToken, Expiry: pc.now().Add(tr.lifetime), Patient: tr.Patient}
	if t.RefreshToken == "" {
		t.RefreshToken = oldRefresh
	}
	var scope string
	if len(tr.Scope) > 0 && tr.Scope[0] == '"' {
		_ = json.Unmarshal(tr.Scope, &scope)
	}
	t.Scope = scope
	return t
}

// Revoke asks the source to revoke a token (RFC 7009); the answer's body
// is not read.
func (pc PatientClient) Revoke(ctx context.Context, revocationURL, token, hint string) error {
	form := url.Values{"token": {token}, "token_type_hint": {hint}}
	basic := pc.Secret != ""
	if !basic {
		form.Set("client_id", pc.ClientID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, revocationURL, strings.NewReader(form.Encode()))
	if err != nil {
		return &TokenError{Op: "revocation", Err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic {
		req.SetBasicAuth(url.QueryEscape(pc.ClientID), url.QueryEscape(pc.Secret))
	}
	resp, err := pc.doer().Do(req)
	if err != nil {
		return &TokenError{Op: "revocation", Err: err}
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &TokenError{Op: "revocation", Status: resp.StatusCode}
	}
	return nil
}
