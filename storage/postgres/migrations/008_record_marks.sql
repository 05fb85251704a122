-- A number per patient that every committed write of a resource in the
-- patient's compartment (joining, changing or leaving it) increments, in
-- the writing transaction: a reader that kept something derived from a
-- record ($everything's pages) knows with one lookup whether it still
-- holds, whichever replica wrote.
CREATE TABLE record_marks (
  patient_id TEXT PRIMARY KEY,
  n BIGINT NOT NULL
);
