-- Derived search parameters (fhir/search/derive.go) keep no index rows of
-- their own: their values are their sources' rows. The rows earlier versions
-- wrote for them are deleted after this migration by the store
-- (sqlstore.AfterMigrate), which knows the parameters.
SELECT 1;
