-- Where a staging table differs from its fact table's loadable columns (not
-- generated, not GENERATED ALWAYS AS IDENTITY): columns added to the fact
-- table since the last apply ('missing'), dropped from it ('extra'), or with
-- another type now ('type').
WITH fact AS (
    SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, a.attnum
    FROM pg_catalog.pg_attribute AS a
    WHERE a.attrelid = %(fact)s AND a.attnum > 0 AND NOT a.attisdropped
      AND a.attgenerated = '' AND a.attidentity <> 'a'
), stage AS (
    SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, a.attnum
    FROM pg_catalog.pg_attribute AS a
    WHERE a.attrelid = %(stage)s AND a.attnum > 0 AND NOT a.attisdropped
      AND a.attname NOT LIKE '\_rd\_%%'
)
SELECT coalesce(f.attname, s.attname) AS name,
       CASE WHEN s.attname IS NULL THEN 'missing' WHEN f.attname IS NULL THEN 'extra' ELSE 'type' END AS problem,
       f.type AS fact_type,
       s.type AS stage_type
FROM fact AS f
FULL JOIN stage AS s ON s.attname = f.attname
WHERE f.attname IS NULL OR s.attname IS NULL OR f.type <> s.type
ORDER BY coalesce(f.attnum, 10000 + s.attnum)
