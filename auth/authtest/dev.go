package authtest

import (
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/config"
)

// NewDevIssuer starts an issuer outside of a test, listening on addr (a
// loopback address such as "127.0.0.1:0"), for development tools like
// `fhirgate demo`. It behaves as NewIssuer's issuer; tokens are minted with
// Mint and the caller stops it with Close. It is a development identity
// provider: it logs in whoever asks, so it refuses non-loopback addresses.
func NewDevIssuer(addr string) (*Issuer, error) {
	if !config.LoopbackAddr(addr) {
		return nil, fmt.Errorf("authtest: the development issuer only listens on loopback, not %q", addr)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("authtest: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("authtest: %w", err)
	}
	is, mux := newIssuer(key)
	is.Server = &httptest.Server{Listener: ln, Config: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
	is.Server.Start()
	is.URL = is.Server.URL
	return is, nil
}

// Mint signs an access token with the issuer's current key; the standard
// claims are filled as Token fills them.
func (is *Issuer) Mint(c Claims) (string, error) {
	is.mu.Lock()
	key, kid := is.key, is.kid
	is.mu.Unlock()
	tok, err := Sign(is.complete(c), jose.RS256, key, kid)
	if err != nil {
		return "", fmt.Errorf("authtest: %w", err)
	}
	return tok, nil
}

// Close stops the issuer's server.
func (is *Issuer) Close() { is.Server.Close() }
