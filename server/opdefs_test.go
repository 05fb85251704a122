package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/jobs"
	"github.com/fhirgate/fhirgate/server"
)

// TestOperationDefinitions: from the first request on, every operation
// the server answers is in the CapabilityStatement with a definition under
// the one canonical base (configurable), and that OperationDefinition is
// read by its id: valid, naming the operation's code, levels and types,
// and for the standard operations the definition it narrows.
func TestOperationDefinitions(t *testing.T) {
	standard := map[string]string{
		"everything": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
		"validate":   "http://hl7.org/fhir/OperationDefinition/Resource-validate",
		"summary":    "http://hl7.org/fhir/uv/ips/OperationDefinition/summary",
		"status":     "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status",
	}
	for _, base := range []string{"", "https://records.example.org/fhir/"} {
		for _, k := range storeKinds[:1] {
			st := k.open(t)
			t.Cleanup(func() { st.Close() })
			pulls, err := jobs.New(context.Background(), jobs.Config{Store: st})
			if err != nil {
				t.Fatal(err)
			}
			srv := server.New(server.Config{Store: st, Search: testRegistry, Validator: validate.Default(), Pull: pulls, BaseURL: "http://fhir.test", CanonicalBase: base})
			srv.RegisterSubscriptions(nil)
			h := &harness{t: t, store: st, srv: srv}
			want := strings.TrimSuffix(base, "/")
			if want == "" {
				want = server.DefaultCanonicalBase
			}
			// the routes say which operations are served
			served := map[string]bool{}
			for _, r := range srv.Routes() {
				if name, ok := strings.CutPrefix(r.Name, "operation:"); ok {
					served[name] = true
				}
			}
			for _, op := range []string{"import", "pull", "second-opinion", "everything", "validate", "summary", "status"} {
				if !served[op] {
					t.Fatalf("$%s is not served", op)
				}
			}
			cs := jsonMap(t, h.do(http.MethodGet, "/metadata", nil).Body.Bytes())
			defs := map[string]string{}
			collect := func(ops any) {
				for _, o := range asList(ops) {
					o := o.(map[string]any)
					name, def := o["name"].(string), o["definition"].(string)
					if d, ok := defs[name]; ok && d != def {
						t.Errorf("$%s has two definitions: %s, %s", name, d, def)
					}
					defs[name] = def
				}
			}
			rest := cs["rest"].([]any)[0].(map[string]any)
			collect(rest["operation"])
			for _, r := range rest["resource"].([]any) {
				collect(r.(map[string]any)["operation"])
			}
			for name := range served {
				def := defs[name]
				if !strings.HasPrefix(def, want+"/OperationDefinition/") {
					t.Errorf("$%s: definition %q is not under %s", name, def, want)
					continue
				}
				id := def[strings.LastIndex(def, "/")+1:]
				w := h.do(http.MethodGet, "/OperationDefinition/"+id, nil)
				mustStatus(t, w, http.StatusOK)
				if issues := validate.Default().ValidateJSON(w.Body.Bytes()); validate.HasErrors(issues) {
					t.Errorf("$%s: invalid OperationDefinition: %v", name, issues)
				}
				od := jsonMap(t, w.Body.Bytes())
				if od["url"] != def || od["code"] != name || od["kind"] != "operation" || od["id"] != id {
					t.Errorf("$%s: url %v code %v kind %v id %v", name, od["url"], od["code"], od["kind"], od["id"])
				}
				if b := standard[name]; b != "" && od["base"] != b {
					t.Errorf("$%s: base %v, want %s", name, od["base"], b)
				}
				if od["instance"] != true && od["type"] != true && od["system"] != true {
					t.Errorf("$%s: invoked at no level", name)
				}
				if _, ok := od["parameter"]; !ok {
					t.Errorf("$%s: no parameters", name)
				}
			}
			// what is not an operation's definition is read from the store
			mustStatus(t, h.do(http.MethodGet, "/OperationDefinition/unknown", nil), http.StatusNotFound)
		}
	}
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}
