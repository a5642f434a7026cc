-- Statement-level audit of one reference table, set-based over the
-- statement's transition tables: one line of refdata.audit_batch per
-- statement and per 10,000 rows, holding each row's fields in an array of
-- text, [row][column]. Each field is its type's output, as row::text writes
-- it, but nothing needs quoting: that is the cheapest whole-row conversion
-- (row::text takes twice as long; jsonb is built when refdata.audit_log is
-- read). An UPDATE keeps the old and the new rows in the same order, so the
-- view pairs them by position and shows only the changed fields. Arguments:
-- 'refdata' when the statement ran as refdata's owner (trigger WHEN
-- refdata.owner_writes()), else 'caller'; then the table's key columns.
-- Each newly auto-derived row is announced on channel refdata_auto_derived.
-- Action, domain and detail come from transaction-local settings that
-- refdata's functions set around their writes, and are read only for writes
-- made as refdata's owner. The date, interval, float and bytea settings make each
-- value's text one the view reads back the same whatever the session's
-- settings. No JIT: the transition tables' unknown size makes it compile
-- for seconds. The work_mem keeps the arrays of a statement of a million
-- rows in memory while they are grouped. Generic plans: the static
-- statements' custom plans (chosen because a transition table's size is
-- known when planning) were planned again on every call; the dynamic ones
-- are planned once either way.
-- A statement of a few rows (a row trigger's derived parent, a promotion,
-- a single-row write) is written by static statements, whose plans
-- PL/pgSQL keeps for the session (per trigger, so per table): planning the
-- dynamic ones cost such a statement several times what it writes. They
-- take each row's fields from its record literal (row::text: the same
-- output functions, quoted where needed, unquoted by refdata.record_fields), which is slower
-- per row but names no column, so it follows the table through ALTER TABLE
-- as the catalog query does.
CREATE OR REPLACE FUNCTION refdata.audit()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET plan_cache_mode = force_generic_plan
SET work_mem = '256MB'
SET datestyle = 'ISO, YMD'
SET intervalstyle = 'postgres'
SET extra_float_digits = 1
SET bytea_output = 'hex'
AS $refdata$
DECLARE
    _rd_action text;
    _rd_domain text;
    _rd_detail jsonb;
    _rd_columns text[];
    _rd_types regtype[];
    _rd_fields text;
    _rd_count bigint := 0;
    _rd_old_rows text[];
    _rd_new_rows text[];
    -- the rows of one transition table, numbered in its order, in arrays of 10,000
    _rd_chunks constant text := 'SELECT (s.n - 1) / 10000 AS chunk, array_agg(s.t%2$s) AS rows '
                                'FROM (SELECT row_number() OVER () AS n, ARRAY[%3$s] AS t FROM %1$I AS r) AS s GROUP BY 1';
    _rd_none constant text := 'SELECT 0::bigint AS chunk, NULL::text[] AS rows WHERE false';
