-- The schemas a plan copies into its scratch database: refdata's own, those
-- of the tables refdata touches, and those holding what these tables need
-- (column types and domains, the tables their foreign keys reference, trigger
-- functions). Then, until nothing is added, the schemas that anything in a
-- copied schema refers to: a default calling ext.uuid_generate_v4() does not
-- restore without schema ext, nor a view of schema public reading a table of
-- schema rpt without rpt.
WITH RECURSIVE touched AS (
    SELECT c.oid
    FROM pg_catalog.pg_class AS c
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    JOIN unnest(%(schemas)s::text[], %(tables)s::text[]) AS t(s, r) ON t.s = n.nspname AND t.r = c.relname
), edges AS (
    -- schema of an object -> schema of an object it refers to (rules,
    -- triggers, defaults and policies have none: their table's is theirs)
    SELECT DISTINCT f.nsp AS from_nsp, t.nsp AS to_nsp
    FROM pg_catalog.pg_depend AS d
    CROSS JOIN LATERAL (SELECT CASE d.classid
        WHEN 'pg_catalog.pg_rewrite'::pg_catalog.regclass THEN
            (SELECT c.relnamespace FROM pg_catalog.pg_rewrite AS r JOIN pg_catalog.pg_class AS c ON c.oid = r.ev_class
             WHERE r.oid = d.objid)
        WHEN 'pg_catalog.pg_trigger'::pg_catalog.regclass THEN
            (SELECT c.relnamespace FROM pg_catalog.pg_trigger AS g JOIN pg_catalog.pg_class AS c ON c.oid = g.tgrelid
             WHERE g.oid = d.objid)
        WHEN 'pg_catalog.pg_attrdef'::pg_catalog.regclass THEN
            (SELECT c.relnamespace FROM pg_catalog.pg_attrdef AS a JOIN pg_catalog.pg_class AS c ON c.oid = a.adrelid
             WHERE a.oid = d.objid)
        WHEN 'pg_catalog.pg_policy'::pg_catalog.regclass THEN
            (SELECT c.relnamespace FROM pg_catalog.pg_policy AS p JOIN pg_catalog.pg_class AS c ON c.oid = p.polrelid
             WHERE p.oid = d.objid)
        ELSE pg_catalog.to_regnamespace(pg_catalog.quote_ident((pg_catalog.pg_identify_object(d.classid, d.objid, 0)).schema))
        END AS nsp) AS f
    CROSS JOIN LATERAL (SELECT pg_catalog.to_regnamespace(
        pg_catalog.quote_ident((pg_catalog.pg_identify_object(d.refclassid, d.refobjid, 0)).schema)) AS nsp) AS t
    WHERE d.deptype IN ('n', 'a') AND d.classid <> 0 AND d.refclassid <> 0
      AND f.nsp IS NOT NULL AND t.nsp IS NOT NULL AND f.nsp <> t.nsp
), seed AS (
SELECT n.oid
FROM pg_catalog.pg_namespace AS n
WHERE n.nspname IN ('refdata', 'refdata_stage')
   OR n.oid IN (SELECT c.relnamespace FROM pg_catalog.pg_class AS c WHERE c.oid IN (SELECT oid FROM touched))
   OR n.oid IN (SELECT ty.typnamespace
                FROM pg_catalog.pg_attribute AS a
                JOIN pg_catalog.pg_type AS ty ON ty.oid IN (a.atttypid, (SELECT e.typelem FROM pg_catalog.pg_type AS e WHERE e.oid = a.atttypid))
                WHERE a.attrelid IN (SELECT oid FROM touched) AND a.attnum > 0 AND NOT a.attisdropped)
   OR n.oid IN (SELECT r.relnamespace
                FROM pg_catalog.pg_constraint AS k
                JOIN pg_catalog.pg_class AS r ON r.oid = k.confrelid
                WHERE k.contype = 'f' AND k.conrelid IN (SELECT oid FROM touched))
   OR n.oid IN (SELECT p.pronamespace
                FROM pg_catalog.pg_trigger AS tg
                JOIN pg_catalog.pg_proc AS p ON p.oid = tg.tgfoid
                WHERE tg.tgrelid IN (SELECT oid FROM touched))
), closure AS (
    SELECT oid FROM seed
    UNION
    SELECT e.to_nsp FROM closure AS c JOIN edges AS e ON e.from_nsp = c.oid
)
SELECT n.nspname
FROM pg_catalog.pg_namespace AS n
WHERE n.oid IN (SELECT oid FROM closure)
  AND n.nspname NOT LIKE 'pg\_%%' AND n.nspname <> 'information_schema'
ORDER BY 1
