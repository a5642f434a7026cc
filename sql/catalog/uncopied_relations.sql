-- What a plan's copy of the schemas leaves out: foreign tables (a schema dump
-- has no foreign server for them; plans leave them to reference sync's own
-- statements, plan.FDW_KINDS) and the views and materialized views reading
-- one, at any depth, which could not be created without it. Plans compare
-- no view outside refdata's schemas.
WITH RECURSIVE uncopied AS (
    SELECT c.oid
    FROM pg_catalog.pg_class AS c
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    WHERE c.relkind = 'f' AND n.nspname = ANY (%(schemas)s::text[])
    UNION
    SELECT r.ev_class
    FROM uncopied AS u
    JOIN pg_catalog.pg_depend AS d
      ON d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = u.oid
     AND d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
    JOIN pg_catalog.pg_rewrite AS r ON r.oid = d.objid
    WHERE r.ev_class <> u.oid
)
SELECT n.nspname, c.relname
FROM uncopied AS u
JOIN pg_catalog.pg_class AS c ON c.oid = u.oid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = ANY (%(schemas)s::text[])
ORDER BY 1, 2
