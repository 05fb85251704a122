-- The audit trail: an append-only log of its own (not resources, not the
-- search index). Each event is one row in sequence order, sealed by a keyed
-- hash chain (package audit); only what AuditEvent search and the release
-- rule need is indexed: the recording time, and the references in
-- audit_refs (one row per distinct reference of an event).
CREATE TABLE audit_events (
  seq INTEGER PRIMARY KEY,
  recorded INTEGER NOT NULL,
  action TEXT NOT NULL,
  outcome TEXT NOT NULL,
  type TEXT NOT NULL,
  subtype TEXT NOT NULL,
  key_id TEXT NOT NULL,
  prev BLOB NOT NULL,
  hash BLOB NOT NULL,
  body BLOB NOT NULL
);
CREATE INDEX audit_events_recorded ON audit_events (recorded);
CREATE TABLE audit_refs (
  ref TEXT NOT NULL,
  seq INTEGER NOT NULL,
  role INTEGER NOT NULL,
  PRIMARY KEY (ref, seq)
) WITHOUT ROWID;
-- The head of the trail: appenders lock it, so the order of the trail is
-- the order in which appending transactions commit.
CREATE TABLE audit_head (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  seq INTEGER NOT NULL,
  hash BLOB NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, x'');
-- Checkpoints the gateway published (they are also written outside the
-- database: the log, a file, a URL).
CREATE TABLE audit_checkpoints (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  seq INTEGER NOT NULL,
  checkpoint TEXT NOT NULL
);
