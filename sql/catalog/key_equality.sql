-- The equality a FOREIGN KEY into the parent's key would use (its
-- conpfeqop): the = of the operator family of the key column in the
-- parent's unique index on exactly the key columns (the index ON CONFLICT
-- uses), for that opclass's own input type, and that type, to which the
-- fact value is cast as the FOREIGN KEY casts it. Operator and type come
-- with their schemas: the generated code names them, since citext's =
-- lies outside pg_catalog, where refdata's functions look.
SELECT n.nspname AS operator_schema, o.oprname AS operator, tn.nspname AS type_schema, t.typname AS type_name
FROM pg_catalog.pg_index AS i
CROSS JOIN LATERAL unnest(i.indkey, i.indclass) AS k(attnum, opclass)
JOIN pg_catalog.pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
JOIN pg_catalog.pg_opclass AS c ON c.oid = k.opclass
JOIN pg_catalog.pg_amop AS m
  ON m.amopfamily = c.opcfamily AND m.amoplefttype = c.opcintype AND m.amoprighttype = c.opcintype
 AND m.amopmethod = 403 AND m.amopstrategy = 3  -- btree equality
JOIN pg_catalog.pg_operator AS o ON o.oid = m.amopopr
JOIN pg_catalog.pg_namespace AS n ON n.oid = o.oprnamespace
JOIN pg_catalog.pg_type AS t ON t.oid = c.opcintype
JOIN pg_catalog.pg_namespace AS tn ON tn.oid = t.typnamespace
WHERE i.indrelid = %(parent)s AND i.indisunique AND i.indisvalid AND i.indimmediate
  AND i.indpred IS NULL AND i.indexprs IS NULL
  AND i.indnkeyatts = pg_catalog.cardinality(%(keys)s::pg_catalog.text[])
  AND a.attname = %(key)s
  AND (SELECT pg_catalog.count(*)
       FROM unnest(i.indkey) WITH ORDINALITY AS x(attnum, position)
       JOIN pg_catalog.pg_attribute AS b ON b.attrelid = i.indrelid AND b.attnum = x.attnum
       WHERE x.position <= i.indnkeyatts AND b.attname = ANY (%(keys)s::pg_catalog.text[])) = i.indnkeyatts
ORDER BY i.indisprimary DESC, i.indexrelid
LIMIT 1
