-- Column sets of the unique indexes ON CONFLICT can use: primary keys and
-- unique constraints or indexes without predicate or expressions.
SELECT i.indisprimary AS is_primary,
       ARRAY(SELECT a.attname
             FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_catalog.pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             ORDER BY k.ord)::text[] AS columns
FROM pg_catalog.pg_index AS i
WHERE i.indrelid = %(oid)s
  AND i.indisunique
  AND i.indpred IS NULL
  AND i.indexprs IS NULL
