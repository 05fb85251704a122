package sqlstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/storage"
)

// Temporary blob ids are tmpBlobPrefix, the creation time in nanoseconds
// (19 digits until the year 2286, so they sort by age), "-" and a random
// part. Chunks of an upload started more than abandonedUpload ago are
// left by a crash: the next upload removes them.
const (
	tmpBlobPrefix   = "tmp-"
	abandonedUpload = 24 * time.Hour
)

func tmpBlobID(t time.Time) string { return fmt.Sprintf("%s%019d-", tmpBlobPrefix, t.UnixNano()) }

// blobChunk is the size of one stored chunk: what an upload or download
// holds in memory at a time.
const blobChunk = 256 << 10

var _ storage.Blobs = (*Store)(nil)

// PutBlob implements storage.Blobs. Chunks are written in short
// transactions of their own under a temporary id (an upload never holds
// the write lock while the client sends), then one transaction names the
// content by its SHA-256, or drops the copy when that content is already
// stored. A failure removes the chunks written so far.
func (s *Store) PutBlob(ctx context.Context, r io.Reader) (info storage.BlobInfo, err error) {
	defer s.op(ctx, "blob-put")(&err)
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return info, err
	}
	// the temporary id starts with its creation time, so that chunks a
	// crash left behind can be found by age and removed
	now := s.now()
	tmp := tmpBlobID(now) + hex.EncodeToString(rnd[:])
	if _, err := s.db.Exec(ctx, `DELETE FROM blob_chunks WHERE blob_id >= ? AND blob_id < ?`, tmpBlobPrefix, tmpBlobID(now.Add(-abandonedUpload))); err != nil {
		return info, fmt.Errorf("remove abandoned uploads: %w", err)
	}
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			_, _ = s.db.Exec(cctx, `DELETE FROM blob_chunks WHERE blob_id = ?`, tmp)
			cancel()
		}
	}()
	h := sha256.New()
	buf := make([]byte, blobChunk)
	var size int64
	for seq := 0; ; seq++ {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			h.Write(buf[:n])
			size += int64(n)
			if _, err := s.db.Exec(ctx, `INSERT INTO blob_chunks (blob_id, seq, data) VALUES (?, ?, ?)`, tmp, seq, buf[:n]); err != nil {
				return info, fmt.Errorf("store blob chunk: %w", err)
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return info, rerr
		}
	}
	info = storage.BlobInfo{ID: "sha256-" + hex.EncodeToString(h.Sum(nil)), Size: size}
	c, err := s.db.Begin(ctx)
	if err != nil {
		return info, fmt.Errorf("begin: %w", err)
	}
	n, err := c.Exec(ctx, `INSERT INTO blobs (id, size, created) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING`, info.ID, size, micros(now))
	if err == nil {
		if n == 1 {
			_, err = c.Exec(ctx, `UPDATE blob_chunks SET blob_id = ? WHERE blob_id = ?`, info.ID, tmp)
		} else {
			// the same content is stored already
			_, err = c.Exec(ctx, `DELETE FROM blob_chunks WHERE blob_id = ?`, tmp)
		}
	}
	if err != nil {
		_ = c.Rollback(context.WithoutCancel(ctx))
		return info, fmt.Errorf("store blob: %w", err)
	}
	if err := c.Commit(ctx); err != nil {
		return info, fmt.Errorf("store blob: %w", err)
	}
	return info, nil
}

// OpenBlob implements storage.Blobs: chunks are read one at a time.
func (s *Store) OpenBlob(ctx context.Context, id string) (rc io.ReadCloser, info storage.BlobInfo, err error) {
	defer s.op(ctx, "blob-open")(&err)
	info = storage.BlobInfo{ID: id}
	err = s.db.QueryRow(ctx, `SELECT size FROM blobs WHERE id = ?`, id).Scan(&info.Size)
	if errors.Is(err, ErrNoRows) {
		return nil, info, fmt.Errorf("blob %s: %w", id, storage.ErrNotFound)
	}
	if err != nil {
		return nil, info, fmt.Errorf("open blob: %w", err)
	}
	return &blobReader{ctx: ctx, c: s.db, id: id, left: info.Size, size: info.Size}, info, nil
}

