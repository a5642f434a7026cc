-- Columns of one relation with what the checks need: type (domains resolved
-- to their base type), NULL-ability, whether the server fills a value and
-- whether it always does (stored generated, identity GENERATED ALWAYS), so
-- that no INSERT may set it and a BEFORE row trigger sees it unset.
SELECT a.attname AS name,
       pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
       CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END AS base_type,
       bt.typcategory AS category,
       a.attnotnull AS not_null,
       (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '') AS has_default,
       (a.attgenerated <> '' OR a.attidentity = 'a') AS generated
FROM pg_catalog.pg_attribute AS a
JOIN pg_catalog.pg_type AS t ON t.oid = a.atttypid
JOIN pg_catalog.pg_type AS bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
WHERE a.attrelid = %(oid)s
  AND a.attnum > 0
  AND NOT a.attisdropped
ORDER BY a.attnum
