// Package connect lets a patient connect a source that is read with the
// patient's own login there (upstream auth type smart-patient): the
// gateway is the SMART client (standalone launch, authorization code with
// PKCE S256). The app asks Patient/[id]/$connect for the source's
// authorize URL; the browser logs in at the source, which sends it back to
// the gateway's fixed callback; the callback keeps the code (sealed) and
// sends the browser back to the app with a one-time completion reference;
// the app, signed in as the patient, completes the connection with it
// (Finish); only then does the gateway trade the code for tokens, keep
// them sealed under the state key, and pull with them (refreshing when
// they expire).
//
// Security properties:
//   - only sources in the operator's config can be connected: the gateway
//     never fetches a URL a patient typed;
//   - the state is 256 random bits, stored only as its hash, with the
//     patient, source, PKCE verifier (sealed) and return URL (sealed),
//     expires after StateTTL and is used at most once, on any replica;
//   - the app's return URL must be one the operator allows (no open
//     redirect);
//   - a login at the source connects only the record of the patient who
//     completes it: someone who starts a connection for their own record
//     and gets another person to sign in at the source through its link
//     (cross-site request forgery of the login) ends with a completion
//     that person's app, signed in as that person, cannot use for
//     another record, and the code is never exchanged;
//   - tokens are stored only sealed (AES-256-GCM under FHIRGATE_STATE_KEY,
//     bound to the patient and source); without the key, connecting is
//     disabled;
//   - no token appears in a log, a response or an audit event.
package connect

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/smart"
	"github.com/fhirgate/fhirgate/internal/seal"
	"github.com/fhirgate/fhirgate/storage"
)

// CallbackPath is the gateway's fixed redirect URI path, registered at
// each source.
const CallbackPath = "/connect/callback"

// StateTTL is how long a started connection waits for its callback.
const StateTTL = 10 * time.Minute

// CompleteTTL is how long a callback's completion waits for the app (a
// source's authorization code lives for minutes at most).
const CompleteTTL = 5 * time.Minute

// Errors.
var (
	// ErrUnknownSource: no connectable source has that id.
	ErrUnknownSource = errors.New("no source of that id can be connected by patients")
	// ErrReturnURL: the app's return URL is not one the operator allows.
	ErrReturnURL = errors.New("the return URL is not an allowed app address")
	// ErrBadState: the callback's state is unknown, used, expired or
	// forged.
	ErrBadState = errors.New("this sign-in link is unknown, expired or already used; start again from the app")
	// ErrDisabled: no state key is configured.
	ErrDisabled = errors.New("connecting sources is disabled: set " + seal.KeyEnv + " (32 random bytes, base64) so that tokens can be stored sealed")
	// ErrSource: the source's login failed (discovery, token exchange).
	ErrSource = errors.New("the source's login failed")
	// ErrOtherPatient: a completion of a login started for another
	// patient's record (nothing is stored; the completion is used up).
	ErrOtherPatient = errors.New("this sign-in was started for another record; start again from the app")
)

// Source is a connectable source.
type Source struct {
	ID, Title string
	Login     adapters.PatientLogin
}

// Config configures the Service.
type Config struct {
	// Sources are the connectable sources.
	Sources []Source
	// Store keeps states and connections (the gateway's store).
	Store storage.Connections
	// Sealer seals the tokens; nil disables connecting (ErrDisabled).
	Sealer *seal.Sealer
	// BaseURL is the gateway's public base; the callback is
	// BaseURL + CallbackPath.
	BaseURL string
	// ReturnURLs are the allowed app addresses: a return URL must be one
	// of them or below one ending in "/" (same scheme, host and path
	// prefix).
	ReturnURLs []string
	// HTTP talks to the sources (http.DefaultClient when nil).
	HTTP smart.Doer
	// Now is the clock.
	Now func() time.Time
	// Logger never receives a token.
	Logger *slog.Logger
}

// Service connects patients' sources.
type Service struct {
	cfg     Config
	log     *slog.Logger
	sources map[string]Source

	mu    sync.Mutex
	disco map[string]discovered
}

type discovered struct {
	c   *smart.Configuration
	at  time.Time
	err error
}

// New returns a Service.
func New(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.BaseURL = strings.TrimSuffix(cfg.BaseURL, "/")
	s := &Service{cfg: cfg, log: cfg.Logger.With("component", "connect"), sources: map[string]Source{}, disco: map[string]discovered{}}
	for _, src := range cfg.Sources {
		s.sources[src.ID] = src
	}
	return s
}

