package adaptertest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/fhirgate/fhirgate/adapters/smart"
)

// token is the fake authorization server: it checks the client assertion
// the way SMART Backend Services requires a server to (§1.6 of STANDARDS.md)
// and issues opaque access tokens.
func (u *Upstream) token(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, code, desc string) {
		u.mu.Lock()
		u.authErrs = append(u.authErrs, desc)
		u.mu.Unlock()
		body, _ := json.Marshal(map[string]string{"error": code, "error_description": desc})
		writeJSON(w, status, "application/json", body)
	}
	if u.opts.Auth != AuthSMART {
		fail(http.StatusBadRequest, "unsupported_grant_type", "no token endpoint here")
		return
	}
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		fail(http.StatusBadRequest, "invalid_request", "POST a form")
		return
	}
	if g := r.PostForm.Get("grant_type"); g != "client_credentials" {
		fail(http.StatusBadRequest, "unsupported_grant_type", "grant_type must be client_credentials")
		return
	}
	if r.PostForm.Get("client_assertion_type") != smart.ClientAssertionType {
		fail(http.StatusUnauthorized, "invalid_client", "wrong client_assertion_type")
		return
	}
	now := u.Clock.Now()
	tok, err := jwt.Parse(r.PostForm.Get("client_assertion"), u.assertionKey,
		jwt.WithValidMethods([]string{smart.RS384, smart.ES384}),
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithAudience(u.srv.URL+"/token"),
		jwt.WithIssuer(ClientID),
		jwt.WithSubject(ClientID),
		jwt.WithExpirationRequired(),
	)
	if err != nil {
		fail(http.StatusUnauthorized, "invalid_client", "assertion rejected: "+err.Error())
		return
	}
	claims := tok.Claims.(jwt.MapClaims)
	exp, _ := claims.GetExpirationTime()
	if exp.Sub(now) > 5*time.Minute {
		fail(http.StatusUnauthorized, "invalid_client", "exp more than 5 minutes ahead")
		return
	}
	aud, _ := claims["aud"].(string)
	if aud == "" {
		fail(http.StatusUnauthorized, "invalid_client", "aud must be the token URL as a string")
		return
	}
	jti, _ := claims["jti"].(string)
	u.mu.Lock()
	replay := jti == "" || u.jtis[jti]
	u.jtis[jti] = true
	u.mu.Unlock()
	if replay {
		fail(http.StatusUnauthorized, "invalid_client", "jti missing or replayed")
		return
	}
	var b [16]byte
	rand.Read(b[:])
	access := hex.EncodeToString(b[:])
	u.mu.Lock()
	u.tokens[access] = now.Add(u.opts.TokenLifetime)
	u.issued++
	u.mu.Unlock()
	body, _ := json.Marshal(map[string]any{
		"access_token": access, "token_type": "bearer",
		"expires_in": int(u.opts.TokenLifetime / time.Second), "scope": r.PostForm.Get("scope"),
	})
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, "application/json", body)
}

// assertionKey finds the registered key by kid, checking typ and that the
// key type fits the algorithm.
func (u *Upstream) assertionKey(t *jwt.Token) (any, error) {
	if typ, _ := t.Header["typ"].(string); typ != "JWT" {
		return nil, errors.New("header typ must be JWT")
	}
	kid, _ := t.Header["kid"].(string)
	j, ok := u.keys[kid]
	if !ok {
		return nil, fmt.Errorf("unknown kid %q", kid)
	}
	alg, _ := t.Header["alg"].(string)
	if alg == smart.RS384 && j.Kty != "RSA" || alg == smart.ES384 && j.Kty != "EC" {
		return nil, fmt.Errorf("kid %q is a %s key, not for %s", kid, j.Kty, alg)
	}
	return smart.PublicKeyFromJWK(j)
}
