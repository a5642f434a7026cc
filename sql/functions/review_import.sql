{%- from "macros/session_kept.sql.j2" import session_kept -%}
-- refdata review import: reviewed rows back from an edited export. `rows`:
-- a JSON array of {"line": n, "table": "schema.table", "values": {column:
-- text or null}} (as `refdata review import` reads them from the CSV). Each
-- row's key must exist and still await review; every other column named (tracking columns aside)
-- takes the given value, and the row is marked reviewed. All or nothing: the
-- first row that does not fit stops it with "line N: column C: reason".
-- Audited with action 'review'. Returns the rows updated.
CREATE OR REPLACE FUNCTION refdata.review_import(rows jsonb)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $refdata$
DECLARE
    _rd_row record;
    _rd_table regclass;
    _rd_keys name[];
    _rd_match text;
    _rd_columns text[];
    _rd_values jsonb;
    _rd_column text;
    _rd_found boolean;
    _rd_count bigint := 0;
    _rd_message text;
    _rd_key jsonb;
    _rd_seen jsonb := '{}';  -- table and key as the file spells them -> the line naming them first
BEGIN
    PERFORM set_config('refdata.audit_action', 'review', true), set_config('refdata.audit_domain', '', true);
    FOR _rd_row IN SELECT (e ->> 'line')::bigint AS line, e ->> 'table' AS tbl, e -> 'values' AS vals
                     FROM jsonb_array_elements(rows) AS e LOOP
        BEGIN
            _rd_table := _rd_row.tbl::regclass;
        EXCEPTION WHEN OTHERS THEN
            RAISE EXCEPTION 'line %: column "reference_table": %', _rd_row.line, SQLERRM
                USING ERRCODE = 'invalid_parameter_value';
        END;
        SELECT l.key_columns INTO _rd_keys FROM refdata.reference_link AS l
         WHERE format('%I.%I', l.target_schema, l.target_table)::regclass = _rd_table LIMIT 1;
        IF _rd_keys IS NULL THEN
            RAISE EXCEPTION 'line %: column "reference_table": % is not a reference table of any configured foreign key',
                _rd_row.line, _rd_table
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        -- Drop what the row does not set: tracking columns, and cells of
        -- columns its table lacks (a file of several tables has them all).
        SELECT jsonb_object_agg(v.key, v.value), array_agg(v.key::text ORDER BY a.attnum)
                 FILTER (WHERE NOT (a.attname = ANY (_rd_keys)) AND a.attgenerated = '' AND a.attidentity <> 'a')
          INTO _rd_values, _rd_columns
          FROM jsonb_each(_rd_row.vals) AS v
          LEFT JOIN pg_catalog.pg_attribute AS a
                 ON a.attrelid = _rd_table AND a.attname = v.key AND a.attnum > 0 AND NOT a.attisdropped
         WHERE v.key NOT IN ('_source', '_needs_review', '_derived_from_domain', '_derived_at')
           AND (a.attnum IS NOT NULL OR jsonb_typeof(v.value) <> 'null');
        SELECT v.key INTO _rd_column FROM jsonb_each(_rd_values) AS v
         WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_attribute AS a WHERE a.attrelid = _rd_table
                             AND a.attname = v.key AND a.attnum > 0 AND NOT a.attisdropped)
         LIMIT 1;
        IF _rd_column IS NOT NULL THEN
            RAISE EXCEPTION 'line %: column "%" does not exist in %', _rd_row.line, _rd_column, _rd_table
                USING ERRCODE = 'undefined_column';
        END IF;
        -- A cell of every column of the header is in the row's values: a key
        -- column not among them is not in the header (line 1).
        SELECT c INTO _rd_column FROM unnest(_rd_keys) AS c WHERE NOT _rd_row.vals ? c LIMIT 1;
        IF _rd_column IS NOT NULL THEN
            RAISE EXCEPTION 'line 1: key column "%" of % is not in the header', _rd_column, _rd_table
                USING ERRCODE = 'not_null_violation';
        END IF;
        SELECT c INTO _rd_column FROM unnest(_rd_keys) AS c WHERE NOT _rd_values ? c OR jsonb_typeof(_rd_values -> c) = 'null' LIMIT 1;
        IF _rd_column IS NOT NULL THEN
            RAISE EXCEPTION 'line %: key column "%" is empty', _rd_row.line, _rd_column USING ERRCODE = 'not_null_violation';
        END IF;
        -- Values that do not convert to their column's type: name the column.
        BEGIN
            EXECUTE format('SELECT jsonb_populate_record(NULL::%s, $1)', _rd_table) USING _rd_values;
        EXCEPTION WHEN OTHERS THEN
            FOR _rd_column IN SELECT v.key FROM jsonb_each(_rd_values) AS v LOOP
                BEGIN
                    EXECUTE format('SELECT jsonb_populate_record(NULL::%s, $1)', _rd_table)
                      USING jsonb_build_object(_rd_column, _rd_values -> _rd_column);
                EXCEPTION WHEN OTHERS THEN
                    RAISE EXCEPTION 'line %: column "%": %', _rd_row.line, _rd_column, SQLERRM USING ERRCODE = SQLSTATE;
                END;
            END LOOP;
            RAISE;
        END;
        _rd_key := (SELECT jsonb_object_agg(c, _rd_values -> c) FROM unnest(_rd_keys) AS c);
        IF _rd_seen ? jsonb_build_array(_rd_table::text, _rd_key)::text THEN
            RAISE EXCEPTION 'line %: key % of % is named on line % too; name each row once', _rd_row.line, _rd_key,
                _rd_table, _rd_seen ->> jsonb_build_array(_rd_table::text, _rd_key)::text
                USING ERRCODE = 'unique_violation';
        END IF;
        _rd_seen := _rd_seen || jsonb_build_object(jsonb_build_array(_rd_table::text, _rd_key)::text, _rd_row.line);
        SELECT string_agg(format('t.%I = r.%I', c, c), ' AND ') INTO _rd_match FROM unnest(_rd_keys) AS c;
        BEGIN
            -- Only a row still awaiting review: one reviewed or made
            -- authoritative since the export would get the file's stale values.
            EXECUTE format('UPDATE %s AS t SET (%s"_needs_review") = (SELECT %sfalse) FROM jsonb_populate_record(NULL::%s, $1) AS r WHERE %s AND t."_needs_review"',
                           _rd_table,
                           (SELECT string_agg(format('%I, ', c), '') FROM unnest(_rd_columns) AS c),
                           (SELECT string_agg(format('r.%I, ', c), '') FROM unnest(_rd_columns) AS c),
                           _rd_table, _rd_match)
              USING _rd_values;
            GET DIAGNOSTICS _rd_count = ROW_COUNT;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS _rd_message = MESSAGE_TEXT;
            RAISE EXCEPTION 'line %: %', _rd_row.line, _rd_message USING ERRCODE = SQLSTATE;
        END;
        IF _rd_count = 0 THEN
            EXECUTE format('SELECT EXISTS (SELECT FROM %s AS t, jsonb_populate_record(NULL::%s, $1) AS r WHERE %s)',
                           _rd_table, _rd_table, _rd_match)
              INTO _rd_found USING _rd_values;
            IF _rd_found THEN
                RAISE EXCEPTION 'line %: key % of % no longer awaits review (reviewed or made authoritative since the export, or named on an earlier line); export again',
                    _rd_row.line, (SELECT jsonb_object_agg(c, _rd_values -> c) FROM unnest(_rd_keys) AS c), _rd_table
                    USING ERRCODE = 'no_data_found';
            END IF;
            RAISE EXCEPTION 'line %: key % does not exist in %', _rd_row.line,
                (SELECT jsonb_object_agg(c, _rd_values -> c) FROM unnest(_rd_keys) AS c), _rd_table
                USING ERRCODE = 'no_data_found';
        END IF;
    END LOOP;
    PERFORM set_config('refdata.audit_action', '', true);
    {{ session_kept() | indent(4) }}
    RETURN (SELECT count(*) FROM jsonb_array_elements(rows));
END
$refdata$;
REVOKE ALL ON FUNCTION refdata.review_import(jsonb) FROM PUBLIC;
COMMENT ON FUNCTION refdata.review_import(jsonb) IS 'refdata: writes reviewed values back to reference tables and marks the rows reviewed';
