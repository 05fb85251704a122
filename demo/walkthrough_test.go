package demo_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/demo"
)

// readmeSection returns the sh code blocks of the README section titled
// heading, in order.
func readmeSection(t *testing.T, heading string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	i := strings.Index(text, "\n## "+heading+"\n")
	if i < 0 {
		t.Fatalf("README has no section %q", heading)
	}
	text = text[i+1:]
	if j := strings.Index(text[3:], "\n## "); j >= 0 {
		text = text[:j+3]
	}
	var blocks []string
	for {
		k := strings.Index(text, "```sh\n")
		if k < 0 {
			return blocks
		}
		text = text[k+len("```sh\n"):]
		end := strings.Index(text, "```")
		if end < 0 {
			t.Fatal("unterminated code block")
		}
		blocks = append(blocks, text[:end])
		text = text[end+3:]
	}
}

// TestWalkthrough runs the demo in-process and executes the README's
// "Five-minute demo" exactly as written: the first block starts the demo
// (here replaced by the in-process one, whose printed export lines are
// pasted as the README says), the second is the walkthrough, run by bash
// with errexit and pipefail so that any failing step fails the test.
func TestWalkthrough(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	blocks := readmeSection(t, "Five-minute demo")
	if len(blocks) != 2 {
		t.Fatalf("the section has %d sh blocks, want 2 (start, walkthrough)", len(blocks))
	}
	if strings.TrimSpace(blocks[0]) != "go run ./cmd/fhirgate demo" {
		t.Fatalf("first block is %q", blocks[0])
	}

	ctx := context.Background()
	d, err := demo.Start(ctx, demo.Config{Dir: t.TempDir(), Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var guide bytes.Buffer
	d.PrintGuide(&guide, "")
	var exports []string
	for _, line := range strings.Split(guide.String(), "\n") {
		if strings.HasPrefix(line, "export ") {
			exports = append(exports, line)
		}
	}
	if len(exports) != 4 {
		t.Fatalf("the guide prints %d export lines, want 4:\n%s", len(exports), guide.String())
	}

	script := "set -eu -o pipefail\n" + strings.Join(exports, "\n") + "\n" + blocks[1]
	cmd := exec.CommandContext(ctx, bash, "-c", script)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(3 * time.Minute): // a hung step, not a timing assertion
		_ = cmd.Process.Kill()
		err = <-done
	}
	out := stdout.String()
	if err != nil {
		t.Fatalf("walkthrough failed: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
	}

	t.Logf("walkthrough output:\n%s", out)
	// the steps whose status the script prints rather than fails on
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`"state":"(done|succeeded|completed)"`),          // 1. the pull report
		regexp.MustCompile(`(?m)^\s+1 "resourceType":"Immunization"$`),      // 2. heart-lab's only
		regexp.MustCompile(`(?m)^\s+1 "resourceType":"MedicationRequest"$`), // 2. city-hospital's only
		regexp.MustCompile(`(?m)^403$`),                                     // 3. no consent yet
		regexp.MustCompile(`(?m)^201$`),                                     // 4. the Consent is created
		regexp.MustCompile(`(?m)^Binary/\S+$`),                              // 5. the uploaded file
		regexp.MustCompile(`(?m)^Task/\S+ Bundle/\S+$`),                     // 6. the request
		regexp.MustCompile(`(?m)^% ECG, 14 March`),                          // 7. the clinic reads the file
		regexp.MustCompile(`(?m)^200\n(.*\n)*200$`),                         // 8. both Task changes
		regexp.MustCompile(`(?m)^"status":"completed"$`),                    // 9. the answer
		regexp.MustCompile(`(?m)^Normal troponin`),                          // 9. its content
	} {
		if !want.MatchString(out) {
			t.Errorf("walkthrough output lacks %s:\n%s", want, out)
		}
	}
}
