-- Every version of every resource, in write order (seq). Bodies are bytea:
-- the exact bytes accepted, so decimals such as 1.50 survive.
CREATE TABLE resource_versions (
  seq BIGSERIAL PRIMARY KEY,
  res_type TEXT NOT NULL,
  res_id TEXT NOT NULL,
  version BIGINT NOT NULL,
  last_updated BIGINT NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0,
  method TEXT NOT NULL,
  body BYTEA,
  UNIQUE (res_type, res_id, version)
);
CREATE INDEX resource_versions_type_seq ON resource_versions (res_type, seq);
CREATE INDEX resource_versions_updated ON resource_versions (last_updated);
-- The current version of each resource (a copy of its newest version row).
CREATE TABLE resources (
  res_type TEXT NOT NULL,
  res_id TEXT NOT NULL,
  version BIGINT NOT NULL,
  last_updated BIGINT NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0,
  body BYTEA,
  seq BIGINT NOT NULL,
  PRIMARY KEY (res_type, res_id)
);
CREATE INDEX resources_type_updated ON resources (res_type, last_updated);
