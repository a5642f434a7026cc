{%- from "macros/session_kept.sql.j2" import session_kept -%}
-- refdata review approve: mark rows reviewed (_needs_review = false) as they
-- are. `keys`: a JSON array of keys (plain values for a single-column key,
-- objects {"column": value} otherwise). Every key must exist; returns how
-- many rows were awaiting review. Runs as refdata's owner so a reviewer
-- needs no write rights on the table; audited with action 'approve'.
CREATE OR REPLACE FUNCTION refdata.review_approve(table_name text, keys jsonb)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $refdata$
DECLARE
    -- resolved as the owner: a reviewer needs no rights on the table's schema
    reference_table regclass := table_name::regclass;
    _rd_columns name[];
    _rd_keys jsonb;
    _rd_match text;
    _rd_missing jsonb;
    _rd_count bigint;
BEGIN
    SELECT k.key_columns, k.key_objects INTO _rd_columns, _rd_keys FROM refdata.review_keys(reference_table, keys) AS k;
    SELECT string_agg(format('t.%I = r.%I', c, c), ' AND ') INTO _rd_match FROM unnest(_rd_columns) AS c;
    EXECUTE format('SELECT e FROM jsonb_array_elements($1) AS e, jsonb_populate_record(NULL::%s, e) AS r
                    WHERE NOT EXISTS (SELECT FROM %s AS t WHERE %s) LIMIT 1', reference_table, reference_table, _rd_match)
       INTO _rd_missing USING _rd_keys;
    IF _rd_missing IS NOT NULL THEN
        RAISE EXCEPTION 'key % does not exist in %', _rd_missing, reference_table USING ERRCODE = 'no_data_found';
    END IF;
    PERFORM set_config('refdata.audit_action', 'approve', true), set_config('refdata.audit_domain', '', true);
    EXECUTE format('UPDATE %s AS t SET "_needs_review" = false
                    FROM jsonb_array_elements($1) AS e, jsonb_populate_record(NULL::%s, e) AS r
                    WHERE %s AND t."_needs_review"', reference_table, reference_table, _rd_match)
       USING _rd_keys;
    GET DIAGNOSTICS _rd_count = ROW_COUNT;
    PERFORM set_config('refdata.audit_action', '', true);
    {{ session_kept() | indent(4) }}
    RETURN _rd_count;
END
$refdata$;
REVOKE ALL ON FUNCTION refdata.review_approve(text, jsonb) FROM PUBLIC;
COMMENT ON FUNCTION refdata.review_approve(text, jsonb) IS 'refdata: marks rows of a reference table reviewed';
