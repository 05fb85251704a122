package config

import (
	"strings"
	"testing"
)

func TestParseStrict(t *testing.T) {
	_, err := Parse("x.yaml", []byte("auth:\n  issuers: []\nsurprise: 1\n"))
	if err == nil || !strings.Contains(err.Error(), "surprise") {
		t.Fatalf("unknown key accepted: %v", err)
	}
	_, err = Parse("x.yaml", []byte("auth:\n  issuers:\n    - url: https://a\n      audiance: x\n"))
	if err == nil || !strings.Contains(err.Error(), "audiance") {
		t.Fatalf("misspelled key accepted: %v", err)
	}
}

func TestValidateReportsAll(t *testing.T) {
	c, err := Parse("gw.yaml", []byte(`
auth:
  issuers:
    - url: http://evil.example.org
    - url: https://ok.example.org
      audience: fhirgate
  clients:
    - clientID: a
      role: provider
    - role: wizard
sources:
  - id: one
    type: fhir
  - id: one
  - type: bulk
`))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate()
	if err == nil {
		t.Fatal("no problems found")
	}
	msg := err.Error()
	for _, want := range []string{
		"gw.yaml:4: auth.issuers[0]: url must be https",
		"gw.yaml:4: auth.issuers[0]: audience is required",
		"gw.yaml:8: auth.clients[0]: a provider needs organization",
		"gw.yaml:10: auth.clients[1]: clientID is required",
		"gw.yaml:10: auth.clients[1]: role must be provider or system",
		"gw.yaml:14: sources[1]: duplicate id",
		"gw.yaml:14: sources[1]: type is required",
		"gw.yaml:15: sources[2]: id is required",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
}

func TestEmpty(t *testing.T) {
	c, err := Parse("e.yaml", nil)
	if err != nil || c.Validate() != nil {
		t.Fatalf("empty config: %v", err)
	}
}

func TestSummaryNarrativeConfig(t *testing.T) {
	c, err := Parse("t.yaml", []byte("summary:\n  narrative:\n    endpoint: https://models.example.org/v1\n    model: m\n    apiKeyEnv: K\n    timeout: 30s\n"))
	if err != nil || c.Validate() != nil || c.Summary.Narrative.Timeout.Seconds() != 30 {
		t.Fatalf("%v %v %+v", err, c.Validate(), c)
	}
	for _, bad := range []string{
		"summary:\n  narrative:\n    endpoint: http://models.example.org/v1\n    model: m\n",
		"summary:\n  narrative:\n    endpoint: https://models.example.org/v1\n",
		"summary:\n  narrative:\n    endpoint: https://x/v1\n    model: m\n    maxTokens: -1\n",
	} {
		c, err := Parse("t.yaml", []byte(bad))
		if err != nil {
			t.Fatal(err)
		}
		if c.Validate() == nil {
			t.Errorf("accepted: %s", bad)
		}
	}
	if _, err := Parse("t.yaml", []byte("summary:\n  narative: {}\n")); err == nil {
		t.Error("a misspelled key is accepted")
	}
}
