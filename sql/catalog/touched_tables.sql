-- Tables outside refdata's own schemas that refdata touches: those the config
-- names (and their partitions), those carrying tracking columns, those with
-- triggers calling refdata's functions.
SELECT n.nspname AS schema, c.relname AS name
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('refdata', 'refdata_stage')
  AND ((n.nspname, c.relname) IN (SELECT * FROM unnest(%(schemas)s::text[], %(tables)s::text[]))
       -- a partition's ancestors (a table that is no partition has none listed)
       OR EXISTS (SELECT FROM pg_catalog.pg_partition_ancestors(c.oid) AS anc(relid)
               JOIN pg_catalog.pg_class AS ac ON ac.oid = anc.relid
               JOIN pg_catalog.pg_namespace AS an ON an.oid = ac.relnamespace
               JOIN unnest(%(schemas)s::text[], %(tables)s::text[]) AS cfg(s, t)
                 ON cfg.s = an.nspname AND cfg.t = ac.relname)
       OR (SELECT count(*) FROM pg_catalog.pg_attribute AS a
           WHERE a.attrelid = c.oid AND NOT a.attisdropped
             AND a.attname IN ('_source', '_needs_review', '_derived_from_domain', '_derived_at')) = 4
       OR EXISTS (SELECT FROM pg_catalog.pg_trigger AS t
                  JOIN pg_catalog.pg_proc AS p ON p.oid = t.tgfoid
                  JOIN pg_catalog.pg_namespace AS pn ON pn.oid = p.pronamespace
                  WHERE t.tgrelid = c.oid AND pn.nspname IN ('refdata', 'refdata_stage')))
ORDER BY 1, 2
