-- Content kept outside resource bodies (uploaded files), in chunks, so
-- that neither an upload nor a download holds a whole file in memory. A
-- blob is named by its SHA-256 and stored once; a Binary names it with
-- the extension storage.BlobExtension on _data. Chunks of an upload in
-- progress carry a temporary blob_id and have no row in blobs.
CREATE TABLE blobs (
  id TEXT PRIMARY KEY,
  size INTEGER NOT NULL,
  created INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE blob_chunks (
  blob_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  data BLOB NOT NULL,
  PRIMARY KEY (blob_id, seq)
);
