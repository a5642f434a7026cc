-- Triggers on a table that bear a name refdata gives one of its own but run
-- a function outside refdata's schemas: a user's, which refdata's CREATE OR
-- REPLACE TRIGGER would replace without a word.
SELECT t.tgname, pg_catalog.format('%%I.%%I()', n.nspname, p.proname) AS function
FROM pg_catalog.pg_trigger AS t
JOIN pg_catalog.pg_proc AS p ON p.oid = t.tgfoid
JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
WHERE t.tgrelid = %(oid)s AND NOT t.tgisinternal AND t.tgname = ANY (%(names)s::text[])
  AND n.nspname NOT IN ('refdata', 'refdata_stage')
ORDER BY 1
