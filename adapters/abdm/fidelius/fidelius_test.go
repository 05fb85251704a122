package fidelius

import (
	"bytes"
	"encoding/base64"
	"errors"
	"math/big"
	"testing"
)

// The ABDM sandbox's published vector (STANDARDS.md §9.7).
const (
	hiuPriv    = "DMxHPri8d7IT23KgLk281zZenMfVHSdeamq0RhwlIBk="
	hiuPub     = "BAheD5rUqTy4V5xR4/6HWmYpopu5CO+KO8BECS0udNqUTSNo91TIqIIy1A4Vh+F94c+n9vAcwXU2bGcfsI5f69Y="
	hiuNonce   = "6uj1RdDUbcpI3lVMZvijkMC8Te20O4Bcyz0SyivX8Eg="
	hipPriv    = "AYhVZpbVeX4KS5Qm/W0+9Ye2q3rnVVGmqRICmseWni4="
	hipPub     = "BABVt+mpRLMXiQpIfEq6bj8hlXsdtXIxLsspmMgLNI1SR5mHgDVbjHO2A+U4QlMddGzqyEidzm1AkhtSxSO2Ahg="
	hipNonce   = "lmXgblZwotx+DfBgKJF0lZXtAXgBEYr5khh79Zytr2Y="
	vectorCT   = "pzMvVZNNVtJzqPkkxcCbBUWgDEBy/mBXIeT2dJWI16ZAQnnXUb9lI+S4k8XK6mgZSKKSRIHkcNvJpllnBg548wUgavBa0vCRRwdL6kY6Yw=="
	vectorText = "Wormtail should never have been Potter cottage's secret keeper."
)

func b64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVector(t *testing.T) {
	hiu, err := ParsePrivateKey(hiuPriv)
	if err != nil {
		t.Fatal(err)
	}
	hip, err := ParsePrivateKey(hipPriv)
	if err != nil {
		t.Fatal(err)
	}
	if got := hiu.PublicKeyBase64(); got != hiuPub {
		t.Errorf("HIU public key = %s, want %s", got, hiuPub)
	}
	if got := hip.PublicKeyBase64(); got != hipPub {
		t.Errorf("HIP public key = %s, want %s", got, hipPub)
	}
	s1, err := hiu.SharedSecret(b64(t, hipPub))
	if err != nil {
		t.Fatal(err)
	}
	s2, err := hip.SharedSecret(b64(t, hiuPub))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s1, s2) {
		t.Fatal("the two sides derive different shared secrets")
	}
	pt, err := Decrypt(hiu, b64(t, hipPub), b64(t, hiuNonce), b64(t, hipNonce), b64(t, vectorCT))
	if err != nil {
		t.Fatal(err)
	}
	if string(pt) != vectorText {
		t.Fatalf("plaintext = %q", pt)
	}
	// the HIP's side of the same exchange produces the published ciphertext
	ct, err := Encrypt(hip, b64(t, hiuPub), b64(t, hipNonce), b64(t, hiuNonce), []byte(vectorText))
	if err != nil {
		t.Fatal(err)
	}
	if got := base64.StdEncoding.EncodeToString(ct); got != vectorCT {
		t.Fatalf("ciphertext = %s", got)
	}
}

func TestRoundTripFreshKeys(t *testing.T) {
	for i := 0; i < 3; i++ {
		a, err := GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		na, _ := NewNonce()
		nb, _ := NewNonce()
		msg := bytes.Repeat([]byte(`{"resourceType":"Bundle"}`), i*100+1)
		ct, err := Encrypt(b, a.PublicKey(), nb, na, msg)
		if err != nil {
			t.Fatal(err)
		}
		pt, err := Decrypt(a, b.PublicKey(), na, nb, ct)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(pt, msg) {
			t.Fatal("round trip changed the message")
		}
		if _, err := DecodePublicKey(a.PublicKeyBase64()); err != nil {
			t.Fatalf("own public key rejected: %v", err)
		}
	}
}

