-- Tables that inherit from a table (not partitions): rows written straight
-- into them fire none of the parent's triggers.
SELECT n.nspname AS schema, c.relname AS name
FROM pg_catalog.pg_inherits AS i
JOIN pg_catalog.pg_class AS c ON c.oid = i.inhrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE i.inhparent = %(oid)s
  AND NOT c.relispartition
ORDER BY n.nspname, c.relname
