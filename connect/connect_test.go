package connect_test

import (
	"testing"

	"github.com/fhirgate/fhirgate/connect"
)

// TestCheckReturnURL: only the allowed app addresses, never another
// origin, a path outside the prefix, or one that climbs out of it.
func TestCheckReturnURL(t *testing.T) {
	s := connect.New(connect.Config{ReturnURLs: []string{"https://gw.example.org/app/patient/", "https://app.example.org/connected"}})
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"https://gw.example.org/app/patient/", true},
		{"https://gw.example.org/app/patient/#/sources", true},
		{"https://gw.example.org/app/patient/index.html?x=1", true},
		{"https://app.example.org/connected", true},
		{"https://app.example.org/connected/more", false},
		{"https://gw.example.org/app/patient", false},
		{"https://gw.example.org/app/specialist/", false},
		{"https://gw.example.org/app/patient/../specialist/", false},
		{"https://gw.example.org/app/patient/%2e%2e/specialist/", false},
		{"https://gw.example.org/app/patient/..", false},
		{"http://gw.example.org/app/patient/", false},
		{"https://gw.example.org:444/app/patient/", false},
		{"https://evil.example/app/patient/", false},
		{"https://gw.example.org@evil.example/app/patient/", false},
		{"https://user@gw.example.org/app/patient/", false},
		{"//gw.example.org/app/patient/", false},
		{"/app/patient/", false},
		{"javascript:alert(1)", false},
		{"", false},
	} {
		if err := s.CheckReturnURL(tc.url); (err == nil) != tc.ok {
			t.Errorf("%q: %v, want ok=%v", tc.url, err, tc.ok)
		}
	}
}
