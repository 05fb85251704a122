package auth

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/fhirgate/fhirgate/config"
)

// Options tune a Verifier. The zero value is a sensible production setting.
type Options struct {
	// HTTPClient talks to the issuers (discovery, JWKS, introspection).
	// Default: a client with a 10 s timeout.
	HTTPClient *http.Client
	// Now is the clock (default time.Now); tests move it.
	Now func() time.Time
	// ClockSkew is how far exp and nbf may be off (default 60 s).
	ClockSkew time.Duration
	// CacheSize bounds the verified-token cache (default 10000 tokens; a
	// negative value disables it).
	CacheSize int
	// IntrospectionTTL is how long an introspection answer is reused
	// (default 30 s; never past the token's exp). It bounds how late the
	// revocation of an opaque token is noticed.
	IntrospectionTTL time.Duration
	// JWKSRefreshInterval is the least time between two JWKS fetches caused
	// by tokens with an unknown key id (default 10 s).
	JWKSRefreshInterval time.Duration
	// JWKSMaxAge is how long fetched keys are used before they are
	// fetched again (default 1 h).
	JWKSMaxAge time.Duration
	// DiscoveryRetryInterval is the least time between two discovery
	// attempts for an issuer that could not be reached (default 5 s).
	DiscoveryRetryInterval time.Duration
	// MaxTokenBytes bounds the size of a token (default 16 KiB).
	MaxTokenBytes int
	// Getenv reads the introspection client secrets (default os.Getenv).
	Getenv func(string) string
	// Logger receives warnings about unreachable issuers (default: discard).
	// Tokens, secrets and claim values are never logged.
	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.ClockSkew = cmp.Or(o.ClockSkew, 60*time.Second)
	o.CacheSize = cmp.Or(o.CacheSize, 10000)
	o.IntrospectionTTL = cmp.Or(o.IntrospectionTTL, 30*time.Second)
	o.JWKSRefreshInterval = cmp.Or(o.JWKSRefreshInterval, 10*time.Second)
	o.JWKSMaxAge = cmp.Or(o.JWKSMaxAge, time.Hour)
	o.DiscoveryRetryInterval = cmp.Or(o.DiscoveryRetryInterval, 5*time.Second)
	o.MaxTokenBytes = cmp.Or(o.MaxTokenBytes, 16<<10)
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Verifier turns bearer tokens into Principals. It is safe for concurrent
// use. Issuers are discovered lazily (or by Discover), so that the gateway
// starts while its identity provider is still down.
type Verifier struct {
	opts    Options
	issuers []*issuer
	byURL   map[string]*issuer
	clients map[string]config.Client
	// practitioners maps a practitioner login (fhirUser) to the provider
	// entry it acts for.
	practitioners map[string]config.Client

	cache    *ttlCache[*Principal]
	negative *ttlCache[*Error]
}

// negativeTTL is how long a refused token is remembered, so that a client
// retrying the same bad token costs a map lookup.
const negativeTTL = 10 * time.Second

// New builds a Verifier from the auth section of the configuration. It
// checks the configuration (patient mappings, introspection secrets) but
// does not contact the issuers.
func New(cfg config.Auth, opts Options) (*Verifier, error) {
	opts.defaults()
	v := &Verifier{
		opts:    opts,
		byURL:   map[string]*issuer{},
		clients: map[string]config.Client{},

		practitioners: map[string]config.Client{},
		cache:         newTTLCache[*Principal](opts.CacheSize),
		negative:      newTTLCache[*Error](min(opts.CacheSize, 1024)),
	}
	var problems []string
	for i, ic := range cfg.Issuers {
		is, err := newIssuer(ic, &v.opts)
		if err != nil {
			problems = append(problems, fmt.Sprintf("auth.issuers[%d]: %v", i, err))
			continue
		}
		if v.byURL[ic.URL] != nil {
			problems = append(problems, fmt.Sprintf("auth.issuers[%d]: duplicate url %s", i, ic.URL))
			continue
		}
		v.issuers = append(v.issuers, is)
		v.byURL[ic.URL] = is
	}
	for i, c := range cfg.Clients {
		if _, dup := v.clients[c.ClientID]; dup {
			problems = append(problems, fmt.Sprintf("auth.clients[%d]: duplicate clientID %s", i, c.ClientID))
		}
		for _, pr := range c.Problems() {
			problems = append(problems, fmt.Sprintf("auth.clients[%d]: %s", i, pr))
		}
		v.clients[c.ClientID] = c
		for _, pr := range c.Practitioners {
			if c.Role != "provider" {
				continue
			}
			if other, dup := v.practitioners[pr]; dup && other.ClientID != c.ClientID {
				problems = append(problems, fmt.Sprintf("auth.clients[%d]: practitioner %s already acts for %s", i, pr, other.Organization))
			}
			v.practitioners[pr] = c
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("auth: invalid configuration:\n  %s", strings.Join(problems, "\n  "))
	}
	return v, nil
}

// Discover contacts every issuer now (discovery document and signing
// keys) and reports those that cannot be reached. Verify works without it;
// call it at startup or from a readiness check.
func (v *Verifier) Discover(ctx context.Context) error {
	var errs []error
	for _, is := range v.issuers {
		st, err := is.discover(ctx, true)
		if err == nil && st.keys != nil {
			_, err = st.keys.refresh(ctx, 0)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("issuer %s: %w", is.cfg.URL, err))
		}
	}
	return errors.Join(errs...)
}

// BearerToken extracts the token of an "Authorization: Bearer" header. A
// missing header is ErrNoToken; a malformed one, or several, ErrInvalidToken.
func BearerToken(r *http.Request) (string, error) {
	hs := r.Header.Values("Authorization")
	switch len(hs) {
	case 0:
		return "", newError(ErrNoToken, "", nil)
	case 1:
	default:
		return "", invalid("more than one Authorization header", nil)
	}
	scheme, token, ok := strings.Cut(hs[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", invalid("the Authorization header is not a Bearer token", nil)
	}
	token = strings.TrimLeft(token, " ")
	if token == "" {
		return "", invalid("empty bearer token", nil)
	}
	// RFC 6750 b64token: ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" *"="
	for i := 0; i < len(token); i++ {
		c := token[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~+/=", c) >= 0) {
			return "", invalid("the bearer token has characters a token cannot have", nil)
		}
	}
	return token, nil
}

// Authenticate verifies the bearer token of a request.
func (v *Verifier) Authenticate(r *http.Request) (*Principal, error) {
	token, err := BearerToken(r)
	if err != nil {
		return nil, err
	}
	return v.Verify(r.Context(), token)
}

// Verify checks an access token and returns its principal. JWTs are
// verified locally against the issuer named by their iss claim; other
// tokens are introspected at the issuers that have an introspection
// endpoint. Errors are *Error (see the sentinels). Verified tokens are
// cached until they expire, so a repeated token costs a hash and a lookup.
func (v *Verifier) Verify(ctx context.Context, token string) (*Principal, error) {
	if token == "" {
		return nil, newError(ErrNoToken, "", nil)
	}
	if len(token) > v.opts.MaxTokenBytes {
		return nil, invalid("token too large", nil)
	}
	now := v.opts.Now()
	key := keyOf(token)
	if p, ok := v.cache.get(key, now); ok {
		return p, nil
	}
	if e, ok := v.negative.get(key, now); ok {
		return nil, e
	}
	p, expires, err := v.verify(ctx, token, now)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			e = newError(ErrUnavailable, "the access token could not be checked", err)
		}
		if errors.Is(e, ErrInvalidToken) || errors.Is(e, ErrForbidden) {
			v.negative.put(key, e, now.Add(negativeTTL), now)
		}
		return nil, e
	}
	v.cache.put(key, p, expires, now)
	return p, nil
}

