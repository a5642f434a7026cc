-- Enabled BEFORE INSERT or UPDATE row triggers of a table that are not
-- refdata's own (their functions live in schema refdata), in firing order
-- (by name): each can change a row after refdata read its keys, or (on a
-- reference table, on INSERT) the key of a parent refdata derives.
SELECT g.tgname AS name, g.tgtype & 4 = 4 AS on_insert
FROM pg_catalog.pg_trigger AS g
JOIN pg_catalog.pg_proc AS p ON p.oid = g.tgfoid
WHERE g.tgrelid = %(oid)s
  AND NOT g.tgisinternal
  AND g.tgenabled <> 'D'
  AND g.tgtype & 1 = 1          -- ROW
  AND g.tgtype & 2 = 2          -- BEFORE
  AND g.tgtype & (4 | 16) <> 0  -- INSERT or UPDATE
  AND p.pronamespace IS DISTINCT FROM pg_catalog.to_regnamespace('refdata')
ORDER BY g.tgname
