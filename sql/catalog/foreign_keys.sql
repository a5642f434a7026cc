-- Declared foreign keys of one table: its columns, the referenced table and
-- columns (in the same order), and deferrability. A table that is a partition
-- has its foreign keys as clones of its partitioned table's: they count, and
-- `root_*` names the constraint they stem from, the one ALTER CONSTRAINT takes.
-- The clones of a foreign key into a partitioned parent, one per partition of
-- the parent and on the same table, do not count apart from it.
WITH RECURSIVE up AS (
    SELECT c.oid AS fk, c.oid, c.conparentid
    FROM pg_catalog.pg_constraint AS c
    WHERE c.conrelid = %(oid)s AND c.contype = 'f'
    UNION ALL
    SELECT up.fk, p.oid, p.conparentid
    FROM up JOIN pg_catalog.pg_constraint AS p ON p.oid = up.conparentid
)
SELECT c.conname AS name,
       c.confrelid AS referenced,
       rn.nspname AS referenced_schema,
       r.relname AS referenced_table,
       c.condeferrable AS deferrable,
       c.condeferred AS deferred,
       ARRAY(SELECT a.attname
             FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
             ORDER BY k.ord)::text[] AS columns,
       ARRAY(SELECT a.attname
             FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.confrelid AND a.attnum = k.attnum
             ORDER BY k.ord)::text[] AS referenced_columns,
       tn.nspname AS root_schema,
       t.relname AS root_table,
       root.conname AS root_name
FROM pg_catalog.pg_constraint AS c
JOIN pg_catalog.pg_class AS r ON r.oid = c.confrelid
JOIN pg_catalog.pg_namespace AS rn ON rn.oid = r.relnamespace
JOIN up ON up.fk = c.oid AND up.conparentid = 0
JOIN pg_catalog.pg_constraint AS root ON root.oid = up.oid
JOIN pg_catalog.pg_class AS t ON t.oid = root.conrelid
JOIN pg_catalog.pg_namespace AS tn ON tn.oid = t.relnamespace
WHERE c.conrelid = %(oid)s
  AND c.contype = 'f'
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint AS cp WHERE cp.oid = c.conparentid AND cp.conrelid = c.conrelid)
ORDER BY c.conname
