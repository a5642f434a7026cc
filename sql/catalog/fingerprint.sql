-- A digest of what the catalog checks read about some tables (columns with
-- their types, NULL-ability and defaults, constraints, indexes): equal
-- digests mean a check of the same config gives the same answer.
SELECT md5(coalesce(string_agg(d.line, E'\n' ORDER BY d.line), ''))
FROM (
    SELECT concat_ws(' ', quote_ident(n.nspname), quote_ident(c.relname), c.relkind, a.attnum,
                     quote_ident(a.attname), pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
                     a.attidentity, a.attgenerated, pg_catalog.pg_get_expr(ad.adbin, ad.adrelid)) AS line
    FROM unnest(%(schemas)s::text[], %(names)s::text[]) AS r(schema, name)
    JOIN pg_catalog.pg_namespace AS n ON n.nspname = r.schema
    JOIN pg_catalog.pg_class AS c ON c.relnamespace = n.oid AND c.relname = r.name
    JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_catalog.pg_attrdef AS ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
    UNION ALL
    SELECT concat_ws(' ', quote_ident(n.nspname), quote_ident(c.relname), 'constraint', quote_ident(k.conname),
                     pg_catalog.pg_get_constraintdef(k.oid))
    FROM unnest(%(schemas)s::text[], %(names)s::text[]) AS r(schema, name)
    JOIN pg_catalog.pg_namespace AS n ON n.nspname = r.schema
    JOIN pg_catalog.pg_class AS c ON c.relnamespace = n.oid AND c.relname = r.name
    JOIN pg_catalog.pg_constraint AS k ON k.conrelid = c.oid
    UNION ALL
    SELECT concat_ws(' ', quote_ident(n.nspname), quote_ident(c.relname), 'index',
                     pg_catalog.pg_get_indexdef(i.indexrelid))
    FROM unnest(%(schemas)s::text[], %(names)s::text[]) AS r(schema, name)
    JOIN pg_catalog.pg_namespace AS n ON n.nspname = r.schema
    JOIN pg_catalog.pg_class AS c ON c.relnamespace = n.oid AND c.relname = r.name
    JOIN pg_catalog.pg_index AS i ON i.indrelid = c.oid
) AS d
