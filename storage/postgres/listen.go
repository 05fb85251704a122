package postgres

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/storage/sqlstore"
	"github.com/jackc/pgx/v5"
)

// The read cache on PostgreSQL (sqlstore.ShareCache): every write
// transaction that replaced versions sends their keys with pg_notify on
// the cache channel; each process listens on a connection of its own and
// applies them. To know that it is still hearing everything, the listener
// sends a ping of its own through the channel every pingEvery; PostgreSQL
// delivers notifications in commit order, so when a ping comes back every
// write committed before it was sent has been applied, and the cache may
// answer until cacheLease after the ping was sent. A listener that loses
// its connection, or whose pings stop coming back, leaves the cache
// silent until it hears again; a new connection starts with an empty
// cache.
const (
	pingEvery  = 200 * time.Millisecond
	cacheLease = time.Second
)

// DefaultReadCacheBytes is each process's read cache on PostgreSQL; set
// sqlstore.Options.ReadCacheBytes negative to turn it off.
const DefaultReadCacheBytes = 64 << 20

// cacheChannel is the notification channel of a store: one per schema,
// since notifications are per database.
func cacheChannel(schema string) string {
	if schema == "" {
		return "fhirgate_cache"
	}
	h := sha256.Sum256([]byte(schema))
	return "fhirgate_cache_" + hex.EncodeToString(h[:8])
}

// shareCache sets the store's cache up for replicas and starts listening.
func (d *DB) shareCache(st *sqlstore.Store, schema string) {
	channel := cacheChannel(schema)
	st.ShareCache(func(ctx context.Context, c sqlstore.Conn, payload string) error {
		_, err := c.Exec(ctx, "SELECT pg_notify(?, ?)", channel, payload)
		return err
	})
	if !st.CacheShared() {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.stopListen = cancel
	d.listening.Add(1)
	go func() {
		defer d.listening.Done()
		d.listen(ctx, st, channel)
	}()
}

// listen keeps a listening connection until ctx ends.
func (d *DB) listen(ctx context.Context, st *sqlstore.Store, channel string) {
	var idb [8]byte
	_, _ = rand.Read(idb[:])
	id := hex.EncodeToString(idb[:])
	backoff := 50 * time.Millisecond
	for {
		heard := d.listenOnce(ctx, st, channel, id)
		st.SuspendCache()
		if ctx.Err() != nil {
			return
		}
		if heard {
			backoff = 50 * time.Millisecond
		} else {
			backoff = min(2*backoff, 5*time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}

// listenOnce listens on one connection until it fails; it reports
// whether any of its pings came back.
func (d *DB) listenOnce(ctx context.Context, st *sqlstore.Store, channel, id string) (heard bool) {
	cfg := d.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = "fhirgate-cache-listener"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return false
	}
	// anything held may have missed announcements made before LISTEN
	st.SuspendCache()
	prefix := "ping " + id + " "
	var (
		n    int64
		sent = map[int64]time.Time{}
		last time.Time
	)
	ping := func() error {
		n++
		sent[n] = time.Now()
		last = sent[n]
		_, err := conn.Exec(ctx, "SELECT pg_notify($1, $2)", channel, prefix+strconv.FormatInt(n, 10))
		return err
	}
	if ping() != nil {
		return false
	}
	for {
		wctx, cancel := context.WithDeadline(ctx, last.Add(pingEvery))
		note, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil || conn.IsClosed() || !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err) {
				return heard
			}
			if len(sent) > 64 {
				return heard // pings are not coming back
			}
			if ping() != nil {
				return heard
			}
			continue
		}
		if strings.HasPrefix(note.Payload, "ping ") {
			k, err := strconv.ParseInt(strings.TrimPrefix(note.Payload, prefix), 10, 64)
			if !strings.HasPrefix(note.Payload, prefix) || err != nil {
				continue // another process's ping
			}
			if t, ok := sent[k]; ok {
				st.RenewCache(t.Add(cacheLease))
				heard = true
				for j := range sent {
					if j <= k {
						delete(sent, j)
					}
				}
			}
			if time.Since(last) >= pingEvery {
				if ping() != nil {
					return heard
				}
			}
			continue
		}
		st.Announced(note.Payload)
	}
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}
