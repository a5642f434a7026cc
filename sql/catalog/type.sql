-- One type as the checks see a column's: its name, base type (domains
-- resolved) and category.
SELECT pg_catalog.format_type(t.oid, NULL) AS type,
       CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END AS base_type,
       bt.typcategory AS category
FROM pg_catalog.pg_type AS t
JOIN pg_catalog.pg_type AS bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
WHERE t.oid = %(oid)s
