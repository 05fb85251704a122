package auth

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
)

// Sentinel errors. Every error the package returns for a request is an
// *Error wrapping exactly one of them; test with errors.Is.
var (
	// ErrNoToken: the request carries no bearer token (401, no error code).
	ErrNoToken = errors.New("auth: no access token")
	// ErrInvalidToken: malformed, badly signed, expired, not yet valid,
	// wrong issuer or audience, inactive (401 invalid_token).
	ErrInvalidToken = errors.New("auth: invalid access token")
	// ErrInsufficientScope: the token's scopes do not cover the request
	// (403 insufficient_scope).
	ErrInsufficientScope = errors.New("auth: insufficient scope")
	// ErrForbidden: the token is valid but names nobody the gateway knows
	// (no fhirUser, no patient mapping, unknown client) (403).
	ErrForbidden = errors.New("auth: access denied")
	// ErrUnavailable: the identity provider could not be reached to check
	// the token (503); the token may well be valid.
	ErrUnavailable = errors.New("auth: identity provider unavailable")
)

// Error is a refusal. Its message is safe to log: it never contains the
// token, a secret or a claim value, only what kind of problem it was.
type Error struct {
	kind error
	// Reason says what was wrong, for the response and the log.
	Reason string
	// Expired is set when the token was refused only for being expired.
	Expired bool
	cause   error
}

func newError(kind error, reason string, cause error) *Error {
	return &Error{kind: kind, Reason: reason, cause: cause}
}

func invalid(reason string, cause error) *Error { return newError(ErrInvalidToken, reason, cause) }

// InsufficientScope returns the error for a request whose scopes do not
// grant perms on typ.
func InsufficientScope(typ string, perms Perm) *Error {
	return newError(ErrInsufficientScope, fmt.Sprintf("the token's scopes do not grant %s.%s", typ, perms), nil)
}

func (e *Error) Error() string {
	if e.Reason == "" {
		return e.kind.Error()
	}
	return e.kind.Error() + ": " + e.Reason
}

// Unwrap returns the sentinel and, when there is one, the underlying cause
// (which may name claim values and so is for debugging, not for logs).
func (e *Error) Unwrap() []error {
	if e.cause != nil {
		return []error{e.kind, e.cause}
	}
	return []error{e.kind}
}

// Status is the HTTP status to answer with.
func (e *Error) Status() int {
	switch e.kind {
	case ErrNoToken, ErrInvalidToken:
		return http.StatusUnauthorized
	case ErrUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusForbidden
}

// WWWAuthenticate returns the WWW-Authenticate header value (RFC 6750 §3)
// for the response, "" when none is due (ErrUnavailable). realm may be "".
func (e *Error) WWWAuthenticate(realm string) string {
	var b strings.Builder
	b.WriteString("Bearer")
	sep := " "
	param := func(k, v string) {
		b.WriteString(sep)
		b.WriteString(k)
		b.WriteString(`="`)
		b.WriteString(quoteSafe(v))
		b.WriteString(`"`)
		sep = ", "
	}
	if realm != "" {
		param("realm", realm)
	}
	switch e.kind {
	case ErrNoToken:
		// RFC 6750: no error code when the request had no credentials.
	case ErrInvalidToken:
		param("error", "invalid_token")
		param("error_description", e.Reason)
	case ErrInsufficientScope, ErrForbidden:
		param("error", "insufficient_scope")
		param("error_description", e.Reason)
	default:
		return ""
	}
	return b.String()
}

// quoteSafe keeps a header parameter within the quoted-string characters
// RFC 6750 allows for error_description (%x20-21 / %x23-5B / %x5D-7E).
func quoteSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return '\''
		}
		return r
	}, s)
}

// FHIR returns the error as a *fhir.Error (status and OperationOutcome).
func (e *Error) FHIR() *fhir.Error {
	code := "forbidden"
	switch e.kind {
	case ErrNoToken:
		code = "login"
	case ErrInvalidToken:
		code = "unknown"
		if e.Expired {
			code = "expired"
		}
	case ErrUnavailable:
		code = "transient"
	}
	text := e.Reason
	if text == "" {
		text = e.kind.Error()
	}
	return &fhir.Error{Status: e.Status(), Issues: []fhir.Issue{fhir.NewIssue(code, text)}}
}

// Response returns what a server answers for err: the status, the
// WWW-Authenticate value ("" for none) and the OperationOutcome error. An
// error that is not an *Error of this package is treated as an outage
// (503), never as permission.
func Response(err error, realm string) (status int, wwwAuthenticate string, outcome *fhir.Error) {
	var e *Error
	if !errors.As(err, &e) {
		e = newError(ErrUnavailable, "the access token could not be checked", err)
	}
	return e.Status(), e.WWWAuthenticate(realm), e.FHIR()
}
