package audit

import (
	"bytes"
	"crypto/hmac"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/storage"
)

// Checkpoint is a statement, MACed with a trail key, that the trail held
// Seq events and that the last one's seal was Hash, at Time. The gateway
// publishes checkpoints outside the database (its log, a file, a URL);
// given the latest one, the verifier detects a trail cut short (its tail
// or all of it deleted), rolled back to an older copy, or rewritten.
type Checkpoint struct {
	Seq  int64     `json:"seq"`
	Hash string    `json:"hash"` // hex
	Time time.Time `json:"time"`
	Key  string    `json:"key"`
	MAC  string    `json:"mac"` // hex
}

// checkpointMessage is what a checkpoint's MAC covers.
func checkpointMessage(seq int64, hash string, t time.Time) string {
	return "fhirgate audit checkpoint v1\n" + strconv.FormatInt(seq, 10) + "\n" + hash + "\n" + t.UTC().Format(time.RFC3339Nano) + "\n"
}

// Checkpoint MACs a checkpoint of head with the sealing key.
func (k *Keyring) Checkpoint(head storage.AuditHead, now time.Time) Checkpoint {
	c := Checkpoint{Seq: head.Seq, Hash: hex.EncodeToString(head.Hash), Time: now.UTC().Truncate(time.Millisecond), Key: k.SealingKeyID()}
	mac, _ := k.macWith(c.Key, checkpointMessage(c.Seq, c.Hash, c.Time))
	c.MAC = hex.EncodeToString(mac)
	return c
}

// ErrCheckpointForged: the checkpoint's MAC does not verify.
var ErrCheckpointForged = errors.New("audit: the checkpoint's MAC does not verify (forged or altered)")

// CheckCheckpoint verifies a checkpoint's MAC.
func (k *Keyring) CheckCheckpoint(c Checkpoint) error {
	want, ok := k.macWith(c.Key, checkpointMessage(c.Seq, c.Hash, c.Time))
	if !ok {
		return fmt.Errorf("audit: the checkpoint is MACed with key %q, which was not given", c.Key)
	}
	got, err := hex.DecodeString(c.MAC)
	if err != nil || !hmac.Equal(got, want) {
		return ErrCheckpointForged
	}
	return nil
}

// String is the checkpoint as one line of JSON, as it is published.
func (c Checkpoint) String() string {
	b, _ := json.Marshal(c)
	return string(b)
}

// ParseCheckpoint reads a checkpoint line, or the last checkpoint of
// several lines (a checkpoint file, or log lines that carry one).
func ParseCheckpoint(s string) (Checkpoint, error) {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		line := strings.TrimSpace(lines[i])
		if line == "" {
			continue
		}
		// a log line carries the checkpoint under "checkpoint"
		if j := strings.Index(line, `"checkpoint":`); j >= 0 && !strings.HasPrefix(line, `{"seq"`) {
			var l struct {
				Checkpoint json.RawMessage `json:"checkpoint"`
			}
			if json.Unmarshal([]byte(line), &l) == nil && len(l.Checkpoint) > 0 {
				line = string(l.Checkpoint)
				if s, err := strconv.Unquote(line); err == nil {
					line = s
				}
			}
		}
		var c Checkpoint
		dec := json.NewDecoder(bytes.NewReader([]byte(line)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil || c.Key == "" || c.MAC == "" {
			return Checkpoint{}, errors.New("audit: not a checkpoint (want one line of JSON with seq, hash, time, key and mac)")
		}
		return c, nil
	}
	return Checkpoint{}, errors.New("audit: no checkpoint given")
}

// hashHex is a seal as checkpoints and problems name it.
func hashHex(h []byte) string { return hex.EncodeToString(h) }
