-- (Re)creates the foreign table one synced table reads, in refdata_stage
-- under a name of refdata's own. With the source columns configured it is
-- defined from the config alone, so apply never needs the legacy source to
-- be up (a source that is down fails its sync runs, recorded, not the
-- apply), the incremental column as a timestamp. Without them, the source's
-- own columns the target has by name are only known to the source: a
-- PostgreSQL source's by IMPORT FOREIGN SCHEMA, a MySQL source's from its
-- information_schema.COLUMNS (mysql_fdw's import skips a table with a SET
-- column and types an ENUM or YEAR column with types that do not exist
-- here); when the source cannot be reached a warning, and the foreign table
-- stays as it was (or absent: that table's syncs fail until an apply finds
-- the source up). PostgreSQL columns from the config read as text, cast by
-- the merge to the target's types like the client path's staged text. Every
-- MySQL column reads as bytea: mysql_fdw then hands over the bytes MySQL
-- sends, the text of a number, date, ENUM, SET or YEAR and the raw bytes of
-- a BLOB, BINARY or BIT, where a text column cut a BLOB at its first zero
-- byte without checking the rest, turned a BIT's bytes into characters and
-- ended the scan at a YEAR. The merge takes them as UTF-8 text (checked),
-- as bytes into a bytea column, a BIT as its number (known from the
-- information_schema.COLUMNS foreign table p_catalog, one per server, which
-- it reads at each sync). A foreign table holds no data, so recreating it
-- loses nothing. The import reads the remote catalog as the applier: without
-- credentials of its own on that server, it borrows the sync role's (p_role)
-- for this one statement (never committed).
-- The foreign table fetches p_fetch_size rows per round trip (the sync
-- config's batch_size; either wrapper's own default is 100): each round trip
-- waits for the source's process to be scheduled, which on a busy machine
-- took longer than reading the rows, and the rows of one fetch are what a
-- scan holds in memory at once.
DROP FUNCTION IF EXISTS refdata.sync_import(text, text, text, text);
DROP FUNCTION IF EXISTS refdata.sync_import(text, text, text, text, text);
DROP FUNCTION IF EXISTS refdata.sync_foreign_table(text, text, text, text, text, jsonb, text);
DROP FUNCTION IF EXISTS refdata.sync_foreign_table(text, text, text, text, text, jsonb, text, text);
CREATE OR REPLACE FUNCTION refdata.sync_foreign_table(
    p_server text, p_role text, p_remote_schema text, p_remote_table text, p_local text,
    p_columns jsonb, p_updated text, p_catalog text, p_fetch_size integer)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $refdata$
DECLARE
    wrapper text;
    names text[] := ARRAY(SELECT jsonb_array_elements_text(p_columns));
    cols text;
    msg text;
    state text;
    borrowed boolean := false;
    options text;
