-- Every version of every resource, in write order (seq).
CREATE TABLE resource_versions (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  res_type TEXT NOT NULL,
  res_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  last_updated INTEGER NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0,
  method TEXT NOT NULL,
  body BLOB,
  UNIQUE (res_type, res_id, version)
);
CREATE INDEX resource_versions_type_seq ON resource_versions (res_type, seq);
CREATE INDEX resource_versions_updated ON resource_versions (last_updated);
-- The current version of each resource (a copy of its newest version row).
CREATE TABLE resources (
  res_type TEXT NOT NULL,
  res_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  last_updated INTEGER NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0,
  body BLOB,
  seq INTEGER NOT NULL,
  PRIMARY KEY (res_type, res_id)
) WITHOUT ROWID;
CREATE INDEX resources_type_updated ON resources (res_type, last_updated);
