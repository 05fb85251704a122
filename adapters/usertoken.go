package adapters

import "context"

// UserToken gives an adapter the access token of the patient whose record
// is being fetched, for sources that read a record only with the patient's
// own login there (upstream auth type smart-patient). Token fails with
// ErrNotConnected or ErrReconnect when there is none to give.
type UserToken interface {
	// Token returns a valid access token, refreshing it when it expired.
	Token(ctx context.Context) (string, error)
	// Invalidate says the source refused token, so that the next Token
	// refreshes it.
	Invalidate(token string)
}

type userTokenKey struct{}

// WithUserToken returns a context whose fetches use t.
func WithUserToken(ctx context.Context, t UserToken) context.Context {
	return context.WithValue(ctx, userTokenKey{}, t)
}

// UserTokenFrom returns the context's UserToken, nil when there is none.
func UserTokenFrom(ctx context.Context) UserToken {
	t, _ := ctx.Value(userTokenKey{}).(UserToken)
	return t
}

// PatientLogin describes a source whose patients connect it themselves
// with a SMART standalone launch (auth type smart-patient).
type PatientLogin struct {
	// BaseURL is the FHIR base; its .well-known/smart-configuration names
	// the authorize and token endpoints.
	BaseURL string
	// ClientID is the gateway's client id at the source; Secret its
	// secret when it is a confidential client ("" for a public one,
	// which relies on PKCE alone).
	ClientID, Secret string
	// Scope is what the gateway asks for.
	Scope string
}

// PatientConnectable is implemented by sources that read a record only
// with the patient's own login (ok false for the others).
type PatientConnectable interface {
	Source
	PatientLogin() (PatientLogin, bool)
}
