// Package smarttest fakes what stands outside the gateway when a patient
// connects a source: the source's SMART authorization server (a login
// page, the authorization code flow with PKCE, refresh and revocation) in
// front of its FHIR API, which then answers only requests carrying a token
// it issued. For tests and the demo; it is not an authorization server to
// use for real data.
package smarttest

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/adapters/smart"
)

// Person is someone who can log in at the source, and whose record there
// the login opens.
type Person struct {
	// Name is shown on the login page; Patient is the id at the source.
	Name, Patient string
}

// Login is the fake authorization server in front of a FHIR handler.
type Login struct {
	// Title names the source on its login page.
	Title string
	// ClientID and RedirectURIs are the one registered client; Secret,
	// when set, makes it confidential.
	ClientID, Secret string
	RedirectURIs     []string
	// People can log in.
	People []Person
	// TokenTTL is the access tokens' lifetime (default 1 hour).
	TokenTTL time.Duration
	// FHIR answers the API once a request's token checks out.
	FHIR http.Handler
	// Base is the public base URL (http://127.0.0.1:port), set by the
	// caller once it listens.
	Base string
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	mu                                sync.Mutex
	codes                             map[string]grant
	access                            map[string]grant // access token -> grant
	refresh                           map[string]grant // refresh token -> grant
	Exchanges, Refreshes, Revocations int
	// Refused counts FHIR requests answered 401.
	Refused int
}

type grant struct {
	patient, challenge, redirect, scope string
	expires                             time.Time
}

func (l *Login) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// ServeHTTP implements http.Handler.
func (l *Login) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/.well-known/smart-configuration":
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(smart.Configuration{
			AuthorizationEndpoint: l.Base + "/auth/authorize", TokenEndpoint: l.Base + "/auth/token", RevocationEndpoint: l.Base + "/auth/revoke",
			CodeChallengeMethodsSupported: []string{"S256"}, GrantTypesSupported: []string{"authorization_code", "refresh_token"},
			ScopesSupported: []string{"launch/patient", "patient/*.read", "offline_access", "openid", "fhirUser"},
			Capabilities:    []string{"launch-standalone", "client-public", "client-confidential-symmetric", "context-standalone-patient", "permission-offline", "permission-patient"},
		})
	case "/auth/authorize":
		l.authorize(w, r)
	case "/auth/token":
		l.token(w, r)
	case "/auth/revoke":
		_ = r.ParseForm()
		l.mu.Lock()
		l.Revocations++
		delete(l.access, r.PostForm.Get("token"))
		delete(l.refresh, r.PostForm.Get("token"))
		l.mu.Unlock()
	default:
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		l.mu.Lock()
		g, ok := l.access[tok]
		ok = ok && l.now().Before(g.expires)
		if !ok {
			l.Refused++
		}
		l.mu.Unlock()
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			http.Error(w, "a valid access token is required", http.StatusUnauthorized)
			return
		}
		l.FHIR.ServeHTTP(w, r)
	}
}

// SetRedirectURIs sets the registered redirect URIs (once the client's
// address is known).
func (l *Login) SetRedirectURIs(uris ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.RedirectURIs = uris
}

// ExpireAccess makes every access token expired (as time passing would).
func (l *Login) ExpireAccess() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, g := range l.access {
		g.expires = l.now().Add(-time.Second)
		l.access[k] = g
	}
}

// RevokeAll forgets every token, as a patient revoking the app at the
// source would.
func (l *Login) RevokeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.access)
	clear(l.refresh)
}

// Tokens returns every live access and refresh token (to look for them
// where they must not be).
func (l *Login) Tokens() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for k := range l.access {
		out = append(out, k)
	}
	for k := range l.refresh {
		out = append(out, k)
	}
	return out
}

