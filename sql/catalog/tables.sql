-- Every table users could mean (for "did you mean" on a mistyped table name).
SELECT n.nspname AS schema, c.relname AS name
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'refdata', 'refdata_stage')
  AND n.nspname NOT LIKE 'pg\_%'
ORDER BY 1, 2
