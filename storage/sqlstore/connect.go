package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fhirgate/fhirgate/storage"
)

var _ storage.Connections = (*Store)(nil)

// PutConnectState implements storage.Connections.
func (s *Store) PutConnectState(ctx context.Context, st storage.ConnectState) error {
	return s.inTx(ctx, func(c Conn) error {
		if _, err := c.Exec(ctx, `DELETE FROM connect_states WHERE expires < ?`, s.clock().UnixMicro()); err != nil {
			return fmt.Errorf("connect states: %w", err)
		}
		if _, err := c.Exec(ctx, `INSERT INTO connect_states (hash, patient, source, sealed, expires) VALUES (?, ?, ?, ?, ?)`,
			st.Hash, st.Patient, st.Source, st.Sealed, st.Expires.UnixMicro()); err != nil {
			return fmt.Errorf("connect state: %w", err)
		}
		return nil
	})
}

// TakeConnectState implements storage.Connections: one DELETE … RETURNING,
// so that of two callbacks with the same state, on any replicas, one gets
// it.
func (s *Store) TakeConnectState(ctx context.Context, hash string) (*storage.ConnectState, error) {
	st := &storage.ConnectState{Hash: hash}
	var exp int64
	err := s.inTx(ctx, func(c Conn) error {
		return c.QueryRow(ctx, `DELETE FROM connect_states WHERE hash = ? RETURNING patient, source, sealed, expires`, hash).
			Scan(&st.Patient, &st.Source, &st.Sealed, &exp)
	})
	if errors.Is(err, ErrNoRows) {
		return nil, storage.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("connect state: %w", err)
	}
	st.Expires = time.UnixMicro(exp).UTC()
	return st, nil
}

const connectionColumns = `patient, source, source_patient, sealed, connected, updated, broken`

func scanConnection(sc interface{ Scan(...any) error }) (*storage.SourceConnection, error) {
	var (
		sc0                storage.SourceConnection
		connected, updated int64
		broken             int
	)
	if err := sc.Scan(&sc0.Patient, &sc0.Source, &sc0.SourcePatient, &sc0.Sealed, &connected, &updated, &broken); err != nil {
		return nil, err
	}
	sc0.Connected, sc0.Updated, sc0.Broken = time.UnixMicro(connected).UTC(), time.UnixMicro(updated).UTC(), broken != 0
	return &sc0, nil
}

// SourceConnections implements storage.Connections.
func (s *Store) SourceConnections(ctx context.Context, patient string) ([]storage.SourceConnection, error) {
	rows, err := s.db.Query(ctx, `SELECT `+connectionColumns+` FROM source_connections WHERE patient = ? ORDER BY source`, patient)
	if err != nil {
		return nil, fmt.Errorf("source connections: %w", err)
	}
	defer rows.Close()
	var out []storage.SourceConnection
	for rows.Next() {
		c, err := scanConnection(rows)
		if err != nil {
			return nil, fmt.Errorf("source connections: %w", err)
		}
		out = append(out, *c)
	}
	return out, rows.Err()
}

// UpdateSourceConnection implements storage.Connections.
func (s *Store) UpdateSourceConnection(ctx context.Context, patient, source string, fn func(old *storage.SourceConnection) (*storage.SourceConnection, error)) error {
	return s.underKeyLock(ctx, "source-connection:"+patient+"\x00"+source, true, func(c Conn) (func(Conn) error, error) {
		old, err := scanConnection(c.QueryRow(ctx, `SELECT `+connectionColumns+` FROM source_connections WHERE patient = ? AND source = ?`, patient, source))
		if errors.Is(err, ErrNoRows) {
			old, err = nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("source connection: %w", err)
		}
		v, err := fn(old)
		if err != nil {
			return nil, err
		}
		return func(c Conn) error {
			if v == nil {
				_, err := c.Exec(ctx, `DELETE FROM source_connections WHERE patient = ? AND source = ?`, patient, source)
				return err
			}
			broken := 0
			if v.Broken {
				broken = 1
			}
			_, err := c.Exec(ctx, `INSERT INTO source_connections (`+connectionColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (patient, source) DO UPDATE SET source_patient = excluded.source_patient, sealed = excluded.sealed,
				connected = excluded.connected, updated = excluded.updated, broken = excluded.broken`,
				patient, source, v.SourcePatient, v.Sealed, v.Connected.UnixMicro(), v.Updated.UnixMicro(), broken)
			return err
		}, nil
	})
}
