package authtest

import (
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"html/template"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/config"
)

// NewDevIssuer starts an issuer outside of a test, listening on addr (a
// loopback address such as "127.0.0.1:0"), for development tools like
// `fhirgate demo`. It behaves as NewIssuer's issuer; tokens are minted with
// Mint and the caller stops it with Close. It is a development identity
// provider: it logs in whoever asks, so it refuses non-loopback addresses.
func NewDevIssuer(addr string) (*Issuer, error) {
	if !config.LoopbackAddr(addr) {
		return nil, fmt.Errorf("authtest: the development issuer only listens on loopback, not %q", addr)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("authtest: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("authtest: %w", err)
	}
	is, mux := newIssuer(key)
	is.Server = &httptest.Server{Listener: ln, Config: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
	is.Server.Start()
	is.URL = is.Server.URL
	return is, nil
}

// Mint signs an access token with the issuer's current key; the standard
// claims are filled as Token fills them.
func (is *Issuer) Mint(c Claims) (string, error) {
	is.mu.Lock()
	key, kid := is.key, is.kid
	is.mu.Unlock()
	tok, err := Sign(is.complete(c), jose.RS256, key, kid)
	if err != nil {
		return "", fmt.Errorf("authtest: %w", err)
	}
	return tok, nil
}

// Close stops the issuer's server.
func (is *Issuer) Close() { is.Server.Close() }

// Person is someone the development issuer's login page offers.
type Person struct {
	// Login is the login_hint the person signs in with.
	Login string
	// Name and Description are shown on the login page.
	Name, Description string
	// Claims are the claims of the person's tokens (sub, fhirUser, name…).
	Claims Claims
}

// RegisterPerson adds a person to the login page (and as a user, as
// RegisterUser does). An authorization request without login_hint then
// shows the page instead of failing.
func (is *Issuer) RegisterPerson(p Person) {
	c := maps.Clone(p.Claims)
	if _, ok := c["name"]; !ok {
		c["name"] = p.Name
	}
	is.RegisterUser(p.Login, c)
	is.mu.Lock()
	defer is.mu.Unlock()
	is.people = append(is.people, p)
}

// RegisterRedirect registers a redirect URI of a client: once a client has
// one, codes go only to an exact match of its registered URIs.
func (is *Issuer) RegisterRedirect(clientID, uri string) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.redirects[clientID] = append(is.redirects[clientID], uri)
}

func (is *Issuer) hasPeople() bool {
	is.mu.Lock()
	defer is.mu.Unlock()
	return len(is.people) > 0
}

var loginTmpl = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in — fhirgate development issuer</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1b1f24;line-height:1.5}
main{max-width:36rem;margin:0 auto;padding:1rem}
.warn{background:#fff3d6;border:1px solid #7a4d00;color:#5c3a00;padding:.5rem .75rem;border-radius:6px}
ul{list-style:none;padding:0}li{margin:.75rem 0}
button{font:inherit;width:100%;text-align:left;min-height:3rem;padding:.75rem 1rem;border:1px solid #0b5cad;border-radius:8px;background:#fff;color:#1b1f24;cursor:pointer}
button:focus-visible{outline:3px solid #ffbf47;outline-offset:2px}
button strong{color:#0b5cad;display:block}
</style></head>
<body><main>
<h1>Sign in</h1>
<p class="warn">This is fhirgate's <strong>development</strong> identity provider: it signs in anyone who picks a name. Never use it for real data.</p>
<p>Choose who you are (the app {{.Client}} asks for: {{.Scope}}):</p>
<ul>{{range .People}}<li><form method="post" action="authorize">{{range $k, $v := $.Params}}<input type="hidden" name="{{$k}}" value="{{$v}}">{{end}}<input type="hidden" name="login_hint" value="{{.Login}}">
<button type="submit" data-login="{{.Login}}"><strong>{{.Name}}</strong>{{.Description}}</button></form></li>{{end}}</ul>
</main></body></html>`))

// loginPage lists the registered people; choosing one posts the
// authorization request back with that person's login_hint.
func (is *Issuer) loginPage(w http.ResponseWriter, q url.Values) {
	is.mu.Lock()
	people := slices.Clone(is.people)
	is.mu.Unlock()
	params := map[string]string{}
	for _, k := range []string{"response_type", "client_id", "redirect_uri", "scope", "state", "aud", "code_challenge", "code_challenge_method", "nonce"} {
		if v := q.Get(k); v != "" {
			params[k] = v
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// the form posts here, and the answer redirects to the app (form-action
	// covers redirects too)
	formAction := "'self'"
	if u, err := url.Parse(q.Get("redirect_uri")); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		formAction += " " + u.Scheme + "://" + u.Host
	}
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action "+formAction+"; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	_ = loginTmpl.Execute(w, map[string]any{"People": people, "Params": params, "Client": q.Get("client_id"), "Scope": q.Get("scope")})
}
