package server_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/postgres"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

// cpuMeter measures the CPU time a benchmark costs this process and, on
// PostgreSQL, the server processes behind the store's connections: on a
// machine shared with other work, wall-clock rates say more about the
// scheduler than about the code, CPU time per operation much less so.
type cpuMeter struct {
	st       storage.Store
	self, pg time.Duration
	pgPIDs   map[int]time.Duration
}

func startCPU(b *testing.B, st storage.Store) *cpuMeter {
	m := &cpuMeter{st: st}
	m.self = selfCPU()
	m.pgPIDs = backendCPU(b, st)
	return m
}

// report adds go-cpu-ms/op and, on PostgreSQL, pg-cpu-ms/op; with units > 0
// also units per CPU-second of both (name/cpu-s).
func (m *cpuMeter) report(b *testing.B, units float64, name string) {
	self := selfCPU() - m.self
	var pg time.Duration
	for pid, t := range backendCPU(b, m.st) {
		pg += t - m.pgPIDs[pid] // a backend opened during the run started at 0
	}
	n := float64(b.N)
	b.ReportMetric(self.Seconds()*1000/n, "go-cpu-ms/op")
	if _, ok := m.st.(*sqlstore.Store); ok && pg > 0 {
		b.ReportMetric(pg.Seconds()*1000/n, "pg-cpu-ms/op")
	}
	if units > 0 {
		b.ReportMetric(units*n/(self+pg).Seconds(), name+"/cpu-s")
	}
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// backendCPU reads the CPU time of a PostgreSQL store's server processes
// from /proc (the server runs on this machine in the benchmarks; elsewhere
// the map is empty).
func backendCPU(b *testing.B, st storage.Store) map[int]time.Duration {
	out := map[int]time.Duration{}
	ss, ok := st.(*sqlstore.Store)
	if !ok {
		return out
	}
	db, ok := ss.DB().(*postgres.DB)
	if !ok {
		return out
	}
	ctx := context.Background()
	// every backend of this process when the URL names the application
	// (FHIRGATE_TEST_POSTGRES=...?application_name=bench), else the
	// connections idle now
	var pids []int
	rows, err := db.Pool().Query(ctx, `SELECT pid FROM pg_stat_activity
		WHERE application_name <> '' AND application_name = current_setting('application_name')`)
	if err != nil {
		b.Fatal(err)
	}
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			b.Fatal(err)
		}
		pids = append(pids, pid)
	}
	rows.Close()
	if len(pids) == 0 {
		conns := db.Pool().AcquireAllIdle(ctx)
		for _, c := range conns {
			var pid int
			if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
				b.Fatal(err)
			}
			pids = append(pids, pid)
			c.Release()
		}
	}
	tick := float64(100) // USER_HZ on Linux
	for _, pid := range pids {
		raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue // not a local server
		}
		f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
		ut, _ := strconv.ParseFloat(f[11], 64)
		stt, _ := strconv.ParseFloat(f[12], 64)
		out[pid] = time.Duration((ut + stt) / tick * float64(time.Second))
	}
	return out
}
