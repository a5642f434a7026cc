-- One value of the audit log's storage as jsonb: p_value is its text (its
-- type's output, written under fixed date, interval, float and bytea
-- settings), p_type its type (a domain's base type). Booleans, numbers,
-- json, dates and timestamps become what to_jsonb gives for them, values of
-- other types (arrays, intervals, bytea, ...) their text. Called only by
-- refdata's readers of the log, whose search_path is pg_catalog's: no SET
-- of its own, so that it is inlined, which a call per value needs.
CREATE OR REPLACE FUNCTION refdata.audit_value(p_value text, p_type regtype)
RETURNS jsonb
LANGUAGE sql
STABLE
PARALLEL SAFE
AS $refdata$
    SELECT CASE
               WHEN p_value IS NULL THEN 'null'::pg_catalog.jsonb
               WHEN p_type = 'boolean'::pg_catalog.regtype THEN pg_catalog.to_jsonb(p_value::pg_catalog.bool)
               WHEN p_type IN ('smallint'::pg_catalog.regtype, 'integer'::pg_catalog.regtype, 'bigint'::pg_catalog.regtype,
                               'numeric'::pg_catalog.regtype, 'real'::pg_catalog.regtype, 'double precision'::pg_catalog.regtype)
                    AND p_value NOT IN ('NaN', 'Infinity', '-Infinity') THEN pg_catalog.to_jsonb(p_value::pg_catalog.numeric)
               WHEN p_type IN ('json'::pg_catalog.regtype, 'jsonb'::pg_catalog.regtype) THEN p_value::pg_catalog.jsonb
               WHEN p_type = 'timestamp with time zone'::pg_catalog.regtype THEN pg_catalog.to_jsonb(p_value::pg_catalog.timestamptz)
               WHEN p_type = 'timestamp without time zone'::pg_catalog.regtype THEN pg_catalog.to_jsonb(p_value::pg_catalog.timestamp)
               WHEN p_type = 'date'::pg_catalog.regtype THEN pg_catalog.to_jsonb(p_value::pg_catalog.date)
               ELSE pg_catalog.to_jsonb(p_value) END
$refdata$;
COMMENT ON FUNCTION refdata.audit_value(text, regtype) IS 'refdata: one value of the audit log''s storage as jsonb';
