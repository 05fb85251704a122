// Package upstream is the HTTP client every adapter talks to its upstream
// with: credentials (none, a bearer token from the environment, OAuth
// client secret, SMART Backend Services), retries with exponential back-off
// and jitter on 429, 5xx, connection errors and time-outs (honouring
// Retry-After in seconds or as an HTTP date), one token renewal on a 401, a
// per-source concurrency limit and rate limit, per-request time-outs, gzip,
// bounded bodies, and errors that are safe to log.
package upstream

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/smart"
	"github.com/fhirgate/fhirgate/config"
)

// Config is the part of a source's config that every HTTP adapter shares;
// adapter configs inline it.
type Config struct {
	// BaseURL is the upstream's FHIR base. https is required except on
	// loopback.
	BaseURL string `yaml:"baseURL"`
	// Auth says how to authenticate; the default is none.
	Auth Auth `yaml:"auth"`
	// Timeout bounds each request attempt: until the whole body is read, or
	// for streamed downloads until the headers arrive and then between two
	// reads. Default 30s.
	Timeout time.Duration `yaml:"timeout"`
	// Concurrency is the most requests in flight to this source. Default 4.
	Concurrency int `yaml:"concurrency"`
	// RateLimit is the most requests per second to this source (0: no
	// limit); RateBurst how many may go at once after a quiet spell
	// (default: Concurrency).
	RateLimit float64 `yaml:"rateLimit"`
	RateBurst int     `yaml:"rateBurst"`
	// MaxRetries is how many times a failed request is repeated. Default 4.
	MaxRetries *int `yaml:"maxRetries"`
	// RetryDelay is the first back-off (doubled on each retry, with jitter).
	// Default 500ms.
	RetryDelay time.Duration `yaml:"retryDelay"`
	// MaxRetryDelay caps the back-off; a Retry-After longer than it fails
	// the request instead of waiting. Default 2m.
	MaxRetryDelay time.Duration `yaml:"maxRetryDelay"`
	// MaxResponseBytes bounds a response body read into memory (search
	// pages, manifests); streamed downloads are not bounded. Default 256 MiB.
	MaxResponseBytes int64 `yaml:"maxResponseBytes"`
}

// Auth types.
const (
	AuthNone         = "none"
	AuthBearer       = "bearer"
	AuthClientSecret = "client-secret"
	AuthSMARTBackend = "smart-backend"
	// AuthSMARTPatient: the source is read with the patient's own login
	// there (SMART standalone launch), which the patient makes from the
	// patient app (package connect); the gateway is the SMART client.
	AuthSMARTPatient = "smart-patient"
)

// DefaultPatientScopes are requested by smart-patient sources when
// Auth.Scopes is empty.
var DefaultPatientScopes = []string{"launch/patient", "patient/*.read", "offline_access", "openid", "fhirUser"}

// DefaultScope is requested when Auth.Scopes is empty.
const DefaultScope = "system/*.rs"

// Auth configures credentials. Secrets are never in the config file itself:
// tokenEnv and secretEnv name environment variables, privateKeyFile a PEM
// file.
type Auth struct {
	// Type is none, bearer, client-secret, smart-backend or
	// smart-patient.
	Type string `yaml:"type"`
	// TokenEnv names the variable holding the bearer token (bearer).
	TokenEnv string `yaml:"tokenEnv"`
	// ClientID is the OAuth client id (client-secret, smart-backend,
	// smart-patient).
	ClientID string `yaml:"clientID"`
	// SecretEnv names the variable holding the client secret
	// (client-secret; optional for smart-patient, which is otherwise a
	// public client relying on PKCE).
	SecretEnv string `yaml:"secretEnv"`
	// PrivateKeyFile is the PEM signing key, RSA (RS384) or EC P-384
	// (ES384) (smart-backend).
	PrivateKeyFile string `yaml:"privateKeyFile"`
	// KeyID is the kid registered at the EHR; default: the key's RFC 7638
	// thumbprint.
	KeyID string `yaml:"keyID"`
	// SigningAlg, when set, must match the key (RS384 or ES384).
	SigningAlg string `yaml:"signingAlg"`
	// Scopes to request (client-secret, smart-backend, smart-patient).
	// Default ["system/*.rs"] (DefaultPatientScopes for smart-patient);
	// use ["system/*.read"] for v1-only servers.
	Scopes []string `yaml:"scopes"`
	// TokenURL skips discovery through .well-known/smart-configuration.
	TokenURL string `yaml:"tokenURL"`
}

// withDefaults fills in defaults.
func (c Config) withDefaults() Config {
	c.BaseURL = strings.TrimSuffix(c.BaseURL, "/")
	if c.Auth.Type == "" {
		c.Auth.Type = AuthNone
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 4
	}
	if c.RateBurst <= 0 {
		c.RateBurst = c.Concurrency
	}
	if c.MaxRetries == nil {
		n := 4
		c.MaxRetries = &n
	}
	if c.RetryDelay <= 0 {
		c.RetryDelay = 500 * time.Millisecond
	}
	if c.MaxRetryDelay <= 0 {
		c.MaxRetryDelay = 2 * time.Minute
	}
	if c.MaxResponseBytes <= 0 {
		c.MaxResponseBytes = 256 << 20
	}
	if len(c.Auth.Scopes) == 0 {
		c.Auth.Scopes = []string{DefaultScope}
		if c.Auth.Type == AuthSMARTPatient {
			c.Auth.Scopes = slices.Clone(DefaultPatientScopes)
		}
	}
	return c
}

