-- Whether the index refdata names for an FK's fact columns is one refdata
-- made before it marked its indexes with a comment: the very name and shape
-- sql/indexes/fact_key.sql.j2 gives one (on that table, btree, not unique,
-- no predicate or expressions, exactly the FK's columns in order), and no
-- comment at all. An index a user commented, or shaped otherwise, is theirs.
SELECT EXISTS (
    SELECT FROM pg_catalog.pg_index AS i
    JOIN pg_catalog.pg_class AS c ON c.oid = i.indexrelid
    JOIN pg_catalog.pg_am AS am ON am.oid = c.relam
    WHERE i.indexrelid = pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %(schema)s::text, %(index)s::text))
      AND i.indrelid = pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %(schema)s::text, %(table)s::text))
      AND am.amname = 'btree' AND NOT i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
      AND pg_catalog.obj_description(c.oid, 'pg_class') IS NULL
      AND (SELECT array_agg(a.attname::text ORDER BY k.n)
           FROM unnest(i.indkey) WITH ORDINALITY AS k (attnum, n)
           JOIN pg_catalog.pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum)
          = %(columns)s::text[]
)
