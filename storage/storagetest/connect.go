package storagetest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/storage"
)

// testConnections checks patients' connections to sources: a pending
// state is taken at most once, however many take it at the same time; a
// connection's updates run one at a time; nil deletes.
func testConnections(t *testing.T, s storage.Store, c *Clock) {
	cs, ok := s.(storage.Connections)
	if !ok {
		t.Skip("the store keeps no connections")
	}
	ctx := context.Background()
	now := c.Now()
	exp := now.Add(10 * time.Minute).UTC().Truncate(time.Millisecond)
	if err := cs.PutConnectState(ctx, storage.ConnectState{Hash: "h1", Patient: "amy", Source: "portal", Sealed: []byte{1, 2, 3}, Expires: exp}); err != nil {
		t.Fatal(err)
	}
	// an expired state is dropped by the next put
	if err := cs.PutConnectState(ctx, storage.ConnectState{Hash: "old", Patient: "amy", Source: "portal", Sealed: []byte{0}, Expires: now.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := cs.PutConnectState(ctx, storage.ConnectState{Hash: "h2", Patient: "amy", Source: "portal", Sealed: []byte{0}, Expires: exp}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.TakeConnectState(ctx, "old"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("an expired state was kept: %v", err)
	}
	var (
		wg  sync.WaitGroup
		got atomic.Int32
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := cs.TakeConnectState(ctx, "h1")
			if err == nil {
				got.Add(1)
				if st.Patient != "amy" || st.Source != "portal" || string(st.Sealed) != "\x01\x02\x03" || !st.Expires.Equal(exp) {
					t.Errorf("state %+v", st)
				}
			} else if !errors.Is(err, storage.ErrNotFound) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got.Load() != 1 {
		t.Errorf("the state was taken %d times", got.Load())
	}

	// concurrent updates of one connection: none is lost
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := cs.UpdateSourceConnection(ctx, "amy", "portal", func(old *storage.SourceConnection) (*storage.SourceConnection, error) {
				n := storage.SourceConnection{Patient: "amy", Source: "portal", SourcePatient: "p-9", Connected: exp, Updated: exp}
				n.Sealed = []byte("x")
				if old != nil {
					n.Sealed = append(old.Sealed, 'x')
				}
				return &n, nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	list, err := cs.SourceConnections(ctx, "amy")
	if err != nil || len(list) != 1 || len(list[0].Sealed) != 10 || list[0].SourcePatient != "p-9" || !list[0].Connected.Equal(exp) || list[0].Broken {
		t.Fatalf("after 10 updates: %+v %v", list, err)
	}
	// an error keeps the connection; nil deletes it
	if err := cs.UpdateSourceConnection(ctx, "amy", "portal", func(*storage.SourceConnection) (*storage.SourceConnection, error) {
		return nil, errors.New("no")
	}); err == nil {
		t.Error("fn's error was not returned")
	}
	if err := cs.UpdateSourceConnection(ctx, "amy", "portal", func(*storage.SourceConnection) (*storage.SourceConnection, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if list, _ := cs.SourceConnections(ctx, "amy"); len(list) != 0 {
		t.Errorf("deleted connection still listed: %+v", list)
	}
}