BEGIN
    IF TG_ARGV[0] = 'refdata' THEN
        _rd_action := nullif(current_setting('refdata.audit_action', true), '');
        _rd_domain := nullif(current_setting('refdata.audit_domain', true), '');
    END IF;
    -- A derive's ON CONFLICT DO UPDATE only ever fills NULL columns.
    IF TG_OP = 'UPDATE' AND _rd_action = 'derive' THEN
        _rd_action := 'fill';
    END IF;
    -- new_values of a delete: what replaced the row (a merge says which key)
    IF TG_OP = 'DELETE' AND _rd_action = 'merge' THEN
        _rd_detail := nullif(current_setting('refdata.audit_detail', true), '')::jsonb;
    END IF;
    -- How to read the fields back: the columns, in the table's order, and
    -- their types (a domain's base type). In the order of the index on
    -- (attrelid, attnum), so nothing is sorted; a type below 10000 is one
    -- of PostgreSQL's own (FirstGenbkiObjectId), none of them a domain, so
    -- only other types are looked up (each look-up costs more than the rest).
    _rd_columns := ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute AS a
                          WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum);
    _rd_types := ARRAY(SELECT CASE WHEN a.atttypid < 10000 THEN a.atttypid
                                   ELSE (SELECT CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
                                           FROM pg_catalog.pg_type AS t WHERE t.oid = a.atttypid) END::regtype
                         FROM pg_catalog.pg_attribute AS a
                        WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum);
    -- Up to 32 rows: each row's fields from its record literal, in the
    -- transition table's order (an UPDATE's old and new rows pair up).
    IF TG_OP <> 'INSERT' THEN
        SELECT count(*), array_agg(refdata.record_fields(s.t)) INTO _rd_count, _rd_old_rows
          FROM (SELECT r::text AS t FROM "_rd_old" AS r LIMIT 33) AS s;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        SELECT count(*), array_agg(refdata.record_fields(s.t)) INTO _rd_count, _rd_new_rows
          FROM (SELECT r::text AS t FROM "_rd_new" AS r LIMIT 33) AS s;
    END IF;
    IF _rd_count = 0 THEN
        RETURN NULL;
    END IF;
    IF _rd_count <= 32 THEN
        INSERT INTO refdata.audit_batch (application_name, table_name, operation, action, domain,
                                         key_columns, columns, types, old_rows, new_rows, detail)
        VALUES (current_setting('application_name'), TG_RELID::regclass, TG_OP, _rd_action, _rd_domain,
                TG_ARGV[1:TG_NARGS - 1], _rd_columns, _rd_types, _rd_old_rows, _rd_new_rows, _rd_detail);
        IF _rd_action IS DISTINCT FROM 'sync' AND TG_OP = 'INSERT' THEN
            PERFORM pg_notify('refdata_auto_derived', jsonb_build_object(
                        'table', TG_RELID::regclass::text,
                        'key', (SELECT jsonb_object_agg(k, j.j -> k) FROM unnest(TG_ARGV[1:TG_NARGS - 1]) AS k),
                        'domain', r."_derived_from_domain")::text)
              FROM "_rd_new" AS r CROSS JOIN LATERAL (SELECT to_jsonb(r) AS j) AS j
             WHERE r."_source" = 'auto_derived';
        END IF;
        RETURN NULL;
    END IF;
    -- Each field is the column's output function's text, called by name
    -- where a cast to text would differ (boolean, char(n), inet, ...); text
    -- and varchar are their text already.
    SELECT string_agg(CASE WHEN t.typoutput IN ('textout'::regproc, 'varcharout'::regproc)
                           THEN format('r.%I::text', a.attname)
                           ELSE format('%s(r.%I)::text', t.typoutput, a.attname) END, ', ' ORDER BY a.attnum)
      INTO _rd_fields
      FROM pg_catalog.pg_attribute AS a JOIN pg_catalog.pg_type AS t ON t.oid = a.atttypid
     WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped;
    EXECUTE format($q$
        INSERT INTO refdata.audit_batch (application_name, table_name, operation, action, domain,
                                         key_columns, columns, types, old_rows, new_rows, detail)
        SELECT $1, $2, $3, $4, $5, $6, $7, $8, o.rows, n.rows, $9
        FROM (%s) AS o FULL JOIN (%s) AS n USING (chunk)$q$,
        CASE WHEN TG_OP = 'INSERT' THEN _rd_none
             ELSE format(_rd_chunks, '_rd_old', CASE WHEN TG_OP = 'UPDATE' THEN ' ORDER BY s.n' ELSE '' END, _rd_fields) END,
        CASE WHEN TG_OP = 'DELETE' THEN _rd_none
             ELSE format(_rd_chunks, '_rd_new', CASE WHEN TG_OP = 'UPDATE' THEN ' ORDER BY s.n' ELSE '' END, _rd_fields) END)
      USING current_setting('application_name'), TG_RELID::regclass, TG_OP, _rd_action, _rd_domain,
            TG_ARGV[1:TG_NARGS - 1], _rd_columns, _rd_types, _rd_detail;
    -- A sync (only refdata's owner can say it is one) inserts authoritative
    -- rows only: nothing to announce, no scan of its millions of rows.
    IF TG_OP = 'INSERT' AND _rd_action IS DISTINCT FROM 'sync' THEN
        EXECUTE format($q$
            SELECT count(pg_notify('refdata_auto_derived', jsonb_build_object('table', $1::text, 'key', %s, 'domain', r."_derived_from_domain")::text))
            FROM "_rd_new" AS r WHERE r."_source" = 'auto_derived'$q$,
            (SELECT 'jsonb_build_object(' || string_agg(format('%L, r.%I', k, k), ', ') || ')'
               FROM unnest(TG_ARGV[1:TG_NARGS - 1]) AS k))
          USING TG_RELID::regclass;
    END IF;
    RETURN NULL;
END
$refdata$;
REVOKE ALL ON FUNCTION refdata.audit() FROM PUBLIC;
COMMENT ON FUNCTION refdata.audit() IS 'refdata: writes refdata.audit_batch lines for one statement on a reference table';