BEGIN
    SELECT w.fdwname INTO wrapper
      FROM pg_foreign_server AS s JOIN pg_foreign_data_wrapper AS w ON w.oid = s.srvfdw
     WHERE s.srvname = p_server;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no foreign server %', p_server USING ERRCODE = 'undefined_object';
    END IF;
    IF wrapper = 'mysql_fdw' THEN
        EXECUTE format('CREATE FOREIGN TABLE IF NOT EXISTS refdata_stage.%I (table_schema text, table_name text, '
                       'column_name text, data_type text, ordinal_position bigint) SERVER %I '
                       'OPTIONS (dbname %L, table_name %L)', p_catalog, p_server, 'information_schema', 'COLUMNS');
        EXECUTE format('REVOKE ALL ON refdata_stage.%I FROM PUBLIC', p_catalog);
        EXECUTE format('GRANT SELECT ON refdata_stage.%I TO %I', p_catalog, p_role);
    END IF;
    IF p_columns IS NULL THEN
        IF wrapper = 'postgres_fdw' AND to_regclass(format('refdata_stage.%I', p_remote_table)) IS NOT NULL THEN
            RAISE EXCEPTION 'cannot import %.%: refdata_stage.% exists', p_remote_schema, p_remote_table, p_remote_table;
        END IF;
        IF NOT EXISTS (SELECT FROM pg_user_mappings AS m
                       WHERE m.srvname = p_server
                         AND m.umuser IN (0, (SELECT r.oid FROM pg_roles AS r WHERE r.rolname = current_user))) THEN
            SELECT string_agg(format('%I %L', split_part(x, '=', 1), substr(x, strpos(x, '=') + 1)), ', ')
              INTO options
              FROM pg_user_mappings AS m, unnest(m.umoptions) AS x
             WHERE m.srvname = p_server AND m.usename = p_role AND split_part(x, '=', 1) <> 'password_required';
            BEGIN
                EXECUTE format('CREATE USER MAPPING FOR CURRENT_USER SERVER %I%s', p_server,
                               CASE WHEN options IS NOT NULL THEN format(' OPTIONS (%s)', options) ELSE '' END);
            EXCEPTION WHEN OTHERS THEN
                -- raised again without the statement, which holds the credentials, as its context
                GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
                RAISE EXCEPTION USING MESSAGE = format('borrowing the user mapping for server %s: %s', p_server, msg),
                                      ERRCODE = state;
            END;
            borrowed := true;
        END IF;
        BEGIN
            IF wrapper = 'postgres_fdw' THEN
                EXECUTE format('IMPORT FOREIGN SCHEMA %I LIMIT TO (%I) FROM SERVER %I INTO refdata_stage',
                               p_remote_schema, p_remote_table, p_server);
            ELSE
                EXECUTE format('SELECT array_agg(c.column_name ORDER BY c.ordinal_position) FROM refdata_stage.%I AS c '
                               'WHERE c.table_schema = $1 AND c.table_name = $2', p_catalog)
                    INTO names USING p_remote_schema, p_remote_table;
            END IF;
        EXCEPTION WHEN sqlclient_unable_to_establish_sqlconnection OR fdw_unable_to_establish_connection
                       OR connection_exception THEN
            GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
            RAISE WARNING 'source %.% (server %) cannot be reached: %; its foreign table is %; run refdata apply again when the source is up',
                p_remote_schema, p_remote_table, p_server, split_part(msg, E'\n', 1),
                CASE WHEN to_regclass(format('refdata_stage.%I', p_local)) IS NULL THEN 'not set up and its syncs fail'
                     ELSE 'left as it was' END;
        END;
        IF borrowed THEN
            EXECUTE format('DROP USER MAPPING FOR CURRENT_USER SERVER %I', p_server);
        END IF;
        IF msg IS NOT NULL THEN
            RETURN;
        END IF;
        IF wrapper = 'postgres_fdw' AND to_regclass(format('refdata_stage.%I', p_remote_table)) IS NULL
           OR wrapper = 'mysql_fdw' AND names IS NULL THEN
            RAISE EXCEPTION 'table %.% not found on server %', p_remote_schema, p_remote_table, p_server
                USING ERRCODE = 'undefined_table';
        END IF;
        IF wrapper = 'postgres_fdw' THEN
            EXECUTE format('DROP FOREIGN TABLE IF EXISTS refdata_stage.%I', p_local);
            EXECUTE format('ALTER FOREIGN TABLE refdata_stage.%I RENAME TO %I', p_remote_table, p_local);
            EXECUTE format('ALTER FOREIGN TABLE refdata_stage.%I OPTIONS (ADD fetch_size %L)', p_local, p_fetch_size);
            EXECUTE format('REVOKE ALL ON refdata_stage.%I FROM PUBLIC', p_local);
            EXECUTE format('GRANT SELECT ON refdata_stage.%I TO %I', p_local, p_role);
            RETURN;
        END IF;
    END IF;
    -- MySQL's DATETIME has no time zone.
    SELECT string_agg(format('%I %s', c, CASE WHEN c = p_updated
                                              THEN CASE wrapper WHEN 'postgres_fdw' THEN 'timestamptz' ELSE 'timestamp' END
                                              WHEN wrapper = 'mysql_fdw' THEN 'bytea'
                                              ELSE 'text' END), ', ' ORDER BY o)
      INTO cols
      FROM unnest(names || ARRAY(SELECT p_updated WHERE p_updated IS NOT NULL AND NOT p_updated = ANY (names)))
           WITH ORDINALITY AS x(c, o);
    EXECUTE format('DROP FOREIGN TABLE IF EXISTS refdata_stage.%I', p_local);
    EXECUTE format('CREATE FOREIGN TABLE refdata_stage.%I (%s) SERVER %I OPTIONS (%s %L, table_name %L, fetch_size %L)',
                   p_local, cols, p_server, CASE wrapper WHEN 'postgres_fdw' THEN 'schema_name' ELSE 'dbname' END,
                   p_remote_schema, p_remote_table, p_fetch_size);
    EXECUTE format('REVOKE ALL ON refdata_stage.%I FROM PUBLIC', p_local);
    -- the sync functions read it as their owner
    EXECUTE format('GRANT SELECT ON refdata_stage.%I TO %I', p_local, p_role);
END
$refdata$;
COMMENT ON FUNCTION refdata.sync_foreign_table(text, text, text, text, text, jsonb, text, text, integer) IS 'refdata: creates the foreign table a synced table reads';
REVOKE ALL ON FUNCTION refdata.sync_foreign_table(text, text, text, text, text, jsonb, text, text, integer) FROM PUBLIC;
