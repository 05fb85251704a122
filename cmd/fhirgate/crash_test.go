package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/postgres"
	"github.com/fhirgate/fhirgate/storage/postgres/pgtest"
	"github.com/fhirgate/fhirgate/storage/sqlite"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

// binary builds fhirgate once for the package's tests that run it as a
// child process (removed by TestMain).
var binary struct {
	once      sync.Once
	dir, path string
	err       error
	out       []byte
}

func fhirgateBinary(t *testing.T) string {
	t.Helper()
	binary.once.Do(func() {
		if binary.dir, binary.err = os.MkdirTemp("", "fhirgate-bin-"); binary.err != nil {
			return
		}
		binary.path = filepath.Join(binary.dir, "fhirgate")
		binary.out, binary.err = exec.Command("go", "build", "-o", binary.path, ".").CombinedOutput()
	})
	if binary.err != nil {
		t.Fatalf("go build: %v\n%s", binary.err, binary.out)
	}
	return binary.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binary.dir != "" {
		os.RemoveAll(binary.dir)
	}
	os.Exit(code)
}

const crashAuditKey = "crash:Y3Jhc2gtdGVzdC1hdWRpdC1rZXktMzItYnl0ZXMhIQ=="

// gatewayProc is one `fhirgate serve` child process.
type gatewayProc struct {
	cmd  *exec.Cmd
	base string
	log  string
}

func startGateway(t *testing.T, bin, db, dir string, n int) *gatewayProc {
	t.Helper()
	logFile := filepath.Join(dir, fmt.Sprintf("serve-%d.log", n))
	lf, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	cmd := exec.Command(bin, "serve", "--auth", "none", "--addr", "127.0.0.1:0", "--db", db,
		"--audit-checkpoint-file", filepath.Join(dir, "checkpoints"), "--audit-checkpoint-interval", "100ms")
	cmd.Env = append(os.Environ(), "FHIRGATE_AUDIT_KEY="+crashAuditKey)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g := &gatewayProc{cmd: cmd, log: logFile}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(logFile)
		for _, l := range strings.Split(string(b), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "fhirgate serving" {
				g.base = "http://" + m["addr"].(string)
				return g
			}
		}
		select {
		case <-exited:
			t.Fatalf("fhirgate serve exited:\n%s", b)
		case <-time.After(20 * time.Millisecond):
		}
	}
	b, _ := os.ReadFile(logFile)
	t.Fatalf("fhirgate serve did not start:\n%s", lastLines(string(b), 20))
	return nil
}

// acks counts what the gateways acknowledged (a whole answer received).
type acks struct {
	mu     sync.Mutex
	reads  map[string]int // resource read -> times
	writes []string       // versions created ("Observation/x/_history/1")
}

func (a *acks) read(ref string) {
	a.mu.Lock()
	a.reads[ref]++
	a.mu.Unlock()
}

func (a *acks) wrote(ref string) {
	a.mu.Lock()
	a.writes = append(a.writes, ref)
	a.mu.Unlock()
}

