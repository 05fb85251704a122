package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/adapters/payer/payertest"
)

// TestServePayer: a source of type payer in the config file is the
// insurer `fhirgate serve` asks: Patient/$coverage-check is offered and
// answered from it (a fake insurer), with the request and the answer
// stored in the patient's record.
func TestServePayer(t *testing.T) {
	fake := payertest.New(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gateway.yaml")
	body := "sources:\n  - id: acme-health\n    type: payer\n    config:\n      baseURL: " + fake.URL +
		"\n      maxRetries: 0\n      payors: [{system: \"" + fake.PayorSystem + "\", value: " + fake.PayorValue + "}]\n"
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var logs syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- cmdServe(ctx, []string{"--auth=none", "--addr", "127.0.0.1:0", "--db", "sqlite:" + filepath.Join(dir, "g.db"), "--config", cfg}, &logs)
	}()
	base := "http://" + logAddr(t, &logs, "fhirgate serving", done)
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	call := func(method, path, body string, want int) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/fhir+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d, want %d: %s", method, path, resp.StatusCode, want, b)
		}
		var m map[string]any
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		_ = d.Decode(&m)
		return m
	}
	call(http.MethodGet, "/OperationDefinition/Patient-coverage-check", "", http.StatusOK)
	call(http.MethodPut, "/Patient/p1", `{"resourceType":"Patient","id":"p1","name":[{"family":"Rivera","given":["Amy"]}],"birthDate":"1967-04-12"}`, http.StatusCreated)
	call(http.MethodPut, "/Organization/acme", `{"resourceType":"Organization","id":"acme","name":"Acme Health","identifier":[{"system":"`+fake.PayorSystem+`","value":"`+fake.PayorValue+`"}]}`, http.StatusCreated)
	call(http.MethodPut, "/Organization/clinic", `{"resourceType":"Organization","id":"clinic","name":"Second Look Cardiology Clinic"}`, http.StatusCreated)
	call(http.MethodPut, "/Coverage/c1", `{"resourceType":"Coverage","id":"c1","status":"active","subscriberId":"M-1","beneficiary":{"reference":"Patient/p1"},"payor":[{"reference":"Organization/acme"}]}`, http.StatusCreated)
	ans := call(http.MethodPost, "/Patient/p1/$coverage-check", `{"resourceType":"Parameters","parameter":[{"name":"recipient","valueReference":{"reference":"Organization/clinic"}}]}`, http.StatusOK)
	parts := map[string]any{}
	for _, p := range ans["parameter"].([]any) {
		for _, pt := range p.(map[string]any)["part"].([]any) {
			pt := pt.(map[string]any)
			for k, v := range pt {
				if k != "name" {
					parts[pt["name"].(string)] = v
				}
			}
		}
	}
	if parts["status"] != "covered" || parts["payer"] != "acme-health" || parts["coverage"].(map[string]any)["reference"] != "Coverage/c1" {
		t.Fatalf("$coverage-check: %v", ans)
	}
	if n := len(fake.Received()); n != 1 {
		t.Errorf("the insurer was asked %d times, want once", n)
	}
	stored := parts["eligibilityResponse"].(map[string]any)["reference"].(string)
	if r := call(http.MethodGet, "/"+stored, "", http.StatusOK); r["outcome"] != "complete" {
		t.Errorf("the stored response: %v", r)
	}
}
