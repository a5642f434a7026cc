-- What refdata owns or touches, one row per object with a digest of its
-- definition: the one catalog fingerprint (catalog.fingerprint). apply
-- compares the rows before and after (what it created, replaced, dropped); a
-- plan file records their hash (has the database changed since the plan was
-- made?); the test plugin reuses a catalog check for an equal hash. Kind
-- 'touched table' covers the columns (types, NULL-ability, defaults, identity,
-- generation), constraints and indexes of the tables refdata derives from or
-- writes to: everything the catalog checks read.
WITH own AS (
    SELECT n.oid FROM pg_catalog.pg_namespace AS n WHERE n.nspname IN ('refdata', 'refdata_stage')
), touched AS (
    SELECT c.oid, c.relkind, format('%%I.%%I', n.nspname, c.relname) AS name
    FROM pg_catalog.pg_class AS c
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    JOIN unnest(%(schemas)s::text[], %(tables)s::text[]) AS t(s, r) ON t.s = n.nspname AND t.r = c.relname
), columns AS (
    SELECT a.attrelid,
           string_agg(format('%%I %%s %%s %%s %%s %%s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
                             a.attnotnull, a.attidentity, a.attgenerated, pg_catalog.pg_get_expr(d.adbin, d.adrelid)),
                      ', ' ORDER BY a.attname) FILTER (WHERE a.attname NOT LIKE '\_%%') AS plain,
           string_agg(format('%%I %%s %%s %%s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
                             a.attnotnull, pg_catalog.pg_get_expr(d.adbin, d.adrelid)),
                      ', ' ORDER BY a.attname) FILTER (WHERE a.attname LIKE '\_%%') AS underscored
    FROM pg_catalog.pg_attribute AS a
    LEFT JOIN pg_catalog.pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attnum > 0 AND NOT a.attisdropped
    GROUP BY a.attrelid
), constraints AS (
    SELECT k.conrelid, string_agg(format('%%I %%s', k.conname, pg_catalog.pg_get_constraintdef(k.oid)), ', ' ORDER BY k.conname) AS defs
    FROM pg_catalog.pg_constraint AS k
    GROUP BY k.conrelid
), indexes AS (
    SELECT i.indrelid, string_agg(pg_catalog.pg_get_indexdef(i.indexrelid), ', ' ORDER BY 1) AS defs
    FROM pg_catalog.pg_index AS i
    GROUP BY i.indrelid
)
SELECT 'schema' AS kind, format('%%I', n.nspname) AS name,
       md5(concat_ws('|', pg_catalog.obj_description(n.oid, 'pg_namespace'), n.nspacl::text)) AS digest
FROM pg_catalog.pg_namespace AS n
WHERE n.oid IN (SELECT oid FROM own)
UNION ALL
SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'view' ELSE 'table' END,
       format('%%I.%%I', n.nspname, c.relname),
       md5(concat_ws('|', c.relkind, c.relpersistence, c.relacl::text, pg_catalog.obj_description(c.oid, 'pg_class'),
                     CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid) END,
                     col.plain, col.underscored, con.defs, ix.defs))
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN columns AS col ON col.attrelid = c.oid
LEFT JOIN constraints AS con ON con.conrelid = c.oid
LEFT JOIN indexes AS ix ON ix.indrelid = c.oid
WHERE c.relnamespace IN (SELECT oid FROM own) AND c.relkind IN ('r', 'p', 'v', 'm')
UNION ALL
SELECT 'function', format('%%I.%%I(%%s)', n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)),
       md5(concat_ws('|', CASE WHEN p.prokind IN ('f', 'p') THEN pg_catalog.pg_get_functiondef(p.oid) ELSE p.prosrc END,
                     p.proacl::text, pg_catalog.pg_get_userbyid(p.proowner), pg_catalog.obj_description(p.oid, 'pg_proc')))
FROM pg_catalog.pg_proc AS p
JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
WHERE p.pronamespace IN (SELECT oid FROM own)
UNION ALL
SELECT 'trigger', format('%%I on %%I.%%I', t.tgname, n.nspname, c.relname),
       md5(concat_ws('|', pg_catalog.pg_get_triggerdef(t.oid), t.tgenabled))
FROM pg_catalog.pg_trigger AS t
JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_proc AS p ON p.oid = t.tgfoid
WHERE NOT t.tgisinternal AND t.tgparentid = 0 AND p.pronamespace IN (SELECT oid FROM own)
UNION ALL
SELECT 'tracking columns', t.name,
       md5(concat_ws('|', col.underscored,
                     (SELECT string_agg(pg_catalog.pg_get_indexdef(i.indexrelid), ', ' ORDER BY 1)
                      FROM pg_catalog.pg_index AS i
                      JOIN pg_catalog.pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                      WHERE i.indrelid = t.oid AND a.attname = '_derived_at')))
FROM touched AS t
JOIN columns AS col ON col.attrelid = t.oid
WHERE EXISTS (SELECT FROM pg_catalog.pg_attribute AS a WHERE a.attrelid = t.oid AND a.attname = '_source' AND NOT a.attisdropped)
UNION ALL
SELECT 'touched table', t.name, md5(concat_ws('|', t.relkind, col.plain, col.underscored, con.defs, ix.defs,
       (SELECT string_agg(format('%%s', i.inhrelid::regclass), ', ' ORDER BY 1) FROM pg_catalog.pg_inherits AS i WHERE i.inhparent = t.oid)))
FROM touched AS t
LEFT JOIN columns AS col ON col.attrelid = t.oid
LEFT JOIN constraints AS con ON con.conrelid = t.oid
LEFT JOIN indexes AS ix ON ix.indrelid = t.oid
ORDER BY 1, 2