func (v *Verifier) verify(ctx context.Context, token string, now time.Time) (*Principal, time.Time, error) {
	switch strings.Count(token, ".") {
	case 2:
		iss, err := unverifiedIssuer(token)
		if err != nil {
			return nil, time.Time{}, invalid("malformed JWT", err)
		}
		is := v.byURL[iss]
		if is == nil {
			return nil, time.Time{}, invalid("token from an issuer that is not configured", nil)
		}
		claims, err := is.verifyJWT(ctx, token, now)
		if err != nil {
			return nil, time.Time{}, err
		}
		p, err := is.principal(claims, v.clients, v.practitioners)
		if err != nil {
			return nil, time.Time{}, err
		}
		return p, p.Expiry.Add(v.opts.ClockSkew), nil
	case 4:
		return nil, time.Time{}, invalid("encrypted tokens (JWE) are not accepted", nil)
	}
	var lastErr error = invalid("not a JWT, and no issuer has an introspection endpoint", nil)
	for _, is := range v.issuers {
		if is.cfg.IntrospectionURL == "" {
			continue
		}
		claims, err := is.introspect(ctx, token, now)
		if err != nil {
			lastErr = err
			if errors.Is(err, ErrInvalidToken) {
				continue // maybe another issuer knows it
			}
			return nil, time.Time{}, err
		}
		p, err := is.principal(claims, v.clients, v.practitioners)
		if err != nil {
			return nil, time.Time{}, err
		}
		expires := now.Add(v.opts.IntrospectionTTL)
		if !p.Expiry.IsZero() && p.Expiry.Add(v.opts.ClockSkew).Before(expires) {
			expires = p.Expiry.Add(v.opts.ClockSkew)
		}
		return p, expires, nil
	}
	return nil, time.Time{}, lastErr
}

