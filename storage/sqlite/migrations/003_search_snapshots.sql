-- The ordered result ids of a sorted search, so that its pages neither
-- skip nor repeat resources while others write (ids are newline-joined).
CREATE TABLE search_snapshots (
  id TEXT PRIMARY KEY,
  created INTEGER NOT NULL,
  ids BLOB NOT NULL
);
CREATE INDEX search_snapshots_created ON search_snapshots (created);
