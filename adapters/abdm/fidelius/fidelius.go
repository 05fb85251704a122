// Package fidelius implements ABDM's "Fidelius" encryption of health
// information exactly as the reference implementation (Fidelius CLI, Java
// and BouncyCastle) does it, so that an HIU built on it interoperates with
// every HIP in the network:
//
//   - ECDH on Curve25519 written in short Weierstrass form (BouncyCastle's
//     "curve25519" named curve), which is not RFC 7748 X25519: no clamping,
//     other coordinates, other shared secrets. crypto/ecdh cannot be used;
//   - public keys as 65-byte uncompressed points 0x04 || X || Y;
//   - the shared secret is the 32-byte big-endian x coordinate of d·Q;
//   - the two parties' 32-byte nonces XORed: the first 20 bytes are the
//     HKDF salt, the last 12 the GCM IV;
//   - key = HKDF-SHA256(shared secret, salt, no info, 32 bytes);
//   - AES-256-GCM, 128-bit tag appended, no additional data.
//
// The arithmetic uses math/big, which is not constant-time: timing may leak
// information about a private key to someone who can measure many scalar
// multiplications with it. Keys here are ephemeral (one per health-information
// request, dropped when the transfer closes), which bounds the exposure to
// the few multiplications one transfer needs.
package fidelius

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
)

// Sizes of the wire formats.
const (
	PublicKeySize = 65 // 0x04 || X(32) || Y(32)
	NonceSize     = 32
	fieldSize     = 32
)

// Errors. Decryption failures of every kind (wrong key, wrong nonce,
// tampered or truncated ciphertext) are ErrDecrypt: GCM cannot tell them
// apart and neither should a caller.
var (
	ErrPublicKey  = errors.New("fidelius: invalid public key")
	ErrPrivateKey = errors.New("fidelius: invalid private key")
	ErrNonce      = errors.New("fidelius: nonce must be 32 bytes")
	ErrDecrypt    = errors.New("fidelius: decryption failed")
)

// curve25519 in short Weierstrass form y² = x³ + a·x + b over p = 2^255-19,
// as BouncyCastle's CustomNamedCurves "curve25519": a = (3 - A²)/3 and
// b = (2A³ - 9A)/27 for the Montgomery A = 486662, Gx = 9 + A/3.
// (STANDARDS.md §9.6 prints a with one "a" digit too many; TestCurveConstants
// re-derives all three.)
var (
	curveP  = mustHex("7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffed")
	curveA  = mustHex("2aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa984914a144")
	curveB  = mustHex("7b425ed097b425ed097b425ed097b425ed097b425ed097b4260b5e9c7710c864")
	curveGx = mustHex("2aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaad245a")
	curveGy = mustHex("20ae19a1b8a086b4e01edd2c7748d14c923d4d7e6d7c61b229e9c5a27eced3d9")
	curveN  = mustHex("1000000000000000000000000000000014def9dea2f79cd65812631a5cf5d3ed")
)

func mustHex(s string) *big.Int {
	v, ok := new(big.Int).SetString(s, 16)
	if !ok {
		panic("fidelius: bad constant " + s)
	}
	return v
}

// point is an affine point; inf marks the point at infinity.
type point struct {
	x, y *big.Int
	inf  bool
}

func mod(v *big.Int) *big.Int { return v.Mod(v, curveP) }

// add returns p+q.
func add(p, q point) point {
	if p.inf {
		return q
	}
	if q.inf {
		return p
	}
	var l *big.Int
	if p.x.Cmp(q.x) == 0 {
		if new(big.Int).Add(p.y, q.y).Cmp(curveP) == 0 || p.y.Sign() == 0 && q.y.Sign() == 0 {
			return point{inf: true}
		}
		// tangent: (3x² + a) / 2y
		num := new(big.Int).Mul(p.x, p.x)
		num.Mul(num, big.NewInt(3)).Add(num, curveA)
		den := new(big.Int).Lsh(p.y, 1)
		den.ModInverse(mod(den), curveP)
		l = mod(num.Mul(num, den))
	} else {
		num := new(big.Int).Sub(q.y, p.y)
		den := mod(new(big.Int).Sub(q.x, p.x))
		den.ModInverse(den, curveP)
		l = mod(num.Mul(num, den))
	}
	x := new(big.Int).Mul(l, l)
	x.Sub(x, p.x).Sub(x, q.x)
	mod(x)
	y := new(big.Int).Sub(p.x, x)
	y.Mul(y, l).Sub(y, p.y)
	mod(y)
	return point{x: x, y: y}
}