func TestTamper(t *testing.T) {
	hiu, _ := ParsePrivateKey(hiuPriv)
	other, _ := GenerateKey(nil)
	ct := b64(t, vectorCT)
	flip := func(b []byte, i int) []byte {
		c := append([]byte(nil), b...)
		c[i] ^= 1
		return c
	}
	badPoint := b64(t, hipPub)
	badPoint[40] ^= 1
	cases := []struct {
		name      string
		key       *PrivateKey
		peer      []byte
		nonceA    []byte
		nonceB    []byte
		ct        []byte
		wantError error
	}{
		{"wrong private key", other, b64(t, hipPub), b64(t, hiuNonce), b64(t, hipNonce), ct, ErrDecrypt},
		{"wrong peer key", hiu, other.PublicKey(), b64(t, hiuNonce), b64(t, hipNonce), ct, ErrDecrypt},
		{"wrong nonce", hiu, b64(t, hipPub), flip(b64(t, hiuNonce), 3), b64(t, hipNonce), ct, ErrDecrypt},
		{"bad tag", hiu, b64(t, hipPub), b64(t, hiuNonce), b64(t, hipNonce), flip(ct, len(ct)-1), ErrDecrypt},
		{"flipped ciphertext", hiu, b64(t, hipPub), b64(t, hiuNonce), b64(t, hipNonce), flip(ct, 0), ErrDecrypt},
		{"truncated", hiu, b64(t, hipPub), b64(t, hiuNonce), b64(t, hipNonce), ct[:len(ct)-5], ErrDecrypt},
		{"shorter than a tag", hiu, b64(t, hipPub), b64(t, hiuNonce), b64(t, hipNonce), ct[:10], ErrDecrypt},
		{"empty", hiu, b64(t, hipPub), b64(t, hiuNonce), b64(t, hipNonce), nil, ErrDecrypt},
		{"short nonce", hiu, b64(t, hipPub), b64(t, hiuNonce)[:31], b64(t, hipNonce), ct, ErrNonce},
		{"point off the curve", hiu, badPoint, b64(t, hiuNonce), b64(t, hipNonce), ct, ErrPublicKey},
		{"compressed point", hiu, append([]byte{2}, b64(t, hipPub)[1:33]...), b64(t, hiuNonce), b64(t, hipNonce), ct, ErrPublicKey},
		{"identity-like zero point", hiu, make([]byte, 65), b64(t, hiuNonce), b64(t, hipNonce), ct, ErrPublicKey},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decrypt(c.key, c.peer, c.nonceA, c.nonceB, c.ct)
			if !errors.Is(err, c.wantError) {
				t.Fatalf("err = %v, want %v", err, c.wantError)
			}
		})
	}
}

func TestSmallOrderPointRejected(t *testing.T) {
	// (0, sqrt(b)) style points are not easy to name; take a point of order 2
	// instead: y = 0, x a root of x³+ax+b. Find it from the Montgomery form:
	// u = 0 maps to x = 486662/3.
	x := new(big.Int).SetInt64(486662)
	x.Mul(x, new(big.Int).ModInverse(new(big.Int).SetInt64(3), curveP))
	x.Mod(x, curveP)
	if !onCurve(x, new(big.Int)) {
		t.Fatal("test point is not on the curve")
	}
	p := encodePoint(point{x: x, y: new(big.Int)})
	if _, err := DecodePublicKey(base64.StdEncoding.EncodeToString(p)); !errors.Is(err, ErrPublicKey) {
		t.Fatalf("order-2 point accepted: %v", err)
	}
}

func TestDestroy(t *testing.T) {
	k, _ := GenerateKey(nil)
	k.Destroy()
	if _, err := k.SharedSecret(k.PublicKey()); !errors.Is(err, ErrPrivateKey) {
		t.Fatalf("destroyed key still usable: %v", err)
	}
}

func TestParsePrivateKeyRejects(t *testing.T) {
	for _, s := range []string{"", "!!", base64.StdEncoding.EncodeToString(make([]byte, 32)), base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, 32))} {
		if _, err := ParsePrivateKey(s); !errors.Is(err, ErrPrivateKey) {
			t.Errorf("%q: err = %v", s, err)
		}
	}
}

func BenchmarkDecrypt(b *testing.B) {
	hiu, _ := ParsePrivateKey(hiuPriv)
	peer, _ := base64.StdEncoding.DecodeString(hipPub)
	n1, _ := base64.StdEncoding.DecodeString(hiuNonce)
	n2, _ := base64.StdEncoding.DecodeString(hipNonce)
	ct, _ := base64.StdEncoding.DecodeString(vectorCT)
	for b.Loop() {
		if _, err := Decrypt(hiu, peer, n1, n2, ct); err != nil {
			b.Fatal(err)
		}
	}
}

func TestCurveConstants(t *testing.T) {
	p := curveP
	three := big.NewInt(3)
	inv := func(v int64) *big.Int { return new(big.Int).ModInverse(big.NewInt(v), p) }
	A := big.NewInt(486662)
	a := new(big.Int).Mul(A, A)
	a.Sub(three, a).Mul(a, inv(3)).Mod(a, p)
	b := new(big.Int).Exp(A, three, nil)
	b.Mul(b, big.NewInt(2)).Sub(b, new(big.Int).Mul(A, big.NewInt(9))).Mul(b, inv(27)).Mod(b, p)
	gx := new(big.Int).Mul(A, inv(3))
	gx.Add(gx, big.NewInt(9)).Mod(gx, p)
	if a.Cmp(curveA) != 0 || b.Cmp(curveB) != 0 || gx.Cmp(curveGx) != 0 {
		t.Fatalf("curve constants do not match the Montgomery curve: a=%x b=%x gx=%x", a, b, gx)
	}
	if !onCurve(curveGx, curveGy) {
		t.Fatal("G is not on the curve")
	}
	if !mul(curveN, point{x: curveGx, y: curveGy}).inf {
		t.Fatal("n·G is not the identity")
	}
}
