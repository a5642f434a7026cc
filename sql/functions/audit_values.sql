-- One row of refdata.audit_batch as jsonb: p_row is the whole row's record
-- literal (row::text: fields in column order, an empty field for NULL,
-- double quotes around a field with commas, quotes, parentheses, spaces or
-- nothing in it, and inside them quotes and backslashes doubled), p_columns
-- and p_types name its fields, each read by refdata.audit_value. The
-- storage of statements audited before fields were kept apart. Its string
-- literals (the parser's backslashes) mean the same in a session that turned
-- standard_conforming_strings off.
CREATE OR REPLACE FUNCTION refdata.audit_values(p_row text, p_columns text[], p_types regtype[])
RETURNS jsonb
LANGUAGE sql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
AS $refdata$
    SELECT jsonb_object_agg(p_columns[f.i], refdata.audit_value(f.v, p_types[f.i]))
    FROM (SELECT m.i,
                 CASE WHEN m.f[1] LIKE '"%' THEN regexp_replace(substr(m.f[1], 2, length(m.f[1]) - 2), '(["\\])\1', '\1', 'g')
                      ELSE nullif(m.f[1], '') END AS v
          FROM regexp_matches(',' || substr(p_row, 2, length(p_row) - 2), ',("(?:[^"]|"")*"|[^,"]*)', 'g')
               WITH ORDINALITY AS m(f, i)) AS f
$refdata$;
COMMENT ON FUNCTION refdata.audit_values(text, text[], regtype[]) IS 'refdata: one row of the audit log''s storage as jsonb';
