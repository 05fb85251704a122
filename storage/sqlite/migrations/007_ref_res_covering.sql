-- The references a resource makes are read by the resource (_include,
-- $everything's referenced resources). An index that holds both key
-- columns and the targets answers that alone, and the planner picks it
-- with or without statistics (with only (res_type, res_id), a store whose
-- statistics lag behind a bulk load chose idx_ref_lookup by res_type alone
-- and scanned every reference of the type for each resource).
DROP INDEX idx_ref_res;
CREATE INDEX idx_ref_res ON idx_ref (res_type, res_id, target_type, target_id);
