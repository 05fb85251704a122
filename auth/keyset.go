package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// signingAlgs are the algorithms access tokens may be signed with: only
// asymmetric ones, so that neither "none" nor an HMAC keyed with a public
// key can ever verify.
var signingAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
}

func signingAlgNames() []string {
	out := make([]string, len(signingAlgs))
	for i, a := range signingAlgs {
		out[i] = string(a)
	}
	return out
}

// errUnknownKey: the token names a key the issuer does not publish (or
// published after the last allowed refresh).
var errUnknownKey = errors.New("no published key verifies the token")

// maxJWKSBytes bounds a JWKS document.
const maxJWKSBytes = 1 << 20

// remoteKeys is an oidc.KeySet over an issuer's JWKS. Unlike go-oidc's
// RemoteKeySet it does not fetch the JWKS again for every token whose
// signature fails: a token whose kid is known and whose signature does not
// verify is simply invalid, and an unknown kid triggers at most one fetch
// per minRefresh. Keys are also refetched once they are older than maxAge,
// so that keys the issuer withdraws stop being accepted.
type remoteKeys struct {
	url        string
	client     *http.Client
	now        func() time.Time
	minRefresh time.Duration
	maxAge     time.Duration
	log        *slog.Logger

	fetchMu sync.Mutex // serialises fetches

	mu      sync.RWMutex
	keys    []jose.JSONWebKey
	fetched time.Time // last fetch attempt
	loaded  bool      // keys hold a successful fetch
}

// VerifySignature implements oidc.KeySet.
func (r *remoteKeys) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(raw, signingAlgs)
	if err != nil {
		return nil, fmt.Errorf("malformed token: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("token must carry exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID

	keys, stale := r.current()
	if stale {
		keys, err = r.refresh(ctx, 0)
		if err != nil && keys == nil {
			return nil, err
		}
	}
	payload, matched := verifyWith(jws, keys, kid)
	if payload != nil {
		return payload, nil
	}
	if matched {
		// The key exists and the signature is wrong: the token was
		// tampered with. No reason to bother the issuer.
		return nil, errUnknownKey
	}
	// A key we do not have: perhaps the issuer rotated. Refresh, rate-limited.
	keys, err = r.refresh(ctx, r.minRefresh)
	if err != nil && keys == nil {
		return nil, err
	}
	if payload, _ := verifyWith(jws, keys, kid); payload != nil {
		return payload, nil
	}
	return nil, errUnknownKey
}

// verifyWith tries the keys that fit kid (all keys when kid is empty).
// matched reports whether some key had the token's kid.
func verifyWith(jws *jose.JSONWebSignature, keys []jose.JSONWebKey, kid string) (payload []byte, matched bool) {
	for i := range keys {
		k := &keys[i]
		if kid != "" && k.KeyID != kid {
			continue
		}
		if kid != "" {
			matched = true
		}
		if p, err := jws.Verify(k); err == nil {
			return p, true
		}
	}
	return nil, matched
}

func (r *remoteKeys) current() (keys []jose.JSONWebKey, stale bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.keys, !r.loaded || r.now().Sub(r.fetched) > r.maxAge
}

// refresh fetches the JWKS unless the last attempt was less than minGap
// ago. It returns the keys in use afterwards (the old ones when the fetch
// failed) and the fetch error, wrapped in ErrUnavailable.
func (r *remoteKeys) refresh(ctx context.Context, minGap time.Duration) ([]jose.JSONWebKey, error) {
	r.fetchMu.Lock()
	defer r.fetchMu.Unlock()
	r.mu.RLock()
	recent := r.loaded && r.now().Sub(r.fetched) < minGap
	keys := r.keys
	r.mu.RUnlock()
	if recent {
		return keys, nil
	}
	// Another caller may have refreshed while this one waited for fetchMu.
	if minGap == 0 {
		if k, stale := r.current(); !stale {
			return k, nil
		}
	}
	fresh, err := r.fetch(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fetched = r.now()
	if err != nil {
		r.log.Warn("fetching the issuer's signing keys failed", "jwks_uri", r.url, "error", err)
		return r.keys, fmt.Errorf("%w: fetching signing keys: %w", ErrUnavailable, err)
	}
	r.keys, r.loaded = fresh, true
	return fresh, nil
}

func (r *remoteKeys) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("JWKS answered %s", resp.Status)
	}
	if len(body) > maxJWKSBytes {
		return nil, errors.New("JWKS document too large")
	}
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("JWKS is not JSON: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, raw := range doc.Keys {
		var k jose.JSONWebKey
		if err := json.Unmarshal(raw, &k); err != nil {
			continue // a key type we cannot use; others may do
		}
		// Only public signing keys: a symmetric key in a JWKS must never
		// become an HMAC secret, and a private key is a publishing mistake.
		if !k.Valid() || !k.IsPublic() || (k.Use != "" && k.Use != "sig") {
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS holds no usable public signing key")
	}
	return keys, nil
}
