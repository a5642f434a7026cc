-- Whether the = operator that a look-up of the parent by a fact value
-- resolves to (the one the probe view pg_temp.rd_key_probe was parsed with:
-- built-in operators are pinned, so no pg_depend row names them; the
-- view's parse tree does) belongs to the operator family of the key column
-- in a unique index of the parent: then the look-up calls equal what the
-- key calls equal, and the index serves it. A text fact against a citext or
-- char(n) key resolves to text = text: case and trailing spaces count
-- there, not in the key.
SELECT EXISTS (
    SELECT
    FROM pg_catalog.pg_rewrite AS r
    JOIN pg_catalog.pg_amop AS o
      ON o.amopopr = pg_catalog.substring(r.ev_action::pg_catalog.text, ':opno (\d+)')::pg_catalog.oid
    JOIN pg_catalog.pg_index AS i ON i.indrelid = %(parent)s AND i.indisunique AND i.indisvalid
    CROSS JOIN LATERAL unnest(i.indkey, i.indclass) AS k(attnum, opclass)
    JOIN pg_catalog.pg_opclass AS c ON c.oid = k.opclass
    JOIN pg_catalog.pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE r.ev_class = 'pg_temp.rd_key_probe'::pg_catalog.regclass
      AND o.amopfamily = c.opcfamily
      AND a.attname = %(key)s
) AS served