// unverifiedIssuer reads the iss claim of a compact JWS without verifying
// it, only to choose the issuer whose keys then verify it.
func unverifiedIssuer(token string) (string, error) {
	parts := strings.SplitN(token, ".", 3)
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", err
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return "", err
	}
	if c.Iss == "" {
		return "", errors.New("no iss claim")
	}
	return c.Iss, nil
}

// issuer is one configured OpenID provider.
type issuer struct {
	cfg       config.Issuer
	opts      *Options
	userClaim string
	mapping   map[string]string
	secret    string // introspection client secret; never logged

	mu          sync.Mutex
	state       *issuerState
	lastAttempt time.Time
	lastErr     error
}

// issuerState is what discovery yields.
type issuerState struct {
	verifier *oidc.IDTokenVerifier
	keys     *remoteKeys
	meta     providerMetadata
}

// providerMetadata is the part of the OpenID discovery document the
// gateway uses.
type providerMetadata struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	IntrospectionEndpoint             string   `json:"introspection_endpoint"`
	RevocationEndpoint                string   `json:"revocation_endpoint"`
	RegistrationEndpoint              string   `json:"registration_endpoint"`
	ScopesSupported                   []string `json:"scopes_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgs      []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
}

func newIssuer(ic config.Issuer, opts *Options) (*issuer, error) {
	if ic.URL == "" {
		return nil, errors.New("url is required")
	}
	if ic.Audience == "" {
		return nil, errors.New("audience is required")
	}
	is := &issuer{cfg: ic, opts: opts, userClaim: cmp.Or(ic.FHIRUserClaim, "fhirUser"), mapping: map[string]string{}}
	for sub, ref := range ic.PatientMapping {
		t, _, ok := splitRef(ref)
		if !ok || t != "Patient" {
			return nil, fmt.Errorf("patientMapping: %q must map to Patient/<id>", sub)
		}
		is.mapping[sub] = ref
	}
	if ic.IntrospectionURL != "" {
		if ic.ClientID == "" || ic.SecretEnv == "" {
			return nil, errors.New("introspectionURL needs clientID and secretEnv")
		}
		is.secret = opts.Getenv(ic.SecretEnv)
		if is.secret == "" {
			return nil, fmt.Errorf("environment variable %s (secretEnv) is empty", ic.SecretEnv)
		}
	}
	return is, nil
}

// discover returns the issuer's discovered state, fetching the discovery
// document when it has not been fetched (at most once per retry interval,
// unless force).
func (is *issuer) discover(ctx context.Context, force bool) (*issuerState, error) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.state != nil {
		return is.state, nil
	}
	now := is.opts.Now()
	if !force && !is.lastAttempt.IsZero() && now.Sub(is.lastAttempt) < is.opts.DiscoveryRetryInterval {
		return nil, fmt.Errorf("%w: discovery of %s failed recently: %w", ErrUnavailable, is.cfg.URL, is.lastErr)
	}
	is.lastAttempt = now
	st, err := is.fetchState(ctx)
	if err != nil {
		is.lastErr = err
		is.opts.Logger.Warn("OpenID discovery failed", "issuer", is.cfg.URL, "error", err)
		return nil, fmt.Errorf("%w: discovery of %s: %w", ErrUnavailable, is.cfg.URL, err)
	}
	is.state = st
	return st, nil
}

func (is *issuer) fetchState(ctx context.Context) (*issuerState, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	prov, err := oidc.NewProvider(oidc.ClientContext(ctx, is.opts.HTTPClient), is.cfg.URL)
	if err != nil {
		return nil, err
	}
	var meta providerMetadata
	if err := prov.Claims(&meta); err != nil {
		return nil, err
	}
	if meta.JWKSURI == "" {
		return nil, errors.New("discovery document has no jwks_uri")
	}
	keys := &remoteKeys{
		url:        meta.JWKSURI,
		client:     is.opts.HTTPClient,
		now:        is.opts.Now,
		minRefresh: is.opts.JWKSRefreshInterval,
		maxAge:     is.opts.JWKSMaxAge,
		log:        is.opts.Logger,
	}
	ver := oidc.NewVerifier(is.cfg.URL, keySetWithErr{keys}, &oidc.Config{
		ClientID:             is.cfg.Audience,
		SupportedSigningAlgs: signingAlgNames(),
		// exp and nbf are checked here, with the configured skew.
		SkipExpiryCheck: true,
	})
	return &issuerState{verifier: ver, keys: keys, meta: meta}, nil
}

// keySetWithErr passes the key set's error back around go-oidc, which
// flattens it to text, so that an unreachable JWKS is told apart from a
// bad signature.
type keySetWithErr struct{ *remoteKeys }

type keyErrSlot struct{}

func (k keySetWithErr) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	p, err := k.remoteKeys.VerifySignature(ctx, raw)
	if err != nil {
		if slot, ok := ctx.Value(keyErrSlot{}).(*error); ok {
			*slot = err
		}
	}
	return p, err
}

// claimSet is a token's claims (or an introspection answer), undecoded.
type claimSet map[string]json.RawMessage

func (c claimSet) str(name string) string {
	var s string
	if raw, ok := c[name]; ok && json.Unmarshal(raw, &s) == nil {
		return s
	}
	return ""
}

func (c claimSet) time(name string) (time.Time, bool) {
	raw, ok := c[name]
	if !ok {
		return time.Time{}, false
	}
	var f float64
	if json.Unmarshal(raw, &f) != nil || f < 0 || f > 1e11 {
		return time.Time{}, false
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), true
}

// audiences reads aud, a string or an array of strings.
func (c claimSet) audiences() []string {
	raw, ok := c["aud"]
	if !ok {
		return nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		return many
	}
	return nil
}

func (is *issuer) verifyJWT(ctx context.Context, token string, now time.Time) (claimSet, error) {
	st, err := is.discover(ctx, false)
	if err != nil {
		return nil, err
	}
	var keyErr error
	idt, err := st.verifier.Verify(context.WithValue(ctx, keyErrSlot{}, &keyErr), token)
	if err != nil {
		if errors.Is(keyErr, ErrUnavailable) {
			return nil, newError(ErrUnavailable, "the issuer's signing keys could not be fetched", keyErr)
		}
		return nil, invalid(describeVerifyError(err, keyErr), err)
	}
	var claims claimSet
	if err := idt.Claims(&claims); err != nil {
		return nil, invalid("claims are not a JSON object", err)
	}
	exp, ok := claims.time("exp")
	if !ok {
		return nil, invalid("the token has no valid exp claim", nil)
	}
	if err := is.checkTimes(claims, exp, now); err != nil {
		return nil, err
	}
	return claims, nil
}

func (is *issuer) checkTimes(claims claimSet, exp, now time.Time) error {
	skew := is.opts.ClockSkew
	if !exp.IsZero() && now.After(exp.Add(skew)) {
		e := invalid("the token has expired", nil)
		e.Expired = true
		return e
	}
	if nbf, ok := claims.time("nbf"); ok && now.Add(skew).Before(nbf) {
		return invalid("the token is not valid yet (nbf)", nil)
	}
	return nil
}

// describeVerifyError turns go-oidc's error into a short reason that names
// no claim value.
func describeVerifyError(err, keyErr error) string {
	msg := err.Error()
	switch {
	case keyErr != nil || strings.Contains(msg, "failed to verify signature"):
		return "the signature does not verify with the issuer's keys"
	case strings.Contains(msg, "malformed jwt"):
		if strings.Contains(msg, "unexpected signature algorithm") {
			return "the token is signed with an algorithm that is not accepted"
		}
		return "malformed JWT"
	case strings.Contains(msg, "issued by a different provider"):
		return "wrong issuer"
	case strings.Contains(msg, "expected audience"):
		return "the token is not meant for this server (aud)"
	case strings.Contains(msg, "unmarshal claims"):
		return "malformed claims"
	}
	return "the token could not be verified"
}
