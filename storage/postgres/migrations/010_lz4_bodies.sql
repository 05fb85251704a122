-- Resource bodies (a few KB of JSON each, written twice: the version and
-- the current row) and uploaded files' chunks are compressed with lz4
-- where the server has it (PostgreSQL 14+ built with lz4, as the Debian,
-- Docker and managed-cloud builds are): pglz, the default, cost about three
-- times the CPU for the same size on the Synthea bodies (BENCHMARKS.md).
-- Only values written from now on are affected; a server without lz4
-- keeps pglz.
DO $$ BEGIN ALTER TABLE resources ALTER COLUMN body SET COMPRESSION lz4; ALTER TABLE resource_versions ALTER COLUMN body SET COMPRESSION lz4; ALTER TABLE blob_chunks ALTER COLUMN data SET COMPRESSION lz4; EXCEPTION WHEN feature_not_supported OR syntax_error THEN RAISE NOTICE 'lz4 compression not available: bodies stay pglz'; END $$;
