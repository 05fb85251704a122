// Package shlink keeps the SMART Health Links a patient makes to hand part
// of their record (a second-opinion package, an opinion) to someone with
// no account, and serves them per the SMART Health Links specification
// (HL7 SMART Health Cards and Links IG, STU1): a shlink:/ URI carrying the
// manifest URL, a 256-bit key and the flags, a manifest answered to a
// POST with the recipient and the passcode, and each file a compact JWE
// (alg dir, enc A256GCM, zip DEF) under the link's key.
//
// The links live in tables of their own in the gateway's database, shared
// by every replica: the manifest URL's token is kept only as its SHA-256
// (the link's id), the passcode as a PBKDF2 hash, and a lifetime count of
// wrong passcodes is kept under the row's lock, so that parallel guesses
// are counted one by one; after MaxFailures the link is disabled. An
// expired, revoked or disabled link answers as an unknown one.
//
// What a link gives is decided at each access, not at creation: the
// resources the patient chose, as they are then (a package that gained a
// follow-up result, an amended opinion), pass again through the release
// rule of the patient who made the link, so a resource that is gone, or no
// longer of the patient's own record, no longer leaves. Links carry the L
// flag: their content can change, and a recipient may ask again.
package shlink

import (
	"bytes"
	"cmp"
	"compress/flate"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/release"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

// Errors of Open and Redeem.
var (
	// ErrNotFound: no such link (or ticket), or the link is expired,
	// revoked or disabled: the specification answers all of them 404.
	ErrNotFound = errors.New("shlink: no such active link")
	// ErrUnsupportedStore: the store is not a SQL store of the gateway.
	ErrUnsupportedStore = errors.New("shlink: the store has no database to keep links in")
)

// PasscodeError is a wrong (or missing) passcode: the specification's 401
// with the attempts that remain before the link is disabled.
type PasscodeError struct{ Remaining int }

func (e *PasscodeError) Error() string {
	return fmt.Sprintf("shlink: wrong passcode (%d attempts remain)", e.Remaining)
}

// Config configures a Service.
type Config struct {
	// Store is the gateway's store (a *sqlstore.Store). Required.
	Store storage.Store
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// MaxFailures is the lifetime number of wrong passcodes after which a
	// link is disabled (default 5).
	MaxFailures int
	// TicketTTL is how long a file's location URL may be used, once
	// (default 10 minutes; the specification allows at most an hour).
	TicketTTL time.Duration
	// MaxLifetime bounds a link's expiry (default 365 days).
	MaxLifetime time.Duration
}

// Link is one SMART Health Link.
type Link struct {
	// ID is the SHA-256 (hex) of the manifest URL's token: the link's name
	// for its patient (listing, revoking), which opens nothing.
	ID string
	// Patient ("Patient/x") made it; its release decides what leaves.
	Patient string
	// Label describes it (at most 80 characters).
	Label string
	// Resources are what it shares: "Type/id".
	Resources []string
	// Key encrypts its files (32 bytes).
	Key []byte
	// Passcode says whether a passcode is needed (the P flag).
	Passcode bool
	Created  time.Time
	Expires  time.Time
	Revoked  bool
	// Failures counts wrong passcodes; Accesses manifests given.
	Failures, Accesses int
}

// Status is active, expired, revoked or disabled (too many wrong
// passcodes) at now.
func (l *Link) Status(now time.Time, maxFailures int) string {
	switch {
	case l.Revoked:
		return "revoked"
	case l.Passcode && l.Failures >= maxFailures:
		return "disabled"
	case !now.Before(l.Expires):
		return "expired"
	}
	return "active"
}

// Service keeps and opens links. Safe for concurrent use, and across
// replicas sharing the database.
type Service struct {
	cfg     Config
	db      sqlstore.DB
	dialect sqlstore.Dialect
}

// New opens the service, creating its tables when they do not exist.
func New(ctx context.Context, cfg Config) (*Service, error) {
	st, ok := cfg.Store.(*sqlstore.Store)
	if !ok {
		return nil, ErrUnsupportedStore
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.MaxFailures = cmp.Or(cfg.MaxFailures, 5)
	cfg.TicketTTL = cmp.Or(cfg.TicketTTL, 10*time.Minute)
	cfg.MaxLifetime = cmp.Or(cfg.MaxLifetime, 365*24*time.Hour)
	s := &Service{cfg: cfg, db: st.DB(), dialect: st.Dialect()}
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS shl_link (id TEXT PRIMARY KEY, patient TEXT NOT NULL, label TEXT NOT NULL,
			resources TEXT NOT NULL, key TEXT NOT NULL, passcode TEXT NOT NULL, created BIGINT NOT NULL, expires BIGINT NOT NULL,
			revoked INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0, accesses INTEGER NOT NULL DEFAULT 0)`,
		`CREATE INDEX IF NOT EXISTS shl_link_patient ON shl_link (patient)`,
		// single-use, short-lived location URLs of files
		`CREATE TABLE IF NOT EXISTS shl_ticket (id TEXT PRIMARY KEY, link TEXT NOT NULL, file INTEGER NOT NULL, expires BIGINT NOT NULL)`,
	} {
		if _, err := s.db.Exec(ctx, q); err != nil {
			return nil, fmt.Errorf("shlink tables: %w", err)
		}
	}
	return s, nil
}

// MaxFailures is the lifetime number of wrong passcodes a link takes.
func (s *Service) MaxFailures() int { return s.cfg.MaxFailures }

// MaxLifetime bounds a link's expiry.
func (s *Service) MaxLifetime() time.Duration { return s.cfg.MaxLifetime }

// Now is the service's clock.
func (s *Service) Now() time.Time { return s.cfg.Now() }

func random(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand never fails
	return b
}

func hashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

const pbkdf2Iterations = 210000

func hashPasscode(pass string) string {
	salt := random(16)
	k, _ := pbkdf2.Key(sha256.New, pass, salt, pbkdf2Iterations, 32)
	return "pbkdf2-sha256$" + strconv.Itoa(pbkdf2Iterations) + "$" + base64.RawStdEncoding.EncodeToString(salt) + "$" + base64.RawStdEncoding.EncodeToString(k)
}

func checkPasscode(stored, pass string) bool {
	parts := strings.Split(stored, "$")
	if len(parts) != 4 || parts[0] != "pbkdf2-sha256" {
		return false
	}
	iter, err1 := strconv.Atoi(parts[1])
	salt, err2 := base64.RawStdEncoding.DecodeString(parts[2])
	want, err3 := base64.RawStdEncoding.DecodeString(parts[3])
	if err1 != nil || err2 != nil || err3 != nil {
		return false
	}
	got, err := pbkdf2.Key(sha256.New, pass, salt, iter, len(want))
	return err == nil && subtle.ConstantTimeCompare(got, want) == 1
}

// Create stores a new link (its ID, Key and Created are set here) and
// returns the token of its manifest URL, which is not kept.
func (s *Service) Create(ctx context.Context, l Link, passcode string) (string, *Link, error) {
	token := base64.RawURLEncoding.EncodeToString(random(32))
	l.ID, l.Key, l.Created = hashToken(token), random(32), s.cfg.Now()
	l.Passcode = passcode != ""
	stored := ""
	if l.Passcode {
		stored = hashPasscode(passcode)
	}
	res, _ := json.Marshal(l.Resources)
	_, err := s.db.Exec(ctx, `INSERT INTO shl_link (id, patient, label, resources, key, passcode, created, expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		l.ID, l.Patient, l.Label, string(res), base64.RawURLEncoding.EncodeToString(l.Key), stored, l.Created.UnixMicro(), l.Expires.UnixMicro())
	if err != nil {
		return "", nil, fmt.Errorf("shlink: store link: %w", err)
	}
	return token, &l, nil
}

const linkColumns = `id, patient, label, resources, key, passcode, created, expires, revoked, failures, accesses`

func scanLink(row sqlstore.Row) (*Link, string, error) {
	var (
		l                  Link
		res, key, pass     string
		created, expires   int64
		revoked            int64
		failures, accesses int64
	)
	if err := row.Scan(&l.ID, &l.Patient, &l.Label, &res, &key, &pass, &created, &expires, &revoked, &failures, &accesses); err != nil {
		return nil, "", err
	}
	if err := json.Unmarshal([]byte(res), &l.Resources); err != nil {
		return nil, "", fmt.Errorf("shlink: stored resources: %w", err)
	}
	k, err := base64.RawURLEncoding.DecodeString(key)
	if err != nil {
		return nil, "", fmt.Errorf("shlink: stored key: %w", err)
	}
	l.Key, l.Passcode = k, pass != ""
	l.Created, l.Expires = time.UnixMicro(created).UTC(), time.UnixMicro(expires).UTC()
	l.Revoked, l.Failures, l.Accesses = revoked != 0, int(failures), int(accesses)
	return &l, pass, nil
}

// Open resolves a manifest request: the link of the token, when it is
// active and the passcode (when it needs one) is right. A wrong passcode
// is counted under the row's lock (concurrent guesses are counted one by
// one) and answers a *PasscodeError; the last allowed one disables the
// link. The Link returned has been given one more access.
func (s *Service) Open(ctx context.Context, token, passcode string) (*Link, error) {
	if token == "" || len(token) > 128 {
		return nil, ErrNotFound
	}
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	l, stored, err := scanLink(tx.QueryRow(ctx, `SELECT `+linkColumns+` FROM shl_link WHERE id = ?`+s.dialect.ForUpdate, hashToken(token)))
	if errors.Is(err, sqlstore.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if l.Status(s.cfg.Now(), s.cfg.MaxFailures) != "active" {
		return nil, ErrNotFound
	}
	if l.Passcode && !checkPasscode(stored, passcode) {
		l.Failures++
		if _, err := tx.Exec(ctx, `UPDATE shl_link SET failures = ? WHERE id = ?`, l.Failures, l.ID); err != nil {
			return nil, err
		}
		if err := tx.Commit(ctx); err != nil {
			return nil, err
		}
		return l, &PasscodeError{Remaining: max(s.cfg.MaxFailures-l.Failures, 0)}
	}
	l.Accesses++
	if _, err := tx.Exec(ctx, `UPDATE shl_link SET accesses = ? WHERE id = ?`, l.Accesses, l.ID); err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

// Peek returns the link of a token whatever its state, without counting
// anything (for the audit trail of a refused request); nil when unknown.
func (s *Service) Peek(ctx context.Context, token string) *Link {
	l, _, err := scanLink(s.db.QueryRow(ctx, `SELECT `+linkColumns+` FROM shl_link WHERE id = ?`, hashToken(token)))
	if err != nil {
		return nil
	}
	return l
}

// List returns a patient's links, newest first.
func (s *Service) List(ctx context.Context, patient string) ([]*Link, error) {
	rows, err := s.db.Query(ctx, `SELECT `+linkColumns+` FROM shl_link WHERE patient = ? ORDER BY created DESC, id`, patient)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Link
	for rows.Next() {
		l, _, err := scanLink(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// Revoke ends a patient's link at once; ErrNotFound when the patient has
// no link of that id.
func (s *Service) Revoke(ctx context.Context, patient, id string) error {
	n, err := s.db.Exec(ctx, `UPDATE shl_link SET revoked = 1 WHERE id = ? AND patient = ?`, id, patient)
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	if _, err := s.db.Exec(ctx, `DELETE FROM shl_ticket WHERE link = ?`, id); err != nil {
		return err
	}
	return nil
}

// Ticket makes a single-use, short-lived location for one file of a link.
func (s *Service) Ticket(ctx context.Context, linkID string, file int) (string, error) {
	t := base64.RawURLEncoding.EncodeToString(random(32))
	_, err := s.db.Exec(ctx, `INSERT INTO shl_ticket (id, link, file, expires) VALUES (?, ?, ?, ?)`,
		hashToken(t), linkID, file, s.cfg.Now().Add(s.cfg.TicketTTL).UnixMicro())
	return t, err
}

// Redeem uses up a ticket and returns its link (still active) and file.
func (s *Service) Redeem(ctx context.Context, token, ticket string) (*Link, int, error) {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var (
		link    string
		file    int64
		expires int64
	)
	err = tx.QueryRow(ctx, `SELECT link, file, expires FROM shl_ticket WHERE id = ?`+s.dialect.ForUpdate, hashToken(ticket)).Scan(&link, &file, &expires)
	if errors.Is(err, sqlstore.ErrNoRows) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM shl_ticket WHERE id = ?`, hashToken(ticket)); err != nil {
		return nil, 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, 0, err
	}
	if link != hashToken(token) || s.cfg.Now().UnixMicro() > expires {
		return nil, 0, ErrNotFound
	}
	l, _, err := scanLink(s.db.QueryRow(ctx, `SELECT `+linkColumns+` FROM shl_link WHERE id = ?`, link))
	if err != nil {
		return nil, 0, ErrNotFound
	}
	if l.Status(s.cfg.Now(), s.cfg.MaxFailures) != "active" {
		return nil, 0, ErrNotFound
	}
	return l, int(file), nil
}

// Released reads what a link shares through r, the release rule of the
// patient who made it, now: each resource as it currently is, those r
// withholds (or that are gone) left out. Files are numbered by their place
// in l.Resources; a withheld one is nil.
func Released(ctx context.Context, r storage.Reader, l *Link) ([]*fhir.Resource, error) {
	out := make([]*fhir.Resource, len(l.Resources))
	for i, ref := range l.Resources {
		res, err := readShared(ctx, r, ref)
		if err != nil {
			return nil, err
		}
		out[i] = res
	}
	return out, nil
}

// readShared reads one "Type/id" through r; nil when it is withheld, gone
// or unknown.
func readShared(ctx context.Context, r storage.Reader, ref string) (*fhir.Resource, error) {
	typ, id, ok := strings.Cut(ref, "/")
	if !ok {
		return nil, nil
	}
	res, err := r.Read(ctx, typ, id)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrGone) || errors.Is(err, release.ErrWithheld) {
			return nil, nil
		}
		return nil, err
	}
	return res, nil
}

// File returns file n of a link as it leaves now (nil when withheld).
func File(ctx context.Context, r storage.Reader, l *Link, n int) (*fhir.Resource, error) {
	if n < 0 || n >= len(l.Resources) {
		return nil, nil
	}
	return readShared(ctx, r, l.Resources[n])
}

// ContentType is the content type of every file the gateway shares.
const ContentType = "application/fhir+json"

// Manifest builds the manifest of a link's released files: each embedded
// as a JWE when it fits embeddedMax (0: no limit), else given a
// single-use location (fileURL turns a ticket and a file number into its
// URL).
func (s *Service) Manifest(ctx context.Context, l *Link, files []*fhir.Resource, embeddedMax int, fileURL func(ticket string, n int) string) ([]byte, error) {
	type entry struct {
		ContentType string `json:"contentType"`
		Embedded    string `json:"embedded,omitempty"`
		Location    string `json:"location,omitempty"`
		LastUpdated string `json:"lastUpdated,omitempty"`
		Status      string `json:"status"`
		FHIRVersion string `json:"fhirVersion"`
	}
	out := []entry{}
	for n, f := range files {
		if f == nil {
			continue
		}
		e := entry{ContentType: ContentType, Status: "can-change", FHIRVersion: "4.0.1"}
		if !f.LastUpdated.IsZero() {
			e.LastUpdated = fhir.FormatInstant(f.LastUpdated)
		}
		jwe, err := Encrypt(l.Key, f.Raw, ContentType)
		if err != nil {
			return nil, err
		}
		if embeddedMax <= 0 || len(jwe) <= embeddedMax {
			e.Embedded = jwe
		} else {
			t, err := s.Ticket(ctx, l.ID, n)
			if err != nil {
				return nil, err
			}
			e.Location = fileURL(t, n)
		}
		out = append(out, e)
	}
	return json.Marshal(map[string]any{"files": out})
}

// Payload is the shlink:/ URI of a link: the minified JSON payload,
// base64url-encoded, after shlink:/.
func Payload(manifestURL string, l *Link) string {
	p := map[string]any{"url": manifestURL, "key": base64.RawURLEncoding.EncodeToString(l.Key), "exp": l.Expires.Unix(), "v": 1}
	p["flag"] = "L" // the files are what the patient shares now: they can change
	if l.Passcode {
		p["flag"] = "LP"
	}
	if l.Label != "" {
		p["label"] = l.Label
	}
	b, _ := json.Marshal(p)
	return "shlink:/" + base64.RawURLEncoding.EncodeToString(b)
}

// Encrypt makes a file's compact JWE: alg dir, enc A256GCM, the content
// type in cty, the plaintext DEFLATE-compressed (zip DEF), a fresh random
// nonce each time (the key is the link's for every file and version).
func Encrypt(key, plaintext []byte, contentType string) (string, error) {
	var z bytes.Buffer
	fw, err := flate.NewWriter(&z, flate.DefaultCompression)
	if err != nil {
		return "", err
	}
	if _, err := fw.Write(plaintext); err != nil {
		return "", err
	}
	if err := fw.Close(); err != nil {
		return "", err
	}
	hdr, _ := json.Marshal(map[string]string{"alg": "dir", "enc": "A256GCM", "cty": contentType, "zip": "DEF"})
	protected := base64.RawURLEncoding.EncodeToString(hdr)
	block, err := aes.NewCipher(key)
	if err != nil {
		return "", err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return "", err
	}
	iv := random(gcm.NonceSize())
	sealed := gcm.Seal(nil, iv, z.Bytes(), []byte(protected))
	ct, tag := sealed[:len(sealed)-gcm.Overhead()], sealed[len(sealed)-gcm.Overhead():]
	enc := base64.RawURLEncoding
	return protected + ".." + enc.EncodeToString(iv) + "." + enc.EncodeToString(ct) + "." + enc.EncodeToString(tag), nil
}
