-- The columns a constraint of a table reads (%(table)s: its name as SQL writes
-- it, %(name)s: the constraint's), in column order: what a CHECK the server
-- names without a column is about.
SELECT a.attname::text
FROM pg_catalog.pg_constraint AS k
JOIN pg_catalog.pg_attribute AS a ON a.attrelid = k.conrelid AND a.attnum = ANY (k.conkey)
WHERE k.conrelid = pg_catalog.to_regclass(%(table)s) AND k.conname = %(name)s
ORDER BY a.attnum