// SourcesOf returns the connectable sources among srcs, titled by titles
// (the source id when none).
func SourcesOf(srcs []adapters.Source, titles map[string]string) []Source {
	var out []Source
	for _, src := range srcs {
		pc, ok := src.(adapters.PatientConnectable)
		if !ok {
			continue
		}
		if l, ok := pc.PatientLogin(); ok {
			out = append(out, Source{ID: src.ID(), Title: cmpOr(titles[src.ID()], src.ID()), Login: l})
		}
	}
	return out
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Enabled reports whether connecting works (a state key is configured).
func (s *Service) Enabled() bool { return s.cfg.Sealer != nil }

// Connectable reports whether source is read with patients' own logins.
func (s *Service) Connectable(source string) bool { _, ok := s.sources[source]; return ok }

// CallbackURL is the redirect URI to register at the sources.
func (s *Service) CallbackURL() string { return s.cfg.BaseURL + CallbackPath }

// State is a patient's connection state at one source.
type State struct {
	Source, Title string
	// Status is "not-connected", "connected" or "reconnect" (the tokens
	// stopped working).
	Status string
	// Since is when the patient connected (zero when not connected).
	Since time.Time
}

// States lists the connectable sources with the patient's state at each.
func (s *Service) States(ctx context.Context, patient string) ([]State, error) {
	conns, err := s.cfg.Store.SourceConnections(ctx, patient)
	if err != nil {
		return nil, err
	}
	out := make([]State, 0, len(s.cfg.Sources))
	for _, src := range s.cfg.Sources {
		st := State{Source: src.ID, Title: src.Title, Status: "not-connected"}
		if i := slices.IndexFunc(conns, func(c storage.SourceConnection) bool { return c.Source == src.ID }); i >= 0 {
			st.Status, st.Since = "connected", conns[i].Connected
			if conns[i].Broken {
				st.Status = "reconnect"
			}
		}
		out = append(out, st)
	}
	return out, nil
}

// pending is what a state keeps sealed; a completion keeps it with the
// source's code.
type pending struct {
	Verifier  string `json:"verifier"`
	ReturnURL string `json:"returnURL"`
	Code      string `json:"code,omitempty"`
}

// completionName is what a completion's sealed part is bound to (a state
// cannot be used as a completion, nor a completion as a state).
func completionName(hash string) string { return "connect-complete/" + hash }

func hashState(state string) string {
	sum := sha256.Sum256([]byte(state))
	return hex.EncodeToString(sum[:])
}

func stateName(hash string) string { return "connect-state/" + hash }

func connectionName(patient, source string) string {
	return "source-connection/" + patient + "/" + source
}

// CheckReturnURL checks the app's return URL against the allowed ones.
func (s *Service) CheckReturnURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.User != nil || u.Opaque != "" {
		return ErrReturnURL
	}
	for _, a := range s.cfg.ReturnURLs {
		au, err := url.Parse(a)
		if err != nil || au.Scheme != u.Scheme || au.Host != u.Host {
			continue
		}
		if u.Path == au.Path || strings.HasSuffix(au.Path, "/") && strings.HasPrefix(u.Path, au.Path) && !dotSegments(u.Path) {
			return nil
		}
	}
	return ErrReturnURL
}

