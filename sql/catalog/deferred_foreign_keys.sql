-- Foreign keys of the tables refdata touches that are checked at commit
-- (defer_foreign_keys); plan compares them by name and alters in place, as
-- dropping and re-adding a constraint would check every row again.
SELECT n.nspname AS schema, c.relname AS table, k.conname AS name
FROM pg_catalog.pg_constraint AS k
JOIN pg_catalog.pg_class AS c ON c.oid = k.conrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
JOIN unnest(%(schemas)s::text[], %(tables)s::text[]) AS t(s, r) ON t.s = n.nspname AND t.r = c.relname
WHERE k.contype = 'f' AND k.conparentid = 0 AND k.condeferrable AND k.condeferred
ORDER BY 1, 2, 3
