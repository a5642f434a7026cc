-- The distinct non-NULL values of an array joined by a separator: sorted, or
-- in order of first appearance. Backs aggregation concat_distinct, for one
-- row (row trigger) and for many (bulk path) alike.
CREATE OR REPLACE FUNCTION refdata.concat_distinct(vals text[], separator text, sorted boolean)
RETURNS text
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $refdata$
    SELECT string_agg(d.v, separator ORDER BY CASE WHEN sorted THEN d.v END, d.first)
    FROM (SELECT u.v, min(u.i) AS first
          FROM unnest(vals) WITH ORDINALITY AS u(v, i)
          WHERE u.v IS NOT NULL
          GROUP BY u.v) AS d
$refdata$;
