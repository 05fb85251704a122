-- The references of the trail, indexed by posting lists: one row per
-- reference and append (not per reference and event) listing the events of
-- the append that hold it, each with its roles. A read's append, which
-- every read waits for, wrote a row per reference of every event, each in
-- another part of the index; now the references a group of reads shares
-- (the client, its organization, a resource read again) are one row.
-- events: per event, the uvarint distance from the one before (from seq
-- for the first) and the uvarint roles. seq and last are the first and the
-- last event listed; a row never spans more than 4096 sequence numbers, so
-- the row that may hold event n starts after n - 4096.
CREATE TABLE audit_postings (
  ref TEXT NOT NULL,
  seq BIGINT NOT NULL,
  last BIGINT NOT NULL,
  events BYTEA NOT NULL,
  PRIMARY KEY (ref, seq)
);
-- each indexed reference becomes a posting of one event (roles < 128 are
-- one byte)
INSERT INTO audit_postings (ref, seq, last, events)
  SELECT ref, seq, seq, set_byte('\x0000'::bytea, 1, role) FROM audit_refs;
DROP TABLE audit_refs;
