-- The CHECK constraints of a reference table, each with whether the columns
-- a config's defaults set (%(columns)s) decide it alone, its definition, and
-- the columns it reads: one those defaults decide and refuse fails every
-- derived row they apply to, whatever the facts say.
SELECT k.conname::text AS name,
       coalesce(k.conkey <@ (SELECT array_agg(a.attnum) FROM pg_catalog.pg_attribute AS a
                             WHERE a.attrelid = k.conrelid AND a.attname = ANY (%(columns)s::text[])), false) AS decided,
       pg_catalog.pg_get_constraintdef(k.oid) AS definition,
       ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute AS a
             WHERE a.attrelid = k.conrelid AND a.attnum = ANY (k.conkey) ORDER BY a.attnum) AS reads
FROM pg_catalog.pg_constraint AS k
WHERE k.conrelid = %(oid)s AND k.contype = 'c'
ORDER BY 1
