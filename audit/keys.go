package audit

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/storage"
)

// The trail is sealed with HMAC-SHA256 under a key that is not in the
// database: each event's seal covers the previous event's seal, its own
// sequence number, the key's id and its body, so that an event cannot be
// edited, removed, inserted, moved or re-sealed without the key. Keys have
// ids so that they can rotate: the first key of a Keyring seals; every key
// of it verifies what it sealed.

// Key is one sealing key.
type Key struct {
	ID     string
	Secret []byte
}

// Keyring holds the keys of a trail; the first one seals new events.
type Keyring struct {
	keys []Key
	pool sync.Pool // *keyMAC of the sealing key
}

type keyMAC struct{ h hash.Hash }

// MinKeyBytes is the shortest secret accepted.
const MinKeyBytes = 16

var keyIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,32}$`)

// ParseKeys reads keys written as "id:base64secret", separated by commas
// or newlines; lines starting with # are ignored. The first key seals.
func ParseKeys(s string) (*Keyring, error) {
	var keys []Key
	var parts []string
	for _, line := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }) {
		if line = strings.TrimSpace(line); !strings.HasPrefix(line, "#") {
			parts = append(parts, strings.Split(line, ",")...)
		}
	}
	for _, part := range parts {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, secret, ok := strings.Cut(part, ":")
		if !ok || !keyIDRE.MatchString(id) {
			return nil, errors.New("audit key: each key must be written id:base64secret, the id 1-32 letters, digits, '.', '_' or '-'")
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(secret))
		if err != nil {
			if raw, err = base64.RawStdEncoding.DecodeString(strings.TrimSpace(secret)); err != nil {
				return nil, fmt.Errorf("audit key %s: the secret is not base64", id)
			}
		}
		if len(raw) < MinKeyBytes {
			return nil, fmt.Errorf("audit key %s: the secret has %d bytes; at least %d are needed", id, len(raw), MinKeyBytes)
		}
		for _, k := range keys {
			if k.ID == id {
				return nil, fmt.Errorf("audit key %s is given twice", id)
			}
		}
		keys = append(keys, Key{ID: id, Secret: raw})
	}
	if len(keys) == 0 {
		return nil, errors.New("audit key: no key given")
	}
	return NewKeyring(keys...), nil
}

// NewKeyring returns a keyring; keys[0] seals.
func NewKeyring(keys ...Key) *Keyring {
	kr := &Keyring{keys: keys}
	kr.pool.New = func() any { return &keyMAC{h: hmac.New(sha256.New, kr.keys[0].Secret)} }
	return kr
}

// GenerateKey returns a new random key line ("id:base64secret").
func GenerateKey(id string) string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return id + ":" + base64.StdEncoding.EncodeToString(b)
}

// SealingKeyID is the id of the key that seals.
func (k *Keyring) SealingKeyID() string { return k.keys[0].ID }

// IDs lists the key ids, the sealing one first.
func (k *Keyring) IDs() []string {
	out := make([]string, len(k.keys))
	for i, key := range k.keys {
		out[i] = key.ID
	}
	return out
}

func (k *Keyring) secret(id string) ([]byte, bool) {
	for _, key := range k.keys {
		if key.ID == id {
			return key.Secret, true
		}
	}
	return nil, false
}

// sealInput writes what an event's seal covers.
func sealInput(h hash.Hash, prev []byte, seq int64, keyID string, body []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(prev)))
	h.Write(n[:])
	h.Write(prev)
	binary.BigEndian.PutUint64(n[:], uint64(seq))
	h.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(len(keyID)))
	h.Write(n[:])
	h.Write([]byte(keyID))
	h.Write(body)
}

// Seal is the storage.AuditSealer of the sealing key.
func (k *Keyring) Seal(prev []byte, r *storage.AuditRecord) {
	m := k.pool.Get().(*keyMAC)
	m.h.Reset()
	id := k.keys[0].ID
	sealInput(m.h, prev, r.Seq, id, r.Body)
	r.KeyID, r.Prev, r.Hash = id, prev, m.h.Sum(nil)
	k.pool.Put(m)
}

// sealOf computes the seal of a record under the key it names, as if it
// sat at seq after prev; ok is false when the keyring lacks the key.
func (k *Keyring) sealOf(prev []byte, seq int64, keyID string, body []byte) (sum []byte, ok bool) {
	secret, ok := k.secret(keyID)
	if !ok {
		return nil, false
	}
	h := hmac.New(sha256.New, secret)
	sealInput(h, prev, seq, keyID, body)
	return h.Sum(nil), true
}

// macWith computes an HMAC of msg under a key of the ring.
func (k *Keyring) macWith(keyID, msg string) ([]byte, bool) {
	secret, ok := k.secret(keyID)
	if !ok {
		return nil, false
	}
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(msg))
	return h.Sum(nil), true
}

// KeyFile reads the keys in path; when the file does not exist and create
// is set, it writes a new random key there first (mode 0600) and reports
// created. The file holds key lines as ParseKeys reads them.
func KeyFile(path string, create bool) (kr *Keyring, created bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, false, fmt.Errorf("audit key file: %w", err)
		}
		line := "# fhirgate audit trail keys: the first seals, all verify. Keep a copy outside the database's host.\n" +
			GenerateKey("k"+time.Now().UTC().Format("20060102")) + "\n"
		// written aside, then linked in place: a process starting at the
		// same time reads a whole file or none
		tmp, err := os.CreateTemp(filepath.Dir(path), ".audit-key-*")
		if err != nil {
			return nil, false, fmt.Errorf("audit key file: %w", err)
		}
		defer os.Remove(tmp.Name())
		if _, err := tmp.WriteString(line); err != nil {
			tmp.Close()
			return nil, false, fmt.Errorf("audit key file: %w", err)
		}
		if err := tmp.Close(); err != nil {
			return nil, false, fmt.Errorf("audit key file: %w", err)
		}
		if err := os.Link(tmp.Name(), path); errors.Is(err, os.ErrExist) {
			return KeyFile(path, false) // another process created it meanwhile
		} else if err != nil {
			return nil, false, fmt.Errorf("audit key file: %w", err)
		}
		kr, err := ParseKeys(line)
		return kr, true, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("audit key file: %w", err)
	}
	kr, err = ParseKeys(string(b))
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", path, err)
	}
	return kr, false, nil
}
