-- A table by schema and name: its oid and kind (r table, p partitioned, v view, ...).
SELECT c.oid, c.relkind
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s
  AND c.relname = %(name)s
