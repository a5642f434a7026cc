-- One row of refdata.audit_batch as jsonb: p_row is the whole row's record
-- literal (row::text: fields in column order, an empty field for NULL,
-- double quotes around a field with commas, quotes, parentheses, spaces or
-- nothing in it, and inside them quotes and backslashes doubled), p_columns
-- and p_types name its fields. Values become what to_jsonb gives for the
-- types that have a JSON form (booleans, numbers, json, dates and times),
-- strings for all others.
CREATE OR REPLACE FUNCTION refdata.audit_values(p_row text, p_columns text[], p_types regtype[])
RETURNS jsonb
LANGUAGE sql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $refdata$
    SELECT jsonb_object_agg(p_columns[f.i], CASE
               WHEN f.v IS NULL THEN 'null'::jsonb
               WHEN p_types[f.i] = 'boolean'::regtype THEN to_jsonb(f.v::boolean)
               WHEN p_types[f.i] IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype, 'numeric'::regtype,
                                     'real'::regtype, 'double precision'::regtype)
                    AND f.v NOT IN ('NaN', 'Infinity', '-Infinity') THEN to_jsonb(f.v::numeric)
               WHEN p_types[f.i] IN ('json'::regtype, 'jsonb'::regtype) THEN f.v::jsonb
               WHEN p_types[f.i] = 'timestamp with time zone'::regtype THEN to_jsonb(f.v::timestamptz)
               WHEN p_types[f.i] = 'timestamp without time zone'::regtype THEN to_jsonb(f.v::timestamp)
               WHEN p_types[f.i] = 'date'::regtype THEN to_jsonb(f.v::date)
               ELSE to_jsonb(f.v) END)
    FROM (SELECT m.i,
                 CASE WHEN m.f[1] LIKE '"%' THEN regexp_replace(substr(m.f[1], 2, length(m.f[1]) - 2), '(["\\])\1', '\1', 'g')
                      ELSE nullif(m.f[1], '') END AS v
          FROM regexp_matches(',' || substr(p_row, 2, length(p_row) - 2), ',("(?:[^"]|"")*"|[^,"]*)', 'g')
               WITH ORDINALITY AS m(f, i)) AS f
$refdata$;
COMMENT ON FUNCTION refdata.audit_values(text, text[], regtype[]) IS 'refdata: one row of the audit log''s storage as jsonb';
