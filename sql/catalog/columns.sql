-- Columns of one relation with what the checks need: type (domains, also
-- domains over domains, resolved to their base type, and the modifier of
-- the column or its domain: precision, scale, length), NULL-ability, whether
-- the server fills a value and whether it always does (stored generated,
-- identity GENERATED ALWAYS), so that no INSERT may set it and a BEFORE row
-- trigger sees it unset. A column of a domain is NOT NULL when the domain
-- (or one it is based on) is, and has a default when one of them has.
-- `numbered`: a sequence gives its values (identity, serial, a default
-- calling nextval). `deterministic`: its collation (if any) calls only equal
-- bytes equal.
SELECT a.attname AS name,
       pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
       d.base_type,
       CASE WHEN a.atttypmod >= 0 THEN a.atttypmod ELSE d.typmod END AS typmod,
       bt.typcategory AS category,
       (a.attnotnull OR d.not_null) AS not_null,
       (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '' OR d.has_default) AS has_default,
       (a.attgenerated <> '' OR a.attidentity = 'a') AS generated,
       a.attcollation AS collation,
       a.attcollation::pg_catalog.regcollation::text AS collation_name,
       coalesce(coll.collisdeterministic, true) AS deterministic,
       (a.attidentity <> '' OR EXISTS (
           SELECT FROM pg_catalog.pg_attrdef AS ad
           JOIN pg_catalog.pg_depend AS dep
             ON dep.classid = 'pg_catalog.pg_attrdef'::regclass AND dep.objid = ad.oid
            AND dep.refclassid = 'pg_catalog.pg_class'::regclass
           JOIN pg_catalog.pg_class AS s ON s.oid = dep.refobjid AND s.relkind = 'S'
           WHERE ad.adrelid = a.attrelid AND ad.adnum = a.attnum)) AS numbered
FROM pg_catalog.pg_attribute AS a
CROSS JOIN LATERAL (
    WITH RECURSIVE chain AS (
        SELECT t.oid, t.typtype, t.typbasetype, t.typtypmod, t.typnotnull, t.typdefaultbin IS NOT NULL AS has_default
        FROM pg_catalog.pg_type AS t WHERE t.oid = a.atttypid
        UNION ALL
        SELECT b.oid, b.typtype, b.typbasetype, b.typtypmod, b.typnotnull, b.typdefaultbin IS NOT NULL
        FROM chain AS c JOIN pg_catalog.pg_type AS b ON b.oid = c.typbasetype
        WHERE c.typtype = 'd'
    )
    SELECT max(chain.oid) FILTER (WHERE chain.typtype <> 'd') AS base_type,
           -- a domain's own modifier: numeric(10, 1), varchar(3) (-1: none)
           coalesce(max(chain.typtypmod) FILTER (WHERE chain.typtype = 'd'), -1) AS typmod,
           coalesce(bool_or(chain.typnotnull) FILTER (WHERE chain.typtype = 'd'), false) AS not_null,
           coalesce(bool_or(chain.has_default) FILTER (WHERE chain.typtype = 'd'), false) AS has_default
    FROM chain
) AS d
JOIN pg_catalog.pg_type AS bt ON bt.oid = d.base_type
LEFT JOIN pg_catalog.pg_collation AS coll ON coll.oid = a.attcollation
WHERE a.attrelid = %(oid)s
  AND a.attnum > 0
  AND NOT a.attisdropped
ORDER BY a.attnum
