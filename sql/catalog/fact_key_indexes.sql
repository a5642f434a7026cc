-- The indexes refdata made on fact columns (observability.index_fact_keys):
-- those its comment marks (sql/indexes/fact_key.sql.j2), never a user's.
SELECT n.nspname AS schema, t.relname AS table, c.relname AS index,
       pg_catalog.obj_description(c.oid, 'pg_class') AS comment
FROM pg_catalog.pg_index AS i
JOIN pg_catalog.pg_class AS c ON c.oid = i.indexrelid
JOIN pg_catalog.pg_class AS t ON t.oid = i.indrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE pg_catalog.obj_description(c.oid, 'pg_class') LIKE 'refdata: fact key index %%'
  AND n.nspname NOT IN ('refdata', 'refdata_stage')
ORDER BY 1, 2, 3
