-- Statement-level audit of one reference table, set-based over the
-- statement's transition tables, so a bulk write costs one INSERT ... SELECT
-- instead of a call per row. Arguments: 'refdata' when the statement ran as
-- refdata's owner (trigger WHEN refdata.owner_writes()), else 'caller'; then
-- the table's key columns. Updates keep only the changed fields; rows an
-- UPDATE left as they were are not logged. Each newly auto-derived row is
-- announced on channel refdata_auto_derived. Action, domain and detail come
-- from transaction-local settings that refdata's functions set around their
-- writes, and are read only for writes made as refdata's owner.
CREATE OR REPLACE FUNCTION refdata.audit()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $refdata$
DECLARE
    _rd_keys text[] := TG_ARGV[1:TG_NARGS - 1];
    _rd_action text;
    _rd_domain text;
    _rd_detail jsonb;
    _rd_table regclass := TG_RELID;
BEGIN
    IF TG_ARGV[0] = 'refdata' THEN
        _rd_action := nullif(current_setting('refdata.audit_action', true), '');
        _rd_domain := nullif(current_setting('refdata.audit_domain', true), '');
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO refdata.audit_log (application_name, table_name, operation, action, domain, key, new_values)
        SELECT current_setting('application_name'), _rd_table, 'INSERT', _rd_action, _rd_domain,
               (SELECT jsonb_object_agg(k, n.j -> k) FROM unnest(_rd_keys) AS k), n.j
        FROM (SELECT to_jsonb(r) AS j FROM "_rd_new" AS r) AS n;
        PERFORM pg_notify('refdata_auto_derived', jsonb_build_object(
                    'table', _rd_table::text,
                    'key', (SELECT jsonb_object_agg(k, n.j -> k) FROM unnest(_rd_keys) AS k),
                    'domain', n.j ->> '_derived_from_domain')::text)
        FROM (SELECT to_jsonb(r) AS j FROM "_rd_new" AS r WHERE r."_source" = 'auto_derived') AS n;
    ELSIF TG_OP = 'UPDATE' THEN
        -- A derive's ON CONFLICT DO UPDATE only ever fills NULL columns.
        IF _rd_action = 'derive' THEN
            _rd_action := 'fill';
        END IF;
        INSERT INTO refdata.audit_log (application_name, table_name, operation, action, domain, key, old_values, new_values)
        SELECT current_setting('application_name'), _rd_table, 'UPDATE', _rd_action, _rd_domain,
               coalesce(n.k, o.k),
               (SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(o.j) AS e
                WHERE n.j IS NULL OR e.value IS DISTINCT FROM n.j -> e.key),
               (SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(n.j) AS e
                WHERE o.j IS NULL OR e.value IS DISTINCT FROM o.j -> e.key)
        FROM (SELECT x.j, (SELECT jsonb_object_agg(k, x.j -> k) FROM unnest(_rd_keys) AS k) AS k
              FROM (SELECT to_jsonb(r) AS j FROM "_rd_old" AS r) AS x) AS o
        FULL JOIN (SELECT x.j, (SELECT jsonb_object_agg(k, x.j -> k) FROM unnest(_rd_keys) AS k) AS k
                   FROM (SELECT to_jsonb(r) AS j FROM "_rd_new" AS r) AS x) AS n ON n.k = o.k
        WHERE o.j IS DISTINCT FROM n.j;
    ELSE
        IF _rd_action = 'merge' THEN
            _rd_detail := nullif(current_setting('refdata.audit_detail', true), '')::jsonb;
        END IF;
        -- new_values of a delete: what replaced the row (a merge says which key)
        INSERT INTO refdata.audit_log (application_name, table_name, operation, action, domain, key, old_values, new_values)
        SELECT current_setting('application_name'), _rd_table, 'DELETE', _rd_action, _rd_domain,
               (SELECT jsonb_object_agg(k, o.j -> k) FROM unnest(_rd_keys) AS k), o.j, _rd_detail
        FROM (SELECT to_jsonb(r) AS j FROM "_rd_old" AS r) AS o;
    END IF;
    RETURN NULL;
END
$refdata$;
REVOKE ALL ON FUNCTION refdata.audit() FROM PUBLIC;
COMMENT ON FUNCTION refdata.audit() IS 'refdata: writes refdata.audit_log lines for one statement on a reference table';
