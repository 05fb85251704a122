-- Patients' connections to sources (package connect): pending ones (the
-- SMART state of an authorization request, by hash, single use) and
-- standing ones (the source's tokens, sealed under the state key).
CREATE TABLE connect_states (
  hash TEXT PRIMARY KEY,
  patient TEXT NOT NULL,
  source TEXT NOT NULL,
  sealed BLOB NOT NULL,
  expires BIGINT NOT NULL
);
-- statement
CREATE TABLE source_connections (
  patient TEXT NOT NULL,
  source TEXT NOT NULL,
  source_patient TEXT NOT NULL,
  sealed BLOB NOT NULL,
  connected BIGINT NOT NULL,
  updated BIGINT NOT NULL,
  broken INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (patient, source)
);
