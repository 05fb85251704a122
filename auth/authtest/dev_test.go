package authtest_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/auth/authtest"
)

// TestDevLogin: the development issuer's authorization endpoint shows a
// page listing its people; choosing one redirects to the registered
// redirect URI with a code that only the PKCE verifier redeems; codes are
// never sent to an unregistered redirect URI.
func TestDevLogin(t *testing.T) {
	is, err := authtest.NewDevIssuer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer is.Close()
	const app = "http://127.0.0.1:9/app/patient/"
	is.RegisterClient("patient-app", "")
	is.RegisterRedirect("patient-app", app)
	is.RegisterPerson(authtest.Person{Login: "amy", Name: "Amy Rivera", Description: "Patient", Claims: authtest.Claims{"sub": "p-amy", "fhirUser": "Patient/amy"}})
	verifier := strings.Repeat("v", 50)
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"response_type": {"code"}, "client_id": {"patient-app"}, "redirect_uri": {app}, "scope": {"openid fhirUser launch/patient"},
		"state": {"s1"}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	resp, err := http.Get(is.URL + "/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "Amy Rivera") || !strings.Contains(string(page), `data-login="amy"`) ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "form-action 'self' http://127.0.0.1:9") {
		t.Fatalf("login page: %d %s %s", resp.StatusCode, resp.Header, page)
	}

	bad := url.Values{}
	for k, v := range q {
		bad[k] = v
	}
	bad.Set("redirect_uri", "https://attacker.example/cb")
	bad.Set("login_hint", "amy")
	resp, err = noRedirect.Get(is.URL + "/authorize?" + bad.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
		t.Fatalf("unregistered redirect: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}

	form := url.Values{}
	for k, v := range q {
		form[k] = v
	}
	form.Set("login_hint", "amy")
	resp, err = noRedirect.PostForm(is.URL+"/authorize", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc.String(), app) || loc.Query().Get("state") != "s1" || loc.Query().Get("code") == "" {
		t.Fatalf("login: %d %s", resp.StatusCode, loc)
	}
	code := loc.Query().Get("code")
	redeem := func(v string) (*http.Response, map[string]any) {
		resp, err := http.PostForm(is.URL+"/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {app}, "client_id": {"patient-app"}, "code_verifier": {v}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp, m
	}
	if resp, _ := redeem("wrong" + verifier); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a wrong verifier: %d", resp.StatusCode)
	}
	// the failed attempt used the code up
	if resp, _ := redeem(verifier); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a used code: %d", resp.StatusCode)
	}
	resp, err = noRedirect.PostForm(is.URL+"/authorize", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ = url.Parse(resp.Header.Get("Location"))
	code = loc.Query().Get("code")
	resp, tok := redeem(verifier)
	if resp.StatusCode != 200 || tok["patient"] != "amy" || tok["access_token"] == nil || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("token: %d %v %v", resp.StatusCode, tok, resp.Header)
	}
}
