-- Declared foreign keys of one table: its columns, the referenced table and
-- columns (in the same order), and deferrability.
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
             ORDER BY k.ord)::text[] AS referenced_columns
FROM pg_catalog.pg_constraint AS c
JOIN pg_catalog.pg_class AS r ON r.oid = c.confrelid
JOIN pg_catalog.pg_namespace AS rn ON rn.oid = r.relnamespace
WHERE c.conrelid = %(oid)s
  AND c.contype = 'f'
  AND c.conparentid = 0
ORDER BY c.conname