// authorize shows the login page (GET) and, on the form's answer (POST),
// sends the browser back to the client with a code.
func (l *Login) authorize(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	q := r.Form
	redirect := q.Get("redirect_uri")
	l.mu.Lock()
	registered := slices.Contains(l.RedirectURIs, redirect)
	l.mu.Unlock()
	if q.Get("client_id") != l.ClientID || !registered {
		http.Error(w, "unknown client or redirect_uri", http.StatusBadRequest)
		return
	}
	back, _ := url.Parse(redirect)
	bq := back.Query()
	bq.Set("state", q.Get("state"))
	if q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
		bq.Set("error", "invalid_request")
		back.RawQuery = bq.Encode()
		http.Redirect(w, r, back.String(), http.StatusFound)
		return
	}
	if r.Method == http.MethodGet {
		l.loginPage(w, q)
		return
	}
	who := q.Get("patient")
	if q.Get("deny") != "" || !slices.ContainsFunc(l.People, func(p Person) bool { return p.Patient == who }) {
		bq.Set("error", "access_denied")
	} else {
		code := random()
		l.mu.Lock()
		if l.codes == nil {
			l.codes = map[string]grant{}
		}
		l.codes[code] = grant{patient: who, challenge: q.Get("code_challenge"), redirect: redirect, scope: q.Get("scope"), expires: l.now().Add(time.Minute)}
		l.mu.Unlock()
		bq.Set("code", code)
	}
	back.RawQuery = bq.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

func (l *Login) loginPage(w http.ResponseWriter, q url.Values) {
	var b strings.Builder
	title := html.EscapeString(l.Title)
	b.WriteString(`<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Sign in · ` + title + `</title>
<style>body{font:16px/1.5 system-ui,sans-serif;margin:0 auto;max-width:28rem;padding:1rem;color:#1a1a1a}button{font:inherit;padding:.6rem 1rem;margin:.25rem 0;width:100%;border-radius:.4rem;border:1px solid #0b5394;background:#0b5394;color:#fff}button.secondary{background:#fff;color:#0b5394}</style></head>
<body><main><h1>` + title + `</h1><p>Sign in to let <strong>fhirgate</strong> read your record here (` + html.EscapeString(q.Get("scope")) + `).</p><form method="post" action="/auth/authorize">`)
	for k, vs := range q {
		if k == "patient" || k == "deny" {
			continue
		}
		for _, v := range vs {
			b.WriteString(`<input type="hidden" name="` + html.EscapeString(k) + `" value="` + html.EscapeString(v) + `">`)
		}
	}
	for _, p := range l.People {
		b.WriteString(`<button type="submit" name="patient" value="` + html.EscapeString(p.Patient) + `">Sign in as ` + html.EscapeString(p.Name) + `</button>`)
	}
	b.WriteString(`<button type="submit" class="secondary" name="deny" value="1">Cancel</button></form></main></body></html>`)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(b.String()))
}

func (l *Login) token(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	f := r.PostForm
	id, secret, basic := r.BasicAuth()
	if basic {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id = f.Get("client_id")
	}
	fail := func(code string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": code})
	}
	if id != l.ClientID || l.Secret != "" && subtle.ConstantTimeCompare([]byte(secret), []byte(l.Secret)) != 1 {
		fail("invalid_client")
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var g grant
	switch f.Get("grant_type") {
	case "authorization_code":
		c, ok := l.codes[f.Get("code")]
		delete(l.codes, f.Get("code"))
		if !ok || l.now().After(c.expires) || c.redirect != f.Get("redirect_uri") || smart.S256(f.Get("code_verifier")) != c.challenge {
			fail("invalid_grant")
			return
		}
		g = c
		l.Exchanges++
	case "refresh_token":
		old, ok := l.refresh[f.Get("refresh_token")]
		if !ok {
			fail("invalid_grant")
			return
		}
		delete(l.refresh, f.Get("refresh_token")) // rotated
		g = old
		l.Refreshes++
	default:
		fail("unsupported_grant_type")
		return
	}
	ttl := l.TokenTTL
	if ttl <= 0 {
		ttl = time.Hour
	}
	access, refresh := random(), random()
	if l.access == nil {
		l.access, l.refresh = map[string]grant{}, map[string]grant{}
	}
	g.expires = l.now().Add(ttl)
	l.access[access], l.refresh[refresh] = g, g
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": access, "token_type": "Bearer", "expires_in": int(ttl.Seconds()),
		"refresh_token": refresh, "patient": g.patient, "scope": g.scope})
}

func random() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
