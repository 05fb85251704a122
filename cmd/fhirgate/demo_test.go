package main

import (
	"bytes"
	"context"
	"net/http"
	"regexp"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe to read while the command writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestCmdDemo: `fhirgate demo` prints the gateway's address and tokens,
// the gateway refuses a request without a token and serves one with the
// printed hospital token, and the command stops cleanly when interrupted.
func TestCmdDemo(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- cmdDemo(ctx, []string{"--addr", "127.0.0.1:0", "--dir", t.TempDir()}, &stdout, &stderr)
	}()
	re := regexp.MustCompile(`(?m)^export BASE=(\S+)\n(?:.*\n)*?export HOSPITAL_TOKEN=(\S+)$`)
	var m []string
	for m == nil {
		select {
		case err := <-done:
			t.Fatalf("demo ended: %v\n%s", err, stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		m = re.FindStringSubmatch(stdout.String())
	}
	get := func(token string) int {
		req, _ := http.NewRequest(http.MethodGet, m[1]+"/Patient/amy", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := get(""); got != http.StatusUnauthorized {
		t.Errorf("without a token: %d, want 401", got)
	}
	if got := get(m[2]); got != http.StatusOK {
		t.Errorf("with the hospital token: %d, want 200", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("demo: %v", err)
	}
}

func TestCmdDemoRefusesPublicAddress(t *testing.T) {
	err := cmdDemo(context.Background(), []string{"--addr", "0.0.0.0:0", "--dir", t.TempDir()}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil {
		t.Fatal("a demo on a public address started")
	}
}
