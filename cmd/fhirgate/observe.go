package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/mllp"
	"github.com/fhirgate/fhirgate/observe"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

// version and commit are stamped by the build:
//
//	go build -ldflags "-X main.version=1.2.0 -X main.commit=$(git rev-parse HEAD)" ./cmd/fhirgate
//
// A plain go build or go install fills them from the module version and
// the VCS information Go records (see buildInfo).
var (
	version = "dev"
	commit  = ""
)

// buildInfo returns the version and commit of this binary: the stamped
// ones, else what the Go toolchain recorded (the module version of a go
// install, the VCS revision of a build in a checkout, "+dirty" when the
// checkout had uncommitted changes).
func buildInfo() (ver, rev string) {
	ver, rev = version, commit
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ver, rev
	}
	if ver == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		ver = bi.Main.Version
	}
	if rev == "" {
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if rev != "" && dirty {
			rev += "+dirty"
		}
	}
	return ver, rev
}

// versionLine is what `fhirgate version` prints.
func versionLine() string {
	ver, rev := buildInfo()
	line := "fhirgate " + ver
	if rev != "" {
		line += " (commit " + rev + ")"
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		line += " " + bi.GoVersion
	}
	return line
}

// storeObserver records store operations in the metrics and as spans.
func storeObserver(m *observe.Metrics) func(ctx context.Context, op string) func(error) {
	return func(ctx context.Context, op string) func(error) {
		done := m.StoreOp(op)
		_, sp := observe.Span(ctx, "store."+op)
		return func(err error) {
			done(err)
			sp.End(err)
		}
	}
}

// watchRiverQueues makes metric scrapes count River's jobs by queue and
// state (the table every replica shares) when River's tables exist.
func watchRiverQueues(m *observe.Metrics, store storage.Store) {
	ss, ok := store.(*sqlstore.Store)
	if !ok {
		return
	}
	m.WatchQueues(func(ctx context.Context) ([]observe.QueueCount, error) {
		rows, err := ss.DB().Query(ctx, `SELECT queue, state, COUNT(*) FROM river_job GROUP BY queue, state`)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var out []observe.QueueCount
		for rows.Next() {
			var q observe.QueueCount
			if err := rows.Scan(&q.Queue, &q.State, &q.Count); err != nil {
				return nil, err
			}
			out = append(out, q)
		}
		return out, rows.Err()
	})
}

// observedMLLP records each message's acknowledgement code and time.
func observedMLLP(m *observe.Metrics, h mllp.Handler) mllp.Handler {
	return mllp.HandlerFunc(func(ctx context.Context, msg []byte) []byte {
		start := time.Now()
		ack := h.HandleMessage(ctx, msg)
		m.MLLPMessage(ackCode(ack), time.Since(start))
		return ack
	})
}

// ackCode is MSA-1 of an HL7 v2 ACK ("AA", "AE", "AR"), "none" when the
// connection was closed without one.
func ackCode(ack []byte) string {
	if ack == nil {
		return "none"
	}
	for _, seg := range strings.FieldsFunc(string(ack), func(r rune) bool { return r == '\r' || r == '\n' }) {
		if strings.HasPrefix(seg, "MSA") && len(seg) > 4 {
			code, _, _ := strings.Cut(seg[4:], seg[3:4])
			if len(code) == 2 {
				return code
			}
		}
	}
	return "unknown"
}

// serveMetrics serves /metrics on its own listener until ctx ends. It has
// no authentication: bind it to loopback or a network only the scraper
// reaches (see README "Deploying").
func serveMetrics(ctx context.Context, addr string, m *observe.Metrics, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener stopped", "err", err)
		}
	}()
	log.Info("metrics served", "addr", ln.Addr().String(), "path", "/metrics")
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}, nil
}

// cmdHealthcheck asks the local gateway's /readyz and exits 0 only when it
// answers 200: the container image's HEALTHCHECK (the image has no shell
// or curl). The address comes from FHIRGATE_ADDR (its port, on loopback);
// with FHIRGATE_TLS_CERT set the check speaks HTTPS without verifying the
// certificate (it only talks to itself).
func cmdHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "", "readiness URL (default: /readyz on FHIRGATE_ADDR's port on 127.0.0.1)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	target := *url
	tlsOn := envDefault("FHIRGATE_TLS_CERT", "") != ""
	if target == "" {
		_, port, err := net.SplitHostPort(envDefault("FHIRGATE_ADDR", defaultAddr))
		if err != nil {
			return fmt.Errorf("FHIRGATE_ADDR: %w", err)
		}
		scheme := "http"
		if tlsOn {
			scheme = "https"
		}
		target = scheme + "://127.0.0.1:" + port + "/readyz"
	}
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: tlsOn && *url == ""}, //nolint:gosec // a loopback self-check
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("not ready: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("not ready: %s answered %d", target, resp.StatusCode)
	}
	fmt.Fprintln(stdout, "ready")
	return nil
}
