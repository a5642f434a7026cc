{%- from "macros/session_kept.sql.j2" import session_kept -%}
-- The rows awaiting review with every column, as jsonb, for
-- `refdata export-pending` (which turns them into CSV columns in COPY).
-- Runs as refdata's owner so a reviewer needs no rights on the tables.
-- NULL only_table: every configured reference table.
CREATE OR REPLACE FUNCTION refdata.pending_rows(only_table text DEFAULT NULL)
RETURNS TABLE (table_name regclass, row_values jsonb)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $refdata$
DECLARE
    _rd_table regclass;
    _rd_keys name[];
    _rd_only regclass := only_table::regclass;  -- resolved as the owner
BEGIN
    FOR _rd_table, _rd_keys IN
        SELECT DISTINCT ON (t) t, l.key_columns
          FROM refdata.reference_link AS l,
               LATERAL (SELECT format('%I.%I', l.target_schema, l.target_table)::regclass AS t) AS x
         WHERE _rd_only IS NULL OR x.t = _rd_only
         ORDER BY t
    LOOP
        RETURN QUERY EXECUTE format('SELECT $1, to_jsonb(t) FROM %s AS t WHERE t."_needs_review" ORDER BY %s',
                                    _rd_table, (SELECT string_agg(format('t.%I', c), ', ') FROM unnest(_rd_keys) AS c))
          USING _rd_table;
    END LOOP;
    IF NOT FOUND AND _rd_only IS NOT NULL AND _rd_table IS NULL THEN
        RAISE EXCEPTION '% is not a reference table of any configured foreign key', _rd_only
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    {{ session_kept() | indent(4) }}
END
$refdata$;
REVOKE ALL ON FUNCTION refdata.pending_rows(text) FROM PUBLIC;
COMMENT ON FUNCTION refdata.pending_rows(text) IS 'refdata: rows awaiting review with all their columns';
