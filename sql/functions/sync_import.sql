-- (Re)creates the foreign table one synced table reads: IMPORT FOREIGN
-- SCHEMA ... LIMIT TO the remote table, into refdata_stage, under a name of
-- refdata's own. A foreign table holds no data, so re-importing loses nothing
-- and picks up remote column changes. The import reads the remote catalog as
-- the applier: without credentials of its own on that server, it borrows
-- the sync role's for this one statement (never committed).
DROP FUNCTION IF EXISTS refdata.sync_import(text, text, text, text);
CREATE OR REPLACE FUNCTION refdata.sync_import(p_server text, p_role text, p_remote_schema text, p_remote_table text,
                                               p_local text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $refdata$
DECLARE
    borrowed boolean := false;
    options text;
BEGIN
    EXECUTE format('DROP FOREIGN TABLE IF EXISTS refdata_stage.%I', p_local);
    IF to_regclass(format('refdata_stage.%I', p_remote_table)) IS NOT NULL THEN
        RAISE EXCEPTION 'cannot import %.%: refdata_stage.% exists', p_remote_schema, p_remote_table, p_remote_table;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_user_mappings AS m
                   WHERE m.srvname = p_server AND m.umuser IN (0, (SELECT r.oid FROM pg_roles AS r WHERE r.rolname = current_user))) THEN
        SELECT string_agg(format('%I %L', split_part(x, '=', 1), substr(x, strpos(x, '=') + 1)), ', ')
          INTO options
          FROM pg_user_mappings AS m, unnest(m.umoptions) AS x
         WHERE m.srvname = p_server AND m.usename = p_role AND split_part(x, '=', 1) <> 'password_required';
        EXECUTE format('CREATE USER MAPPING FOR CURRENT_USER SERVER %I%s', p_server,
                       CASE WHEN options IS NOT NULL THEN format(' OPTIONS (%s)', options) ELSE '' END);
        borrowed := true;
    END IF;
    EXECUTE format('IMPORT FOREIGN SCHEMA %I LIMIT TO (%I) FROM SERVER %I INTO refdata_stage',
                   p_remote_schema, p_remote_table, p_server);
    IF borrowed THEN
        EXECUTE format('DROP USER MAPPING FOR CURRENT_USER SERVER %I', p_server);
    END IF;
    IF to_regclass(format('refdata_stage.%I', p_remote_table)) IS NULL THEN
        RAISE EXCEPTION 'table %.% not found on server %', p_remote_schema, p_remote_table, p_server
            USING ERRCODE = 'undefined_table';
    END IF;
    EXECUTE format('ALTER FOREIGN TABLE refdata_stage.%I RENAME TO %I', p_remote_table, p_local);
    EXECUTE format('REVOKE ALL ON refdata_stage.%I FROM PUBLIC', p_local);
END
$refdata$;
COMMENT ON FUNCTION refdata.sync_import(text, text, text, text, text) IS 'refdata: imports the foreign table a synced table reads';
REVOKE ALL ON FUNCTION refdata.sync_import(text, text, text, text, text) FROM PUBLIC;
