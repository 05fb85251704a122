package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"debug/elf"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSigned writes a certificate and key for 127.0.0.1 and returns their
// paths and a pool that trusts the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fhirgate test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// logAddr waits for a log line with msg and returns its addr.
func logAddr(t *testing.T, logs *syncBuffer, msg string, done <-chan error) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range strings.Split(logs.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == msg {
				return m["addr"].(string)
			}
		}
		select {
		case err := <-done:
			t.Fatalf("serve ended: %v\n%s", err, logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("no %q log line:\n%s", msg, logs.String())
	return ""
}

// TestServeTLSAndMetrics: `fhirgate serve` with --tls-cert/--tls-key
// serves HTTPS (HSTS, request ids), --metrics-addr serves /metrics on its
// own listener counting what the gateway answered, and SIGTERM (the
// context) makes /readyz answer 503 before the server stops.
func TestServeTLSAndMetrics(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- cmdServe(ctx, []string{"--auth=none", "--addr", "127.0.0.1:0", "--db", "sqlite:" + filepath.Join(t.TempDir(), "g.db"),
			"--metrics-addr", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile}, &logs)
	}()
	addr := logAddr(t, &logs, "fhirgate serving", done)
	maddr := logAddr(t, &logs, "metrics served", done)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get("https://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Strict-Transport-Security") == "" || resp.Header.Get("X-Request-Id") == "" {
		t.Fatalf("readyz over TLS: %d %v", resp.StatusCode, resp.Header)
	}
	if _, err := http.Get("http://" + addr + "/readyz"); err == nil {
		// a plain HTTP request to a TLS listener gets a 400 from Go, not data
		resp, _ := http.Get("http://" + addr + "/metadata")
		if resp != nil && resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP served next to TLS")
		}
	}
	// a read is an access: its event is appended to the audit trail
	resp, err = c.Get("https://" + addr + "/Patient/nobody")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = http.Get("http://" + maddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `fhirgate_http_requests_total{method="GET",route="/readyz",status="200"} 1`) ||
		!strings.Contains(string(body), "fhirgate_store_operation_duration_seconds") ||
		!strings.Contains(string(body), `fhirgate_audit_flushes_total{outcome="ok"}`) ||
		strings.Contains(string(body), "fhirgate_audit_events_total 0\n") {
		t.Fatalf("metrics:\n%.3000s", body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// TestServeFlags: TLS flags go together; a bad certificate stops the start.
func TestServeFlags(t *testing.T) {
	if _, err := parseServeFlags([]string{"--tls-cert", "x.pem"}, io.Discard); err == nil {
		t.Fatal("--tls-cert without --tls-key accepted")
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	_ = os.WriteFile(bad, []byte("not a certificate"), 0o600)
	err := cmdServe(context.Background(), []string{"--auth=none", "--addr", "127.0.0.1:0", "--db", "sqlite:" + filepath.Join(dir, "g.db"),
		"--tls-cert", bad, "--tls-key", bad}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--tls-cert") {
		t.Fatalf("bad certificate: %v", err)
	}
}

// TestReleaseBuild builds the binary as the Dockerfile does (no cgo,
// -trimpath, version and commit stamped) and checks that it is static and
// that `fhirgate version` prints what was stamped.
func TestReleaseBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the release binary (-short)")
	}
	bin := filepath.Join(t.TempDir(), "fhirgate")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=9.9.9-test -X main.commit=0123abc", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "fhirgate 9.9.9-test (commit 0123abc)") {
		t.Fatalf("version printed %q", out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the binary needs a dynamic loader: it is not static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Fatalf("the binary links %v", libs)
	}
}

// TestServeConnectConfig: a source patients connect themselves needs
// server.baseURL (its redirect URI), and its auth block is checked.
func TestServeConnectConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "gateway.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	serve := func(cfg string) error {
		return cmdServe(context.Background(), []string{"--auth=none", "--addr", "127.0.0.1:0", "--db", "sqlite:" + filepath.Join(dir, "g.db"), "--config", cfg}, io.Discard)
	}
	src := `sources:
  - id: portal
    type: fhir
    title: Clinic Portal
    config: {baseURL: "http://127.0.0.1:9/fhir", auth: {type: smart-patient, clientID: fhirgate%s}}
`
	if err := serve(write(fmt.Sprintf(src, ""))); err == nil || !strings.Contains(err.Error(), "server.baseURL is required") {
		t.Errorf("no baseURL: %v", err)
	}
	if err := serve(write(fmt.Sprintf(src, ", scopes: [system/*.rs]"))); err == nil || !strings.Contains(err.Error(), "must include launch/patient") {
		t.Errorf("bad scopes: %v", err)
	}
}
