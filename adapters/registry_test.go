package adapters_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/bulk"
	"github.com/fhirgate/fhirgate/adapters/fhirrest"
	"github.com/fhirgate/fhirgate/adapters/smart"
	"github.com/fhirgate/fhirgate/config"
)

// specs parses a sources list the way the config file holds it.
func specs(t *testing.T, src string) []adapters.Spec {
	t.Helper()
	var doc struct {
		Sources []struct {
			ID     string    `yaml:"id"`
			Type   string    `yaml:"type"`
			Config yaml.Node `yaml:"config"`
		} `yaml:"sources"`
	}
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(src), &root); err != nil {
		t.Fatal(err)
	}
	if err := root.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	seq := adapters.Lookup(&root, "sources")
	var out []adapters.Spec
	for i, s := range doc.Sources {
		cfg := s.Config
		out = append(out, adapters.Spec{ID: s.ID, Type: s.Type, Config: &cfg,
			Path: "sources[" + string(rune('0'+i)) + "]", Line: seq.Content[i].Line})
	}
	return out
}

func registry() *adapters.Registry {
	r := adapters.NewRegistry()
	r.Register(fhirrest.Type, fhirrest.Factory)
	r.Register(bulk.Type, bulk.Factory)
	return r
}

func writeKey(t *testing.T, alg string) string {
	t.Helper()
	k, err := smart.GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := k.PEM()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidateReportsEveryProblemWithItsLine(t *testing.T) {
	src := `sources:
  - id: city-hospital
    type: fhir
    config:
      baseURL: http://ehr.example.org/fhir
      pageSize: many
      colour: blue
      auth:
        type: smart-backend
        privateKeyFile: /nonexistent/key.pem
        secretEnv: NOPE
  - id: city-hospital
    type: fhir
    config:
      baseURL: https://ehr.example.org/fhir
      everything: sometimes
      types: [Observation, Obsrvation]
      auth: {type: bearer, tokenEnv: UNSET_TOKEN}
  - id: lab
    type: ftp
  - id: bulk
    type: bulk
    config:
      baseURL: https://bulk.example.org/fhir
      maxWait: -1s
      auth: {type: client-secret, clientID: fhirgate, secretEnv: SECRET}
`
	opts := adapters.Options{LookupEnv: func(k string) (string, bool) {
		if k == "SECRET" {
			return "s3cret", true
		}
		return "", false
	}}
	ps := registry().Validate(specs(t, src), opts)
	want := []struct {
		path string
		line int
		msg  string
	}{
		{"sources[0].config.colour", 7, "unknown key"},
		{"", 6, "cannot unmarshal"},
		{"sources[1].id", 12, "duplicate source id"},
		{"sources[1].config.everything", 16, "auto, always or never"},
		{"sources[1].config.types[1]", 17, "not an R4 resource type"},
		{"sources[1].config.auth.tokenEnv", 18, "UNSET_TOKEN is not set"},
		{"sources[2].type", 19, `unknown source type "ftp"`},
		{"sources[3].config.maxWait", 25, "must not be negative"},
		{"sources[0].config.baseURL", 5, "must use https"},
		{"sources[0].config.auth.clientID", 9, "is required for auth type smart-backend"},
		{"sources[0].config.auth.privateKeyFile", 10, "no such file"},
		{"sources[0].config.auth.secretEnv", 11, "is not used by auth type smart-backend"},
	}
	got := map[string]bool{}
	for _, p := range ps {
		got[p.String()] = true
	}
	for _, w := range want {
		found := false
		for _, p := range ps {
			if (w.path == "" || p.Path == w.path) && p.Line == w.line && strings.Contains(p.Msg, w.msg) {
				found = true
			}
		}
		if !found {
			t.Errorf("missing problem %s at line %d (%s); got:\n%s", w.path, w.line, w.msg, strings.Join(keys(got), "\n"))
		}
	}
	for _, p := range ps {
		if strings.Contains(p.String(), "s3cret") {
			t.Errorf("a problem shows the secret: %s", p)
		}
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestOpenAll(t *testing.T) {
	key := writeKey(t, smart.ES384)
	src := `sources:
  - id: city-hospital
    type: fhir
    config:
      baseURL: https://ehr.example.org/fhir/R4
      auth: {type: smart-backend, clientID: fhirgate, privateKeyFile: ` + key + `}
      concurrency: 8
      rateLimit: 20
      timeout: 10s
      pageSize: 200
  - id: clinic
    type: bulk
    config:
      baseURL: http://127.0.0.1:9999/fhir
      types: [Patient, Observation]
      pollInterval: 5s
`
	srcs, err := registry().OpenAll(specs(t, src), adapters.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(srcs) != 2 || srcs[0].ID() != "city-hospital" || srcs[1].ID() != "clinic" {
		t.Fatalf("sources = %v", srcs)
	}
	if _, ok := srcs[0].(adapters.PatientFinder); !ok {
		t.Error("fhir source is not a PatientFinder")
	}
	if _, ok := srcs[1].(adapters.BulkExporter); !ok {
		t.Error("bulk source is not a BulkExporter")
	}
	var set struct{ Keys []smart.JWK }
	if err := json.Unmarshal(adapters.JWKS(srcs...), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 || set.Keys[0].Kty != "EC" || set.Keys[0].Alg != smart.ES384 || set.Keys[0].Kid == "" {
		t.Errorf("JWKS = %+v, want the one ES384 key", set.Keys)
	}
	if string(adapters.JWKS()) != `{"keys":[]}` {
		t.Errorf("empty JWKS = %s", adapters.JWKS())
	}

	_, err = registry().OpenAll(specs(t, "sources:\n  - id: x\n    type: nope\n"), adapters.Options{})
	if !errors.Is(err, adapters.ErrConfig) || !strings.Contains(err.Error(), "unknown source type") {
		t.Errorf("err = %v", err)
	}
}

func TestFetchOfUnreachableSourceIsTemporary(t *testing.T) {
	srcs, err := registry().OpenAll(specs(t, `sources:
  - id: down
    type: fhir
    config: {baseURL: "http://127.0.0.1:1/fhir", maxRetries: 1, retryDelay: 1ms}
`), adapters.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = adapters.Collect(context.Background(), srcs[0], adapters.FetchRequest{PatientID: "p1"})
	if !errors.Is(err, adapters.ErrUnavailable) || !adapters.Temporary(err) {
		t.Fatalf("err = %v, want a temporary ErrUnavailable", err)
	}
	var ae *adapters.Error
	if !errors.As(err, &ae) || ae.Source != "down" || ae.Attempts != 2 {
		t.Errorf("err = %#v, want source down after 2 attempts", err)
	}
}

func TestRegisterTwicePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	r := registry()
	r.Register(fhirrest.Type, fhirrest.Factory)
}

func TestDecodeStrict(t *testing.T) {
	type inner struct {
		A int `yaml:"a"`
	}
	type base struct {
		B string `yaml:"b"`
	}
	type cfg struct {
		base  `yaml:",inline"`
		In    inner            `yaml:"in"`
		List  []inner          `yaml:"list"`
		Map   map[string]inner `yaml:"map"`
		Ptr   *inner           `yaml:"ptr"`
		Plain string
	}
	for _, tc := range []struct {
		src   string
		paths []string
	}{
		{"b: x\nin: {a: 1}\nlist: [{a: 2}]\nmap: {k: {a: 3}}\nptr: {a: 4}\nplain: y\n", nil},
		{"c: 1\nin: {z: 1}\nlist: [{a: 1}, {y: 2}]\nmap: {k: {q: 1}}\nptr: {w: 1}\n",
			[]string{"c", "in.z", "list[1].y", "map.k.q", "ptr.w"}},
	} {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(tc.src), &n); err != nil {
			t.Fatal(err)
		}
		var c cfg
		ps := adapters.Decode(&n, &c)
		var paths []string
		for _, p := range ps {
			paths = append(paths, p.Path)
			if p.Line == 0 {
				t.Errorf("problem without a line: %v", p)
			}
		}
		if strings.Join(paths, ",") != strings.Join(tc.paths, ",") {
			t.Errorf("%q: problems at %v, want %v", tc.src, paths, tc.paths)
		}
		if tc.paths == nil && (c.B != "x" || c.In.A != 1 || c.List[0].A != 2 || c.Map["k"].A != 3 || c.Ptr.A != 4 || c.Plain != "y") {
			t.Errorf("decoded %+v", c)
		}
	}
	var c cfg
	if ps := adapters.Decode(nil, &c); ps != nil {
		t.Errorf("nil node: %v", ps)
	}
}

func TestLookup(t *testing.T) {
	var n yaml.Node
	yaml.Unmarshal([]byte("a:\n  b: [x, y]\n  c: 1\n"), &n)
	for path, line := range map[string]int{"": 1, "a": 2, "a.c": 3, "a.b[1]": 2, "a.nope": 2, "a.b[9]": 2} {
		if got := adapters.Lookup(&n, path); got == nil || got.Line != line {
			t.Errorf("Lookup(%q) line = %v, want %d", path, got, line)
		}
	}
	if adapters.Lookup(nil, "a") != nil {
		t.Error("Lookup(nil) != nil")
	}
}

// TestWithConfigFile wires the registry to the config package as cmd does
// and checks that problems carry the file's lines.
func TestWithConfigFile(t *testing.T) {
	cfg, err := config.Parse("fhirgate.yaml", []byte(`server:
  baseURL: https://gate.example.org
sources:
  - id: city-hospital
    type: fhir
    config:
      baseURL: https://ehr.example.org/fhir/R4
      auth: {type: smart-backend, clientID: fhirgate}
  - id: clinic
    type: bulk
`))
	if err != nil {
		t.Fatal(err)
	}
	specs := make([]adapters.Spec, len(cfg.Sources))
	for i := range cfg.Sources {
		s := &cfg.Sources[i]
		specs[i] = adapters.Spec{ID: s.ID, Type: s.Type, Config: &s.Config, Path: fmt.Sprintf("sources[%d]", i), Line: cfg.SourceLine(i)}
	}
	var got []string
	for _, p := range registry().Validate(specs, adapters.Options{}) {
		got = append(got, p.String())
	}
	want := []string{
		"line 8: sources[0].config.auth.privateKeyFile: is required for auth type smart-backend",
		"line 9: sources[1].config.baseURL: is required",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
