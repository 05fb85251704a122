-- Index values longer than a B-tree row allows are kept shortened (a prefix
-- and a hash) in the indexed column, and whole in these (empty when the
-- indexed column holds the whole value); see storage/sqlstore/textkey.go.
ALTER TABLE idx_string ADD COLUMN norm_full TEXT NOT NULL DEFAULT '';
ALTER TABLE idx_uri ADD COLUMN value_full TEXT NOT NULL DEFAULT '';
