package abdm

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/fhirgate/fhirgate/adapters/abdm/fidelius"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/internal/seal"
)

// StateKeyEnv names the environment variable holding the key that seals
// transfer records in the database: 32 bytes, base64. Every replica needs
// the same one, so that a push reaching any of them can be decrypted.
const StateKeyEnv = seal.KeyEnv

// transfer is what the HIU keeps of one health-information request until
// its push is filed or fails: the Fidelius key pair's private scalar and
// nonce, the push window, and each page as the HIP sent it (still
// encrypted for that key). Stored sealed (sealer); never logged.
type transfer struct {
	Priv      []byte       `json:"priv"`
	Nonce     []byte       `json:"nonce"`
	Deadline  time.Time    `json:"deadline"`
	HIP       string       `json:"hip,omitempty"`
	Artefact  string       `json:"artefact"`
	TxID      string       `json:"txId,omitempty"` // set by on-request
	PageCount int          `json:"pageCount,omitempty"`
	Pages     map[int]page `json:"pages,omitempty"`
	// Filing is set once every page arrived: more pages are refused and
	// Sweep leaves the transfer to the replica filing it (until
	// filingGrace after the deadline: then it counts as lost).
	Filing bool `json:"filing,omitempty"`
}

// page is one push page: the HIP's key material and its entries.
type page struct {
	PeerKey   string      `json:"peerKey"`
	PeerNonce string      `json:"peerNonce"`
	Entries   []pageEntry `json:"entries"`
}

type pageEntry struct {
	Content     string `json:"content"`
	Checksum    string `json:"checksum"`
	CareContext string `json:"careContext"`
}

// filingGrace is how long after its window a transfer being filed may
// take before Sweep takes it for one whose filer died.
const filingGrace = 15 * time.Minute

func (h *HIU) transferKey(hiRequestID string) string {
	return "abdm/" + h.id + "/transfer/" + hiRequestID
}

func (h *HIU) transferPrefix() string { return "abdm/" + h.id + "/transfer/" }

// key rebuilds the transfer's private key.
func (t *transfer) key() (*fidelius.PrivateKey, error) { return fidelius.PrivateKeyFromBytes(t.Priv) }

// decrypt opens every entry of a page with the transfer's key, checks its
// checksum and that it is a FHIR Bundle, and returns the documents; the
// error names the entry at fault (safe to send back: no content).
func (t *transfer) decrypt(p page) ([]doc, error) {
	k, err := t.key()
	if err != nil {
		return nil, errors.New("the transaction's key is unusable")
	}
	defer k.Destroy()
	peer, err := fidelius.DecodePublicKey(p.PeerKey)
	if err != nil {
		return nil, errors.New("the HIP's public key is invalid")
	}
	peerNonce, err := fidelius.DecodeNonce(p.PeerNonce)
	if err != nil {
		return nil, errors.New("the HIP's nonce is invalid")
	}
	var docs []doc
	for i, e := range p.Entries {
		if e.Content == "" {
			return nil, fmt.Errorf("entry %d: only inline content is supported (no link)", i)
		}
		ct, err := base64.StdEncoding.DecodeString(e.Content)
		if err != nil {
			return nil, fmt.Errorf("entry %d: content is not base64", i)
		}
		plain, err := fidelius.Decrypt(k, peer, t.Nonce, peerNonce, ct)
		if err != nil {
			return nil, fmt.Errorf("entry %d: cannot be decrypted with this transaction's key", i)
		}
		if !md5Matches(e.Checksum, plain) {
			return nil, fmt.Errorf("entry %d: checksum mismatch", i)
		}
		b, err := parseBundle(plain)
		if err != nil {
			return nil, fmt.Errorf("entry %d: not a FHIR Bundle", i)
		}
		docs = append(docs, doc{careContext: e.CareContext, bundle: b})
	}
	return docs, nil
}

// parseBundle checks that a decrypted document is a FHIR Bundle.
func parseBundle(b []byte) ([]byte, error) {
	r, err := fhir.Parse(b)
	if err != nil || r.Type != "Bundle" {
		return nil, errors.New("not a FHIR Bundle")
	}
	return r.Raw, nil
}

// sealer seals transfer records with the state key (package seal); the
// record's key name is the additional data, so a sealed record cannot be
// moved to another key.
type sealer struct{ s *seal.Sealer }

// newSealer reads the state key from the environment. Without one it
// makes a key of this process: transfers then complete only on this
// replica and not across a restart, and ok is false so that the caller
// can say so.
func newSealer(lookup func(string) (string, bool)) (s *sealer, ok bool, err error) {
	sl, ok, err := seal.FromEnv(lookup)
	if err != nil {
		return nil, false, err
	}
	if !ok {
		if sl, err = seal.Ephemeral(); err != nil {
			return nil, false, err
		}
	}
	return &sealer{sl}, ok, nil
}

func (s *sealer) seal(name string, t *transfer) ([]byte, error) {
	plain, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	out, err := s.s.Seal(name, plain)
	clear(plain)
	return out, err
}

// errUnsealable: the record was sealed under another state key (a replica
// or an earlier run with a different FHIRGATE_STATE_KEY).
var errUnsealable = seal.ErrUnsealable

func (s *sealer) open(name string, b []byte) (*transfer, error) {
	plain, err := s.s.Open(name, b)
	if err != nil {
		return nil, err
	}
	t := &transfer{}
	err = json.Unmarshal(plain, t)
	clear(plain)
	if err != nil {
		return nil, fmt.Errorf("decode transfer record: %w", err)
	}
	if t.Pages == nil {
		t.Pages = map[int]page{}
	}
	return t, nil
}

// updateTransfer runs fn on the transfer record of an HI request (nil when
// there is none) under its lock; fn returns the record to keep (nil drops
// it).
func (h *HIU) updateTransfer(ctx context.Context, hiRequestID string, fn func(t *transfer) (*transfer, error)) error {
	name := h.transferKey(hiRequestID)
	return h.state.Update(ctx, name, func(old []byte) ([]byte, error) {
		var t *transfer
		if old != nil {
			var err error
			if t, err = h.seal.open(name, old); err != nil {
				return nil, err
			}
		}
		nt, err := fn(t)
		if err != nil || nt == nil {
			return nil, err
		}
		return h.seal.seal(name, nt)
	})
}

// dropTransfer forgets an HI request's transfer record.
func (h *HIU) dropTransfer(ctx context.Context, hiRequestID string) error {
	if hiRequestID == "" {
		return nil
	}
	return h.state.Update(ctx, h.transferKey(hiRequestID), func([]byte) ([]byte, error) { return nil, nil })
}
