// Package smart is the gateway's SMART Backend Services client: signing
// keys (RSA for RS384, EC P-384 for ES384) loaded from PEM files or
// generated, their public JWK Set, the private_key_jwt client assertion,
// discovery of the token endpoint from .well-known/smart-configuration, and
// a TokenSource that obtains access tokens with the client_credentials grant
// and caches them until shortly before they expire.
package smart

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
)

// The signing algorithms SMART Backend Services requires clients to support.
const (
	RS384 = "RS384"
	ES384 = "ES384"
)

// minRSABits is the smallest RSA key accepted (RFC 7518 §3.3 says 2048).
const minRSABits = 2048

// ErrKey is wrapped by every key loading error.
var ErrKey = errors.New("invalid signing key")

// Key is a private signing key with its JOSE algorithm and key id.
type Key struct {
	alg    string
	kid    string
	signer crypto.Signer
}

// Alg is the key's JOSE algorithm, RS384 or ES384.
func (k *Key) Alg() string { return k.alg }

// KeyID is the key's kid: the configured one, or the RFC 7638 JWK
// thumbprint (SHA-256, base64url) of the public key.
func (k *Key) KeyID() string { return k.kid }

// Public returns the public key.
func (k *Key) Public() crypto.PublicKey { return k.signer.Public() }

// LoadKeyFile reads a PEM private key (PKCS#8 "PRIVATE KEY", PKCS#1 "RSA
// PRIVATE KEY" or SEC 1 "EC PRIVATE KEY"). kid may be empty to use the
// thumbprint. The error never contains the file's content.
func LoadKeyFile(path, kid string) (*Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	k, err := ParseKeyPEM(b, kid)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ParseKeyPEM parses the first PEM block of b as a private key; see
// LoadKeyFile.
func ParseKeyPEM(b []byte, kid string) (*Key, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%w: no PEM block found", ErrKey)
	}
	var (
		priv any
		err  error
	)
	switch blk.Type {
	case "PRIVATE KEY":
		priv, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		priv, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		priv, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("%w: PEM block %q is not a private key", ErrKey, blk.Type)
	}
	if err != nil {
		// x509's messages describe the structure, not the key material.
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	return NewKey(priv, kid)
}

// NewKey wraps an *rsa.PrivateKey (RS384, at least 2048 bits) or an
// *ecdsa.PrivateKey on P-384 (ES384).
func NewKey(priv any, kid string) (*Key, error) {
	k := &Key{kid: kid}
	switch p := priv.(type) {
	case *rsa.PrivateKey:
		if p.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("%w: RSA key has %d bits, need at least %d", ErrKey, p.N.BitLen(), minRSABits)
		}
		k.alg, k.signer = RS384, p
	case *ecdsa.PrivateKey:
		if p.Curve != elliptic.P384() {
			return nil, fmt.Errorf("%w: EC key is on %s, ES384 needs P-384", ErrKey, p.Curve.Params().Name)
		}
		k.alg, k.signer = ES384, p
	default:
		return nil, fmt.Errorf("%w: unsupported key type %T (want RSA or EC P-384)", ErrKey, priv)
	}
	if k.kid == "" {
		k.kid = thumbprint(k.Public())
	}
	return k, nil
}

// GenerateKey makes a new key for alg (RS384: RSA 2048; ES384: EC P-384),
// for development and tests. Write it out with PEM.
func GenerateKey(alg string) (*Key, error) {
	switch alg {
	case RS384:
		p, err := rsa.GenerateKey(rand.Reader, minRSABits)
		if err != nil {
			return nil, err
		}
		return NewKey(p, "")
	case ES384:
		p, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		if err != nil {
			return nil, err
		}
		return NewKey(p, "")
	}
	return nil, fmt.Errorf("%w: unsupported algorithm %q (want RS384 or ES384)", ErrKey, alg)
}

// PEM encodes the private key as PKCS#8.
func (k *Key) PEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.signer)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// JWK is a public JSON Web Key as the JWKS document carries it.
type JWK struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
	// RSA
	N string `json:"n,omitempty"`
	E string `json:"e,omitempty"`
	// EC
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
}

// PublicJWK returns the key's public half as a JWK with kid, use "sig" and
// alg.
func (k *Key) PublicJWK() JWK {
	j := publicJWK(k.Public())
	j.Kid, j.Use, j.Alg = k.kid, "sig", k.alg
	return j
}

// PublicJWKJSON is PublicJWK encoded as JSON.
func (k *Key) PublicJWKJSON() []byte {
	b, _ := json.Marshal(k.PublicJWK())
	return b
}

// JWKS returns the JSON Web Key Set document of the keys' public halves.
func JWKS(keys ...*Key) []byte {
	set := struct {
		Keys []JWK `json:"keys"`
	}{Keys: []JWK{}}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.PublicJWK())
	}
	b, _ := json.Marshal(set)
	return b
}

// PublicKeyFromJWK turns an RSA or EC P-384 JWK back into a public key (to
// verify assertions in tests and when the gateway is the server).
func PublicKeyFromJWK(j JWK) (crypto.PublicKey, error) {
	dec := base64.RawURLEncoding.DecodeString
	switch j.Kty {
	case "RSA":
		n, err1 := dec(j.N)
		e, err2 := dec(j.E)
		if err := errors.Join(err1, err2); err != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return nil, fmt.Errorf("%w: bad RSA JWK", ErrKey)
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}, nil
	case "EC":
		if j.Crv != "P-384" {
			return nil, fmt.Errorf("%w: EC JWK on %q, want P-384", ErrKey, j.Crv)
		}
		x, err1 := dec(j.X)
		y, err2 := dec(j.Y)
		if err := errors.Join(err1, err2); err != nil || len(x) != 48 || len(y) != 48 {
			return nil, fmt.Errorf("%w: bad EC JWK", ErrKey)
		}
		// Uncompressed point encoding, parsed with checks that it is on the curve.
		pt := append(append([]byte{4}, x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P384(), pt)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrKey, err)
		}
		return pub, nil
	}
	return nil, fmt.Errorf("%w: unsupported kty %q", ErrKey, j.Kty)
}

func publicJWK(pub crypto.PublicKey) JWK {
	enc := base64.RawURLEncoding.EncodeToString
	switch p := pub.(type) {
	case *rsa.PublicKey:
		return JWK{Kty: "RSA", N: enc(p.N.Bytes()), E: enc(big.NewInt(int64(p.E)).Bytes())}
	case *ecdsa.PublicKey:
		b, _ := p.Bytes() // 0x04 || X || Y, each 48 bytes on P-384
		return JWK{Kty: "EC", Crv: "P-384", X: enc(b[1:49]), Y: enc(b[49:97])}
	}
	return JWK{}
}

// thumbprint is the RFC 7638 JWK thumbprint: SHA-256 over the required
// members in lexicographic order, without whitespace.
func thumbprint(pub crypto.PublicKey) string {
	j := publicJWK(pub)
	var s string
	switch j.Kty {
	case "RSA":
		s = fmt.Sprintf(`{"e":%q,"kty":"RSA","n":%q}`, j.E, j.N)
	case "EC":
		s = fmt.Sprintf(`{"crv":"P-384","kty":"EC","x":%q,"y":%q}`, j.X, j.Y)
	}
	sum := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
