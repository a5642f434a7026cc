-- The state of each relation a plan may change, compared between the live
-- database and the desired one (the scratch copy) to know which tables a
-- plan's steps lock, and how strongly (migrate/plan.table_locks): refdata's
-- own tables and views (LOCK TABLE takes no materialized view) and the touched tables (the list given), with their
-- columns, constraints and view definition (shape), triggers (clones on
-- partitions too: creating a trigger on a partitioned table locks them) and
-- indexes.
SELECT n.nspname AS schema, c.relname AS name, c.relkind::text AS kind,
       concat_ws('|',
           (SELECT string_agg(format('%%I %%s %%s %%s %%s %%s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
                                     a.attnotnull, a.attidentity, a.attgenerated, pg_catalog.pg_get_expr(d.adbin, d.adrelid)),
                              ', ' ORDER BY a.attname)
            FROM pg_catalog.pg_attribute AS a
            LEFT JOIN pg_catalog.pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
           (SELECT string_agg(format('%%I %%s', k.conname, pg_catalog.pg_get_constraintdef(k.oid)), ', ' ORDER BY k.conname)
            FROM pg_catalog.pg_constraint AS k WHERE k.conrelid = c.oid),
           CASE WHEN c.relkind = 'v' THEN pg_catalog.pg_get_viewdef(c.oid) END) AS shape,
       ARRAY(SELECT pg_catalog.concat_ws(' ', pg_catalog.pg_get_triggerdef(t.oid), t.tgenabled) FROM pg_catalog.pg_trigger AS t
             WHERE t.tgrelid = c.oid AND NOT t.tgisinternal ORDER BY 1) AS triggers,
       ARRAY(SELECT pg_catalog.pg_get_indexdef(i.indexrelid) FROM pg_catalog.pg_index AS i
             WHERE i.indrelid = c.oid ORDER BY 1) AS indexes
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE (n.nspname IN ('refdata', 'refdata_stage') AND c.relkind IN ('r', 'p', 'v'))
   OR (c.relkind IN ('r', 'p')
       AND (n.nspname, c.relname) IN (SELECT * FROM unnest(%(schemas)s::text[], %(tables)s::text[])))
ORDER BY 1, 2