// mul returns k·p with a Montgomery ladder (the same sequence of group
// operations for every bit; math/big itself is still variable-time).
func mul(k *big.Int, p point) point {
	r0, r1 := point{inf: true}, p
	for i := curveN.BitLen(); i >= 0; i-- {
		if k.Bit(i) == 0 {
			r1 = add(r0, r1)
			r0 = add(r0, r0)
		} else {
			r0 = add(r0, r1)
			r1 = add(r1, r1)
		}
	}
	return r0
}

func onCurve(x, y *big.Int) bool {
	if x.Sign() < 0 || x.Cmp(curveP) >= 0 || y.Sign() < 0 || y.Cmp(curveP) >= 0 {
		return false
	}
	l := mod(new(big.Int).Mul(y, y))
	r := new(big.Int).Mul(x, x)
	r.Mul(r, x)
	r.Add(r, new(big.Int).Mul(curveA, x)).Add(r, curveB)
	return l.Cmp(mod(r)) == 0
}

// PrivateKey is an ephemeral key pair. Call Destroy when the transfer it
// served is over.
type PrivateKey struct {
	d   *big.Int
	pub []byte
}

// GenerateKey returns a fresh key pair with d uniform in [1, n-1].
func GenerateKey(r io.Reader) (*PrivateKey, error) {
	if r == nil {
		r = rand.Reader
	}
	max := new(big.Int).Sub(curveN, big.NewInt(1))
	d, err := rand.Int(r, max)
	if err != nil {
		return nil, fmt.Errorf("fidelius: generate key: %w", err)
	}
	d.Add(d, big.NewInt(1))
	return newPrivateKey(d)
}

func newPrivateKey(d *big.Int) (*PrivateKey, error) {
	if d.Sign() <= 0 || d.Cmp(curveN) >= 0 {
		return nil, ErrPrivateKey
	}
	q := mul(d, point{x: curveGx, y: curveGy})
	return &PrivateKey{d: d, pub: encodePoint(q)}, nil
}

// ParsePrivateKey reads a private key in the Fidelius CLI's format: base64
// of a big-endian (two's-complement, so possibly 0x00-led) integer.
func ParsePrivateKey(b64 string) (*PrivateKey, error) {
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b) == 0 || len(b) > fieldSize+1 || b[0]&0x80 != 0 {
		return nil, ErrPrivateKey
	}
	return newPrivateKey(new(big.Int).SetBytes(b))
}

// Bytes returns the private scalar, big-endian in fieldSize bytes: what
// PrivateKeyFromBytes reads back. The gateway keeps it only sealed (see
// package abdm's transfer records).
func (k *PrivateKey) Bytes() []byte { return k.d.FillBytes(make([]byte, fieldSize)) }

// PrivateKeyFromBytes is the key whose scalar Bytes returned.
func PrivateKeyFromBytes(b []byte) (*PrivateKey, error) {
	if len(b) != fieldSize {
		return nil, ErrPrivateKey
	}
	return newPrivateKey(new(big.Int).SetBytes(b))
}

// PublicKey returns the 65-byte uncompressed public key.
func (k *PrivateKey) PublicKey() []byte { return append([]byte(nil), k.pub...) }

// PublicKeyBase64 is PublicKey as it goes into keyMaterial.dhPublicKey.keyValue.
func (k *PrivateKey) PublicKeyBase64() string { return base64.StdEncoding.EncodeToString(k.pub) }

// Destroy overwrites the private scalar. The key is unusable afterwards.
// (Best effort: math/big may have left copies in memory it released.)
func (k *PrivateKey) Destroy() {
	if k == nil || k.d == nil {
		return
	}
	words := k.d.Bits()
	for i := range words {
		words[i] = 0
	}
	k.d.SetInt64(0)
	k.d = nil
}

func encodePoint(q point) []byte {
	out := make([]byte, PublicKeySize)
	out[0] = 4
	q.x.FillBytes(out[1 : 1+fieldSize])
	q.y.FillBytes(out[1+fieldSize:])
	return out
}

