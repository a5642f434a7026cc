-- Partitions (at any depth) of a fact table that lack a trigger the table
-- itself has: statement triggers do not reach partitions created after apply.
SELECT t.relid::regclass::text AS partition
FROM pg_catalog.pg_partition_tree(%(oid)s::oid::regclass) AS t
WHERE t.level > 0
  AND EXISTS (SELECT FROM pg_catalog.pg_trigger AS g WHERE g.tgrelid = %(oid)s AND g.tgname = %(trigger)s)
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_trigger AS g WHERE g.tgrelid = t.relid AND g.tgname = %(trigger)s)
ORDER BY t.level, 1
