-- What already holds a name refdata gives an index of its own in a user's
-- schema, unless it is an index on the table refdata means the name for (its
-- own, from an earlier apply, or a user's that then serves). CREATE INDEX IF
-- NOT EXISTS, and the look-up before CREATE INDEX, would take the name as
-- taken and make nothing, without a word.
SELECT CASE c.relkind WHEN 'r' THEN 'a table' WHEN 'p' THEN 'a partitioned table' WHEN 'v' THEN 'a view'
                      WHEN 'm' THEN 'a materialized view' WHEN 'S' THEN 'a sequence'
                      WHEN 'f' THEN 'a foreign table' WHEN 'c' THEN 'a composite type'
                      ELSE pg_catalog.format('an index on %%I.%%I', tn.nspname, t.relname) END AS what
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_index AS i ON i.indexrelid = c.oid
LEFT JOIN pg_catalog.pg_class AS t ON t.oid = i.indrelid
LEFT JOIN pg_catalog.pg_namespace AS tn ON tn.oid = t.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(name)s
  AND i.indrelid IS DISTINCT FROM %(table)s::oid
