-- Column sets of the valid unique indexes without predicate or expressions
-- (primary keys, unique constraints or indexes), and whether they are checked
-- immediately: ON CONFLICT can use only those.
SELECT i.indisprimary AS is_primary,
       ARRAY(SELECT a.attname
             FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_catalog.pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             ORDER BY k.ord)::text[] AS columns,
       i.indimmediate AS immediate
FROM pg_catalog.pg_index AS i
WHERE i.indrelid = %(oid)s
  AND i.indisunique
  AND i.indisvalid
  AND i.indpred IS NULL
  AND i.indexprs IS NULL
