-- A counter per watched resource type (Consent), advanced in the same
-- transaction as every write of that type: a mark that changes exactly
-- when such a write commits, in commit order, whichever replica wrote it
-- (the greatest version sequence does not: on PostgreSQL a write can
-- commit after one with a greater sequence). See sqlstore.ChangeMark.
CREATE TABLE change_marks (
  res_type TEXT PRIMARY KEY,
  n BIGINT NOT NULL
);