// dotSegments reports whether a path has "." or ".." segments (which a
// browser would resolve out of an allowed prefix).
func dotSegments(p string) bool {
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// Begin starts a connection of the patient's source: it returns the
// authorize URL to send the patient's browser to.
func (s *Service) Begin(ctx context.Context, patient, source, returnURL string) (string, error) {
	if !s.Enabled() {
		return "", ErrDisabled
	}
	src, ok := s.sources[source]
	if !ok {
		return "", fmt.Errorf("%w: %q", ErrUnknownSource, source)
	}
	if err := s.CheckReturnURL(returnURL); err != nil {
		return "", err
	}
	conf, err := s.discover(ctx, src)
	if err != nil {
		return "", err
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	state := base64.RawURLEncoding.EncodeToString(b[:])
	verifier, challenge, err := smart.NewPKCE()
	if err != nil {
		return "", err
	}
	plain, err := json.Marshal(pending{Verifier: verifier, ReturnURL: returnURL})
	if err != nil {
		return "", err
	}
	hash := hashState(state)
	sealed, err := s.cfg.Sealer.Seal(stateName(hash), plain)
	clear(plain)
	if err != nil {
		return "", err
	}
	if err := s.cfg.Store.PutConnectState(ctx, storage.ConnectState{Hash: hash, Patient: patient, Source: source, Sealed: sealed, Expires: s.cfg.Now().Add(StateTTL)}); err != nil {
		return "", err
	}
	return s.client(src).AuthorizeURL(conf, src.Login.BaseURL, src.Login.Scope, state, challenge)
}

func (s *Service) client(src Source) smart.PatientClient {
	return smart.PatientClient{ClientID: src.Login.ClientID, Secret: src.Login.Secret, RedirectURI: s.CallbackURL(), HTTP: s.cfg.HTTP, Now: s.cfg.Now}
}

// discover reads the source's smart-configuration (only ever at a
// configured base URL), remembered for an hour (a failure for a minute).
func (s *Service) discover(ctx context.Context, src Source) (*smart.Configuration, error) {
	s.mu.Lock()
	d, ok := s.disco[src.ID]
	s.mu.Unlock()
	now := s.cfg.Now()
	if ok && (d.err == nil && now.Sub(d.at) < time.Hour || d.err != nil && now.Sub(d.at) < time.Minute) {
		return d.c, d.err
	}
	c, err := smart.Discover(ctx, s.cfg.HTTP, src.Login.BaseURL)
	if err == nil {
		err = smart.CheckPatientLogin(c)
	}
	if err != nil {
		err = fmt.Errorf("%w: source %s: %w", ErrSource, src.ID, err)
		c = nil
	}
	s.mu.Lock()
	s.disco[src.ID] = discovered{c: c, at: now, err: err}
	s.mu.Unlock()
	return c, err
}

// Outcome is what a callback did.
type Outcome struct {
	Patient, Source string
	// ReturnURL is where the browser goes back to.
	ReturnURL string
	// Denied is set when the patient cancelled at the source (or the
	// source refused): nothing was stored.
	Denied string
	// Complete is the one-time reference the app completes the
	// connection with (Finish), signed in as the patient; set by a
	// callback that brought a code.
	Complete string
}

// Complete takes the source's redirect (its query: state, and code or
// error). The state is used up whatever happens next. A callback whose
// state is unknown, used, expired or forged fails with ErrBadState and
// stores nothing. One that brought a code keeps it, sealed, under a new
// one-time reference (Outcome.Complete) for the app to finish with: the
// code is exchanged only for the patient the state was started for,
// signed in to the app (Finish).
func (s *Service) Complete(ctx context.Context, q url.Values) (*Outcome, error) {
	if !s.Enabled() {
		return nil, ErrDisabled
	}
	state := q.Get("state")
	if state == "" || len(state) > 200 {
		return nil, ErrBadState
	}
	st, p, err := s.take(ctx, state, stateName)
	if err != nil {
		return nil, err
	}
	out := &Outcome{Patient: st.Patient, Source: st.Source, ReturnURL: p.ReturnURL}
	if e := q.Get("error"); e != "" || q.Get("code") == "" {
		out.Denied = cmpOr(e, "no code")
		if len(out.Denied) > 64 {
			out.Denied = out.Denied[:64]
		}
		return out, nil
	}
	if len(q.Get("code")) > 4096 {
		return out, fmt.Errorf("%w: source %s: the code is too long", ErrSource, st.Source)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return out, err
	}
	ref := base64.RawURLEncoding.EncodeToString(b[:])
	p.Code = q.Get("code")
	plain, err := json.Marshal(p)
	if err != nil {
		return out, err
	}
	hash := hashState(ref)
	sealed, err := s.cfg.Sealer.Seal(completionName(hash), plain)
	clear(plain)
	if err != nil {
		return out, err
	}
	if err := s.cfg.Store.PutConnectState(ctx, storage.ConnectState{Hash: hash, Patient: st.Patient, Source: st.Source, Sealed: sealed, Expires: s.cfg.Now().Add(CompleteTTL)}); err != nil {
		return out, err
	}
	out.Complete = ref
	return out, nil
}

// take uses up the state or completion named ref (its hash is the key;
// name binds its sealed part) and returns it, or ErrBadState.
func (s *Service) take(ctx context.Context, ref string, name func(string) string) (*storage.ConnectState, *pending, error) {
	hash := hashState(ref)
	st, err := s.cfg.Store.TakeConnectState(ctx, hash)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil, ErrBadState
	}
	if err != nil {
		return nil, nil, err
	}
	if !s.cfg.Now().Before(st.Expires) {
		return nil, nil, ErrBadState
	}
	if _, ok := s.sources[st.Source]; !ok {
		return nil, nil, ErrBadState
	}
	plain, err := s.cfg.Sealer.Open(name(hash), st.Sealed)
	if err != nil {
		return nil, nil, ErrBadState
	}
	var p pending
	err = json.Unmarshal(plain, &p)
	clear(plain)
	if err != nil {
		return nil, nil, ErrBadState
	}
	return st, &p, nil
}

// Finish completes a connection: the app, signed in as patient, brings
// the reference a callback sent it back with. The reference is used up
// whatever happens; one started for another patient's record fails with
// ErrOtherPatient (the source's code is never exchanged), an unknown,
// used or expired one with ErrBadState. Otherwise the code is traded for
// tokens, kept sealed. connecting, when not nil, is called with the
// source once the tokens are in hand, just before they are stored in a
// transaction that carries the audit events of the request in ctx: what
// it notes for the trail commits with the tokens.
func (s *Service) Finish(ctx context.Context, patient, ref string, connecting func(source string)) (*Outcome, error) {
	if !s.Enabled() {
		return nil, ErrDisabled
	}
	if ref == "" || len(ref) > 200 {
		return nil, ErrBadState
	}
	st, p, err := s.take(ctx, ref, completionName)
	if err != nil {
		return nil, err
	}
	out := &Outcome{Patient: st.Patient, Source: st.Source, ReturnURL: p.ReturnURL}
	if st.Patient != patient || p.Code == "" {
		s.log.Warn("a source login was completed for another patient's record: refused, nothing stored", "source", st.Source)
		return out, ErrOtherPatient
	}
	src := s.sources[st.Source]
	conf, err := s.discover(ctx, src)
	if err != nil {
		return out, err
	}
	toks, err := s.client(src).Exchange(ctx, conf.TokenEndpoint, p.Code, p.Verifier)
	if err != nil {
		return out, fmt.Errorf("%w: source %s: %w", ErrSource, src.ID, err)
	}
	now := s.cfg.Now()
	err = s.cfg.Store.UpdateSourceConnection(ctx, st.Patient, st.Source, func(*storage.SourceConnection) (*storage.SourceConnection, error) {
		sealed, err := s.sealTokens(st.Patient, st.Source, toks)
		if err != nil {
			return nil, err
		}
		if connecting != nil {
			connecting(st.Source)
		}
		return &storage.SourceConnection{Patient: st.Patient, Source: st.Source, SourcePatient: toks.Patient, Sealed: sealed, Connected: now, Updated: now}, nil
	})
	if err != nil {
		return out, err
	}
	s.log.Info("source connected", "source", st.Source)
	return out, nil
}

func (s *Service) sealTokens(patient, source string, t *smart.Tokens) ([]byte, error) {
	plain, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	return s.cfg.Sealer.Seal(connectionName(patient, source), plain)
}

func (s *Service) openTokens(c *storage.SourceConnection) (*smart.Tokens, error) {
	plain, err := s.cfg.Sealer.Open(connectionName(c.Patient, c.Source), c.Sealed)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	t := &smart.Tokens{}
	return t, json.Unmarshal(plain, t)
}

// Disconnect forgets the patient's tokens at the source and asks the
// source to revoke them when it offers revocation. It reports whether
// there was a connection. disconnecting, when not nil, is called when
// there is one, just before it is deleted in a transaction that carries
// the audit events of the request in ctx.
func (s *Service) Disconnect(ctx context.Context, patient, source string, disconnecting func()) (bool, error) {
	src, ok := s.sources[source]
	if !ok {
		return false, fmt.Errorf("%w: %q", ErrUnknownSource, source)
	}
	var old *storage.SourceConnection
	err := s.cfg.Store.UpdateSourceConnection(ctx, patient, source, func(c *storage.SourceConnection) (*storage.SourceConnection, error) {
		old = c
		if c != nil && disconnecting != nil {
			disconnecting()
		}
		return nil, nil
	})
	if err != nil || old == nil {
		return false, err
	}
	if s.Enabled() {
		if toks, err := s.openTokens(old); err == nil {
			s.revoke(ctx, src, toks)
		}
	}
	s.log.Info("source disconnected", "source", source)
	return true, nil
}

// revoke asks the source to revoke the tokens (best effort: they are
// already forgotten here).
func (s *Service) revoke(ctx context.Context, src Source, t *smart.Tokens) {
	conf, err := s.discover(ctx, src)
	if err != nil || conf.RevocationEndpoint == "" {
		return
	}
	pc := s.client(src)
	if t.RefreshToken != "" {
		if err := pc.Revoke(ctx, conf.RevocationEndpoint, t.RefreshToken, "refresh_token"); err != nil {
			s.log.Warn("revocation failed", "source", src.ID, "err", err)
		}
	}
	if err := pc.Revoke(ctx, conf.RevocationEndpoint, t.AccessToken, "access_token"); err != nil {
		s.log.Warn("revocation failed", "source", src.ID, "err", err)
	}
}

// SourcePatient returns the patient's id at a connected source;
// adapters.ErrNotConnected when the patient has not connected it,
// adapters.ErrReconnect when the connection broke.
func (s *Service) SourcePatient(ctx context.Context, patient, source string) (string, error) {
	conns, err := s.cfg.Store.SourceConnections(ctx, patient)
	if err != nil {
		return "", err
	}
	for _, c := range conns {
		if c.Source == source {
			if c.Broken {
				return "", adapters.ErrReconnect
			}
			return c.SourcePatient, nil
		}
	}
	return "", adapters.ErrNotConnected
}

// Connected reports whether the patient has a working connection to the
// source.
func (s *Service) Connected(ctx context.Context, patient, source string) (bool, error) {
	_, err := s.SourcePatient(ctx, patient, source)
	if errors.Is(err, adapters.ErrNotConnected) || errors.Is(err, adapters.ErrReconnect) {
		return false, nil
	}
	return err == nil, err
}

// UserToken returns the patient's token at the source for a fetch
// (adapters.WithUserToken).
func (s *Service) UserToken(patient, source string) adapters.UserToken {
	return &userToken{s: s, patient: patient, source: source}
}

// renewBefore: a token this close to its expiry is refreshed first.
const renewBefore = 30 * time.Second

type userToken struct {
	s               *Service
	patient, source string

	mu      sync.Mutex
	refused string // the token the source refused
	// the token of this fetch, kept so that each request does not read
	// the store
	cached string
	expiry time.Time
}

func (u *userToken) Invalidate(token string) {
	u.mu.Lock()
	u.refused = token
	u.mu.Unlock()
}

// Token returns the stored access token, refreshed (and stored again)
// when it expired or the source refused it. A refused refresh marks the
// connection broken: adapters.ErrReconnect.
func (u *userToken) Token(ctx context.Context) (string, error) {
	s := u.s
	if !s.Enabled() {
		return "", ErrDisabled
	}
	src, ok := s.sources[u.source]
	if !ok {
		return "", fmt.Errorf("%w: %q", ErrUnknownSource, u.source)
	}
	u.mu.Lock()
	refused := u.refused
	if u.cached != "" && u.cached != refused && s.cfg.Now().Add(renewBefore).Before(u.expiry) {
		defer u.mu.Unlock()
		return u.cached, nil
	}
	u.mu.Unlock()
	var (
		expiry  time.Time
		access  string
		lastErr error
	)
	err := s.cfg.Store.UpdateSourceConnection(ctx, u.patient, u.source, func(c *storage.SourceConnection) (*storage.SourceConnection, error) {
		if c == nil {
			return nil, adapters.ErrNotConnected
		}
		if c.Broken {
			return nil, adapters.ErrReconnect
		}
		toks, err := s.openTokens(c)
		if err != nil {
			return nil, fmt.Errorf("%w: the stored tokens cannot be opened (%w)", adapters.ErrReconnect, err)
		}
		now := s.cfg.Now()
		if toks.AccessToken != refused && now.Add(renewBefore).Before(toks.Expiry) {
			access, expiry = toks.AccessToken, toks.Expiry
			return c, nil
		}
		next := *c
		next.Updated = now
		if toks.RefreshToken == "" {
			next.Broken, lastErr = true, fmt.Errorf("%w (the access token expired and the source gave no refresh token)", adapters.ErrReconnect)
			return &next, nil
		}
		conf, err := s.discover(ctx, src)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", adapters.ErrUnavailable, err)
		}
		fresh, err := s.client(src).Refresh(ctx, conf.TokenEndpoint, toks.RefreshToken)
		var te *smart.TokenError
		if errors.As(err, &te) && te.Temporary() {
			return nil, fmt.Errorf("%w: refresh: %w", adapters.ErrUnavailable, err)
		}
		if err != nil {
			next.Broken, lastErr = true, fmt.Errorf("%w (refresh refused: %w)", adapters.ErrReconnect, err)
			return &next, nil
		}
		if fresh.Patient == "" {
			fresh.Patient = toks.Patient
		}
		if next.Sealed, err = s.sealTokens(u.patient, u.source, fresh); err != nil {
			return nil, err
		}
		access, expiry = fresh.AccessToken, fresh.Expiry
		return &next, nil
	})
	if err != nil {
		return "", err
	}
	if lastErr != nil {
		s.log.Warn("source connection broken: the patient must reconnect", "source", u.source)
		return "", lastErr
	}
	u.mu.Lock()
	u.cached, u.expiry = access, expiry
	u.mu.Unlock()
	return access, nil
}
