package shlink_test

import (
	"context"
	"encoding/base64"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/shlink"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/postgres"
	"github.com/fhirgate/fhirgate/storage/postgres/pgtest"
	"github.com/fhirgate/fhirgate/storage/sqlite"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

func stores(t *testing.T) map[string]func(t *testing.T) storage.Store {
	reg, err := search.New(search.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]func(t *testing.T) storage.Store{
		"sqlite": func(t *testing.T) storage.Store {
			s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "db"), sqlstore.Options{Registry: reg})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		"postgres": func(t *testing.T) storage.Store {
			s, err := postgres.Open(context.Background(), pgtest.Config(t), sqlstore.Options{Registry: reg})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
}

// TestParallelGuesses: wrong passcodes sent at once are each counted:
// exactly MaxFailures of them get a 401 (with the attempts that remain,
// never below zero), every other one finds the link disabled, and the
// right passcode afterwards too.
func TestParallelGuesses(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			svc, err := shlink.New(ctx, shlink.Config{Store: open(t), MaxFailures: 4})
			if err != nil {
				t.Fatal(err)
			}
			token, l, err := svc.Create(ctx, shlink.Link{Patient: "Patient/p", Resources: []string{"Bundle/b"}, Expires: time.Now().Add(time.Hour)}, "1234")
			if err != nil {
				t.Fatal(err)
			}
			const guesses = 12
			var (
				wg              sync.WaitGroup
				mu              sync.Mutex
				wrong, notFound int
				remaining       = map[int]int{}
			)
			for i := 0; i < guesses; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := svc.Open(ctx, token, "9999")
					mu.Lock()
					defer mu.Unlock()
					var pe *shlink.PasscodeError
					switch {
					case errors.As(err, &pe):
						wrong++
						remaining[pe.Remaining]++
					case errors.Is(err, shlink.ErrNotFound):
						notFound++
					default:
						t.Errorf("a guess answered %v", err)
					}
				}()
			}
			wg.Wait()
			if wrong != 4 || notFound != guesses-4 {
				t.Fatalf("%d wrong-passcode answers and %d disabled, want 4 and %d", wrong, notFound, guesses-4)
			}
			for r := 0; r < 4; r++ {
				if remaining[r] != 1 {
					t.Errorf("remaining %d answered %d times: %v", r, remaining[r], remaining)
				}
			}
			if _, err := svc.Open(ctx, token, "1234"); !errors.Is(err, shlink.ErrNotFound) {
				t.Errorf("the right passcode after the lock-out: %v", err)
			}
			if links, _ := svc.List(ctx, "Patient/p"); len(links) != 1 || links[0].ID != l.ID || links[0].Status(time.Now(), 4) != "disabled" || links[0].Failures != 4 {
				t.Errorf("listed %+v", links)
			}
		})
	}
}

// TestTickets: a file location is used once, for its own link, before it
// expires.
func TestTickets(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			now := time.Now()
			clock := func() time.Time { return now }
			svc, err := shlink.New(ctx, shlink.Config{Store: open(t), Now: clock, TicketTTL: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			token, l, err := svc.Create(ctx, shlink.Link{Patient: "Patient/p", Resources: []string{"Bundle/a", "Bundle/b"}, Expires: now.Add(time.Hour)}, "")
			if err != nil {
				t.Fatal(err)
			}
			other, _, _ := svc.Create(ctx, shlink.Link{Patient: "Patient/p", Resources: []string{"Bundle/c"}, Expires: now.Add(time.Hour)}, "")
			tk, _ := svc.Ticket(ctx, l.ID, 1)
			if _, _, err := svc.Redeem(ctx, other, tk); !errors.Is(err, shlink.ErrNotFound) {
				t.Errorf("another link's ticket: %v", err)
			}
			tk, _ = svc.Ticket(ctx, l.ID, 1)
			if got, n, err := svc.Redeem(ctx, token, tk); err != nil || n != 1 || got.ID != l.ID {
				t.Errorf("redeem: %v %d %v", got, n, err)
			}
			if _, _, err := svc.Redeem(ctx, token, tk); !errors.Is(err, shlink.ErrNotFound) {
				t.Errorf("a ticket used twice: %v", err)
			}
			tk, _ = svc.Ticket(ctx, l.ID, 0)
			now = now.Add(2 * time.Minute)
			if _, _, err := svc.Redeem(ctx, token, tk); !errors.Is(err, shlink.ErrNotFound) {
				t.Errorf("an expired ticket: %v", err)
			}
			tk, _ = svc.Ticket(ctx, l.ID, 0)
			if err := svc.Revoke(ctx, "Patient/q", l.ID); !errors.Is(err, shlink.ErrNotFound) {
				t.Errorf("another patient revokes: %v", err)
			}
			if err := svc.Revoke(ctx, "Patient/p", l.ID); err != nil {
				t.Fatal(err)
			}
			if _, _, err := svc.Redeem(ctx, token, tk); !errors.Is(err, shlink.ErrNotFound) {
				t.Errorf("a ticket of a revoked link: %v", err)
			}
		})
	}
}

// TestEncrypt: the JWE opens with another implementation, carries its
// content type, and never repeats a nonce.
func TestEncrypt(t *testing.T) {
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i)
	}
	plain := []byte(`{"resourceType":"Bundle","type":"collection","entry":[]}`)
	seen := map[string]bool{}
	for i := 0; i < 50; i++ {
		jwe, err := shlink.Encrypt(key, plain, shlink.ContentType)
		if err != nil {
			t.Fatal(err)
		}
		obj, err := jose.ParseEncrypted(jwe, []jose.KeyAlgorithm{jose.DIRECT}, []jose.ContentEncryption{jose.A256GCM})
		if err != nil {
			t.Fatal(err)
		}
		got, err := obj.Decrypt(key)
		if err != nil || string(got) != string(plain) {
			t.Fatalf("decrypt: %v %q", err, got)
		}
		if obj.Header.ExtraHeaders["cty"] != shlink.ContentType {
			t.Errorf("header %v", obj.Header.ExtraHeaders)
		}
		parts := strings.Split(jwe, ".")
		hdr, _ := base64.RawURLEncoding.DecodeString(parts[0])
		if len(parts) != 5 || parts[1] != "" || !strings.Contains(string(hdr), `"zip":"DEF"`) || !strings.Contains(string(hdr), `"alg":"dir"`) {
			t.Fatalf("not a compact dir JWE with zip DEF: %s", hdr)
		}
		iv := parts[2]
		if seen[iv] {
			t.Fatal("a nonce repeats")
		}
		seen[iv] = true
	}
}
