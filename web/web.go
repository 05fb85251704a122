// Package web serves the gateway's two browser apps: the patient app
// (/app/patient/) and the specialist workspace (/app/specialist/). They are
// plain ES modules embedded in the binary (no build step), log in with
// OpenID Connect (authorization code + PKCE, public clients) against the
// issuer the gateway's /.well-known/smart-configuration names, and then use
// only the public FHIR API with the user's own token: whatever they do, any
// SMART app could.
//
// Every asset is served under /app/v/<hash>/, where <hash> is a digest of
// all embedded files, with a year-long immutable cache; the two pages that
// name them (the apps' entry points) are revalidated on every load, so a new
// binary's files are picked up at once. Every answer carries a
// Content-Security-Policy that runs only the apps' own script files (no
// inline script, no eval, no other origin), connects only to the gateway
// and the identity provider's token endpoint, and shows fetched documents
// only from blob: URLs the app made itself.
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
)

//go:embed static
var static embed.FS

// lazy are modules imported only when needed (not preloaded).
var lazy = map[string]bool{"lib/dicom.js": true}

// Prefix is where the apps are served.
const Prefix = "/app/"

// Default OAuth client ids of the apps, as registered at the identity
// provider (public clients, PKCE).
const (
	DefaultPatientClientID    = "fhirgate-patient-app"
	DefaultSpecialistClientID = "fhirgate-specialist-app"
)

// Options configure the apps.
type Options struct {
	// PatientClientID and SpecialistClientID are the apps' OAuth client
	// ids (the defaults above when empty).
	PatientClientID, SpecialistClientID string
	// TokenOrigins are the origins ("https://idp.example.org") the apps
	// may call besides the gateway: the identity provider's token
	// endpoint. Put in the Content-Security-Policy's connect-src.
	TokenOrigins []string
}

// Apps serves the embedded apps.
type Apps struct {
	version string // digest of every embedded file
	pages   map[string][]byte
	assets  map[string]asset
	csp     string
}

// asset is one embedded file, kept as is and gzipped (the apps must load
// fast on a slow mobile connection; text compresses 3-4x).
type asset struct {
	body, gz []byte
	ctype    string
}

// New loads the embedded files.
func New(opts Options) (*Apps, error) {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		return nil, err
	}
	a := &Apps{pages: map[string][]byte{}, assets: map[string]asset{}}
	h := sha256.New()
	var names []string
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, p)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := fs.ReadFile(sub, n)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(b))
		h.Write(b)
		if path.Base(n) == "index.html" {
			continue // entry points are pages, never assets
		}
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		zw.Write(b)
		zw.Close()
		ct := mime.TypeByExtension(path.Ext(n))
		switch path.Ext(n) {
		case ".js":
			ct = "text/javascript; charset=utf-8"
		case ".css":
			ct = "text/css; charset=utf-8"
		case ".svg":
			ct = "image/svg+xml"
		}
		if ct == "" {
			ct = "application/octet-stream"
		}
		a.assets[n] = asset{body: b, gz: gz.Bytes(), ctype: ct}
	}
	a.version = hex.EncodeToString(h.Sum(nil))[:12]
	clients := map[string]string{"patient": opts.PatientClientID, "specialist": opts.SpecialistClientID}
	if clients["patient"] == "" {
		clients["patient"] = DefaultPatientClientID
	}
	if clients["specialist"] == "" {
		clients["specialist"] = DefaultSpecialistClientID
	}
	for app, client := range clients {
		b, err := fs.ReadFile(sub, app+"/index.html")
		if err != nil {
			return nil, err
		}
		// every module the app imports is fetched at once with the page
		// instead of level by level as imports are found: on a slow mobile
		// connection each level costs a round trip
		var preload bytes.Buffer
		for _, n := range names {
			if strings.HasSuffix(n, ".js") && (strings.HasPrefix(n, "lib/") || n == app+"/main.js") && !lazy[n] {
				fmt.Fprintf(&preload, "<link rel=\"modulepreload\" href=\"{{assets}}/%s\">\n", n)
			}
		}
		b = bytes.Replace(b, []byte("<!-- modulepreload -->\n"), preload.Bytes(), 1)
		b = bytes.ReplaceAll(b, []byte("{{assets}}"), []byte(a.AssetBase()))
		b = bytes.ReplaceAll(b, []byte("{{clientID}}"), []byte(html.EscapeString(client)))
		a.pages[app] = b
	}
	connect := []string{"'self'"}
	for _, o := range opts.TokenOrigins {
		u, err := url.Parse(o)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return nil, fmt.Errorf("web: token origin %q is not an http(s) origin", o)
		}
		connect = append(connect, u.Scheme+"://"+u.Host)
	}
	a.csp = strings.Join([]string{
		"default-src 'none'",
		"script-src 'self'",
		"style-src 'self'",
		"img-src 'self' blob:",
		"frame-src blob:",
		"connect-src " + strings.Join(connect, " "),
		"base-uri 'none'",
		"form-action 'none'",
		"frame-ancestors 'none'",
	}, "; ")
	return a, nil
}

// AssetBase is the versioned path the current assets are served under.
func (a *Apps) AssetBase() string { return Prefix + "v/" + a.version }

// Version is the digest naming the current assets.
func (a *Apps) Version() string { return a.version }

// CSP is the Content-Security-Policy of every answer.
func (a *Apps) CSP() string { return a.csp }

// ServeHTTP answers requests under Prefix.
func (a *Apps) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", a.csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := strings.TrimPrefix(r.URL.Path, strings.TrimSuffix(Prefix, "/"))
	switch {
	case p == "" || p == "/":
		http.Redirect(w, r, Prefix+"patient/", http.StatusFound)
	case p == "/patient" || p == "/specialist":
		http.Redirect(w, r, Prefix+p[1:]+"/", http.StatusMovedPermanently)
	case p == "/patient/" || p == "/specialist/":
		// the entry points name the versioned assets: revalidated on every
		// load (they hold nothing private)
		page := a.pages[strings.Trim(p, "/")]
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", `"`+a.version+`"`)
		if r.Header.Get("If-None-Match") == `"`+a.version+`"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(page)
		}
	case strings.HasPrefix(p, "/v/"):
		a.asset(w, r, strings.TrimPrefix(p, "/v/"))
	default:
		http.NotFound(w, r)
	}
}

// asset serves one embedded file under /v/<version>/. Only the current
// version is served (a page of an older binary reloads its entry point).
func (a *Apps) asset(w http.ResponseWriter, r *http.Request, rest string) {
	ver, name, _ := strings.Cut(rest, "/")
	f, ok := a.assets[name]
	if ver != a.version || !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.ctype)
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("ETag", `"`+a.version+`"`)
	h.Add("Vary", "Accept-Encoding")
	if r.Header.Get("If-None-Match") == `"`+a.version+`"` {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := f.body
	if acceptsGzip(r) {
		h.Set("Content-Encoding", "gzip")
		body = f.gz
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

// acceptsGzip reports whether the request's Accept-Encoding admits gzip.
func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		name, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(name), "gzip") {
			q = strings.ReplaceAll(strings.TrimSpace(q), " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}

// Mount answers Prefix with the apps and everything else with next (the
// FHIR API).
func (a *Apps) Mount(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == strings.TrimSuffix(Prefix, "/") || strings.HasPrefix(r.URL.Path, Prefix) {
			a.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
