-- Events waiting to be sealed into the trail. An appender that finds the
-- head locked by another (a replica, or a write's transaction) does not
-- wait for it: it stores its events here, durable and MACed under the
-- sealing key (sequence number 0, no previous seal), and answers. Whoever
-- seals next (package audit's sealer, holding the head) moves them into
-- audit_events in the order it finds them. An event whose MAC does not
-- hold is never sealed: it is marked refused and verify names it.
CREATE TABLE audit_pending (
  id BIGSERIAL PRIMARY KEY,
  key_id TEXT NOT NULL,
  mac BYTEA NOT NULL,
  body BYTEA NOT NULL,
  refused BOOLEAN NOT NULL DEFAULT false
);