// Validate adds every problem of c to p (paths relative to the config
// block). It reads the secrets it names, to report missing ones at start.
func (c *Config) Validate(p *adapters.Problems, opts adapters.Options) {
	opts = opts.WithDefaults()
	if c.BaseURL == "" {
		p.Add("baseURL", "is required")
	} else if err := checkURL(c.BaseURL); err != nil {
		p.Add("baseURL", "%v", err)
	}
	for _, chk := range []struct {
		path string
		bad  bool
	}{
		{"timeout", c.Timeout < 0},
		{"concurrency", c.Concurrency < 0},
		{"rateLimit", c.RateLimit < 0},
		{"rateBurst", c.RateBurst < 0},
		{"maxRetries", c.MaxRetries != nil && *c.MaxRetries < 0},
		{"retryDelay", c.RetryDelay < 0},
		{"maxRetryDelay", c.MaxRetryDelay < 0},
		{"maxResponseBytes", c.MaxResponseBytes < 0},
	} {
		if chk.bad {
			p.Add(chk.path, "must not be negative")
		}
	}
	a := c.Auth
	used := map[string]bool{"type": true}
	switch a.Type {
	case "", AuthNone:
	case AuthBearer:
		used["tokenEnv"] = true
		checkEnv(p, "auth.tokenEnv", a.TokenEnv, opts)
	case AuthClientSecret:
		used["clientID"], used["secretEnv"], used["scopes"], used["tokenURL"] = true, true, true, true
		if a.ClientID == "" {
			p.Add("auth.clientID", "is required for auth type %s", a.Type)
		}
		checkEnv(p, "auth.secretEnv", a.SecretEnv, opts)
	case AuthSMARTBackend:
		for _, k := range []string{"clientID", "privateKeyFile", "keyID", "signingAlg", "scopes", "tokenURL"} {
			used[k] = true
		}
		if a.ClientID == "" {
			p.Add("auth.clientID", "is required for auth type %s", a.Type)
		}
		if a.SigningAlg != "" && a.SigningAlg != smart.RS384 && a.SigningAlg != smart.ES384 {
			p.Add("auth.signingAlg", "must be RS384 or ES384")
		}
		if a.PrivateKeyFile == "" {
			p.Add("auth.privateKeyFile", "is required for auth type %s", a.Type)
		} else if k, err := smart.LoadKeyFile(a.PrivateKeyFile, a.KeyID); err != nil {
			p.Add("auth.privateKeyFile", "%v", err)
		} else if a.SigningAlg != "" && a.SigningAlg != k.Alg() {
			p.Add("auth.signingAlg", "is %s but the key is for %s", a.SigningAlg, k.Alg())
		}
	case AuthSMARTPatient:
		used["clientID"], used["secretEnv"], used["scopes"] = true, true, true
		if a.ClientID == "" {
			p.Add("auth.clientID", "is required for auth type %s", a.Type)
		}
		if a.SecretEnv != "" {
			checkEnv(p, "auth.secretEnv", a.SecretEnv, opts)
		}
		if len(a.Scopes) > 0 {
			if !slices.Contains(a.Scopes, "launch/patient") {
				p.Add("auth.scopes", "must include launch/patient for auth type %s: the gateway learns the patient's id at the source from it", a.Type)
			}
			if !slices.ContainsFunc(a.Scopes, func(s string) bool { return strings.HasPrefix(s, "patient/") }) {
				p.Add("auth.scopes", "must include a patient/ scope (patient/*.read) for auth type %s", a.Type)
			}
			if slices.ContainsFunc(a.Scopes, func(s string) bool { return strings.HasPrefix(s, "system/") || strings.HasPrefix(s, "user/") }) {
				p.Add("auth.scopes", "must not ask for system/ or user/ scopes with auth type %s: the gateway acts only with the patient's own access", a.Type)
			}
		}
	default:
		p.Add("auth.type", "must be one of none, bearer, client-secret, smart-backend, smart-patient")
		return
	}
	if a.TokenURL != "" {
		if err := checkURL(a.TokenURL); err != nil {
			p.Add("auth.tokenURL", "%v", err)
		}
	}
	set := map[string]bool{
		"tokenEnv": a.TokenEnv != "", "clientID": a.ClientID != "", "secretEnv": a.SecretEnv != "",
		"privateKeyFile": a.PrivateKeyFile != "", "keyID": a.KeyID != "", "signingAlg": a.SigningAlg != "",
		"scopes": len(a.Scopes) > 0, "tokenURL": a.TokenURL != "",
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if set[k] && !used[k] {
			p.Add("auth."+k, "is not used by auth type %s", cmpOr(a.Type, AuthNone))
		}
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func checkEnv(p *adapters.Problems, path, name string, opts adapters.Options) {
	if name == "" {
		p.Add(path, "is required")
		return
	}
	// The value is a secret: only whether it is set is reported.
	if v, ok := opts.LookupEnv(name); !ok || v == "" {
		p.Add(path, "environment variable %s is not set", name)
	}
}

// checkURL requires an absolute http(s) URL, https unless the host is
// loopback.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if config.LoopbackHost(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%q must use https (http only on loopback)", s)
	}
	return fmt.Errorf("%q must be an https URL", s)
}
