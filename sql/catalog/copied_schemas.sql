-- The schemas a plan copies into its scratch database: refdata's own, those
-- of the tables refdata touches, and those holding what these tables need
-- (column types and domains, the tables their foreign keys reference, trigger
-- functions).
WITH touched AS (
    SELECT c.oid
    FROM pg_catalog.pg_class AS c
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    JOIN unnest(%(schemas)s::text[], %(tables)s::text[]) AS t(s, r) ON t.s = n.nspname AND t.r = c.relname
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
EXCEPT SELECT 'pg_catalog' EXCEPT SELECT 'information_schema'
ORDER BY 1
