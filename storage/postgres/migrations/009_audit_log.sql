-- The audit trail: an append-only log of its own (not resources, not the
-- search index). Each event is one row in sequence order, sealed by a keyed
-- hash chain (package audit); only what AuditEvent search and the release
-- rule need is indexed: the recording time, and the references in
-- audit_refs (one row per distinct reference of an event).
CREATE TABLE audit_events (
  seq BIGINT PRIMARY KEY,
  recorded BIGINT NOT NULL,
  action TEXT NOT NULL,
  outcome TEXT NOT NULL,
  type TEXT NOT NULL,
  subtype TEXT NOT NULL,
  key_id TEXT NOT NULL,
  prev BYTEA NOT NULL,
  hash BYTEA NOT NULL,
  body BYTEA NOT NULL
);
CREATE INDEX audit_events_recorded ON audit_events (recorded);
CREATE TABLE audit_refs (
  ref TEXT NOT NULL,
  seq BIGINT NOT NULL,
  role INTEGER NOT NULL,
  PRIMARY KEY (ref, seq)
);
-- The head of the trail: appenders lock it (SELECT ... FOR UPDATE), so
-- replicas on one database append to one trail in the order in which
-- their transactions commit.
CREATE TABLE audit_head (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  seq BIGINT NOT NULL,
  hash BYTEA NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '\x');
-- Checkpoints the gateway published (they are also written outside the
-- database: the log, a file, a URL).
CREATE TABLE audit_checkpoints (
  id BIGSERIAL PRIMARY KEY,
  seq BIGINT NOT NULL,
  checkpoint TEXT NOT NULL
);
