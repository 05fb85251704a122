package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeApps: `fhirgate serve` serves the browser apps under /app/ with
// their Content-Security-Policy, naming the configured client id, unless
// the config disables them.
func TestServeApps(t *testing.T) {
	for _, disabled := range []bool{false, true} {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "gateway.yaml")
		body := "server:\n  apps:\n    patientClientID: my-patient-app\n"
		if disabled {
			body = "server:\n  apps:\n    disabled: true\n"
		}
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var logs syncBuffer
		done := make(chan error, 1)
		go func() {
			done <- cmdServe(ctx, []string{"--auth=none", "--addr", "127.0.0.1:0", "--db", "sqlite:" + filepath.Join(dir, "g.db"), "--config", cfg}, &logs)
		}()
		addr := logAddr(t, &logs, "fhirgate serving", done)
		resp, err := http.Get("http://" + addr + "/app/patient/")
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if disabled {
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("apps disabled: /app/patient/ answered %d", resp.StatusCode)
			}
		} else if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") ||
			!strings.Contains(string(page), `content="my-patient-app"`) {
			t.Errorf("/app/patient/: %d %v\n%.500s", resp.StatusCode, resp.Header, page)
		}
		// the FHIR API is still answered beside them
		if resp, err := http.Get("http://" + addr + "/metadata"); err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("/metadata: %v %v", resp, err)
		} else {
			resp.Body.Close()
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("serve: %v", err)
		}
	}
}