// parsePublicKey checks an uncompressed point: on the curve, not the point
// at infinity, and in the prime-order subgroup (the curve's cofactor is 8;
// a point of small order would let a peer probe bits of our key).
func parsePublicKey(b []byte) (point, error) {
	if len(b) != PublicKeySize || b[0] != 4 {
		return point{}, fmt.Errorf("%w: want a %d-byte uncompressed point", ErrPublicKey, PublicKeySize)
	}
	x := new(big.Int).SetBytes(b[1 : 1+fieldSize])
	y := new(big.Int).SetBytes(b[1+fieldSize:])
	if !onCurve(x, y) {
		return point{}, fmt.Errorf("%w: not on the curve", ErrPublicKey)
	}
	q := point{x: x, y: y}
	if !mul(curveN, q).inf {
		return point{}, fmt.Errorf("%w: not in the prime-order subgroup", ErrPublicKey)
	}
	return q, nil
}

// DecodePublicKey decodes keyMaterial.dhPublicKey.keyValue (base64 of the
// 65-byte point) and checks it. The X.509 form Fidelius also accepts is not
// supported: the ABDM docs recommend the raw point.
func DecodePublicKey(b64 string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64", ErrPublicKey)
	}
	if _, err := parsePublicKey(b); err != nil {
		return nil, err
	}
	return b, nil
}

// SharedSecret is the ECDH agreement with a peer's public key: the 32-byte
// big-endian x coordinate of d·Q.
func (k *PrivateKey) SharedSecret(peer []byte) ([]byte, error) {
	if k == nil || k.d == nil {
		return nil, ErrPrivateKey
	}
	q, err := parsePublicKey(peer)
	if err != nil {
		return nil, err
	}
	s := mul(k.d, q)
	if s.inf {
		return nil, fmt.Errorf("%w: agreement is the point at infinity", ErrPublicKey)
	}
	return s.x.FillBytes(make([]byte, fieldSize)), nil
}

// NewNonce returns 32 random bytes.
func NewNonce() ([]byte, error) {
	n := make([]byte, NonceSize)
	if _, err := rand.Read(n); err != nil {
		return nil, fmt.Errorf("fidelius: nonce: %w", err)
	}
	return n, nil
}

// DecodeNonce decodes a base64 nonce and checks its length.
func DecodeNonce(b64 string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b) != NonceSize {
		return nil, ErrNonce
	}
	return b, nil
}

// aead derives the AES-GCM cipher and IV of one exchange. XOR commutes, so
// both sides pass (own nonce, peer nonce) and agree.
func aead(k *PrivateKey, peer, nonceA, nonceB []byte) (cipher.AEAD, []byte, error) {
	if len(nonceA) != NonceSize || len(nonceB) != NonceSize {
		return nil, nil, ErrNonce
	}
	secret, err := k.SharedSecret(peer)
	if err != nil {
		return nil, nil, err
	}
	x := make([]byte, NonceSize)
	for i := range x {
		x[i] = nonceA[i] ^ nonceB[i]
	}
	key, err := hkdf.Key(sha256.New, secret, x[:20], "", 32)
	clear(secret)
	if err != nil {
		return nil, nil, fmt.Errorf("fidelius: hkdf: %w", err)
	}
	block, err := aes.NewCipher(key)
	clear(key)
	if err != nil {
		return nil, nil, err
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		return nil, nil, err
	}
	return g, x[20:], nil
}

// Encrypt encrypts plaintext for the holder of peer's private key: the
// result is ciphertext || tag (base64 it for "content").
func Encrypt(k *PrivateKey, peer, ownNonce, peerNonce, plaintext []byte) ([]byte, error) {
	g, iv, err := aead(k, peer, ownNonce, peerNonce)
	if err != nil {
		return nil, err
	}
	return g.Seal(nil, iv, plaintext, nil), nil
}

// Decrypt reverses Encrypt: k is the receiver's private key, peer the
// sender's public key, and the nonces are the two parties'.
func Decrypt(k *PrivateKey, peer, ownNonce, peerNonce, ciphertext []byte) ([]byte, error) {
	g, iv, err := aead(k, peer, ownNonce, peerNonce)
	if err != nil {
		return nil, err
	}
	if len(ciphertext) < g.Overhead() {
		return nil, ErrDecrypt
	}
	out, err := g.Open(nil, iv, ciphertext, nil)
	if err != nil {
		return nil, ErrDecrypt
	}
	return out, nil
}