// blobReader reads a blob chunk by chunk. Every chunk but the last holds
// exactly blobChunk bytes (the chunk size is part of the stored format),
// so Seek finds a chunk by arithmetic.
type blobReader struct {
	ctx  context.Context
	c    Conn
	id   string
	seq  int
	cur  []byte
	left int64 // bytes not yet returned
	size int64
}

func (b *blobReader) Read(p []byte) (int, error) {
	for len(b.cur) == 0 {
		if b.left <= 0 {
			return 0, io.EOF
		}
		var data []byte
		err := b.c.QueryRow(b.ctx, `SELECT data FROM blob_chunks WHERE blob_id = ? AND seq = ?`, b.id, b.seq).Scan(&data)
		if err != nil {
			if errors.Is(err, ErrNoRows) {
				return 0, fmt.Errorf("blob %s: chunk %d is missing", b.id, b.seq)
			}
			return 0, fmt.Errorf("read blob: %w", err)
		}
		b.seq++
		// after a Seek into the middle of a chunk, skip to the position
		if skip := (b.size - b.left) - int64(b.seq-1)*blobChunk; skip > 0 && skip <= int64(len(data)) {
			data = data[skip:]
		}
		b.cur = data
	}
	n := copy(p, b.cur)
	b.cur = b.cur[n:]
	b.left -= int64(n)
	return n, nil
}

// Seek implements io.Seeker (for HTTP range requests).
func (b *blobReader) Seek(offset int64, whence int) (int64, error) {
	pos := b.size - b.left
	switch whence {
	case io.SeekStart:
		pos = offset
	case io.SeekCurrent:
		pos += offset
	case io.SeekEnd:
		pos = b.size + offset
	default:
		return 0, errors.New("blob: bad whence")
	}
	if pos < 0 {
		return 0, errors.New("blob: seek before the start")
	}
	pos = min(pos, b.size)
	b.left = b.size - pos
	b.seq = int(pos / blobChunk)
	b.cur = nil
	return pos, nil
}

func (b *blobReader) Close() error { return nil }

// inline returns a blob-backed Binary with its content in data; other
// resources are returned as they are.
func (s *Store) inline(ctx context.Context, c Conn, r *fhir.Resource) (*fhir.Resource, error) {
	id, ok := storage.BlobOf(r)
	if !ok {
		return r, nil
	}
	var size int64
	if err := c.QueryRow(ctx, `SELECT size FROM blobs WHERE id = ?`, id).Scan(&size); err != nil {
		return nil, fmt.Errorf("%s/%s: its content %s: %w", r.Type, r.ID, id, err)
	}
	var buf bytes.Buffer
	buf.Grow(len(r.Raw) + int(size+2)/3*4)
	if err := storage.WriteInlined(&buf, r, &blobReader{ctx: ctx, c: c, id: id, left: size, size: size}); err != nil {
		return nil, err
	}
	out, err := fhir.Parse(buf.Bytes())
	if err != nil {
		return nil, err
	}
	out.VersionID, out.LastUpdated = r.VersionID, r.LastUpdated
	return out, nil
}

// ReadStub implements storage.Blobs.
func (s *Store) ReadStub(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	return s.readStub(ctx, typ, id)
}

// ReadStub implements storage.StubReader inside a transaction.
func (t *tx) ReadStub(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	return t.s.read(ctx, t.c, typ, id)
}

// VReadStub implements storage.Blobs.
func (s *Store) VReadStub(ctx context.Context, typ, id, vid string) (*fhir.Resource, error) {
	return s.vread(ctx, s.db, typ, id, vid)
}
