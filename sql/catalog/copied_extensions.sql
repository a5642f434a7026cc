-- The extensions a plan creates in its scratch database: those living in a
-- schema it copies. A schema-only dump of a few schemas leaves extensions
-- out, and the copy of a citext column then fails on a type nobody created.
SELECT e.extname
FROM pg_catalog.pg_extension AS e
JOIN pg_catalog.pg_namespace AS n ON n.oid = e.extnamespace
WHERE n.nspname = ANY (%(schemas)s::text[])
ORDER BY 1
