package web_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/demo"
)

// browserEnv finds what the browser tests need: Debian's Chromium, Node.js
// and web/e2e/node_modules (playwright-core, axe-core). Without them the
// tests skip, unless FHIRGATE_REQUIRE_BROWSER is set (as CI sets it).
func browserEnv(t *testing.T) (chromium, node string) {
	t.Helper()
	chromium = os.Getenv("FHIRGATE_CHROMIUM")
	if chromium == "" {
		chromium, _ = exec.LookPath("chromium")
	}
	node, _ = exec.LookPath("node")
	_, modErr := os.Stat("e2e/node_modules/playwright-core/package.json")
	missing := ""
	switch {
	case chromium == "":
		missing = "chromium (apt-get install chromium, or FHIRGATE_CHROMIUM)"
	case node == "":
		missing = "node"
	case modErr != nil:
		missing = "web/e2e/node_modules (cd web/e2e && npm ci)"
	}
	if missing != "" {
		if os.Getenv("FHIRGATE_REQUIRE_BROWSER") != "" {
			t.Fatalf("browser tests required (FHIRGATE_REQUIRE_BROWSER) but %s is missing", missing)
		}
		t.Skipf("browser tests skipped: %s is missing (FHIRGATE_REQUIRE_BROWSER=1 makes this a failure)", missing)
	}
	return chromium, node
}

// artifacts is where a script's screenshots and measurements go:
// $CI_ARTIFACTS/browser/<name> when set, else bin/browser/<name> in the
// repository (ignored by git); emptied first.
func artifacts(t *testing.T, name string) string {
	dir := filepath.Join("..", "bin", "browser", name)
	if ci := os.Getenv("CI_ARTIFACTS"); ci != "" {
		dir = filepath.Join(ci, "browser", name)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runScript starts `fhirgate demo` in-process and runs one e2e script
// against it.
func runScript(t *testing.T, script string, extra ...string) {
	t.Helper()
	chromium, node := browserEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	d, err := demo.Start(ctx, demo.Config{Dir: t.TempDir(), Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	shots := artifacts(t, strings.TrimSuffix(script, ".mjs"))
	cmd := exec.CommandContext(ctx, node, filepath.Join("e2e", script))
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium, "SHOTS="+shots,
		"PERF_OUT="+filepath.Join(shots, "perf.json"), "PATIENT_APP="+d.PatientApp, "SPECIALIST_APP="+d.SpecialistApp, "FHIR_BASE="+d.BaseURL)
	cmd.Env = append(cmd.Env, extra...)
	out, err := cmd.CombinedOutput()
	t.Logf("%s\nscreenshots in %s", out, shots)
	if err != nil {
		t.Fatalf("%s: %v", script, err)
	}
}

// TestBrowserFlow is the end-to-end flow in a real Chromium.
func TestBrowserFlow(t *testing.T) { runScript(t, "flow.mjs") }

// TestBrowserConnect: the patient connects the demo's third EHR, which
// opens her record only to her own sign-in there, comes back to the app,
// pulls what it holds and disconnects it (web/e2e/connect.mjs).
func TestBrowserConnect(t *testing.T) { runScript(t, "connect.mjs") }

// TestBrowserWeight measures each app's first screen on a throttled slow
// 4G connection (web/e2e/perf.mjs): the weights and times it prints go to
// BENCHMARKS.md; the test fails only when a first screen outgrows 200 KB
// (bytes are deterministic, times are not asserted).
func TestBrowserWeight(t *testing.T) {
	runScript(t, "perf.mjs")
}

// TestBrowserLayout: keyboard-only sign-in, every screen on a 320 px phone
// with strings 60% longer (pseudo-locale en-XA) and in Hindi.
func TestBrowserLayout(t *testing.T) { runScript(t, "layout.mjs") }
