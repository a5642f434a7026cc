-- The schemas a plan copies into its scratch database: refdata's own, those
-- of the tables refdata touches, and those holding what these tables need
-- (column types and domains, the tables their foreign keys reference, trigger
-- functions, and whatever their defaults, constraints, indexes and policies
-- call or read: a default calling ext.uuid_generate_v4() does not restore
-- without schema ext).
WITH touched AS (
    SELECT c.oid
    FROM pg_catalog.pg_class AS c
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    JOIN unnest(%(schemas)s::text[], %(tables)s::text[]) AS t(s, r) ON t.s = n.nspname AND t.r = c.relname
), used AS (
    SELECT d.refclassid, d.refobjid
    FROM pg_catalog.pg_depend AS d
    WHERE (d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
           AND d.objid IN (SELECT oid FROM touched
                           UNION ALL SELECT i.indexrelid FROM pg_catalog.pg_index AS i WHERE i.indrelid IN (SELECT oid FROM touched)))
       OR (d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass
           AND d.objid IN (SELECT a.oid FROM pg_catalog.pg_attrdef AS a WHERE a.adrelid IN (SELECT oid FROM touched)))
       OR (d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass
           AND d.objid IN (SELECT k.oid FROM pg_catalog.pg_constraint AS k WHERE k.conrelid IN (SELECT oid FROM touched)))
       OR (d.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass
           AND d.objid IN (SELECT g.oid FROM pg_catalog.pg_trigger AS g WHERE g.tgrelid IN (SELECT oid FROM touched)))
       OR (d.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass
           AND d.objid IN (SELECT p.oid FROM pg_catalog.pg_policy AS p WHERE p.polrelid IN (SELECT oid FROM touched)))
)
SELECT DISTINCT n.nspname
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
   OR n.oid IN (SELECT p.pronamespace FROM pg_catalog.pg_proc AS p
                WHERE p.oid IN (SELECT refobjid FROM used WHERE refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass))
   OR n.oid IN (SELECT ty.typnamespace FROM pg_catalog.pg_type AS ty
                WHERE ty.oid IN (SELECT refobjid FROM used WHERE refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass))
   OR n.oid IN (SELECT c.relnamespace FROM pg_catalog.pg_class AS c
                WHERE c.oid IN (SELECT refobjid FROM used WHERE refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass))
   OR n.oid IN (SELECT o.oprnamespace FROM pg_catalog.pg_operator AS o
                WHERE o.oid IN (SELECT refobjid FROM used WHERE refclassid = 'pg_catalog.pg_operator'::pg_catalog.regclass))
   OR n.oid IN (SELECT l.collnamespace FROM pg_catalog.pg_collation AS l
                WHERE l.oid IN (SELECT refobjid FROM used WHERE refclassid = 'pg_catalog.pg_collation'::pg_catalog.regclass))
EXCEPT SELECT 'pg_catalog' EXCEPT SELECT 'information_schema'
ORDER BY 1
