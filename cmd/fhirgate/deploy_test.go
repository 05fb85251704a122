package main

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/config"
)

// TestDeployFiles: the files compose.yaml mounts exist and agree with each
// other (the gateway config loads and validates, names the realm's issuer
// and clients, and maps the realm's patient user), and the Dockerfile
// builds with the flags TestReleaseBuild checks. (The images themselves
// are built where a Docker engine runs.)
func TestDeployFiles(t *testing.T) {
	compose, err := os.ReadFile("../../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`\./(deploy/[A-Za-z0-9._/-]+)`).FindAllStringSubmatch(string(compose), -1) {
		if _, err := os.Stat("../../" + m[1]); err != nil {
			t.Errorf("compose.yaml mounts %s: %v", m[1], err)
		}
	}
	cfg, err := config.Load("../../deploy/fhirgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var realm struct {
		Realm   string `json:"realm"`
		Clients []struct {
			ClientID string `json:"clientId"`
		} `json:"clients"`
		Users []struct {
			ID string `json:"id"`
		} `json:"users"`
	}
	b, err := os.ReadFile("../../deploy/keycloak/fhirgate-realm.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &realm); err != nil {
		t.Fatal(err)
	}
	is := cfg.Auth.Issuers[0]
	if !strings.HasSuffix(is.URL, "/realms/"+realm.Realm) {
		t.Errorf("issuer %s is not the realm %s", is.URL, realm.Realm)
	}
	for _, c := range cfg.Auth.Clients {
		if !slices.ContainsFunc(realm.Clients, func(rc struct {
			ClientID string `json:"clientId"`
		}) bool {
			return rc.ClientID == c.ClientID
		}) {
			t.Errorf("client %s is not in the realm", c.ClientID)
		}
	}
	for sub := range is.PatientMapping {
		if !slices.ContainsFunc(realm.Users, func(u struct {
			ID string `json:"id"`
		}) bool {
			return u.ID == sub
		}) {
			t.Errorf("patientMapping names %s, no user of the realm", sub)
		}
	}
	df, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CGO_ENABLED=0 go build -trimpath", `-ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}"`,
		"USER 65532:65532", `HEALTHCHECK`, `"healthcheck"`} {
		if !strings.Contains(string(df), want) {
			t.Errorf("Dockerfile has no %s", want)
		}
	}
}
