package abdm_test

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/abdm"
)

func TestConfigValidate(t *testing.T) {
	env := func(k string) (string, bool) { return "s", k == "ABDM_CLIENT_SECRET" }
	good := `gatewayURL: https://dev.abdm.gov.in/gateway
apiVersion: v0.5
clientID: fhirgate-hiu
secretEnv: ABDM_CLIENT_SECRET
hiuID: fhirgate-hiu
callbackBaseURL: https://fhirgate.example.org/abdm
`
	cases := []struct {
		name, yaml string
		want       []string // substrings of problems; none means valid
	}{
		{"the documented example", good, nil},
		{"v3", strings.Replace(good, "v0.5", "v3", 1), nil},
		{"bad version", strings.Replace(good, "v0.5", "v2", 1), []string{"apiVersion"}},
		{"unknown key", good + "colour: blue\n", []string{"colour"}},
		{"missing secret", strings.Replace(good, "ABDM_CLIENT_SECRET", "NOPE", 1), []string{"secretEnv"}},
		{"callback not under /abdm", strings.Replace(good, "org/abdm", "org/cb", 1), []string{"callbackBaseURL"}},
		{"bad purpose and hiType", good + "purpose: FUN\nhiTypes: [Xray]\n", []string{"purpose", "hiTypes[0]"}},
		{"everything missing", "apiVersion: v3\n", []string{"gatewayURL", "clientID", "hiuID", "secretEnv", "callbackBaseURL"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var doc yaml.Node
			if err := yaml.Unmarshal([]byte(c.yaml), &doc); err != nil {
				t.Fatal(err)
			}
			ps := abdm.NewFactory(abdm.Deps{}).Validate(doc.Content[0], adapters.Options{LookupEnv: env})
			if len(c.want) == 0 && len(ps) > 0 {
				t.Fatalf("problems: %v", ps)
			}
			all := ""
			for _, p := range ps {
				all += p.String() + "\n"
			}
			for _, w := range c.want {
				if !strings.Contains(all, w) {
					t.Errorf("no problem about %s in:\n%s", w, all)
				}
			}
		})
	}
}
