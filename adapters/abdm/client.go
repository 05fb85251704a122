package abdm

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/smart"
)

// timestampLayout is ABDM's UTC instant with milliseconds.
const timestampLayout = "2006-01-02T15:04:05.000Z"

func stamp(t time.Time) string { return t.UTC().Format(timestampLayout) }

// gateway is the HIU's client of the HIE-CM gateway.
type gateway struct {
	cfg    Config
	p      paths
	secret string
	hc     *http.Client
	clock  adapters.Clock
	source string

	mu      sync.Mutex
	token   string
	expires time.Time
}

// session returns a bearer token, fetching a new one shortly before the
// old one expires.
func (g *gateway) session(ctx context.Context) (string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.token != "" && g.clock.Now().Before(g.expires) {
		return g.token, nil
	}
	body := map[string]string{"clientId": g.cfg.ClientID, "clientSecret": g.secret}
	if g.cfg.APIVersion == V3 {
		body["grantType"] = "client_credentials"
	}
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.cfg.GatewayURL+g.p.sessions, bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	if g.cfg.APIVersion == V3 {
		req.Header.Set("REQUEST-ID", uuid.NewString())
		req.Header.Set("TIMESTAMP", stamp(g.clock.Now()))
		req.Header.Set("X-CM-ID", g.cfg.CMID)
	}
	resp, err := g.hc.Do(req)
	if err != nil {
		return "", g.fail("session", req, 0, fmt.Errorf("%w: %w", adapters.ErrUnavailable, err))
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusBadRequest {
		return "", g.fail("session", req, resp.StatusCode, adapters.ErrUnauthorized)
	}
	if resp.StatusCode/100 != 2 {
		return "", g.fail("session", req, resp.StatusCode, statusErr(resp.StatusCode))
	}
	var tok struct {
		AccessToken string `json:"accessToken"`
		ExpiresIn   int64  `json:"expiresIn"`
	}
	if err := json.Unmarshal(rb, &tok); err != nil || tok.AccessToken == "" {
		return "", g.fail("session", req, resp.StatusCode, adapters.ErrMalformed)
	}
	life := time.Duration(tok.ExpiresIn) * time.Second
	if life <= 0 {
		life = 10 * time.Minute
	}
	g.token, g.expires = tok.AccessToken, g.clock.Now().Add(life*9/10)
	return g.token, nil
}

func statusErr(code int) error {
	switch {
	case code == http.StatusTooManyRequests:
		return adapters.ErrRateLimited
	case code >= 500:
		return adapters.ErrUnavailable
	case code == http.StatusNotFound:
		return adapters.ErrNotFound
	}
	return adapters.ErrRejected
}

func (g *gateway) fail(op string, req *http.Request, status int, err error) error {
	return &adapters.Error{Source: g.source, Op: op, Method: req.Method, Path: req.URL.Path, Status: status, Attempts: 1, Err: err}
}

// post sends one message. For v0.5 requestId and timestamp go into the
// body (msg must embed Envelope with them set); for v3 they go into
// headers and out of the body.
func (g *gateway) post(ctx context.Context, op, path, requestID string, msg any) error {
	tok, err := g.session(ctx)
	if err != nil {
		return err
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	if g.cfg.APIVersion == V3 {
		b = stripEnvelope(b)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.cfg.GatewayURL+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("X-CM-ID", g.cfg.CMID)
	req.Header.Set("X-HIU-ID", g.cfg.HIUID)
	if g.cfg.APIVersion == V3 {
		req.Header.Set("REQUEST-ID", requestID)
		req.Header.Set("TIMESTAMP", stamp(g.clock.Now()))
	}
	resp, err := g.hc.Do(req)
	if err != nil {
		return g.fail(op, req, 0, fmt.Errorf("%w: %w", adapters.ErrUnavailable, err))
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized {
		g.mu.Lock()
		g.token = "" // renewed on the next call
		g.mu.Unlock()
		return g.fail(op, req, resp.StatusCode, adapters.ErrUnauthorized)
	}
	if resp.StatusCode/100 != 2 {
		return g.fail(op, req, resp.StatusCode, statusErr(resp.StatusCode))
	}
	return nil
}

// stripEnvelope removes requestId and timestamp from a v3 body.
func stripEnvelope(b []byte) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return b
	}
	delete(m, "requestId")
	delete(m, "timestamp")
	out, err := json.Marshal(m)
	if err != nil {
		return b
	}
	return out
}

// Callback authentication errors.
var (
	// ErrUnauthenticated: a callback without a valid gateway signature
	// (missing, forged, expired, or signed by an unknown key).
	ErrUnauthenticated = errors.New("abdm: callback not signed by the gateway")
)

// verifier checks the gateway's signed JWTs against its published JWKS.
type verifier struct {
	url    string
	issuer string
	hc     *http.Client
	clock  adapters.Clock

	mu      sync.Mutex
	keys    map[string]crypto.PublicKey
	fetched time.Time
}

func (v *verifier) refresh(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.url, nil)
	if err != nil {
		return err
	}
	resp, err := v.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("JWKS: HTTP %d", resp.StatusCode)
	}
	var set struct {
		Keys []smart.JWK `json:"keys"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return fmt.Errorf("JWKS: %w", err)
	}
	keys := map[string]crypto.PublicKey{}
	for _, k := range set.Keys {
		if pub, err := smart.PublicKeyFromJWK(k); err == nil {
			keys[k.Kid] = pub
		}
	}
	v.keys, v.fetched = keys, v.clock.Now()
	return nil
}

func (v *verifier) key(ctx context.Context, kid string) (crypto.PublicKey, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if k, ok := v.keys[kid]; ok {
		return k, nil
	}
	// an unknown kid may be a rotation: refetch, but not more than once a
	// minute, so forged tokens cannot make us hammer the gateway
	if v.keys == nil || v.clock.Now().Sub(v.fetched) > time.Minute {
		if err := v.refresh(ctx); err != nil {
			return nil, err
		}
		if k, ok := v.keys[kid]; ok {
			return k, nil
		}
	}
	return nil, fmt.Errorf("unknown key id %q", kid)
}

// verify checks the request's bearer token.
func (v *verifier) verify(r *http.Request) error {
	h := r.Header.Get("Authorization")
	raw, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		raw, ok = strings.CutPrefix(h, "bearer ")
	}
	if !ok || raw == "" {
		return fmt.Errorf("%w: no bearer token", ErrUnauthenticated)
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"}),
		jwt.WithTimeFunc(v.clock.Now), jwt.WithExpirationRequired(), jwt.WithLeeway(30 * time.Second),
	}
	if v.issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.issuer))
	}
	_, err := jwt.Parse(raw, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		return v.key(r.Context(), kid)
	}, opts...)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	return nil
}