// TestCrashAudit: gateways under concurrent reads and writes are killed
// (kill -9) at random moments, several times, and started again; in the
// end every request that got its answer has its event on the trail, and
// the trail verifies against the last checkpoint published. On
// PostgreSQL two gateways share the database (and the trail).
func TestCrashAudit(t *testing.T) {
	if testing.Short() {
		t.Skip("runs and kills gateway processes (-short)")
	}
	bin := fhirgateBinary(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			reg, err := search.New(search.Options{Reserved: []string{"_cursor"}})
			if err != nil {
				t.Fatal(err)
			}
			var db string
			var open func() (*sqlstore.Store, error)
			procs := 1
			switch kind {
			case "sqlite":
				path := filepath.Join(dir, "crash.db")
				db = "sqlite:" + path
				open = func() (*sqlstore.Store, error) {
					return sqlite.Open(context.Background(), path, sqlstore.Options{Registry: reg})
				}
			default:
				pc := pgtest.Config(t)
				open = func() (*sqlstore.Store, error) {
					return postgres.Open(context.Background(), pc, sqlstore.Options{Registry: reg})
				}
				st, err := open() // the schema, migrated
				if err != nil {
					t.Fatal(err)
				}
				st.Close()
				sep := "?"
				if strings.Contains(pc.URL, "?") {
					sep = "&"
				}
				db = pc.URL + sep + "search_path=" + pc.Schema + "&pool_max_conns=8"
				procs = 2
			}
			rng := rand.New(rand.NewPCG(seed, uint64(len(kind))))
			a := &acks{reads: map[string]int{}}
			client := &http.Client{Timeout: 20 * time.Second}
			do := func(method, url, body string) (int, map[string]any) {
				var rd io.Reader
				if body != "" {
					rd = strings.NewReader(body)
				}
				req, err := http.NewRequest(method, url, rd)
				if err != nil {
					return 0, nil
				}
				if body != "" {
					req.Header.Set("Content-Type", "application/fhir+json")
				}
				resp, err := client.Do(req)
				if err != nil {
					return 0, nil
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				if err != nil {
					return 0, nil // not a whole answer: not acknowledged
				}
				var m map[string]any
				_ = json.Unmarshal(b, &m)
				return resp.StatusCode, m
			}
			// the world: patients with an observation each
			g := startGateway(t, bin, db, dir, 0)
			var patients, observations []string
			for i := range 12 {
				code, m := do(http.MethodPost, g.base+"/Patient", fmt.Sprintf(`{"resourceType":"Patient","name":[{"family":"Crash%d"}]}`, i))
				if code != http.StatusCreated {
					t.Fatalf("create Patient: %d", code)
				}
				patients = append(patients, m["id"].(string))
				a.wrote("Patient/" + m["id"].(string) + "/_history/1")
				code, m = do(http.MethodPost, g.base+"/Observation", obsBody(patients[i]))
				if code != http.StatusCreated {
					t.Fatalf("create Observation: %d", code)
				}
				observations = append(observations, m["id"].(string))
				a.wrote("Observation/" + m["id"].(string) + "/_history/1")
			}
			_ = g.cmd.Process.Kill()

			rounds := 4
			if procs > 1 {
				rounds = 3
			}
			for round := range rounds {
				var gs []*gatewayProc
				for p := range procs {
					gs = append(gs, startGateway(t, bin, db, dir, 1+round*procs+p))
				}
				var mu sync.Mutex
				var obsMu sync.Mutex
				stop := make(chan struct{})
				var wg sync.WaitGroup
				for w := range 6 {
					wg.Add(1)
					wrng := rand.New(rand.NewPCG(seed+uint64(round), uint64(w)))
					go func() {
						defer wg.Done()
						for {
							select {
							case <-stop:
								return
							default:
							}
							mu.Lock()
							g := gs[wrng.IntN(len(gs))]
							mu.Unlock()
							switch r := wrng.IntN(10); {
							case r < 3: // a write
								code, m := do(http.MethodPost, g.base+"/Observation", obsBody(patients[wrng.IntN(len(patients))]))
								if code == http.StatusCreated {
									id := m["id"].(string)
									a.wrote("Observation/" + id + "/_history/1")
									obsMu.Lock()
									observations = append(observations, id)
									obsMu.Unlock()
								}
							case r < 6:
								ref := "Patient/" + patients[wrng.IntN(len(patients))]
								if code, _ := do(http.MethodGet, g.base+"/"+ref, ""); code == http.StatusOK {
									a.read(ref)
								}
							default:
								obsMu.Lock()
								ref := "Observation/" + observations[wrng.IntN(len(observations))]
								obsMu.Unlock()
								if code, _ := do(http.MethodGet, g.base+"/"+ref, ""); code == http.StatusOK {
									a.read(ref)
								}
							}
						}
					}()
				}
				// kill -9 each gateway at a moment of its own, under load
				for _, g := range gs {
					time.Sleep(time.Duration(150+rng.IntN(600)) * time.Millisecond)
					if err := g.cmd.Process.Signal(syscall.SIGKILL); err != nil {
						t.Fatal(err)
					}
				}
				time.Sleep(50 * time.Millisecond)
				close(stop)
				wg.Wait()
			}

			// in the end: every acknowledged request has its event
			st, err := open()
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			keys, err := audit.ParseKeys(crashAuditKey)
			if err != nil {
				t.Fatal(err)
			}
			// as the last kill left it: the trail verifies, and what it has
			// not sealed yet (events stored pending by a replica that found
			// the head held) is durable and genuine
			rep, err := audit.VerifyLog(context.Background(), st, audit.VerifyOptions{Keys: keys})
			if err != nil || !rep.OK() {
				t.Fatalf("the trail as the kills left it: %v %v", err, rep.Problems)
			}
			pending := rep.Pending
			// a gateway's start seals them (audit.Open, as serve does)
			tr, err := audit.Open(context.Background(), st, audit.Options{Keys: keys, CheckpointInterval: -1,
				CheckpointFile: filepath.Join(dir, "checkpoints")})
			if err != nil {
				t.Fatal(err)
			}
			tr.Close()
			reads := map[string]int{}
			writes := map[string]bool{}
			if err := st.ScanAudit(context.Background(), 1, func(r *storage.AuditRecord) error {
				e, err := audit.EventOf(r)
				if err != nil {
					return err
				}
				if e.Interaction == "read" && e.Outcome == audit.Success {
					reads[e.Resource]++
				}
				if e.Interaction == "create" {
					for _, ref := range e.Resources {
						writes[ref] = true
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			nReads := 0
			for ref, n := range a.reads {
				nReads += n
				if reads[ref] < n {
					t.Errorf("%s was read %d times with an answer, but the trail has %d read events", ref, n, reads[ref])
				}
			}
			for _, ref := range a.writes {
				if !writes[ref] {
					t.Errorf("%s was created with an answer, but the trail has no event of it", ref)
				}
			}
			if nReads < 50 || len(a.writes) < 30 {
				t.Errorf("too little load to tell: %d reads, %d writes acknowledged", nReads, len(a.writes))
			}
			b, err := os.ReadFile(filepath.Join(dir, "checkpoints"))
			if err != nil {
				t.Fatalf("no checkpoint was published: %v", err)
			}
			cp, err := audit.ParseCheckpoint(string(b))
			if err != nil {
				t.Fatal(err)
			}
			rep, err = audit.VerifyLog(context.Background(), st, audit.VerifyOptions{Keys: keys, Checkpoint: &cp})
			if err != nil || !rep.OK() || rep.Pending != 0 {
				t.Fatalf("the trail after %d kills: %v %v (%d pending)", rounds*procs, err, rep.Problems, rep.Pending)
			}
			t.Logf("%d kills; %d reads and %d writes acknowledged; the trail holds %d events (%d of them were pending after the last kill), verified against the checkpoint of event %d",
				rounds*procs, nReads, len(a.writes), rep.Events, pending, cp.Seq)
			// and the command says so too
			out, err := exec.Command(bin, "audit", "verify", "--db", db, "--audit-key", crashAuditKey,
				"--checkpoint", filepath.Join(dir, "checkpoints")).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "the audit trail is intact") {
				t.Errorf("fhirgate audit verify: %v\n%s", err, out)
			}
		})
	}
}

func obsBody(pid string) string {
	return `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/` + pid + `"},"valueQuantity":{"value":72,"unit":"/min"}}`
}
