-- Search index: one table per parameter type, rows written in the same
-- transaction as the resource version they index (current versions only).
-- grp/comp join the components of a composite parameter's element.
CREATE TABLE idx_string (
  res_type TEXT NOT NULL, res_id TEXT NOT NULL, param TEXT NOT NULL,
  grp INTEGER NOT NULL DEFAULT 0, comp INTEGER NOT NULL DEFAULT 0,
  norm TEXT NOT NULL, exact TEXT NOT NULL
);
CREATE INDEX idx_string_lookup ON idx_string (res_type, param, norm);
CREATE INDEX idx_string_res ON idx_string (res_type, res_id);
CREATE TABLE idx_token (
  res_type TEXT NOT NULL, res_id TEXT NOT NULL, param TEXT NOT NULL,
  grp INTEGER NOT NULL DEFAULT 0, comp INTEGER NOT NULL DEFAULT 0,
  system TEXT NOT NULL, code TEXT NOT NULL, text TEXT NOT NULL,
  type_system TEXT NOT NULL, type_code TEXT NOT NULL
);
CREATE INDEX idx_token_lookup ON idx_token (res_type, param, code, system);
CREATE INDEX idx_token_res ON idx_token (res_type, res_id);
CREATE TABLE idx_ref (
  res_type TEXT NOT NULL, res_id TEXT NOT NULL, param TEXT NOT NULL,
  grp INTEGER NOT NULL DEFAULT 0, comp INTEGER NOT NULL DEFAULT 0,
  target_type TEXT NOT NULL, target_id TEXT NOT NULL, url TEXT NOT NULL, version TEXT NOT NULL,
  ident_system TEXT NOT NULL, ident_value TEXT NOT NULL
);
CREATE INDEX idx_ref_lookup ON idx_ref (res_type, param, target_id, target_type);
CREATE INDEX idx_ref_target ON idx_ref (target_type, target_id);
CREATE INDEX idx_ref_res ON idx_ref (res_type, res_id);
CREATE TABLE idx_date (
  res_type TEXT NOT NULL, res_id TEXT NOT NULL, param TEXT NOT NULL,
  grp INTEGER NOT NULL DEFAULT 0, comp INTEGER NOT NULL DEFAULT 0,
  lo INTEGER NOT NULL, hi INTEGER NOT NULL
);
CREATE INDEX idx_date_lookup ON idx_date (res_type, param, lo);
CREATE INDEX idx_date_res ON idx_date (res_type, res_id);
CREATE TABLE idx_number (
  res_type TEXT NOT NULL, res_id TEXT NOT NULL, param TEXT NOT NULL,
  grp INTEGER NOT NULL DEFAULT 0, comp INTEGER NOT NULL DEFAULT 0,
  lo REAL NOT NULL, hi REAL NOT NULL, value TEXT NOT NULL
);
CREATE INDEX idx_number_lookup ON idx_number (res_type, param, lo);
CREATE INDEX idx_number_res ON idx_number (res_type, res_id);
CREATE TABLE idx_quantity (
  res_type TEXT NOT NULL, res_id TEXT NOT NULL, param TEXT NOT NULL,
  grp INTEGER NOT NULL DEFAULT 0, comp INTEGER NOT NULL DEFAULT 0,
  system TEXT NOT NULL, code TEXT NOT NULL, unit TEXT NOT NULL,
  lo REAL NOT NULL, hi REAL NOT NULL, value TEXT NOT NULL
);
CREATE INDEX idx_quantity_lookup ON idx_quantity (res_type, param, lo);
CREATE INDEX idx_quantity_res ON idx_quantity (res_type, res_id);
CREATE TABLE idx_uri (
  res_type TEXT NOT NULL, res_id TEXT NOT NULL, param TEXT NOT NULL,
  grp INTEGER NOT NULL DEFAULT 0, comp INTEGER NOT NULL DEFAULT 0,
  value TEXT NOT NULL
);
CREATE INDEX idx_uri_lookup ON idx_uri (res_type, param, value);
CREATE INDEX idx_uri_res ON idx_uri (res_type, res_id);
-- Patient compartment membership (for compartment search and $everything).
CREATE TABLE idx_patient (
  res_type TEXT NOT NULL, res_id TEXT NOT NULL, patient_id TEXT NOT NULL
);
CREATE INDEX idx_patient_lookup ON idx_patient (patient_id, res_type, res_id);
CREATE INDEX idx_patient_res ON idx_patient (res_type, res_id);
