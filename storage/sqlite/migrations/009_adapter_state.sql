-- State a source adapter keeps between callbacks (ABDM's consent ledger and
-- transfer keys), shared by every replica: one value per key, changed under
-- a lock on the key (sqlstore.AdapterState).
CREATE TABLE adapter_state (
  key TEXT PRIMARY KEY,
  value BLOB NOT NULL,
  updated BIGINT NOT NULL
);
