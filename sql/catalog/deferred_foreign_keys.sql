-- Foreign keys of the tables refdata touches that are checked at commit
-- (defer_foreign_keys); plan compares them by name and alters in place, as
-- dropping and re-adding a constraint would check every row again. A
-- partition's foreign key is altered through the constraint it stems from
-- (its partitioned table's), which is what is named here; the clones of a
-- foreign key into a partitioned parent go with it and are not named.
WITH RECURSIVE up AS (
    SELECT k.oid AS fk, k.oid, k.conparentid
    FROM pg_catalog.pg_constraint AS k
    JOIN pg_catalog.pg_class AS c ON c.oid = k.conrelid
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    JOIN unnest(%(schemas)s::text[], %(tables)s::text[]) AS t(s, r) ON t.s = n.nspname AND t.r = c.relname
    WHERE k.contype = 'f'
      AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint AS kp WHERE kp.oid = k.conparentid AND kp.conrelid = k.conrelid)
    UNION ALL
    SELECT up.fk, p.oid, p.conparentid
    FROM up JOIN pg_catalog.pg_constraint AS p ON p.oid = up.conparentid
)
SELECT DISTINCT n.nspname AS schema, c.relname AS table, k.conname AS name
FROM up
JOIN pg_catalog.pg_constraint AS k ON k.oid = up.oid
JOIN pg_catalog.pg_class AS c ON c.oid = k.conrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE up.conparentid = 0 AND k.condeferrable AND k.condeferred
ORDER BY 1, 2, 3
