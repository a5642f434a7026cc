-- The partitioned table a partition (%(table)s: its name as SQL writes it)
-- belongs to, at the top; none for a table that is no partition. The server
-- names the partition a row went to where the config names the table.
SELECT n.nspname, c.relname
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.oid = pg_catalog.pg_partition_root(pg_catalog.to_regclass(%(table)s))
  AND c.oid <> pg_catalog.to_regclass(%(table)s)
