package server_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/server"
)

type fakeABDM struct{ got []string }

func (f *fakeABDM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.got = append(f.got, r.URL.Path)
	w.WriteHeader(http.StatusAccepted)
}

func (f *fakeABDM) CallbackPaths() []string {
	return []string{"/v0.5/consents/hiu/notify", "/v0.5/health-information/transfer"}
}

type denyAll struct{}

func (denyAll) Authenticate(*http.Request) (*auth.Principal, error) {
	return nil, auth.ErrNoToken
}

func TestRegisterABDMPublicRoutes(t *testing.T) {
	h := newHarness(t, storeKinds[0], server.Config{Auth: denyAll{}})
	s := h.srv
	f := &fakeABDM{}
	s.RegisterABDM(f)
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"POST", "/abdm/v0.5/consents/hiu/notify", http.StatusAccepted},
		{"POST", "/abdm/v0.5/health-information/transfer", http.StatusAccepted},
		{"GET", "/Patient", 0}, // the rest still needs a token: refused
	} {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, strings.NewReader(`{}`)))
		if c.want == 0 && rec.Code < 400 || c.want != 0 && rec.Code != c.want {
			b, _ := io.ReadAll(rec.Body)
			t.Errorf("%s %s = %d %s, want %d", c.method, c.path, rec.Code, b, c.want)
		}
	}
	if len(f.got) != 2 || f.got[0] != "/abdm/v0.5/consents/hiu/notify" {
		t.Errorf("handler saw %v", f.got)
	}
	found := false
	for _, r := range s.Routes() {
		if r.Path == "/abdm/v0.5/consents/hiu/notify" && r.Public && r.Name == server.InteractionABDMCallback {
			found = true
		}
	}
	if !found {
		t.Error("the callback is not in the route table as a public route")
	}
}
