-- The index tables' (res_type, res_id) B-trees find a resource's rows, to
-- replace them when it is written again, to read its compartment and to
-- join a sort's or a composite's values to it: only ever by equality on
-- the id. A hash index on res_id answers those (the type is checked on the
-- row) at about half a B-tree's cost per inserted row: every row of a load
-- paid for two text B-trees, and the load was bound by the database's
-- index inserts (BENCHMARKS.md, issue 15). idx_ref keeps its covering
-- B-tree, which $everything and _include read without visiting the table;
-- its (target_type, target_id) B-tree, which only _revinclude=* reads (by
-- equality on the ids of a page's resources), becomes a hash index on
-- target_id. Rebuilding these indexes on an existing database takes time
-- in proportion to its index rows.
DROP INDEX idx_string_res;
CREATE INDEX idx_string_res ON idx_string USING hash (res_id);
DROP INDEX idx_token_res;
CREATE INDEX idx_token_res ON idx_token USING hash (res_id);
DROP INDEX idx_date_res;
CREATE INDEX idx_date_res ON idx_date USING hash (res_id);
DROP INDEX idx_number_res;
CREATE INDEX idx_number_res ON idx_number USING hash (res_id);
DROP INDEX idx_quantity_res;
CREATE INDEX idx_quantity_res ON idx_quantity USING hash (res_id);
DROP INDEX idx_uri_res;
CREATE INDEX idx_uri_res ON idx_uri USING hash (res_id);
DROP INDEX idx_patient_res;
CREATE INDEX idx_patient_res ON idx_patient USING hash (res_id);
DROP INDEX idx_ref_target;
CREATE INDEX idx_ref_target ON idx_ref USING hash (target_id);
