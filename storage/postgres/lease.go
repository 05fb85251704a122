package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

var _ sqlstore.Leaser = (*DB)(nil)

// appenderLease is the advisory lock class of the audit log's appender
// role; the lock's second key is the schema's name hashed, so that
// gateways on other schemas of one database (tests, tenants) do not share
// it.
const appenderLease = 0x61756474 // "audt"

// leaseTimeout bounds a lease's statements: a lease is checked from the
// trail's sealer, not from a request.
const leaseTimeout = 5 * time.Second

// TryLease implements sqlstore.Leaser with a session advisory lock held on
// a connection taken out of the pool for it. The lock lives as long as
// that session: when the process dies (or its connection does), PostgreSQL
// releases it and another replica's next TryLease takes it. A lease that
// is held is checked with one statement on its connection: an error means
// the session, and the lock with it, is gone.
func (d *DB) TryLease(ctx context.Context) (bool, error) {
	d.leaseMu.Lock()
	defer d.leaseMu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leaseTimeout)
	defer cancel()
	if d.lease != nil {
		if _, err := d.lease.Exec(ctx, "SELECT 1"); err == nil {
			return true, nil
		}
		_ = d.lease.Close(ctx)
		d.lease = nil
	}
	if d.closed {
		return false, fmt.Errorf("postgres: closed")
	}
	pc, err := d.pool.Acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("postgres: lease: %w", err)
	}
	var held bool
	if err := pc.QueryRow(ctx, "SELECT pg_try_advisory_lock($1, hashtext(current_schema()))", int32(appenderLease)).Scan(&held); err != nil {
		pc.Release()
		return false, fmt.Errorf("postgres: lease: %w", err)
	}
	if !held {
		pc.Release()
		return false, nil
	}
	// the session now holds the lock: it leaves the pool, which would
	// otherwise hand it to requests (and close it when idle)
	d.lease = pc.Hijack()
	// an idle session whose client vanished without closing its socket
	// (its machine died) would keep the lock until the kernel's keepalive
	// gave up, hours later by default: PostgreSQL probes this one's client
	// after 10 s of silence, so another replica takes the role within a
	// minute (ignored on a Unix socket, where the question does not arise)
	for _, q := range []string{"SET tcp_keepalives_idle = 10", "SET tcp_keepalives_interval = 5", "SET tcp_keepalives_count = 3"} {
		_, _ = d.lease.Exec(ctx, q)
	}
	return true, nil
}

// closeLease ends the lease's session (releasing the lock).
func (d *DB) closeLease() {
	d.leaseMu.Lock()
	defer d.leaseMu.Unlock()
	d.closed = true
	if d.lease != nil {
		ctx, cancel := context.WithTimeout(context.Background(), leaseTimeout)
		defer cancel()
		_ = d.lease.Close(ctx)
		d.lease = nil
	}
}
