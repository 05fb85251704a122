package payer_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/payer"
	"github.com/fhirgate/fhirgate/adapters/payer/payertest"
	"github.com/fhirgate/fhirgate/fhir"
)

func node(t *testing.T, s string) *yaml.Node {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(s), &n); err != nil {
		t.Fatal(err)
	}
	return &n
}

func TestConfig(t *testing.T) {
	for name, c := range map[string]struct {
		yaml string
		want []string // paths of the problems
	}{
		"good":            {"baseURL: https://payer.example/fhir\npayors: [{system: http://x, value: acme}]", nil},
		"an organization": {"baseURL: https://payer.example/fhir\norganization: Organization/acme", nil},
		"no payor":        {"baseURL: https://payer.example/fhir", []string{"payors"}},
		"half a payor":    {"baseURL: https://payer.example/fhir\npayors: [{system: http://x}]", []string{"payors[0]"}},
		"unknown key":     {"baseURL: https://payer.example/fhir\npayors: [{system: http://x, value: y}]\nbenefit: 3", []string{"benefit"}},
		"half a code":     {"baseURL: https://payer.example/fhir\npayors: [{system: http://x, value: y}]\ncategory: {code: '3'}", []string{"category"}},
		"bad org":         {"baseURL: https://payer.example/fhir\norganization: acme", []string{"organization"}},
		"no base":         {"payors: [{system: http://x, value: y}]", []string{"baseURL"}},
	} {
		t.Run(name, func(t *testing.T) {
			ps := payer.Factory.Validate(node(t, c.yaml), adapters.Options{})
			var got []string
			for _, p := range ps {
				got = append(got, p.Path)
			}
			if strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Errorf("problems %v, want at %v", ps, c.want)
			}
		})
	}
}

func parse(t *testing.T, s string) *fhir.Resource {
	t.Helper()
	r, err := fhir.Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCoversAndSubmit(t *testing.T) {
	fake := payertest.New(t)
	zero := 0
	cfg := payer.Config{Payors: []payer.Identifier{{System: fake.PayorSystem, Value: fake.PayorValue}}}
	cfg.BaseURL, cfg.MaxRetries, cfg.Timeout = fake.URL, &zero, 2*time.Second
	src, err := payer.New("acme", cfg, adapters.Options{})
	if err != nil {
		t.Fatal(err)
	}
	acme := parse(t, `{"resourceType":"Organization","id":"o1","identifier":[{"system":"`+fake.PayorSystem+`","value":"`+fake.PayorValue+`"}]}`)
	other := parse(t, `{"resourceType":"Organization","id":"o2","identifier":[{"system":"`+fake.PayorSystem+`","value":"someone-else"}]}`)
	cov := parse(t, `{"resourceType":"Coverage","id":"c","status":"active","beneficiary":{"reference":"Patient/p"},"payor":[{"reference":"Organization/o1"}]}`)
	if !src.Covers(cov, []*fhir.Resource{acme}) || src.Covers(cov, []*fhir.Resource{other}) || src.Covers(cov, nil) {
		t.Error("Covers by the payor Organization's identifier")
	}
	byIdentifier := parse(t, `{"resourceType":"Coverage","id":"c","status":"active","beneficiary":{"reference":"Patient/p"},"payor":[{"identifier":{"system":"`+fake.PayorSystem+`","value":"`+fake.PayorValue+`"}}]}`)
	if !src.Covers(byIdentifier, nil) {
		t.Error("Covers by the payor's own identifier")
	}
	if cat, prod := src.Benefit(); cat[1] != "3" || prod[1] != "11429006" {
		t.Errorf("default benefit %v %v", cat, prod)
	}
	bundle := parse(t, `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"CoverageEligibilityRequest","id":"r1","status":"active","purpose":["benefits"],"patient":{"reference":"Patient/p"},"created":"2025-03-01","insurer":{"reference":"Organization/o1"},"insurance":[{"coverage":{"reference":"Coverage/c"}}]}}]}`)
	resp, err := src.Submit(context.Background(), bundle)
	if err != nil || resp.Type != "CoverageEligibilityResponse" {
		t.Fatalf("eligibility: %v %v", resp, err)
	}
	fake.SetMode(payertest.Down)
	_, err = src.Submit(context.Background(), bundle)
	var ae *adapters.Error
	if !errors.Is(err, adapters.ErrUnavailable) || !errors.As(err, &ae) || ae.Source != "acme" {
		t.Errorf("insurer down: %v", err)
	}
	if _, err := src.Submit(context.Background(), parse(t, `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient"}}]}`)); err == nil {
		t.Error("a Bundle led by a Patient was sent")
	}
	// an insurer answering with an OperationOutcome gave no response
	odd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		_, _ = w.Write([]byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"informational"}]}`))
	}))
	defer odd.Close()
	cfg.BaseURL = odd.URL
	src2, err := payer.New("odd", cfg, adapters.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src2.Submit(context.Background(), bundle); !errors.Is(err, payer.ErrNoAnswer) || !errors.Is(err, adapters.ErrMalformed) {
		t.Errorf("an OperationOutcome answer: %v", err)
	}
}
