-- Lookup indexes end with res_id, so that a clause checked against the
-- driving clause's few ids (res_id IN (...)) is a handful of index seeks
-- instead of reading every resource that has, say, a common code.
DROP INDEX idx_token_lookup;
CREATE INDEX idx_token_lookup ON idx_token (res_type, param, code, system, res_id);
DROP INDEX idx_ref_lookup;
CREATE INDEX idx_ref_lookup ON idx_ref (res_type, param, target_id, target_type, res_id);
DROP INDEX idx_string_lookup;
CREATE INDEX idx_string_lookup ON idx_string (res_type, param, norm, res_id);
DROP INDEX idx_uri_lookup;
CREATE INDEX idx_uri_lookup ON idx_uri (res_type, param, value, res_id);
