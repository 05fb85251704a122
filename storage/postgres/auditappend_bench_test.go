package postgres_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/storage/postgres"
	"github.com/fhirgate/fhirgate/storage/postgres/pgtest"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

// BenchmarkAuditAppendReplicas: replicas appending to one trail over a
// network with latency (a proxy that holds every chunk for a while each
// way, as between a gateway and a managed PostgreSQL), each appending one
// batch of 8 events at a time as a trail's writer does. ns/op is the wall
// time per append of all replicas together, appends/s their sum. An
// appender that waited for the head another held would cap the sum at
// one append per head-holding (two round trips and a commit) whatever
// the number of replicas; one that stores its events pending does not.
func BenchmarkAuditAppendReplicas(b *testing.B) {
	for _, delay := range []time.Duration{0, 500 * time.Microsecond} {
		for _, n := range []int{1, 2, 4} {
			b.Run(fmt.Sprintf("delay=%s/replicas=%d", delay, n), func(b *testing.B) {
				ctx := context.Background()
				cfg := pgtest.Config(b)
				if delay > 0 {
					cfg.URL = viaDelay(b, cfg.URL, delay)
				}
				stores := make([]*sqlstore.Store, n)
				for i := range stores {
					s, err := postgres.Open(ctx, cfg, sqlstore.Options{})
					if err != nil {
						b.Fatal(err)
					}
					b.Cleanup(func() { _ = s.Close() })
					stores[i] = s
				}
				var (
					next    atomic.Int64
					pending atomic.Int64
					wg      sync.WaitGroup
				)
				b.ResetTimer()
				for i, s := range stores {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for k := next.Add(1); k <= int64(b.N); k = next.Add(1) {
							recs := records(fmt.Sprintf("r%d.%d", i, k), 8)
							if err := s.AppendAudit(ctx, recs, testSeal); err != nil {
								b.Error(err)
								return
							}
							if recs[0].Seq == 0 {
								pending.Add(1)
							}
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
				b.ReportMetric(float64(pending.Load())/float64(b.N), "pending/op")
				if _, bad, err := stores[0].SealPending(ctx, 1<<30, openTest, testSeal); err != nil || bad != 0 {
					b.Fatal(bad, err)
				}
			})
		}
	}
}

// viaDelay starts a TCP proxy to the server of dbURL that holds every
// chunk it forwards for d, and returns dbURL through it.
func viaDelay(tb testing.TB, dbURL string, d time.Duration) string {
	tb.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		tb.Fatal(err)
	}
	target := u.Host
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				up, err := net.Dial("tcp", target)
				if err != nil {
					c.Close()
					return
				}
				go delayCopy(up, c, d)
				delayCopy(c, up, d)
			}()
		}
	}()
	u.Host = ln.Addr().String()
	return u.String()
}

// delayCopy copies src to dst, each chunk d after it was read (in order).
func delayCopy(dst, src net.Conn, d time.Duration) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	q := make(chan chunk, 1024)
	go func() {
		defer dst.Close()
		for c := range q {
			if w := time.Until(c.at); w > 0 {
				time.Sleep(w)
			}
			if _, err := dst.Write(c.b); err != nil {
				for range q {
				}
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			q <- chunk{append([]byte(nil), buf[:n]...), time.Now().Add(d)}
		}
		if err != nil {
			if err != io.EOF {
				src.Close()
			}
			close(q)
			return
		}
	}
}
