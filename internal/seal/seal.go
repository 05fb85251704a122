// Package seal encrypts small records the gateway keeps in its database
// (ABDM transfer keys, patients' tokens at their sources) with AES-256-GCM
// under a key kept outside the database. Each record is sealed under a
// name (its key in the table) given as additional data, so that a sealed
// record cannot be moved under another name.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// KeyEnv names the environment variable holding the state key: 32 bytes,
// base64. Every replica needs the same one.
const KeyEnv = "FHIRGATE_STATE_KEY"

// ErrUnsealable: the record was sealed under another key (a replica or an
// earlier run with a different FHIRGATE_STATE_KEY), under another name,
// or was altered.
var ErrUnsealable = errors.New("the record cannot be opened with this state key (" + KeyEnv + " differs between replicas or runs)")

// Sealer seals and opens records.
type Sealer struct{ aead cipher.AEAD }

// New returns a sealer for a 32-byte key.
func New(key []byte) (*Sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("seal: the key must be 32 bytes, not %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead}, nil
}

// FromEnv reads the key from KeyEnv (lookup is os.LookupEnv or a test's
// stand-in). found is false, with a nil sealer and error, when the
// variable is not set; a value that is not 32 bytes of base64 is an error.
func FromEnv(lookup func(string) (string, bool)) (s *Sealer, found bool, err error) {
	v, ok := lookup(KeyEnv)
	if !ok || strings.TrimSpace(v) == "" {
		return nil, false, nil
	}
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
	if err != nil || len(k) != 32 {
		return nil, true, fmt.Errorf("%s must be 32 bytes in base64 (openssl rand -base64 32)", KeyEnv)
	}
	s, err = New(k)
	return s, true, err
}

// Ephemeral returns a sealer with a random key of this process: what it
// seals opens only here and only until the process ends.
func Ephemeral() (*Sealer, error) {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	return New(k)
}

// Seal encrypts plain under name: a random nonce followed by the
// ciphertext and tag.
func (s *Sealer) Seal(name string, plain []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, plain, []byte(name)), nil
}

// Open decrypts what Seal returned for the same name; ErrUnsealable when
// the key or the name differ or the record was altered. The caller
// clears the plaintext when done with it.
func (s *Sealer) Open(name string, b []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(b) < n {
		return nil, ErrUnsealable
	}
	plain, err := s.aead.Open(nil, b[:n], b[n:], []byte(name))
	if err != nil {
		return nil, ErrUnsealable
	}
	return plain, nil
}
