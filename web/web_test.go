package web_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/web"
)

func get(t *testing.T, h http.Handler, path string, headers ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestServing: the entry pages name the versioned assets and are
// revalidated; assets are immutable for a year, gzipped when asked, and
// only the current version is served; every answer carries the CSP that
// runs only the apps' own files; the rest goes to the FHIR API.
func TestServing(t *testing.T) {
	apps, err := web.New(web.Options{PatientClientID: "my-patient-app", TokenOrigins: []string{"https://idp.example.org/realms/x"}})
	if err != nil {
		t.Fatal(err)
	}
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(299) })
	h := apps.Mount(api)

	csp := apps.CSP()
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self' https://idp.example.org", "frame-ancestors 'none'", "base-uri 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("CSP allows inline or eval: %q", csp)
	}

	w := get(t, h, "/app/patient/")
	if w.Code != 200 || w.Header().Get("Content-Security-Policy") != csp || w.Header().Get("Cache-Control") != "no-cache" {
		t.Fatalf("page: %d %v", w.Code, w.Header())
	}
	page := w.Body.String()
	if !strings.Contains(page, `content="my-patient-app"`) || strings.Contains(page, "{{") {
		t.Errorf("page not filled in: %s", page)
	}
	if regexp.MustCompile(`<script>|<script [^>]*>[^<]`).MatchString(page) || strings.Contains(page, " on") && regexp.MustCompile(` on[a-z]+=`).MatchString(page) {
		t.Errorf("inline script in the page")
	}
	srcs := regexp.MustCompile(`(?:src|href)="(/app/v/[^"]+)"`).FindAllStringSubmatch(page, -1)
	if len(srcs) < 2 {
		t.Fatalf("page names no versioned assets: %s", page)
	}
	for _, m := range srcs {
		if !strings.HasPrefix(m[1], apps.AssetBase()+"/") {
			t.Errorf("asset %s not under %s", m[1], apps.AssetBase())
		}
		w := get(t, h, m[1], "Accept-Encoding", "gzip, br")
		if w.Code != 200 || w.Header().Get("Cache-Control") != "public, max-age=31536000, immutable" || w.Header().Get("Content-Encoding") != "gzip" ||
			w.Header().Get("Content-Security-Policy") != csp || w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: %d %v", m[1], w.Code, w.Header())
		}
		zr, err := gzip.NewReader(bytes.NewReader(w.Body.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		plain, _ := io.ReadAll(zr)
		w2 := get(t, h, m[1])
		if w2.Header().Get("Content-Encoding") != "" || !bytes.Equal(w2.Body.Bytes(), plain) {
			t.Errorf("%s: gzip and identity differ", m[1])
		}
	}
	if w := get(t, h, "/app/v/"+apps.Version()+"/patient/main.js"); !strings.HasPrefix(w.Header().Get("Content-Type"), "text/javascript") {
		t.Errorf("module type %q", w.Header().Get("Content-Type"))
	}
	for _, p := range []string{"/app/v/000000000000/patient/main.js", "/app/v/" + apps.Version() + "/patient/index.html",
		"/app/v/" + apps.Version() + "/../web.go", "/app/v/" + apps.Version() + "/nothing.js", "/app/elsewhere"} {
		if w := get(t, h, p); w.Code != http.StatusNotFound {
			t.Errorf("%s: %d", p, w.Code)
		}
	}
	if w := get(t, h, "/app/specialist"); w.Code != http.StatusMovedPermanently || w.Header().Get("Location") != "/app/specialist/" {
		t.Errorf("/app/specialist: %d %s", w.Code, w.Header().Get("Location"))
	}
	if w := get(t, h, "/app/patient/", "If-None-Match", `"`+apps.Version()+`"`); w.Code != http.StatusNotModified {
		t.Errorf("revalidation: %d", w.Code)
	}
	r := httptest.NewRequest(http.MethodPost, "/app/patient/", nil)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", w.Code)
	}
	for _, p := range []string{"/Patient/1", "/metadata", "/application", "/App/patient/"} {
		if w := get(t, h, p); w.Code != 299 {
			t.Errorf("%s did not reach the API: %d", p, w.Code)
		}
	}
	if _, err := web.New(web.Options{TokenOrigins: []string{"javascript:alert(1)"}}); err == nil {
		t.Error("a token origin that is no http(s) origin was accepted")
	}
}
