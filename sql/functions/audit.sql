-- Statement-level audit of one reference table, set-based over the
-- statement's transition tables, so a bulk write costs one INSERT ... SELECT
-- instead of a call per row. Arguments: 'refdata' when the statement ran as
-- refdata's owner (trigger WHEN refdata.owner_writes()), else 'caller'; then
-- the table's key columns. Updates keep only the changed fields; rows an
-- UPDATE left as they were are not logged. Each newly auto-derived row is
-- announced on channel refdata_auto_derived. Action, domain and detail come
-- from transaction-local settings that refdata's functions set around their
-- writes, and are read only for writes made as refdata's owner. No JIT: the
-- transition tables' unknown size makes it compile for seconds.
CREATE OR REPLACE FUNCTION refdata.audit()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET work_mem = '64MB'
AS $refdata$
DECLARE
    _rd_action text;
    _rd_domain text;
    _rd_detail jsonb;
    _rd_key text;  -- the key of row r as a jsonb expression
    _rd_old text;  -- changed fields of old row o, of new row n, as jsonb expressions
    _rd_new text;
BEGIN
    IF TG_ARGV[0] = 'refdata' THEN
        _rd_action := nullif(current_setting('refdata.audit_action', true), '');
        _rd_domain := nullif(current_setting('refdata.audit_domain', true), '');
    END IF;
    -- The key from the row's own columns: turning the whole row into jsonb
    -- is the costly part of a bulk write's audit, so it happens once a row.
    SELECT 'jsonb_build_object(' || string_agg(format('%L, r.%I', k, k), ', ') || ')'
      INTO _rd_key FROM unnest(TG_ARGV[1:TG_NARGS - 1]) AS k;
    IF TG_OP = 'INSERT' THEN
        EXECUTE format($q$
            INSERT INTO refdata.audit_log (application_name, table_name, operation, action, domain, key, new_values)
            SELECT $1, $2, 'INSERT', $3, $4, %s, to_jsonb(r)
            FROM "_rd_new" AS r$q$, _rd_key)
          USING current_setting('application_name'), TG_RELID::regclass, _rd_action, _rd_domain;
        EXECUTE format($q$
            SELECT count(pg_notify('refdata_auto_derived', jsonb_build_object('table', $1::text, 'key', %s, 'domain', r."_derived_from_domain")::text))
            FROM "_rd_new" AS r WHERE r."_source" = 'auto_derived'$q$, _rd_key)
          USING TG_RELID::regclass;
    ELSIF TG_OP = 'UPDATE' THEN
        -- A derive's ON CONFLICT DO UPDATE only ever fills NULL columns.
        IF _rd_action = 'derive' THEN
            _rd_action := 'fill';
        END IF;
        -- Old and new rows pair up on the key columns themselves (a key an
        -- UPDATE changed logs a line for the old key and one for the new);
        -- changed fields are found column by column, typed, without turning
        -- whole rows into jsonb (types without equality compare as text).
        SELECT string_agg(format('CASE WHEN %s THEN jsonb_build_object(%L, o.%I) ELSE ''{}'' END', d.changed, a.attname, a.attname), ' || ' ORDER BY a.attnum),
               string_agg(format('CASE WHEN %s THEN jsonb_build_object(%L, n.%I) ELSE ''{}'' END', d.changed, a.attname, a.attname), ' || ' ORDER BY a.attnum)
          INTO _rd_old, _rd_new
          FROM pg_catalog.pg_attribute AS a,
               LATERAL (SELECT CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_operator AS op
                                                 WHERE op.oprname = '=' AND op.oprleft = a.atttypid AND op.oprright = a.atttypid)
                                    THEN format('o.%I IS DISTINCT FROM n.%I', a.attname, a.attname)
                                    ELSE format('o.%I::text IS DISTINCT FROM n.%I::text', a.attname, a.attname) END AS changed) AS d
         WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped;
        EXECUTE format($q$
            INSERT INTO refdata.audit_log (application_name, table_name, operation, action, domain, key, old_values, new_values)
            SELECT $1, $2, 'UPDATE', $3, $4, d.key, d.old_values, d.new_values
            FROM (SELECT CASE WHEN n.%2$I IS NULL THEN %4$s ELSE %5$s END AS key,
                         CASE WHEN n.%2$I IS NULL THEN to_jsonb(o) WHEN o.%2$I IS NULL THEN NULL ELSE '{}'::jsonb || %6$s END AS old_values,
                         CASE WHEN o.%2$I IS NULL THEN to_jsonb(n) WHEN n.%2$I IS NULL THEN NULL ELSE '{}'::jsonb || %7$s END AS new_values
                  FROM "_rd_old" AS o FULL JOIN "_rd_new" AS n ON %3$s) AS d
            WHERE d.new_values IS DISTINCT FROM '{}'::jsonb$q$,
            NULL, TG_ARGV[1],
            (SELECT string_agg(format('o.%I = n.%I', k, k), ' AND ') FROM unnest(TG_ARGV[1:TG_NARGS - 1]) AS k),
            (SELECT 'jsonb_build_object(' || string_agg(format('%L, o.%I', k, k), ', ') || ')' FROM unnest(TG_ARGV[1:TG_NARGS - 1]) AS k),
            (SELECT 'jsonb_build_object(' || string_agg(format('%L, n.%I', k, k), ', ') || ')' FROM unnest(TG_ARGV[1:TG_NARGS - 1]) AS k),
            _rd_old, _rd_new)
          USING current_setting('application_name'), TG_RELID::regclass, _rd_action, _rd_domain;
    ELSE
        IF _rd_action = 'merge' THEN
            _rd_detail := nullif(current_setting('refdata.audit_detail', true), '')::jsonb;
        END IF;
        -- new_values of a delete: what replaced the row (a merge says which key)
        EXECUTE format($q$
            INSERT INTO refdata.audit_log (application_name, table_name, operation, action, domain, key, old_values, new_values)
            SELECT $1, $2, 'DELETE', $3, $4, %s, to_jsonb(r), $5
            FROM "_rd_old" AS r$q$, _rd_key)
          USING current_setting('application_name'), TG_RELID::regclass, _rd_action, _rd_domain, _rd_detail;
    END IF;
    RETURN NULL;
END
$refdata$;
REVOKE ALL ON FUNCTION refdata.audit() FROM PUBLIC;
COMMENT ON FUNCTION refdata.audit() IS 'refdata: writes refdata.audit_log lines for one statement on a reference table';
